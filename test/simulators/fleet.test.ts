import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import type { MeterCredentials } from '../../simulators/credentials.ts'
import { startFleet, type Fleet, type FleetOptions } from '../../simulators/fleet.ts'
import { MeterModel, resolveMeter } from '../../simulators/meter-model.ts'
import { encodeReading } from '../../simulators/meter-payload.ts'
import { ModelCalendar } from '../../simulators/model-calendar.ts'
import { contractReadings, type ContractReading } from './support/contract.ts'
import {
  ManualClock,
  startProxy,
  startSubscriber,
  startTestBroker,
  waitFor,
  type CuttableProxy,
  type Received,
  type Subscriber,
  type TestBroker,
} from './support/test-broker.ts'

const MIN = 60_000
const HOUR = 60 * MIN
const DAY = 24 * HOUR
// 2026-10-01 00:00 in Paris (CEST).
const FROM_DAY = '2026-10-01'
const FROM_MS = Date.parse('2026-09-30T22:00:00Z')

function meter(meterId: string, commodity: 'electricity' | 'gas', intervalMinutes: 15 | 30 | 60, extra: Partial<MeterCredentials> = {}): MeterCredentials {
  return { meterId, secret: randomBytes(12).toString('base64url'), commodity, intervalMinutes, ...extra }
}

function expectedModel(m: MeterCredentials, seed = 1): MeterModel {
  return new MeterModel(resolveMeter(m, seed), new ModelCalendar('Europe/Paris'))
}

function meterOf(r: Received): string {
  const parts = r.topic.split('/')
  expect(parts).toHaveLength(3)
  expect(parts[0]).toBe('meters')
  expect(parts[2]).toBe('readings')
  return parts[1]!
}

/** Genuine readings received, by meter, in arrival order. */
function readingsByMeter(messages: Received[]): Map<string, ContractReading[]> {
  const out = new Map<string, ContractReading[]>()
  for (const m of messages) {
    const id = meterOf(m)
    const list = out.get(id) ?? []
    list.push(...contractReadings(m.text))
    out.set(id, list)
  }
  return out
}

let cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.reverse()) await c()
  cleanups = []
})

async function setup(meters: MeterCredentials[], options: { proxy?: boolean } = {}): Promise<{ broker: TestBroker; sub: Subscriber; url: string; proxy: CuttableProxy | null }> {
  const broker = await startTestBroker(meters)
  cleanups.push(() => broker.close())
  const sub = await startSubscriber(broker.url)
  cleanups.push(() => sub.close())
  let proxy: CuttableProxy | null = null
  if (options.proxy === true) {
    proxy = await startProxy(broker.port)
    cleanups.push(() => proxy!.close())
  }
  return { broker, sub, url: proxy?.url ?? broker.url, proxy }
}

function start(options: FleetOptions): Fleet {
  const fleet = startFleet({ tickMs: 10, reconnectPeriodMs: 50, ...options })
  cleanups.push(async () => {
    await fleet.stop({ timeoutMs: 1000 })
  })
  return fleet
}

/** A first hour acknowledged, then the network cut and `offlineMs` of the clock run: the fleet offline, its meters holding readings. */
async function firstHourThenCut(fleet: Fleet, clock: ManualClock, proxy: CuttableProxy, offlineMs: number, generated: number): Promise<void> {
  await waitFor(() => fleet.stats().connected === 1, 10_000, 'connected')
  clock.advance(1000)
  await waitFor(() => fleet.stats().acknowledged === 4, 10_000, 'first hour')
  proxy.cut()
  await waitFor(() => fleet.stats().connected === 0, 10_000, 'disconnected')
  clock.advance(offlineMs)
  await waitFor(() => fleet.stats().generated === generated, 10_000, 'generated offline')
}

describe('meter fleet against a real MQTT broker', () => {
  it('publishes every reading of every meter once, on its own topic, with its own credentials, exactly as the contract shapes it', async () => {
    const meters = [
      meter('sim-e15', 'electricity', 15, { power: true, persons: 2 }),
      meter('sim-pv30', 'electricity', 30, { pv: true, power: true }),
      meter('sim-gas60', 'gas', 60),
    ]
    const { broker, sub, url } = await setup(meters)
    const clock = new ManualClock('2026-10-02T06:00:00Z')
    const fleet = start({ mqttUrl: url, meters, from: FROM_DAY, days: 1, speed: 'max', clock })

    const final = await fleet.done
    await sub.until((m) => m.length === 96 + 48 + 24)
    expect(final).toMatchObject({ generated: 168, published: 168, acknowledged: 168, buffered: 0, dropped: 0, batches: 0, done: true })
    expect(Object.values(final.faults).every((n) => n === 0)).toBe(true)

    for (const m of meters) {
      const record = broker.connects.find((c) => c.clientId === m.meterId)
      expect(record).toEqual({ clientId: m.meterId, username: m.meterId, password: m.secret, clean: false })
    }

    const byMeter = readingsByMeter(sub.messages)
    for (const m of sub.messages) expect(m.qos).toBe(1)
    const model = new Map(meters.map((m) => [m.meterId, expectedModel(m)]))
    for (const m of meters) {
      const got = byMeter.get(m.meterId)!
      const step = m.intervalMinutes * MIN
      const expectedTs = Array.from({ length: DAY / step }, (_, i) => new Date(FROM_MS + (i + 1) * step).toISOString().replace('.000Z', 'Z'))
      expect(got.map((r) => r.ts)).toEqual(expectedTs)
      const codes = m.commodity === 'gas' ? ['7-0:3.0.0'] : m.pv ? ['1-0:1.8.0', '1-0:2.8.0', '1-0:1.7.0', '1-0:2.7.0'] : ['1-0:1.8.0', '1-0:1.7.0']
      let previous: ContractReading | undefined
      for (const r of got) {
        expect(Object.keys(r.values)).toEqual(codes)
        expect(encodeReading(r)).toBe(encodeReading(model.get(m.meterId)!.readingAt(Date.parse(r.ts))))
        if (previous !== undefined) {
          for (const code of codes.filter((c) => c.includes('.8.') || c.startsWith('7-'))) {
            expect(r.values[code]).toBeGreaterThanOrEqual(previous.values[code]!)
          }
          if (m.power === true) {
            // Average power of the interval is its energy × 60 / interval minutes.
            expect(r.values['1-0:1.7.0']).toBe(((r.values['1-0:1.8.0']! - previous.values['1-0:1.8.0']!) * 60) / m.intervalMinutes)
          }
        }
        previous = r
      }
    }
    // The wire text is exactly one reading, nothing else.
    expect(sub.messages[0]!.text).toMatch(/^\{"ts":"2026-09-30T22:(15|30):00Z","values":\{"(1-0:1\.8\.0|7-0:3\.0\.0)":\d+/)
  })

  it('never stamps a reading after the clock’s now, and continues in real time once it has caught up', async () => {
    const meters = [meter('sim-now', 'electricity', 15)]
    const { sub, url } = await setup(meters)
    const clock = new ManualClock(FROM_MS + HOUR)
    const fleet = start({ mqttUrl: url, meters, from: FROM_DAY, days: 1, speed: 'max', clock })
    await sub.until((m) => m.length === 4)
    await new Promise((r) => setTimeout(r, 200))
    expect(fleet.stats()).toMatchObject({ generated: 4, acknowledged: 4, done: false })
    clock.advance(30 * MIN)
    await sub.until((m) => m.length === 6)
    const ts = [...readingsByMeter(sub.messages).get('sim-now')!].map((r) => Date.parse(r.ts))
    expect(Math.max(...ts)).toBe(clock.now())
    expect(fleet.stats().simulatedMs).toBe(clock.now())
  })

  it('runs simulated time speed times faster than the clock', async () => {
    const meters = [meter('sim-speed', 'electricity', 15)]
    const { sub, url } = await setup(meters)
    const clock = new ManualClock('2026-10-10T00:00:00Z')
    const from = clock.now() - 5 * DAY
    const fleet = start({ mqttUrl: url, meters, from, speed: 8640, clock })
    await waitFor(() => fleet.stats().connected === 1, 10_000, 'connected')
    await new Promise((r) => setTimeout(r, 100))
    expect(fleet.stats().generated).toBe(0)
    // 10 s of clock at 8640× is one simulated day.
    clock.advance(10_000)
    await waitFor(() => fleet.stats().acknowledged === 96, 10_000, '96 acknowledged')
    await new Promise((r) => setTimeout(r, 100))
    expect(fleet.stats()).toMatchObject({ generated: 96, acknowledged: 96, simulatedMs: from + DAY })
    await sub.until((m) => readingsByMeter(m).get('sim-speed')?.length === 96)
  })

  it('resumes each meter after the interval it last delivered, its registers carrying on, and the others from the start', async () => {
    const meters = [meter('sim-res15', 'electricity', 15, { power: true }), meter('sim-res60', 'gas', 60), meter('sim-fresh', 'electricity', 30)]
    const { sub, url } = await setup(meters)
    const clock = new ManualClock('2026-10-02T06:00:00Z')
    // Delivered before: the 15-minute meter up to 05:00, the gas meter up to 03:00 (UTC); the third nothing.
    const resumeAfter = new Map([
      ['sim-res15', FROM_MS + 7 * HOUR],
      ['sim-res60', FROM_MS + 5 * HOUR],
    ])
    const fleet = start({ mqttUrl: url, meters, from: FROM_DAY, days: 1, speed: 'max', clock, resumeAfter })
    const final = await fleet.done
    await sub.until((m) => m.length === 96 - 28 + (24 - 5) + 48)
    expect(final).toMatchObject({ generated: 68 + 19 + 48, acknowledged: 68 + 19 + 48, done: true })
    const byMeter = readingsByMeter(sub.messages)
    for (const [m, firstMs, count] of [
      [meters[0]!, FROM_MS + 7 * HOUR + 15 * MIN, 68],
      [meters[1]!, FROM_MS + 6 * HOUR, 19],
      [meters[2]!, FROM_MS + 30 * MIN, 48],
    ] as const) {
      const got = byMeter.get(m.meterId)!
      expect(got).toHaveLength(count)
      expect(Date.parse(got[0]!.ts)).toBe(firstMs)
      // The first reading after the resume carries exactly the index (and power) a fleet that never stopped would send.
      for (const r of got) expect(encodeReading(r)).toBe(encodeReading(expectedModel(m).readingAt(Date.parse(r.ts))))
    }
  })

  it('carries each meter’s stored indexes on where they differ from the model’s (an earlier model): never back, never a jump', async () => {
    const meters = [meter('sim-ahead', 'electricity', 15, { pv: true, power: true }), meter('sim-behind', 'gas', 60), meter('sim-same', 'electricity', 30)]
    const { sub, url } = await setup(meters)
    const clock = new ManualClock('2026-10-02T06:00:00Z')
    const after = FROM_MS + 4 * HOUR
    const model = (m: (typeof meters)[number]) => expectedModel(m).registersAt(after)
    // Stored by another version of the model: import 5 kWh ahead and export 300 Wh behind; the gas 123 dm³ behind; the third as the model has it.
    const ahead = model(meters[0]!)
    const registers = new Map([
      ['sim-ahead', { '1-0:1.8.0': ahead['1-0:1.8.0']! + 5_000, '1-0:2.8.0': ahead['1-0:2.8.0']! - 300 }],
      ['sim-behind', { '7-0:3.0.0': model(meters[1]!)['7-0:3.0.0']! - 123 }],
      ['sim-same', model(meters[2]!)],
    ])
    const resumeAfter = new Map(meters.map((m) => [m.meterId, after]))
    const fleet = start({ mqttUrl: url, meters, from: FROM_DAY, days: 1, speed: 'max', clock, resumeAfter, resumeRegisters: registers })
    await fleet.done
    await sub.until((m) => m.length === 80 + 20 + 40)
    const byMeter = readingsByMeter(sub.messages)
    const offsets: Record<string, Record<string, number>> = { 'sim-ahead': { '1-0:1.8.0': 5_000, '1-0:2.8.0': -300 }, 'sim-behind': { '7-0:3.0.0': -123 }, 'sim-same': {} }
    for (const m of meters) {
      const got = byMeter.get(m.meterId)!
      expect(got.length).toBe({ 'sim-ahead': 80, 'sim-behind': 20, 'sim-same': 40 }[m.meterId])
      for (const r of got) {
        const want = expectedModel(m).readingAt(Date.parse(r.ts))
        for (const [code, offset] of Object.entries(offsets[m.meterId]!)) want.values[code]! += offset
        // Power is the interval's energy: unchanged by a constant offset.
        expect(encodeReading(r)).toBe(encodeReading(want))
      }
      // The first reading goes on from the stored one: not below it.
      for (const [code, value] of Object.entries(registers.get(m.meterId)!)) expect(got[0]!.values[code]!).toBeGreaterThanOrEqual(value)
    }
  })

  it('with openingReading, sends first each meter’s index at from, which opens a household’s first day; a meter resuming goes on as before', async () => {
    const meters = [meter('sim-open15', 'electricity', 15, { pv: true, power: true }), meter('sim-opengas', 'gas', 60), meter('sim-openres', 'electricity', 30)]
    const { sub, url } = await setup(meters)
    const clock = new ManualClock('2026-10-02T06:00:00Z')
    const resumeAfter = new Map([['sim-openres', FROM_MS + 2 * HOUR]])
    const fleet = start({ mqttUrl: url, meters, from: FROM_DAY, days: 1, speed: 'max', clock, resumeAfter, openingReading: true })
    const final = await fleet.done
    await sub.until((m) => m.length === 97 + 25 + 44)
    expect(final).toMatchObject({ generated: 97 + 25 + 44, acknowledged: 97 + 25 + 44, done: true })
    const byMeter = readingsByMeter(sub.messages)
    for (const [m, firstMs, count] of [
      [meters[0]!, FROM_MS, 97],
      [meters[1]!, FROM_MS, 25],
      [meters[2]!, FROM_MS + 2 * HOUR + 30 * MIN, 44],
    ] as const) {
      const got = byMeter.get(m.meterId)!
      expect(got).toHaveLength(count)
      expect(Date.parse(got[0]!.ts)).toBe(firstMs)
      expect(Date.parse(got[count - 1]!.ts)).toBe(FROM_MS + DAY)
      for (const r of got) expect(encodeReading(r)).toBe(encodeReading(expectedModel(m).readingAt(Date.parse(r.ts))))
    }
  })

  it('buffers readings while the network is cut and catches up in batches when it is back, losing nothing', async () => {
    const meters = [meter('sim-off15', 'electricity', 15, { power: true }), meter('sim-offgas', 'gas', 60)]
    const { sub, url, proxy } = await setup(meters, { proxy: true })
    const clock = new ManualClock('2026-10-10T00:00:00Z')
    const from = clock.now() - DAY
    const fleet = start({ mqttUrl: url, meters, from, speed: 3600, clock })
    await waitFor(() => fleet.stats().connected === 2, 10_000, 'connected')
    for (let hour = 1; hour <= 2; hour++) {
      clock.advance(1000)
      await waitFor(() => fleet.stats().acknowledged === hour * 5, 10_000, `hour ${hour} acknowledged`)
    }

    proxy!.cut()
    await waitFor(() => fleet.stats().connected === 0, 10_000, 'disconnected')
    clock.advance(3000)
    await waitFor(() => fleet.stats().buffered === 12 + 3, 10_000, 'buffered while offline')
    const before = sub.messages.length
    await new Promise((r) => setTimeout(r, 200))
    expect(sub.messages.length).toBe(before)

    proxy!.restore()
    await waitFor(() => fleet.stats().acknowledged === 20 + 5, 20_000, 'caught up')
    await sub.until((m) => readingsByMeter(m).get('sim-off15')?.length === 20 && readingsByMeter(m).get('sim-offgas')?.length === 5)
    const stats = fleet.stats()
    expect(stats).toMatchObject({ buffered: 0, dropped: 0, generated: 25, published: 25, acknowledged: 25 })
    expect(stats.disconnects).toBeGreaterThanOrEqual(2)
    expect(stats.batches).toBeGreaterThanOrEqual(2)

    for (const m of meters) {
      const got = readingsByMeter(sub.messages).get(m.meterId)!
      const step = m.intervalMinutes * MIN
      expect(got.map((r) => Date.parse(r.ts))).toEqual(Array.from({ length: got.length }, (_, i) => from + (i + 1) * step))
      const model = expectedModel(m)
      for (const r of got) expect(encodeReading(r)).toBe(encodeReading(model.readingAt(Date.parse(r.ts))))
    }
    // The catch-up arrived as one batch per meter.
    const batches = sub.messages.filter((m) => m.text.startsWith('{"readings":'))
    expect(batches.map((b) => [meterOf(b), contractReadings(b.text).length]).sort()).toEqual([
      ['sim-off15', 12],
      ['sim-offgas', 3],
    ])
  })

  it('drops the oldest readings when an offline buffer is full, and counts them', async () => {
    const meters = [meter('sim-small', 'electricity', 15)]
    const { sub, url, proxy } = await setup(meters, { proxy: true })
    const clock = new ManualClock('2026-10-10T00:00:00Z')
    const from = clock.now() - DAY
    const fleet = start({ mqttUrl: url, meters, from, speed: 3600, clock, offlineBufferReadingsMax: 5 })
    await firstHourThenCut(fleet, clock, proxy!, 3000, 16)
    expect(fleet.stats()).toMatchObject({ buffered: 5, dropped: 7 })
    proxy!.restore()
    await waitFor(() => fleet.stats().acknowledged === 9, 20_000, 'caught up')
    const got = readingsByMeter(sub.messages).get('sim-small')!.map((r) => Date.parse(r.ts))
    // The first hour, then the newest five of the twelve measured offline.
    expect(got).toEqual([1, 2, 3, 4, 12, 13, 14, 15, 16].map((i) => from + i * 15 * MIN))
  })

  it('counts as unsent what a meter held when the broker refused it, so every reading generated is accounted for (found by verifying)', async () => {
    const meters = [meter('sim-retired', 'electricity', 15)]
    const { broker, url, proxy } = await setup(meters, { proxy: true })
    const clock = new ManualClock('2026-10-10T00:00:00Z')
    const fleet = start({ mqttUrl: url, meters, from: clock.now() - DAY, speed: 3600, clock })
    await firstHourThenCut(fleet, clock, proxy!, 2000, 12)
    // Retired meanwhile: its reconnect is refused, and what it holds will never be sent.
    broker.refuse('sim-retired')
    proxy!.restore()
    await waitFor(() => fleet.stats().rejected === 1, 20_000, 'refused')
    const s = fleet.stats()
    expect(s).toMatchObject({ acknowledged: 4, unsent: 8, buffered: 0, dropped: 0 })
    expect(s.acknowledged + s.failed + s.dropped + s.unsent + s.buffered).toBe(s.generated)
  })

  it('sends again a reading whose PUBACK was lost with the connection', async () => {
    const meters = [meter('sim-resend', 'electricity', 15)]
    const { broker, sub, url, proxy } = await setup(meters, { proxy: true })
    let heldOnce = false
    broker.holdPublish = (clientId) => {
      if (clientId !== 'sim-resend' || heldOnce) return false
      heldOnce = true
      return true
    }
    const clock = new ManualClock(FROM_MS + 15 * MIN)
    const fleet = start({ mqttUrl: url, meters, from: FROM_MS, speed: 'max', clock })
    await waitFor(() => heldOnce && fleet.stats().inflight === 1, 10_000, 'publish held')
    proxy!.cut()
    await waitFor(() => fleet.stats().connected === 0, 10_000, 'disconnected')
    expect(fleet.stats()).toMatchObject({ published: 1, acknowledged: 0, inflight: 1 })
    proxy!.restore()
    await waitFor(() => fleet.stats().acknowledged === 1, 20_000, 'acknowledged after reconnect')
    await sub.until((m) => m.length === 1)
    expect(contractReadings(sub.messages[0]!.text)[0]!.ts).toBe('2026-09-30T22:15:00Z')
    expect(fleet.stats()).toMatchObject({ published: 1, acknowledged: 1, inflight: 0, failed: 0 })
  })

  it('gives up on a meter whose credentials are refused and finishes the others', async () => {
    const good = meter('sim-good', 'electricity', 60)
    const bad = meter('sim-bad', 'electricity', 60)
    const { url } = await setup([good, bad])
    const errors: string[] = []
    const fleet = start({
      mqttUrl: url,
      meters: [good, { ...bad, secret: 'wrong' }],
      from: FROM_DAY,
      days: 1,
      speed: 'max',
      clock: new ManualClock('2026-10-03T00:00:00Z'),
      onMeterError: (id) => errors.push(id),
    })
    const final = await fleet.done
    expect(final).toMatchObject({ rejected: 1, acknowledged: 24, done: true })
    expect(errors).toContain('sim-bad')
  })

  it('waits on stop for outstanding acknowledgements, then closes', async () => {
    const meters = [meter('sim-stop', 'electricity', 15)]
    const { broker, url } = await setup(meters)
    broker.holdPublish = () => true
    const fleet = startFleet({ mqttUrl: url, meters, from: FROM_MS, speed: 'max', clock: new ManualClock(FROM_MS + HOUR), tickMs: 10 })
    await waitFor(() => fleet.stats().inflight === 4, 10_000, 'four in flight')
    const stopping = fleet.stop({ timeoutMs: 10_000 })
    broker.holdPublish = null
    setTimeout(() => broker.releaseHeld(), 100)
    const final = await stopping
    expect(final).toMatchObject({ published: 4, acknowledged: 4, inflight: 0, failed: 0, stopped: true, connected: 0 })
  })

  it('gives up waiting on stop after its timeout and counts what was not acknowledged', async () => {
    const meters = [meter('sim-stop2', 'electricity', 15)]
    const { broker, url } = await setup(meters)
    broker.holdPublish = () => true
    const fleet = startFleet({ mqttUrl: url, meters, from: FROM_MS, speed: 'max', clock: new ManualClock(FROM_MS + HOUR), tickMs: 10 })
    await waitFor(() => fleet.stats().inflight === 4, 10_000, 'four in flight')
    const final = await fleet.stop({ timeoutMs: 100 })
    expect(final).toMatchObject({ published: 4, acknowledged: 0, failed: 4, inflight: 0, stopped: true })
    expect(await fleet.stop()).toBe(final)
  })
})
