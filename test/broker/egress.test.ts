import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest'
import type { EgressPolicy } from '../../broker/egress.ts'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { connectClient, connectMeter, endClient, publishAcked, startTestBroker, subscribeCollect, waitFor, type TestBroker } from '../support/broker.ts'
import { describeDatabases } from '../support/database.ts'
import { createTestHousehold, createTestMeter, createUtility, insertOccupancy, type TestMeter } from '../support/world.ts'
import { formatTimestamp } from '../../shared/calendar.ts'

// Paris: 2026-10-01 starts at 2026-09-30T22:00Z.
const DAY_START = Date.parse('2026-09-30T22:00:00Z')
const HALF_HOUR = 1_800_000

/** Everything owned is released to every recipient: the broker's egress, not the consent rule, is under test. */
const releaseAllOwned: EgressPolicy = {
  releasedTo: (_r, datum) => datum.householdId ?? null,
  householdOwns: (h, datum) => datum.householdId === h,
  householdMayFollow: () => true,
}

describeDatabases('egress after commit', (t) => {
  let tb: TestBroker
  let meter: TestMeter
  let utility: { id: string; apiKey: string }
  let household: { id: string; apiKey: string }
  const clients: MqttClient[] = []

  beforeAll(async () => {
    tb = await startTestBroker(t.handle, { policy: releaseAllOwned })
  })
  afterAll(async () => {
    await tb.close()
  })
  beforeEach(async () => {
    utility = await createUtility(t.db)
    meter = await createTestMeter(t.db, utility.id)
    household = await createTestHousehold(t.db)
    await insertOccupancy(t.db, meter.id, household.id, new Date(DAY_START - 86_400_000))
  })
  afterEach(async () => {
    for (const c of clients.splice(0)) await endClient(c)
  })

  it('publishes each stored datum on readings/{meterId} in the contract’s shape, and each completed day on daily/{meterId}', async () => {
    const recipient = await connectClient(tb.url, { clientId: 'recipient-1', username: utility.id, password: utility.apiKey })
    clients.push(recipient)
    const live = await subscribeCollect(recipient, 'readings/+')
    const daily = await subscribeCollect(recipient, 'daily/+')
    const m = await connectMeter(tb.url, meter)
    clients.push(m)
    // The day before (for the first delta), the whole day at 30 minutes, then the next day's first reading.
    const readings = Array.from({ length: 48 * 2 + 1 }, (_, i) => ({
      ts: formatTimestamp(DAY_START - 86_400_000 + i * HALF_HOUR),
      values: { '1-0:1.8.0': 10_000 + i * 100, '1-0:1.7.0': 200 },
    }))
    await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ readings }))
    await waitFor(() => live.messages.length === readings.length, 15_000, `every datum forwarded (${live.messages.length} so far)`)
    expect(live.messages[1]).toEqual({
      topic: `readings/${meter.id}`,
      payload: { meterId: meter.id, ts: readings[1]!.ts, granularity: 'load_curve', values: readings[1]!.values },
    })
    await waitFor(() => daily.messages.some((d) => (d.payload as { day: string }).day === '2026-10-01'), 5_000, 'the daily total')
    const oct1 = daily.messages.find((d) => (d.payload as { day: string }).day === '2026-10-01')!
    // 48 half hours of 100 Wh: the day's readings run from 00:00 to 23:30 local, each carrying the energy since the previous one.
    expect(oct1).toEqual({ topic: `daily/${meter.id}`, payload: { meterId: meter.id, day: '2026-10-01', granularity: 'daily', values: { '1-0:1.8.0': 4800 } } })
  })

  it('lets a household follow its own meter live', async () => {
    const phone = await connectClient(tb.url, { clientId: 'phone', username: household.id, password: household.apiKey })
    clients.push(phone)
    const live = await subscribeCollect(phone, `readings/${meter.id}`)
    const m = await connectMeter(tb.url, meter)
    clients.push(m)
    await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ ts: formatTimestamp(DAY_START + HALF_HOUR), values: { '1-0:1.8.0': 5 } }))
    await waitFor(() => live.messages.length === 1, 5_000, 'the live datum')
    expect(live.messages[0]!.payload).toMatchObject({ meterId: meter.id, granularity: 'load_curve' })
  })

  it('grants a QoS 2 subscription as asked and delivers at QoS 1, the QoS the broker publishes at', async () => {
    const phone = await connectClient(tb.url, { clientId: 'phone-qos2', username: household.id, password: household.apiKey })
    clients.push(phone)
    const deliveredQos: number[] = []
    phone.on('message', (_topic, _payload, packet) => deliveredQos.push(packet.qos))
    const granted = await new Promise<number>((resolve, reject) =>
      phone.subscribe(`readings/${meter.id}`, { qos: 2 }, (err, grants) => (err ? reject(err) : resolve(grants![0]!.qos))),
    )
    expect(granted).toBe(2)
    const m = await connectMeter(tb.url, meter)
    clients.push(m)
    await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ ts: formatTimestamp(DAY_START + HALF_HOUR), values: { '1-0:1.8.0': 5 } }))
    await waitFor(() => deliveredQos.length === 1, 5_000, 'the live datum')
    expect(deliveredQos).toEqual([1])
  })

  it('publishes nothing for datums owned by nobody', async () => {
    const recipient = await connectClient(tb.url, { clientId: 'recipient-2', username: utility.id, password: utility.apiKey })
    clients.push(recipient)
    const live = await subscribeCollect(recipient, 'readings/+')
    const m = await connectMeter(tb.url, meter)
    clients.push(m)
    const before = DAY_START - 3 * 86_400_000
    await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ ts: formatTimestamp(before), values: { '1-0:1.8.0': 1 } }))
    await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ ts: formatTimestamp(DAY_START), values: { '1-0:1.8.0': 2 } }))
    await waitFor(() => live.messages.length === 1, 5_000, 'the owned datum')
    await new Promise((r) => setTimeout(r, 200))
    expect(live.messages.map((x) => (x.payload as { ts: string }).ts)).toEqual([formatTimestamp(DAY_START)])
  })

  it('delivers to a persistent QoS 1 session on a wildcard every datum it may see, once, among datums it may not', async () => {
    // Two meters of one household; the recipient may see the first only. The second's datums are published
    // (its household may follow them) and refused to the recipient, interleaved with the first's.
    const second = await createTestMeter(t.db, utility.id)
    await insertOccupancy(t.db, second.id, household.id, new Date(DAY_START - 86_400_000))
    const own = await startTestBroker(t.handle, {
      policy: { ...releaseAllOwned, releasedTo: (_r, datum) => (datum.meterId === meter.id ? (datum.householdId ?? null) : null) },
    })
    try {
      const recipient = await connectClient(own.url, { clientId: 'recipient-persistent-mixed', username: utility.id, password: utility.apiKey, clean: false })
      clients.push(recipient)
      const live = await subscribeCollect(recipient, 'readings/+')
      const [m1, m2] = [await connectMeter(own.url, meter), await connectMeter(own.url, second)]
      clients.push(m1, m2)
      const N = 200
      const send = (m: MqttClient, meterId: string) =>
        Promise.all(Array.from({ length: N }, (_, i) => publishAcked(m, meterReadingsTopic(meterId), JSON.stringify({ ts: formatTimestamp(DAY_START + i * HALF_HOUR), values: { '1-0:1.8.0': 100 + i } }))))
      await Promise.all([send(m1, meter.id), send(m2, second.id)])
      await waitFor(() => live.messages.length >= N, 15_000, `every released datum (${live.messages.length} so far)`)
      await new Promise((r) => setTimeout(r, 300))
      const ts = live.messages.map((x) => (x.payload as { ts: string }).ts)
      expect(live.messages.filter((x) => x.topic !== `readings/${meter.id}`)).toEqual([])
      expect(ts.length).toBe(N)
      expect(new Set(ts).size).toBe(N)
    } finally {
      for (const c of clients.splice(0)) await endClient(c)
      await own.close()
    }
  })

  it('sends a persistent session its queued datums before the live ones that follow them, at reconnect', async () => {
    const m = await connectMeter(tb.url, meter)
    clients.push(m)
    const datum = (i: number): string => JSON.stringify({ ts: formatTimestamp(DAY_START + i * 60_000), values: { '1-0:1.8.0': 1_000 + i } })
    const persistent = { clientId: 'recipient-ordered', username: utility.id, password: utility.apiKey, clean: false }
    const first = await connectClient(tb.url, persistent)
    await subscribeCollect(first, 'readings/+')
    await endClient(first)
    // Queued while it is away.
    const QUEUED = 600
    await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ readings: Array.from({ length: QUEUED }, (_, i) => JSON.parse(datum(i))) }))
    // It comes back while the meter goes on publishing, one datum a message, several in flight.
    const LIVE = 200
    const received: string[] = []
    const back = mqtt.connect(tb.url, { protocolVersion: 4, reconnectPeriod: 0, ...persistent })
    try {
      back.on('message', (_topic, payload) => received.push((JSON.parse(payload.toString('utf8')) as { ts: string }).ts))
      for (let i = QUEUED; i < QUEUED + LIVE; i += 10) await Promise.all(Array.from({ length: 10 }, (_, k) => publishAcked(m, meterReadingsTopic(meter.id), datum(i + k))))
      await waitFor(() => new Set(received).size === QUEUED + LIVE, 15_000, `every datum (${new Set(received).size} so far)`)
      // Each datum's first delivery in the order published [MQTT-4.6.0-6]; a resent one may come again (QoS 1).
      const firsts = received.filter((ts, i) => received.indexOf(ts) === i)
      expect(firsts).toEqual([...firsts].sort())
    } finally {
      await endClient(back)
      // A clean connect ends the session: no one follows readings/+ after this test.
      await endClient(await connectClient(tb.url, { ...persistent, clean: true }))
    }
  })

  it('closes a reconnecting persistent session that more live datums than it may hold overtake, and it finds them all in its queue, in order', async () => {
    const own = await startTestBroker(t.handle, { policy: releaseAllOwned, overrides: { mqtt: { liveDeliveriesHeldMax: 3 } } })
    // The queue is sent slowly, 3 ms a datum (600 take 1.8 s): the live datums published meanwhile overtake it
    // however fast the machine sends a queue (on a fast one, all 600 had gone before the first live commit).
    const persistence = (own.broker.aedes as unknown as { persistence: { outgoingUpdate(client: unknown, packet: unknown): Promise<void> } }).persistence
    const update = persistence.outgoingUpdate.bind(persistence)
    persistence.outgoingUpdate = async (client, packet) => {
      await new Promise((r) => setTimeout(r, 3))
      return update(client, packet)
    }
    const m = await connectMeter(own.url, meter)
    const datum = (i: number): string => JSON.stringify({ ts: formatTimestamp(DAY_START + i * 60_000), values: { '1-0:1.8.0': 1_000 + i } })
    const persistent = { clientId: 'recipient-overtaken', username: utility.id, password: utility.apiKey, clean: false }
    try {
      const first = await connectClient(own.url, persistent)
      await subscribeCollect(first, 'readings/+')
      await endClient(first)
      const QUEUED = 600
      const LIVE = 200
      await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ readings: Array.from({ length: QUEUED }, (_, i) => JSON.parse(datum(i))) }))
      const received: string[] = []
      let connects = 0
      // A client that reconnects, as MQTT.js does when its connection is closed.
      const back = mqtt.connect(own.url, { protocolVersion: 4, reconnectPeriod: 100, ...persistent })
      back.on('connect', () => connects++)
      back.on('message', (_topic, payload) => received.push((JSON.parse(payload.toString('utf8')) as { ts: string }).ts))
      try {
        for (let i = QUEUED; i < QUEUED + LIVE; i += 10) await Promise.all(Array.from({ length: 10 }, (_, k) => publishAcked(m, meterReadingsTopic(meter.id), datum(i + k))))
        await waitFor(() => new Set(received).size === QUEUED + LIVE, 20_000, `every datum (${new Set(received).size} so far)`)
        const firsts = received.filter((ts, i) => received.indexOf(ts) === i)
        expect(firsts).toEqual([...firsts].sort())
        expect(connects).toBeGreaterThan(1)
      } finally {
        await endClient(back)
        await endClient(await connectClient(own.url, { ...persistent, clean: true }))
      }
    } finally {
      await endClient(m)
      await own.close()
    }
  })

  it('queues at most offlineQueueDatumsMax datums for an offline persistent session, the first it may receive, and counts again once it is back', async () => {
    // Another household's meter, whose data this recipient may not receive: none of it is queued, nor counted.
    const other = await createTestMeter(t.db, utility.id)
    await insertOccupancy(t.db, other.id, (await createTestHousehold(t.db)).id, new Date(DAY_START - 86_400_000))
    const onlyFirstMeter: EgressPolicy = { ...releaseAllOwned, releasedTo: (_r, d) => (d.meterId === meter.id ? (d.householdId ?? null) : null) }
    const own = await startTestBroker(t.handle, { policy: onlyFirstMeter, overrides: { mqtt: { offlineQueueDatumsMax: 5 } } })
    const m = await connectMeter(own.url, meter)
    const m2 = await connectMeter(own.url, other)
    const datum = (i: number) => ({ ts: formatTimestamp(DAY_START + i * 60_000), values: { '1-0:1.8.0': 1_000 + i } })
    const persistent = { clientId: 'recipient-bounded', username: utility.id, password: utility.apiKey, clean: false }
    try {
      const first = await connectClient(own.url, persistent)
      await subscribeCollect(first, 'readings/+')
      await endClient(first)
      // Offline: 8 datums of the other meter, kept for nobody; then 8 of its own, of which the first 5 are queued.
      await publishAcked(m2, meterReadingsTopic(other.id), JSON.stringify({ readings: Array.from({ length: 8 }, (_, i) => datum(i)) }))
      await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ readings: Array.from({ length: 8 }, (_, i) => datum(i)) }))
      const dropped = async () => Number((await own.metrics.registry.getSingleMetricAsString('metershare_mqtt_queue_dropped_total')).trim().split(' ').pop())
      expect(await dropped()).toBe(3)
      const back = await connectClient(own.url, persistent)
      const received: string[] = []
      back.on('message', (_topic, payload) => received.push((JSON.parse(payload.toString('utf8')) as { ts: string }).ts))
      await waitFor(() => received.length === 5, 5_000, `the queued datums (${received.length} so far)`)
      expect(received).toEqual(Array.from({ length: 5 }, (_, i) => datum(i).ts))
      // Online, nothing is counted; offline again, the count starts anew.
      await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ readings: Array.from({ length: 8 }, (_, i) => datum(10 + i)) }))
      await waitFor(() => received.length === 13, 5_000, `the live datums (${received.length} so far)`)
      await endClient(back)
      await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ readings: Array.from({ length: 6 }, (_, i) => datum(20 + i)) }))
      expect(await dropped()).toBe(4)
      const again = await connectClient(own.url, persistent)
      const later: string[] = []
      again.on('message', (_topic, payload) => later.push((JSON.parse(payload.toString('utf8')) as { ts: string }).ts))
      await waitFor(() => later.length === 5, 5_000, `the second queue (${later.length} so far)`)
      expect(later).toEqual(Array.from({ length: 5 }, (_, i) => datum(20 + i).ts))
      await endClient(again)
      await endClient(await connectClient(own.url, { ...persistent, clean: true }))
    } finally {
      await endClient(m)
      await endClient(m2)
      await own.close()
    }
  })

  it('keeps publishing for a persistent session while it is offline, and stops when nobody is subscribed', async () => {
    const m = await connectMeter(tb.url, meter)
    clients.push(m)
    const publish = (i: number): Promise<void> =>
      publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ ts: formatTimestamp(DAY_START + i * HALF_HOUR), values: { '1-0:1.8.0': 100 + i } }))
    const tsOf = (x: { payload: unknown }): string => (x.payload as { ts: string }).ts

    // A persistent session subscribes, goes away, and gets what was stored meanwhile when it is back.
    const persistent = { clientId: 'recipient-persistent', username: utility.id, password: utility.apiKey, clean: false }
    const first = await connectClient(tb.url, persistent)
    await subscribeCollect(first, 'readings/+')
    await endClient(first)
    await publish(1)
    const back = await connectClient(tb.url, persistent)
    clients.push(back)
    const queued: Array<{ topic: string; payload: unknown }> = []
    back.on('message', (topic, payload) => queued.push({ topic, payload: JSON.parse(payload.toString('utf8')) }))
    await waitFor(() => queued.length === 1, 5_000, 'the datum queued while offline')
    expect(tsOf(queued[0]!)).toBe(formatTimestamp(DAY_START + HALF_HOUR))
    await new Promise<void>((resolve, reject) => back.unsubscribe('readings/+', (err) => (err ? reject(err) : resolve())))

    // A clean session's subscription ends with its connection; an unsubscribed one with UNSUBSCRIBE.
    const clean = await connectClient(tb.url, { clientId: 'recipient-clean', username: utility.id, password: utility.apiKey })
    await subscribeCollect(clean, `readings/${meter.id}`)
    await endClient(clean)
    const published: string[] = []
    const onPublish = (packet: { topic: string }): void => void published.push(packet.topic)
    tb.broker.aedes.on('publish', onPublish)
    try {
      await publish(2)
      // Then a subscriber again: publishing resumes at once.
      const again = await connectClient(tb.url, { clientId: 'recipient-again', username: utility.id, password: utility.apiKey })
      clients.push(again)
      const live = await subscribeCollect(again, 'readings/+')
      await publish(3)
      await waitFor(() => live.messages.length === 1, 5_000, 'the datum after subscribing again')
      expect(live.messages.map(tsOf)).toEqual([formatTimestamp(DAY_START + 3 * HALF_HOUR)])
      expect(published.filter((topic) => topic.startsWith('readings/'))).toEqual([`readings/${meter.id}`])
    } finally {
      tb.broker.aedes.off('publish', onPublish)
    }
  })
})

