import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { DEFAULT_INGEST_LIMITS } from '../../../shared/config.ts'
import { parseRfc3339Ms } from '../../../shared/calendar.ts'
import { ingressReadingSchema } from '../../../shared/wire.ts'
import {
  PAYLOAD_NESTING_MAX,
  QUARANTINE_DETAIL_CHARS_MAX,
  QUARANTINE_DETAIL_CODES_MAX,
  TS_MIN_MS,
  datumBytes,
  deferredMessage,
  isWellFormedReading,
  validated,
  validatePayload,
} from '../../../services/metering/ingest-validation.ts'

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

  it('quarantines a value written with a fraction or an exponent, which parsing would round, and stores the batch’s other readings', () => {
    const reading = (literal: string, ts = '2026-10-01T00:30:00Z') => `{"ts":"${ts}","values":{"1-0:1.7.0":5,"1-0:1.8.0":${literal}}}`
    for (const literal of ['600000.99999999999999', '200600.0', '2.0061e5', '2E5', '9007199254740990.6', '-0.0']) {
      const payload = reading(literal)
      const v = validate(payload)
      expect(v.datums).toEqual([])
      expect(v.rejects.map((r) => [r.reason, r.tsMs, r.detail, r.payload.toString()])).toEqual([
        ['invalid_schema', Date.parse('2026-10-01T00:30:00Z'), `values.1-0:1.8.0: ${literal} is not an integer written out (no fraction, no exponent: JSON parsing would round it)`, payload],
      ])
    }
    // The same values written as integers are stored, up to the largest safe integer (16 digits).
    for (const literal of ['200600', '0', String(Number.MAX_SAFE_INTEGER)]) expect(validate(reading(literal)).datums).toHaveLength(1)
    // Digits in keys and timestamps are text, not numbers.
    expect(validate('{"ts":"2026-10-01T00:30:00.500Z","values":{"1-0:1.8.0":5}}').datums).toHaveLength(1)

    const batch = `{ "readings" : [ ${reading('7', '2026-10-01T00:15:00Z')} ,\n  {"values": {"1-0:1.8.0": 1.0}, "ts": "2026-10-01T02:30:00+02:00"}, ${reading('9')} ] }`
    const v = validate(batch)
    expect(v.datums.map((d) => [d.index, d.values['1-0:1.8.0']])).toEqual([[0, 7], [2, 9]])
    expect(v.rejects.map((r) => [r.reason, r.detail, r.payload.toString()])).toEqual([
      ['invalid_schema', 'readings[1].values.1-0:1.8.0: 1.0 is not an integer written out (no fraction, no exponent: JSON parsing would round it)', '{"values": {"1-0:1.8.0": 1.0}, "ts": "2026-10-01T02:30:00+02:00"}'],
    ])
    // A batch whose readings its text does not place (the key written with escapes) is quarantined whole, the field named as parsed.
    const escaped = `{"read\\u0069ngs":[${reading('7', '2026-10-01T00:15:00Z')},${reading('1e1')}]}`
    const whole = validate(escaped)
    expect(whole.datums).toEqual([])
    expect(whole.rejects.map((r) => [r.reason, r.tsMs, r.detail, r.payload.toString()])).toEqual([
      ['invalid_schema', null, 'readings[1].values.1-0:1.8.0: 1e1 is not an integer written out (no fraction, no exponent: JSON parsing would round it)', escaped],
    ])
  })

  it('quarantines a reading with a key written twice, which parsing would keep the last of, and the batch whole when it is `readings` (found by probing: acknowledged, one reading lost unseen)', () => {
    const ts = (h: number) => `2026-10-10T0${h}:00:00Z`
    // In a reading: that reading, its own bytes kept, its time kept unless `ts` is the key written twice; the batch's others stored.
    const twice = `{"ts":"${ts(1)}","values":{"1-0:1.8.0":1290000,"1-0:1.8.0":1290500}}`
    const single = validate(twice)
    expect(single.datums).toEqual([])
    expect(single.rejects.map((r) => [r.reason, r.tsMs, r.detail, r.payload.toString()])).toEqual([
      ['invalid_schema', Date.parse(ts(1)), 'values.1-0:1.8.0: key written twice in one object (which value was meant cannot be told)', twice],
    ])
    // Named even where the last copy is itself wrong (the parse would say only what is wrong with it).
    for (const [payload, field] of [
      [`{"readings":[{"ts":"${ts(0)}","values":{"1-0:1.8.0":1}}],"readings":[]}`, 'readings'],
      [`{"readings":[{"ts":"${ts(0)}","values":{"1-0:1.8.0":1}}],"readings":{"x":1}}`, 'readings'],
      [`{"ts":"${ts(0)}","values":{"1-0:1.8.0":1},"values":5}`, 'values'],
    ] as const) {
      expect(validate(payload).rejects.map((r) => r.detail)).toEqual([`${field}: key written twice in one object (which value was meant cannot be told)`])
    }
    const tsTwice = `{"ts":"${ts(2)}","ts":"${ts(3)}","values":{"1-0:1.8.0":5}}`
    const batch = `{"readings":[{"ts":"${ts(0)}","values":{"1-0:1.8.0":4}},${tsTwice}]}`
    const v = validate(batch)
    expect(v.datums.map((d) => [d.index, d.tsMs])).toEqual([[0, Date.parse(ts(0))]])
    expect(v.rejects.map((r) => [r.reason, r.tsMs, r.detail, r.payload.toString()])).toEqual([
      ['invalid_schema', null, 'readings[1].ts: key written twice in one object (which value was meant cannot be told)', tsTwice],
    ])
    // `readings` twice: which readings were sent cannot be told; the batch whole.
    const readingsTwice = `{"readings":[{"ts":"${ts(0)}","values":{"1-0:1.8.0":1}}],"readings":[{"ts":"${ts(1)}","values":{"1-0:1.8.0":2}}]}`
    const whole = validate(readingsTwice)
    expect(whole.datums).toEqual([])
    expect(whole.rejects.map((r) => [r.reason, r.tsMs, r.detail, r.payload.toString()])).toEqual([
      ['invalid_schema', null, 'readings: key written twice in one object (which value was meant cannot be told)', readingsTwice],
    ])
  })

  it('keeps a quarantined batch reading’s own bytes as the meter wrote them, spacing and literals, for every reason', () => {
    const elements = [
      '{ "ts" : "2026-10-01T00:30:00Z", "values" : { "1-0:1.8.0" : "five" } }',
      '{"ts":"2026-10-01T00:45:00+00:00","values":{"9-9:9.9.9":  5}}',
      '{"values":{"1-0:1.8.0":5},\t"ts":"2099-10-01T00:45:00Z"}',
      '[ 1 ,2 ]',
      '"a \\" ] , [ string"',
      '{"ts":"2026-10-01T01:00:00Z","values":{"1-0:1.8.0":8}}',
    ]
    const v = validate(`{"readings":[\n ${elements.join(' ,\r\n ')} \n]}`)
    expect(v.rejects.map((r) => r.reason)).toEqual(['invalid_schema', 'unknown_obis', 'future_timestamp', 'invalid_schema', 'invalid_schema'])
    expect(v.rejects.map((r) => r.payload.toString())).toEqual(elements.slice(0, 5))
    expect(v.rejects.map((r) => r.payloadBytes)).toEqual(elements.slice(0, 5).map((e) => Buffer.byteLength(e)))
    // What is quarantined later (a conflict, a regression) keeps its bytes the same way, multi-byte characters and all.
    const spaced = '{ "values" : {"1-0:1.8.0":6} , "ts":"2026-10-01T00:45:00Z" }'
    const later = validate(`{"readings":[{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":5},"x":"é"} , ${spaced}]}`)
    expect(later.datums.map((d) => datumBytes(later, d).toString())).toEqual([spaced])
    expect(later.rejects.map((r) => r.payload.toString())).toEqual(['{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":5},"x":"é"}'])
  })

  it('keeps a single reading’s payload as sent and a batch element as its own bytes for quarantine', () => {
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

  // Small limits, so that a test can stand on each side of one.
  const SMALL = { ...DEFAULT_INGEST_LIMITS, payloadBytesMax: 120, batchReadingsMax: 3, quarantineExcerptBytes: 10 }
  const reading = (ts = '2026-10-01T00:30:00Z') => ({ ts, values: { '1-0:1.8.0': 5 } })

  it('takes a payload of payloadBytesMax bytes, and quarantines a longer one whole, keeping an excerpt', () => {
    const fits = JSON.stringify(reading()).padEnd(SMALL.payloadBytesMax, ' ')
    expect(validatePayload(meter, Buffer.from(fits), NOW, SMALL).datums).toHaveLength(1)
    const v = validatePayload(meter, Buffer.from(fits + ' '), NOW, SMALL)
    expect(v.datums).toEqual([])
    expect(v.rejects.map((r) => [r.reason, r.tsMs, r.payload.toString(), r.payloadBytes])).toEqual([['too_large', null, fits.slice(0, 10), 121]])
    expect(v.rejects[0]!.detail).toBe('payload of 121 bytes exceeds payloadBytesMax 120; first 10 bytes kept')
  })

  it('quarantines whole what is not UTF-8, not JSON, or not a reading or a batch', () => {
    const whole = (payload: Buffer | string, limits = DEFAULT_INGEST_LIMITS) => {
      const v = validatePayload(meter, Buffer.isBuffer(payload) ? payload : Buffer.from(payload), NOW, limits)
      expect(v.datums).toEqual([])
      expect(v.rejects).toHaveLength(1)
      expect(v.rejects[0]!.payload.toString('latin1')).toBe(Buffer.from(payload).toString('latin1'))
      return [v.rejects[0]!.reason, v.rejects[0]!.detail]
    }
    // A lone continuation byte inside a string: JSON.parse would take its replacement character.
    expect(whole(Buffer.from([0x22, 0x80, 0x22]))).toEqual(['malformed_json', 'payload is not valid UTF-8'])
    expect(whole('{"ts":')[0]).toBe('malformed_json')
    expect(whole('{"ts":')[1]).toMatch(/^not JSON: /)
    expect(whole('[1]')).toEqual(['invalid_schema', 'expected a reading object or {"readings":[…]}'])
    expect(whole('5')).toEqual(['invalid_schema', 'expected a reading object or {"readings":[…]}'])
    expect(whole('{"readings":[],"meter":"m2"}')).toEqual(['invalid_schema', 'batch: unexpected key meter'])
    expect(whole('{"readings":{}}')).toEqual(['invalid_schema', 'readings: expected an array'])
    expect(whole('{"readings":[]}')).toEqual(['invalid_schema', 'readings: must hold at least one reading'])
    const four = JSON.stringify({ readings: [1, 2, 3, 4] })
    expect(whole(four, SMALL)).toEqual(['invalid_schema', 'readings: 4 readings exceed batchReadingsMax 3'])
    const three = JSON.stringify({ readings: [reading(), reading('2026-10-01T00:45:00Z'), reading('2026-10-01T01:00:00Z')] })
    expect(validatePayload(meter, Buffer.from(three), NOW, { ...SMALL, payloadBytesMax: 1_000 }).datums).toHaveLength(3)
  })

  it('keeps for quarantine a single reading as sent and a batch element as its own bytes', () => {
    const sent = '{"ts":"2026-10-01T00:30:00Z",  "values":{"1-0:1.8.0":-5}}'
    const single = validate(sent)
    expect(single.rejects.map((r) => [r.payload.toString(), r.payloadBytes])).toEqual([[sent, sent.length]])
    const batch = validate(`{"readings":[${sent}]}`)
    expect(batch.rejects.map((r) => [r.payload.toString(), r.payloadBytes, r.detail.slice(0, 12)])).toEqual([[sent, sent.length, 'readings[0].']])
  })

  it('takes readings from the first millisecond of 2000 to futureToleranceMs ahead of the clock, and no later', () => {
    const at = (ms: number) => validate(JSON.stringify(reading(new Date(ms).toISOString())))
    expect(at(TS_MIN_MS).datums.map((d) => d.tsMs)).toEqual([TS_MIN_MS])
    const limit = NOW + DEFAULT_INGEST_LIMITS.futureToleranceMs
    expect(at(limit).datums.map((d) => d.tsMs)).toEqual([limit])
    expect(at(limit + 1).rejects.map((r) => [r.reason, r.tsMs, r.detail])).toEqual([
      ['future_timestamp', limit + 1, `ts: ${new Date(limit + 1).toISOString()} is more than 300000 ms ahead of the broker's clock`],
    ])
  })

  it('takes digits past the millisecond when they are zeros, before Z or an offset', () => {
    for (const ts of ['2026-10-01T00:30:00.1230Z', '2026-10-01T00:30:00.123000+00:00', '2026-10-01T00:30:00.5Z', '2026-10-01T00:30:00Z']) {
      expect(validate(JSON.stringify(reading(ts))).datums).toHaveLength(1)
    }
    // A fraction of one or two digits ends before the offset: the offset's digits are not the fraction's.
    const T = Date.parse('2026-10-01T00:30:00Z')
    const shortFractions: [string, number][] = [
      ['2026-10-01T01:30:00.5+01:00', T + 500],
      ['2026-10-01T02:30:00.12+02:00', T + 120],
      ['2026-09-30T19:30:00.25-05:00', T + 250],
      ['2026-10-01T06:00:00.7+05:30', T + 700],
    ]
    for (const [ts, tsMs] of shortFractions) expect([ts, validate(JSON.stringify(reading(ts))).datums.map((d) => d.tsMs)]).toEqual([ts, [tsMs]])
    expect(validate(JSON.stringify(reading('2026-10-01T00:30:00.1239Z'))).rejects.map((r) => r.detail)).toEqual([
      'ts: finer than a millisecond (datums are told apart to the millisecond)',
    ])
  })

  it('keeps the time of a quarantined reading from 1970 to the end of 2999 only', () => {
    const tsOf = (ts: string) => validate(JSON.stringify(reading(ts))).rejects[0]!.tsMs
    expect(tsOf('1970-01-01T00:00:00Z')).toBe(0)
    expect(tsOf('2999-12-31T23:59:59.999Z')).toBe(Date.UTC(3000, 0, 1) - 1)
    expect(tsOf('3000-01-01T00:00:00Z')).toBe(null)
    // A time that is not a string is not read, even one that would read as a timestamp once made text.
    expect(validate(JSON.stringify({ ts: ['2026-10-01T00:30:00Z'], values: { '1-0:1.8.0': 5 } })).rejects.map((r) => [r.reason, r.tsMs, r.detail])).toEqual([
      ['invalid_schema', null, 'ts: must be an RFC 3339 timestamp string'],
    ])
  })

  it('names one unknown code in the singular, a gas meter with "a", and ten codes without a count', () => {
    const gas = validatePayload({ meterId: 'g1', commodity: 'gas' }, Buffer.from(JSON.stringify({ ts: '2026-10-01T00:30:00Z', values: { '1-0:1.8.0': 5 } })), NOW, DEFAULT_INGEST_LIMITS)
    expect(gas.rejects.map((r) => r.detail)).toEqual(['values: unknown OBIS code 1-0:1.8.0 for a gas meter'])
    const codes = Array.from({ length: QUARANTINE_DETAIL_CODES_MAX }, (_, i) => `9-9:${i}.8.0`)
    const ten = validate(JSON.stringify({ ts: '2026-10-01T00:30:00Z', values: Object.fromEntries(codes.map((c) => [c, 1])) }))
    expect(ten.rejects.map((r) => r.detail)).toEqual([`values: unknown OBIS codes ${codes.join(', ')} for an electricity meter`])
  })

  it('keeps a detail of QUARANTINE_DETAIL_CHARS_MAX characters whole, and cuts a longer one before a split surrogate pair, counting the rest', () => {
    // A register code too long for the schema is named in full: "values.<code>: must be …".
    const detailOf = (code: string) => validate(JSON.stringify({ ts: '2026-10-01T00:30:00Z', values: { [code]: 1 } })).rejects[0]!.detail
    const around = detailOf('c'.repeat(33)).length - 33
    const exact = detailOf('c'.repeat(QUARANTINE_DETAIL_CHARS_MAX - around))
    expect(exact.length).toBe(QUARANTINE_DETAIL_CHARS_MAX)
    expect(exact.endsWith(' value')).toBe(true)
    const cut = QUARANTINE_DETAIL_CHARS_MAX - 40
    expect(detailOf('c'.repeat(QUARANTINE_DETAIL_CHARS_MAX - around + 1))).toBe(`values.${'c'.repeat(cut - 7)}… (${QUARANTINE_DETAIL_CHARS_MAX + 1 - cut} more characters)`)
    // A surrogate pair astride the cut: its first half would be the last character kept.
    const astride = 'c'.repeat(cut - 8) + '😀' + 'c'.repeat(QUARANTINE_DETAIL_CHARS_MAX)
    expect(detailOf(astride)).toBe(`values.${'c'.repeat(cut - 8)}… (${around + astride.length - (cut - 1)} more characters)`)
    // The first and the last high surrogates, U+10000 and U+10FC00, are cut around as well.
    for (const pair of ['\u{10000}', '\u{10FC00}']) {
      const edge = 'c'.repeat(cut - 8) + pair + 'c'.repeat(QUARANTINE_DETAIL_CHARS_MAX)
      expect(detailOf(edge)).toBe(`values.${'c'.repeat(cut - 8)}… (${around + edge.length - (cut - 1)} more characters)`)
    }
    const before = 'c'.repeat(cut - 9) + '😀' + 'c'.repeat(QUARANTINE_DETAIL_CHARS_MAX)
    expect(detailOf(before)).toBe(`values.${'c'.repeat(cut - 9)}😀… (${around + before.length - cut} more characters)`)
  })

  it('counts the nesting of a batch by its brackets, not by brackets inside strings', () => {
    const nested = (n: number) => '['.repeat(n) + '1' + ']'.repeat(n)
    // The batch's object and array are two levels: an element nested PAYLOAD_NESTING_MAX - 2 deep fits.
    const fits = validate(`{"readings":[${nested(PAYLOAD_NESTING_MAX - 2)},${JSON.stringify(reading())}]}`)
    expect(fits.rejects.map((r) => r.detail.slice(0, 12))).toEqual(['readings[0].'])
    expect(fits.datums).toHaveLength(1)
    const deeper = validate(`{"readings":[${nested(PAYLOAD_NESTING_MAX - 1)},${JSON.stringify(reading())}]}`)
    expect(deeper.datums).toEqual([])
    expect(deeper.rejects.map((r) => r.detail)).toEqual([`readings: arrays and objects nested deeper than ${PAYLOAD_NESTING_MAX} levels`])
    // Closed objects and arrays are left: forty readings side by side nest no deeper than one.
    const wide = validate(JSON.stringify({ readings: [5, ...Array.from({ length: 40 }, (_, i) => reading(new Date(NOW - (i + 1) * 900_000).toISOString()))] }))
    expect(wide.datums).toHaveLength(40)
    expect(wide.rejects.map((r) => r.detail)).toEqual(['readings[0].reading: must be an object {"ts","values"}'])
    // Brackets and escaped quotes inside strings are text.
    const text = JSON.stringify({ readings: [{ ts: '[[[[\\"{{{{'.repeat(20), values: { '1-0:1.8.0': 5 } }, { note: '"]]]]' + '['.repeat(100) }, reading()] })
    const v = validate(text)
    expect(v.datums).toHaveLength(1)
    expect(v.rejects.map((r) => r.detail.slice(0, 12))).toEqual(['readings[0].', 'readings[1].'])
  })

  it('checks by hand the bounds the wire schema sets: a 64-character ts and a 32-character code, a zero register', () => {
    const cases = [
      { ts: 'x'.repeat(64), values: { '1-0:1.8.0': 0 } },
      { ts: 'x'.repeat(65), values: { '1-0:1.8.0': 0 } },
      { ts: '2026-10-01T00:30:00Z', values: { ['c'.repeat(32)]: 1 } },
      { ts: '2026-10-01T00:30:00Z', values: { ['c'.repeat(33)]: 1 } },
      { ts: 5, values: { '1-0:1.8.0': 1 } },
      { ts: '2026-10-01T00:30:00Z', values: { '1-0:1.8.0': -1 } },
    ]
    expect(cases.map((c) => isWellFormedReading(c))).toEqual([true, false, true, false, false, false])
    for (const c of cases) expect(isWellFormedReading(c)).toBe(ingressReadingSchema.safeParse(c).success)
  })

  it('validates a deferred message where it is committed as the broker would have, and a validated one is itself', () => {
    const payload = Buffer.from(JSON.stringify({ readings: [reading(), { ts: '2026-10-01T00:45:00Z', values: { '9-9:9.9.9': 1 } }] }))
    const deferred = deferredMessage(meter, payload, NOW, DEFAULT_INGEST_LIMITS)
    expect(deferred.datums).toEqual([])
    expect(deferred.rejects).toEqual([])
    const now = validated(deferred, DEFAULT_INGEST_LIMITS)
    expect(now).toEqual(validatePayload(meter, payload, NOW, DEFAULT_INGEST_LIMITS))
    expect(validated(now, DEFAULT_INGEST_LIMITS)).toBe(now)
  })

  it('estimates a deferred message at its count of "ts" up to batchReadingsMax, and at one beyond it or over payloadBytesMax', () => {
    const estimate = (payload: string) => deferredMessage(meter, Buffer.from(payload), NOW, SMALL).deferred!.readingsEstimate
    expect(estimate('"ts"'.repeat(3))).toBe(3)
    expect(estimate('"ts"'.repeat(4))).toBe(1)
    expect(estimate('"ts"'.repeat(2).padEnd(SMALL.payloadBytesMax, ' '))).toBe(2)
    expect(estimate('"ts"'.repeat(2).padEnd(SMALL.payloadBytesMax + 1, ' '))).toBe(1)
    expect(estimate('{}')).toBe(1)
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
