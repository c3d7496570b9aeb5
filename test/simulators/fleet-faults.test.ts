import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import type { MeterCredentials } from '../../simulators/credentials.ts'
import { FAULT_KINDS, type FaultFlag, type FaultKind } from '../../simulators/faults.ts'
import { startFleet, type FaultEvent, type FleetStats } from '../../simulators/fleet.ts'
import { CONTRACT_OBIS_CODES, contractReadings, PAYLOAD_LIMIT_BYTES, readingViolation, schemaViolation, type ContractReading } from './support/contract.ts'
import { ManualClock, startSubscriber, startTestBroker, waitFor, type Received } from './support/test-broker.ts'

const MIN = 60_000
const FROM_MS = Date.parse('2026-09-30T22:00:00Z')
const NOW_MS = FROM_MS + 2 * 60 * MIN
const GENUINE = 8

let cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.reverse()) await c()
  cleanups = []
})

interface Run {
  messages: Received[]
  genuine: ContractReading[]
  /** Messages that are not genuine readings (by payload text, once each genuine text is accounted for). */
  extra: Received[]
  stats: FleetStats
  events: FaultEvent[]
}

/** One PV meter with power, eight quarter-hours, the fault at rate `rate`, to a real broker and subscriber. */
async function runWithFault(flag: FaultFlag, rate = 1, seed = 7): Promise<Run> {
  const m: MeterCredentials = {
    meterId: `sim-fault-${flag}`,
    secret: randomBytes(9).toString('hex'),
    commodity: 'electricity',
    intervalMinutes: 15,
    pv: true,
    power: true,
  }
  const broker = await startTestBroker([m])
  cleanups.push(() => broker.close())
  const sub = await startSubscriber(broker.url)
  cleanups.push(() => sub.close())
  const events: FaultEvent[] = []
  const fleet = startFleet({
    mqttUrl: broker.url,
    meters: [m],
    from: FROM_MS,
    speed: 'max',
    clock: new ManualClock(NOW_MS),
    faults: { [flag]: rate },
    seed,
    tickMs: 10,
    onFault: (e) => events.push(e),
  })
  cleanups.push(async () => {
    await fleet.stop({ timeoutMs: 1000 })
  })
  await waitFor(() => {
    const s = fleet.stats()
    return s.acknowledged === GENUINE && s.inflight === 0 && s.messagesAcknowledged === s.messagesPublished
  }, 20_000, 'all acknowledged')
  const stats = fleet.stats()
  await sub.until((msgs) => msgs.length === stats.messagesPublished)
  // The genuine readings are the ones the fault-free model would send; everything else is extra.
  const genuineTs = new Set<string>()
  const genuine: ContractReading[] = []
  const extra: Received[] = []
  const expectedTs = new Set(Array.from({ length: GENUINE }, (_, i) => new Date(FROM_MS + (i + 1) * 15 * MIN).toISOString().replace('.000Z', 'Z')))
  for (const msg of sub.messages) {
    let readings: ContractReading[] | null = null
    try {
      readings = contractReadings(msg.text)
    } catch {
      readings = null
    }
    const r = readings?.length === 1 ? readings[0]! : null
    // A fault's message always follows its genuine reading, so the first valid one of each ts is genuine.
    if (r !== null && expectedTs.has(r.ts) && !genuineTs.has(r.ts)) {
      genuineTs.add(r.ts)
      genuine.push(r)
    } else {
      extra.push(msg)
    }
  }
  return { messages: sub.messages, genuine, extra, stats, events }
}

function onlyFault(stats: FleetStats, kind: FaultKind, count: number): void {
  for (const k of FAULT_KINDS) expect(stats.faults[k], k).toBe(k === kind ? count : 0)
}

describe('fault injection: each flag publishes the bad input it claims, and counts it', () => {
  it('duplicate: sends each reading twice, identical to the byte', async () => {
    const run = await runWithFault('duplicate')
    expect(run.genuine).toHaveLength(GENUINE)
    expect(run.extra).toHaveLength(GENUINE)
    const texts = run.messages.map((m) => m.text)
    for (const text of new Set(texts)) expect(texts.filter((t) => t === text)).toHaveLength(2)
    onlyFault(run.stats, 'duplicate', GENUINE)
    expect(run.events.map((e) => e.kind)).toEqual(Array(GENUINE).fill('duplicate'))
  })

  it('out-of-order: swaps readings two by two', async () => {
    const run = await runWithFault('out-of-order')
    expect(run.extra).toHaveLength(0)
    const order = run.genuine.map((r) => (Date.parse(r.ts) - FROM_MS) / (15 * MIN))
    expect(order).toEqual([2, 1, 4, 3, 6, 5, 8, 7])
    onlyFault(run.stats, 'out-of-order', 4)
    expect(run.events.map((e) => e.reading.ts)).toEqual(run.genuine.filter((_, i) => i % 2 === 1).map((r) => r.ts))
  })

  it('malformed-json: sends text that is not JSON', async () => {
    const run = await runWithFault('malformed-json')
    expect(run.genuine).toHaveLength(GENUINE)
    expect(run.extra).toHaveLength(GENUINE)
    for (const m of run.extra) expect(() => JSON.parse(m.text)).toThrow()
    onlyFault(run.stats, 'malformed-json', GENUINE)
  })

  it('invalid-schema: sends JSON that breaks the reading schema', async () => {
    const run = await runWithFault('invalid-schema')
    expect(run.extra).toHaveLength(GENUINE)
    for (const m of run.extra) {
      expect(() => JSON.parse(m.text)).not.toThrow()
      expect(schemaViolation(m.text)).not.toBeNull()
    }
    onlyFault(run.stats, 'invalid-schema', GENUINE)
  })

  it('unknown-obis: sends a well-formed reading with a code outside the contract', async () => {
    const run = await runWithFault('unknown-obis')
    expect(run.extra).toHaveLength(GENUINE)
    for (const m of run.extra) {
      expect(schemaViolation(m.text)).toBeNull()
      const codes = Object.keys((JSON.parse(m.text) as ContractReading).values)
      expect(codes.some((c) => !CONTRACT_OBIS_CODES.has(c))).toBe(true)
    }
    onlyFault(run.stats, 'unknown-obis', GENUINE)
  })

  it('malformed: picks among the three malformed kinds and counts each', async () => {
    const run = await runWithFault('malformed', 1, 11)
    expect(run.extra).toHaveLength(GENUINE)
    const f = run.stats.faults
    expect(f['malformed-json'] + f['invalid-schema'] + f['unknown-obis']).toBe(GENUINE)
    const notJson = run.extra.filter((m) => {
      try {
        JSON.parse(m.text)
        return false
      } catch {
        return true
      }
    }).length
    expect(notJson).toBe(f['malformed-json'])
  })

  it('skew: stamps a valid reading far after the clock’s now', async () => {
    const run = await runWithFault('skew')
    expect(run.extra).toHaveLength(GENUINE)
    for (const m of run.extra) {
      const [r] = contractReadings(m.text)
      expect(Date.parse(r!.ts)).toBeGreaterThan(NOW_MS + 5 * MIN)
    }
    onlyFault(run.stats, 'skew', GENUINE)
  })

  it('conflict: sends the same ts again with different values', async () => {
    const run = await runWithFault('conflict')
    expect(run.extra).toHaveLength(GENUINE)
    const byTs = new Map(run.genuine.map((r) => [r.ts, r]))
    for (const m of run.extra) {
      const [r] = contractReadings(m.text)
      const original = byTs.get(r!.ts)
      expect(original).toBeDefined()
      expect(r!.values).not.toEqual(original!.values)
    }
    onlyFault(run.stats, 'conflict', GENUINE)
  })

  it('regression: sends a later reading whose cumulative index is lower', async () => {
    const run = await runWithFault('regression')
    expect(run.extra).toHaveLength(GENUINE)
    for (const m of run.extra) {
      const [r] = contractReadings(m.text)
      const earlier = run.genuine.filter((g) => Date.parse(g.ts) < Date.parse(r!.ts)).at(-1)!
      expect(r!.values['1-0:1.8.0']).toBeLessThan(earlier.values['1-0:1.8.0']!)
    }
    onlyFault(run.stats, 'regression', GENUINE)
  })

  it('too-large: sends a valid reading padded beyond 256 KiB and within 1 MiB', async () => {
    const run = await runWithFault('too-large')
    expect(run.extra).toHaveLength(GENUINE)
    for (const m of run.extra) {
      expect(m.payload.length).toBeGreaterThan(PAYLOAD_LIMIT_BYTES)
      expect(m.payload.length).toBeLessThanOrEqual(1024 * 1024)
      expect(readingViolation(JSON.parse(m.text))).toBeNull()
    }
    onlyFault(run.stats, 'too-large', GENUINE)
  })

  it('injects nothing at rate 0 and about the rate otherwise, the same faults for the same seed', async () => {
    const none = await runWithFault('duplicate', 0)
    expect(none.extra).toHaveLength(0)
    const a = await runWithFault('duplicate', 0.5, 3)
    const b = await runWithFault('duplicate', 0.5, 3)
    expect(a.stats.faults.duplicate).toBe(b.stats.faults.duplicate)
    expect(a.events.map((e) => e.reading.ts)).toEqual(b.events.map((e) => e.reading.ts))
    expect(a.stats.faults.duplicate).toBeGreaterThan(0)
    expect(a.stats.faults.duplicate).toBeLessThan(GENUINE)
  })
})
