import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { DEFAULT_INGEST_LIMITS } from '../../../shared/config.ts'
import { parseRfc3339Ms } from '../../../shared/calendar.ts'
import { ingressReadingSchema } from '../../../shared/wire.ts'
import { QUARANTINE_DETAIL_CHARS_MAX, QUARANTINE_DETAIL_CODES_MAX, datumBytes, deferredMessage, isWellFormedReading, validatePayload } from '../../../services/metering/ingest-validation.ts'

const NOW = Date.parse('2026-11-01T00:00:00Z')
const meter = { meterId: 'm1', commodity: 'electricity' as const }
const validate = (payload: string | Buffer) => validatePayload(meter, Buffer.isBuffer(payload) ? payload : Buffer.from(payload), NOW, DEFAULT_INGEST_LIMITS)

describe('ingest validation', () => {
  it('checks readings by hand exactly as the wire schema does', () => {
    const code = fc.oneof(fc.constantFrom('1-0:1.8.0', '1-0:2.8.0', 'x'.repeat(33), '__proto__'), fc.string({ maxLength: 40 }))
    const value = fc.oneof(fc.integer(), fc.double(), fc.constant(Number.MAX_SAFE_INTEGER + 2), fc.constant(-1), fc.string(), fc.constant(null))
    const reading = fc.record(
      {
        ts: fc.oneof(fc.constant('2026-10-01T00:30:00Z'), fc.string({ maxLength: 70 }), fc.integer()),
        values: fc.oneof(fc.dictionary(code, value, { maxKeys: 3 }), fc.constant([]), fc.constant(null)),
        extra: fc.anything(),
      },
      { requiredKeys: [] },
    )
    fc.assert(
      fc.property(fc.oneof(reading, fc.anything()), (v) => {
        const doc = JSON.parse(JSON.stringify(v) ?? 'null') as unknown
        // zod's records skip a "__proto__" key that JSON.parse made an own property; the hand check counts it (next test).
        fc.pre(!hasOwnProtoKey(doc))
        expect(isWellFormedReading(doc)).toBe(ingressReadingSchema.safeParse(doc).success)
      }),
      { numRuns: 2_000 },
    )
  })

  it('treats a "__proto__" register as a code like any other: unknown, quarantined, never a prototype', () => {
    const m = validate('{"ts":"2026-10-01T00:30:00Z","values":{"__proto__":5,"1-0:1.8.0":3}}')
    expect(m.datums).toEqual([])
    expect(m.rejects.map((r) => [r.reason, r.detail])).toEqual([['unknown_obis', 'values: unknown OBIS code __proto__ for an electricity meter']])
  })

  it('bounds a quarantine detail: ten unknown codes named and the rest counted, and a detail naming a 100 KB key cut, while the payload is kept whole', () => {
    const codes = Array.from({ length: 50 }, (_, i) => `9-9:${i}.8.0`)
    const many = validate(JSON.stringify({ ts: '2026-10-01T00:30:00Z', values: Object.fromEntries(codes.map((c) => [c, 1])) }))
    expect(many.rejects.map((r) => [r.reason, r.detail])).toEqual([
      ['unknown_obis', `values: unknown OBIS codes ${codes.slice(0, QUARANTINE_DETAIL_CODES_MAX).join(', ')} and 40 more for an electricity meter`],
    ])
    const key = 'k'.repeat(100_000)
    const payload = JSON.stringify({ readings: [{ ts: '2026-10-01T00:30:00Z', values: { [key]: 'five' } }, { ts: '2026-10-01T00:45:00Z', values: { [key]: 5 } }] })
    const long = validate(payload)
    expect(long.rejects.map((r) => r.reason)).toEqual(['invalid_schema', 'invalid_schema'])
    for (const r of long.rejects) {
      expect(r.detail.length).toBeLessThanOrEqual(QUARANTINE_DETAIL_CHARS_MAX)
      expect(r.detail).toMatch(/^readings\[\d\]\.values.*kkkk… \(\d+ more characters\)$/)
      expect(r.payload.toString()).toContain(key)
    }
    // A cut never splits a surrogate pair.
    const emoji = validate(JSON.stringify({ ts: '2026-10-01T00:30:00Z', values: { ['😀'.repeat(1_000)]: 5 } }))
    expect(emoji.rejects[0]!.detail).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])/)
    expect(emoji.rejects[0]!.detail.length).toBeLessThanOrEqual(QUARANTINE_DETAIL_CHARS_MAX)
  })

  it('parses RFC 3339 exactly as Date.parse does for valid stamps, to the millisecond', () => {
    fc.assert(
      fc.property(fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2099-12-31T00:00:00Z'), noInvalidDate: true }), fc.integer({ min: -14 * 60, max: 14 * 60 }), (d, offsetMin) => {
        const local = new Date(d.getTime() + offsetMin * 60_000).toISOString().slice(0, 23)
        const sign = offsetMin < 0 ? '-' : '+'
        const abs = Math.abs(offsetMin)
        const stamp = `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`
        expect(parseRfc3339Ms(stamp)).toBe(d.getTime())
        expect(parseRfc3339Ms(stamp)).toBe(Date.parse(stamp))
      }),
    )
  })

  it('keeps a single reading’s payload as sent and a batch element as its own JSON for quarantine', () => {
    const single = validate('{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":5}}')
    expect(single.datums).toHaveLength(1)
    expect(datumBytes(single, single.datums[0]!).toString()).toBe('{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":5}}')
    const batch = validate('{"readings":[{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":5}},  {"values":{"1-0:1.8.0":6},"ts":"2026-10-01T00:45:00Z"}]}')
    expect(batch.datums.map((d) => datumBytes(batch, d).toString())).toEqual([
      '{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":5}}',
      '{"values":{"1-0:1.8.0":6},"ts":"2026-10-01T00:45:00Z"}',
    ])
  })

  it('quarantines a batch nested deeper than a reading can be, whole, instead of running out of stack', () => {
    // 20 KB of brackets inside a batch: copying the element for its quarantine recursed once per level.
    const deep = (n: number, open: string, close: string): string => open.repeat(n) + '1' + close.repeat(n)
    for (const payload of [
      `{"readings":[${deep(10_000, '[', ']')}]}`,
      `{"readings":[{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":5}},{"ts":"2026-10-01T00:45:00Z","values":{"1-0:1.8.0":${deep(40_000, '{"a":', '}')}}}]}`,
      `{"readings":[{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":5},"x":${deep(120_000, '[', ']')}}]}`,
    ]) {
      expect(payload.length).toBeLessThanOrEqual(DEFAULT_INGEST_LIMITS.payloadBytesMax)
      const v = validate(payload)
      expect(v.datums).toEqual([])
      expect(v.rejects).toHaveLength(1)
      expect(v.rejects[0]).toMatchObject({ reason: 'invalid_schema', tsMs: null, payloadBytes: payload.length })
      expect(v.rejects[0]!.payload.toString()).toBe(payload)
      expect(v.rejects[0]!.detail).toMatch(/nested deeper than \d+ levels/)
    }
    // A single reading keeps its payload as sent, however deep what it holds.
    const single = validate(`{"ts":"2026-10-01T00:30:00Z","values":${deep(10_000, '[', ']')}}`)
    expect(single.rejects.map((r) => r.reason)).toEqual(['invalid_schema'])
  })

  it('estimates a deferred message no larger than what validating it can give', () => {
    const estimate = (payload: string): number => deferredMessage(meter, Buffer.from(payload), NOW, DEFAULT_INGEST_LIMITS).deferred!.readingsEstimate
    // "ts" keys alone, as many as fit: not 65,536 readings, since validation would refuse the batch whole.
    expect(estimate('"ts"'.repeat(DEFAULT_INGEST_LIMITS.payloadBytesMax / 4))).toBe(1)
    expect(estimate('"ts"'.repeat(DEFAULT_INGEST_LIMITS.payloadBytesMax / 4 + 1))).toBe(1)
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_200 }), fc.boolean(), (n, extraTs) => {
        const readings = Array.from({ length: n }, (_, i) => ({ ts: new Date(NOW - (i + 1) * 900_000).toISOString(), values: { '1-0:1.8.0': i } }))
        const payload = JSON.stringify({ readings }) + (extraTs ? ' "ts"'.repeat(3) : '')
        const v = validate(payload)
        expect(estimate(payload)).toBeLessThanOrEqual(DEFAULT_INGEST_LIMITS.batchReadingsMax)
        if (!extraTs) expect(estimate(payload)).toBe(v.datums.length + v.rejects.length)
      }),
      { numRuns: 40 },
    )
  })

  it('turns any payload into datums and quarantine items without throwing, every reading of a batch accounted for', () => {
    const code = fc.oneof(fc.constantFrom('1-0:1.8.0', '1-0:2.8.3', '1-0:1.7.0', '7-0:3.0.0', '__proto__', ''), fc.string({ maxLength: 34 }))
    const value = fc.oneof(fc.nat(), fc.constantFrom(-0, Number.MAX_SAFE_INTEGER + 1, 0.5, -1), fc.anything({ maxDepth: 2 }))
    const ts = fc.oneof(fc.date({ min: new Date('1969-01-01'), max: new Date('3001-01-01'), noInvalidDate: true }).map((d) => d.toISOString()), fc.string({ maxLength: 66 }))
    const reading = fc.oneof({ weight: 4, arbitrary: fc.record({ ts, values: fc.dictionary(code, value, { maxKeys: 3 }) }) }, { weight: 1, arbitrary: fc.anything({ maxDepth: 3 }) })
    // Elements as JSON text: one nested 20,000 deep is more than JSON.stringify can write.
    const deep = fc.tuple(fc.integer({ min: 0, max: 20_000 }), fc.constantFrom('[', '{"a":')).map(([n, open]) => open.repeat(n) + '1' + (open === '[' ? ']' : '}').repeat(n))
    const element = fc.oneof({ weight: 8, arbitrary: reading.map((r) => JSON.stringify(r) ?? 'null') }, { weight: 1, arbitrary: deep })
    const batch = fc.array(element, { minLength: 1, maxLength: 6 })
    const payload = fc.oneof(
      batch.map((readings) => ({ readings, text: `{"readings":[${readings.join(',')}]}` })),
      reading.map((r) => ({ readings: null, text: JSON.stringify(r) ?? 'null' })),
      fc.uint8Array({ maxLength: 64 }).map((a) => ({ readings: null, text: Buffer.from(a).toString('latin1') })),
    )
    fc.assert(
      fc.property(payload, ({ readings, text }) => {
        const v = validate(text)
        expect(v.datums.length + v.rejects.length).toBeGreaterThan(0)
        for (const d of v.datums) expect(d.tsMs).toBeLessThanOrEqual(NOW + DEFAULT_INGEST_LIMITS.futureToleranceMs)
        // A batch is split reading by reading, unless it is refused whole (one item, without a position).
        if (readings !== null && !(v.rejects.length === 1 && !v.rejects[0]!.detail.startsWith('readings['))) {
          expect(v.datums.length + v.rejects.length).toBe(readings.length)
        }
      }),
      { numRuns: 300 },
    )
  })

  const T = Date.parse('2026-10-01T00:30:00Z')
  it.each([
    ['{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":5},"x":1}', 'invalid_schema', 'x', T],
    ['{"readings":[{"ts":"2026-10-01T00:30:00Z"}]}', 'invalid_schema', 'readings[0].values', T],
    ['{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":1.5}}', 'invalid_schema', 'values.1-0:1.8.0: must be a whole number from 0 to 9007199254740991', T],
    ['{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":5},"x":1,"y":2}', 'invalid_schema', 'unexpected keys x, y: a reading holds ts and values only', T],
    ['{"ts":"1999-12-31T23:59:59Z","values":{"1-0:1.8.0":5}}', 'invalid_schema', 'outside the years 2000 to 2099', Date.UTC(1999, 11, 31, 23, 59, 59)],
    ['{"ts":"2100-01-01T00:00:00Z","values":{"1-0:1.8.0":5}}', 'invalid_schema', 'outside the years 2000 to 2099', Date.UTC(2100, 0, 1)],
    ['{"ts":"1969-12-31T23:59:59Z","values":{"1-0:1.8.0":5}}', 'invalid_schema', 'outside the years 2000 to 2099', null],
    ['{"ts":"1999-12-31T23:59:59Z","values":{"1-0:1.8.0":5.5}}', 'invalid_schema', 'values.1-0:1.8.0', Date.UTC(1999, 11, 31, 23, 59, 59)],
    ['{"ts":"2026-10-01T00:30:00+25:00","values":{"1-0:1.8.0":5}}', 'invalid_schema', 'RFC 3339', null],
    ['{"ts":"2026-10-01T00:30:00.0000001Z","values":{"1-0:1.8.0":5}}', 'invalid_schema', 'ts: finer than a millisecond', T],
    ['{"ts":"2026-10-01T02:30:00.123400+02:00","values":{"1-0:1.8.0":5}}', 'invalid_schema', 'ts: finer than a millisecond', T + 123],
    ['{"ts":"2026-10-01T00:30:00+25:00","values":{"1-0:1.8.0":5.5}}', 'invalid_schema', 'values.1-0:1.8.0', null],
    ['{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":5,"9-9:9.9.9":1,"8-8:8.8.8":2}}', 'unknown_obis', '9-9:9.9.9, 8-8:8.8.8', T],
  ])('rejects %s as %s, naming what is wrong, with its time when it can be read', (payload, reason, detail, tsMs) => {
    const v = validate(payload)
    expect(v.datums).toEqual([])
    expect(v.rejects.map((r) => r.reason)).toEqual([reason])
    expect(v.rejects[0]!.detail).toContain(detail)
    expect(v.rejects[0]!.tsMs).toBe(tsMs)
  })
})

function hasOwnProtoKey(doc: unknown): boolean {
  if (typeof doc !== 'object' || doc === null) return false
  const values = (doc as { values?: unknown }).values
  return typeof values === 'object' && values !== null && Object.hasOwn(values, '__proto__')
}
