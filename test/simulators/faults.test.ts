import { describe, expect, it } from 'vitest'
import { FAULT_KINDS, faultPayload, FaultSpecError, parseFaultSpec, planFaults, validateTooLargePayloadBytes } from '../../simulators/faults.ts'
import { Rng } from '../../simulators/random.ts'
import { CONTRACT_OBIS_CODES, PAYLOAD_LIMIT_BYTES, schemaViolation } from './support/contract.ts'

const reading = { ts: '2026-10-01T00:30:00Z', values: { '1-0:1.8.0': 1234567, '1-0:1.7.0': 400 } }
const gasReading = { ts: '2026-10-01T01:00:00Z', values: { '7-0:3.0.0': 8765432 } }
const ctx = { nowMs: Date.parse('2026-10-01T02:00:00Z'), intervalMs: 15 * 60_000, skewMs: 24 * 3_600_000, tooLargePayloadBytes: 300 * 1024 }

describe('fault flags', () => {
  it('parses a fault spec into rates by kind', () => {
    expect(parseFaultSpec('duplicate=0.01,out-of-order=0.01,malformed=0.001,skew=0.001')).toEqual({
      duplicate: 0.01,
      'out-of-order': 0.01,
      malformed: 0.001,
      skew: 0.001,
    })
    expect(parseFaultSpec(' conflict=1 , too-large=0 ,')).toEqual({ conflict: 1, 'too-large': 0 })
  })

  it('refuses an unknown kind or a rate outside 0–1, naming it', () => {
    expect(() => parseFaultSpec('dupe=0.1')).toThrow(FaultSpecError)
    expect(() => parseFaultSpec('dupe=0.1')).toThrow(/unknown kind 'dupe'/)
    expect(() => parseFaultSpec('skew=2')).toThrow(/rate of 'skew'/)
    expect(() => parseFaultSpec('skew')).toThrow(/rate of 'skew'/)
    expect(() => parseFaultSpec('skew=abc')).toThrow(/rate of 'skew'/)
  })

  it('derives for every kind the payload it claims, for electricity and gas', () => {
    for (const r of [reading, gasReading]) {
      const code = Object.keys(r.values)[0]!
      const index = Object.values(r.values)[0]!
      const p = (kind: (typeof FAULT_KINDS)[number]): string => faultPayload(kind, r, new Rng(1), ctx)
      expect(p('duplicate')).toBe(JSON.stringify(r))
      expect(() => JSON.parse(p('malformed-json'))).toThrow()
      for (let seed = 0; seed < 20; seed++) {
        const text = faultPayload('invalid-schema', r, new Rng(seed), ctx)
        expect(() => JSON.parse(text)).not.toThrow()
        expect(schemaViolation(text)).not.toBeNull()
      }
      const unknown = JSON.parse(p('unknown-obis')) as { values: Record<string, number> }
      expect(schemaViolation(p('unknown-obis'))).toBeNull()
      expect(Object.keys(unknown.values).every((c) => !CONTRACT_OBIS_CODES.has(c))).toBe(true)
      const skew = JSON.parse(p('skew')) as { ts: string }
      expect(Date.parse(skew.ts)).toBeGreaterThanOrEqual(ctx.nowMs + ctx.skewMs)
      const conflict = JSON.parse(p('conflict')) as { ts: string; values: Record<string, number> }
      expect(conflict.ts).toBe(r.ts)
      expect(conflict.values[code]).toBeGreaterThan(index)
      const regression = JSON.parse(p('regression')) as { ts: string; values: Record<string, number> }
      expect(Date.parse(regression.ts)).toBeGreaterThan(Date.parse(r.ts))
      expect(regression.values[code]).toBeLessThan(index)
      expect(regression.values[code]).toBeGreaterThanOrEqual(0)
      const large = p('too-large')
      expect(Buffer.byteLength(large)).toBe(300 * 1024)
      expect(Buffer.byteLength(large)).toBeGreaterThan(PAYLOAD_LIMIT_BYTES)
      expect(schemaViolation(large)).toBeNull()
    }
  })

  it('rolls nothing at rate 0 and everything at rate 1', () => {
    const none = planFaults(reading, {}, new Rng(1), ctx)
    expect(none).toEqual({ extras: [], swap: false })
    const all = planFaults(
      reading,
      { duplicate: 1, conflict: 1, regression: 1, skew: 1, 'malformed-json': 1, 'invalid-schema': 1, 'unknown-obis': 1, 'too-large': 1, 'out-of-order': 1 },
      new Rng(1),
      ctx,
    )
    expect(all.swap).toBe(true)
    expect(all.extras.map((e) => e.kind).sort()).toEqual(FAULT_KINDS.filter((k) => k !== 'out-of-order').sort())
  })

  it('keeps a too-large payload within the transport limit of 1 MiB', () => {
    expect(() => validateTooLargePayloadBytes(256 * 1024)).toThrow(/tooLargePayloadBytes/)
    expect(() => validateTooLargePayloadBytes(1024 * 1024 + 1)).toThrow(/tooLargePayloadBytes/)
    expect(() => validateTooLargePayloadBytes(1024 * 1024)).not.toThrow()
  })
})
