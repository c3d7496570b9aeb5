import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest'
import type { EgressPolicy } from '../../broker/egress.ts'
import type { MemoryPersistence } from '../../broker/memory-persistence.ts'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { connectClient, connectMeter, endClient, publishAcked, startTestBroker, subscribeCollect, waitFor, type TestBroker } from '../support/broker.ts'
import { describeDatabases } from '../support/database.ts'
import { RawMqttClient } from '../support/raw-mqtt.ts'
import { createTestHousehold, createTestMeter, createUtility, insertOccupancy, type TestMeter } from '../support/world.ts'

const CONNACK_NOT_AUTHORIZED = 5
const SESSIONS_MAX = 2

/** Everything owned is released to every recipient: sessions, not the consent rule, are under test. */
const releaseAllOwned: EgressPolicy = {
  releasedTo: (_r, datum) => datum.householdId ?? null,
  householdOwns: (h, datum) => datum.householdId === h,
  householdMayFollow: () => true,
}

/** Connects and resolves with CONNACK's session present flag. */
function connectSession(url: string, options: IClientOptions): Promise<{ client: MqttClient; sessionPresent: boolean }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...options })
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent }))
    client.once('error', (err) => {
      client.end(true)
      reject(err)
    })
  })
}

describeDatabases('persistent sessions of recipients and households', (t) => {
  // Two brokers over one database: what one counts, the other sees.
  let a: TestBroker
  let b: TestBroker
  let utility: { id: string; apiKey: string }
  let household: { id: string; apiKey: string }
  const clients: MqttClient[] = []

  beforeAll(async () => {
    const overrides = { mqtt: { persistentSessionsPerPrincipalMax: SESSIONS_MAX } }
    a = await startTestBroker(t.handle, { overrides })
    b = await startTestBroker(t.handle, { overrides })
  })
  afterAll(async () => {
    await a.close()
    await b.close()
  })
  beforeEach(async () => {
    utility = await createUtility(t.db)
    household = await createTestHousehold(t.db)
  })
  afterEach(async () => {
    for (const c of clients.splice(0)) await endClient(c)
  })

  const as = (who: { id: string; apiKey: string }, clientId: string, clean: boolean): IClientOptions => ({ clientId, username: who.id, password: who.apiKey, clean })

  it('refuses a persistent session beyond persistentSessionsPerPrincipalMax with CONNACK 5, on every broker, and lets its own sessions back in', async () => {
    const first = await connectClient(a.url, as(utility, 'app-1', false))
    expect((await subscribeCollect(first, 'readings/+')).granted).toBe(1)
    await endClient(first)
    await endClient(await connectClient(b.url, as(utility, 'app-2', false)))
    // Both offline now, on two brokers: a third persistent session is refused on either.
    for (const broker of [a, b]) await expect(connectClient(broker.url, as(utility, 'app-3', false))).rejects.toMatchObject({ code: CONNACK_NOT_AUTHORIZED })
    // A clean session is not counted, and another principal has sessions of its own.
    clients.push(await connectClient(a.url, as(utility, 'app-3', true)))
    clients.push(await connectClient(a.url, as(household, 'home-1', false)))
    // Its own sessions it may take up again, on the broker that keeps it (session present) or another.
    const back = await connectSession(a.url, as(utility, 'app-1', false))
    clients.push(back.client)
    expect(back.sessionPresent).toBe(true)
    clients.push(await connectClient(b.url, as(utility, 'app-2', false)))
    for (const c of clients.splice(0)) await endClient(c)
    // A clean connect under one of them ends it, which makes room for another.
    await endClient(await connectClient(b.url, as(utility, 'app-2', true)))
    clients.push(await connectClient(a.url, as(utility, 'app-3', false)))
  })

  it('lets exactly persistentSessionsPerPrincipalMax in of persistent connects sent at once to two brokers', async () => {
    const attempts = Array.from({ length: 6 }, (_, i) =>
      connectClient((i % 2 === 0 ? a : b).url, as(utility, `app-storm-${i}`, false)).then(
        (c) => (clients.push(c), 'connected'),
        (err: { code?: number }) => err.code,
      ),
    )
    const outcomes = await Promise.all(attempts)
    expect(outcomes.filter((o) => o === 'connected')).toHaveLength(SESSIONS_MAX)
    expect(outcomes.filter((o) => o === CONNACK_NOT_AUTHORIZED)).toHaveLength(6 - SESSIONS_MAX)
    expect(await t.db.selectFrom('mqtt_sessions').select('client_id').execute()).toHaveLength(SESSIONS_MAX)
  })
})

describeDatabases('expiry of persistent sessions left offline', (t) => {
  const OFFLINE_MS_MAX = 7 * 86_400_000
  let now = Date.parse('2026-11-01T00:00:00Z')
  let tb: TestBroker
  let meter: TestMeter
  let utility: { id: string; apiKey: string }
  let household: { id: string; apiKey: string }
  const clients: MqttClient[] = []

  beforeAll(async () => {
    tb = await startTestBroker(t.handle, {
      policy: releaseAllOwned,
      // The clock jumps; the sweep looks often.
      overrides: { mqtt: { persistentSessionOfflineMsMax: OFFLINE_MS_MAX, persistentSessionSweepIntervalMs: 50 } },
      deps: { clock: () => now },
    })
  })
  afterAll(async () => {
    await tb.close()
  })
  beforeEach(async () => {
    utility = await createUtility(t.db)
    household = await createTestHousehold(t.db)
    meter = await createTestMeter(t.db, utility.id)
    await insertOccupancy(t.db, meter.id, household.id, new Date('2026-01-01T00:00:00Z'))
  })
  afterEach(async () => {
    for (const c of clients.splice(0)) await endClient(c)
  })

  const claims = async (): Promise<string[]> => (await t.db.selectFrom('mqtt_sessions').select('client_id').orderBy('client_id').execute()).map((r) => r.client_id)
  const queued = (clientId: string): number => (tb.broker.aedes as unknown as { persistence: MemoryPersistence }).persistence.outgoingCount(clientId)

  it('drops the queue, the subscriptions and the claim of a session offline longer than persistentSessionOfflineMsMax, not those of one connected', async () => {
    const away = { clientId: 'app-away', username: utility.id, password: utility.apiKey, clean: false }
    const first = await connectClient(tb.url, away)
    expect((await subscribeCollect(first, 'readings/+')).granted).toBe(1)
    await endClient(first)
    const here = await connectClient(tb.url, { clientId: 'home-here', username: household.id, password: household.apiKey, clean: false })
    clients.push(here)
    const live = await subscribeCollect(here, `readings/${meter.id}`)
    const m = await connectMeter(tb.url, meter)
    clients.push(m)
    const readings = Array.from({ length: 3 }, (_, i) => ({ ts: new Date(Date.parse('2026-10-01T00:00:00Z') + i * 900_000).toISOString(), values: { '1-0:1.8.0': 1_000 + i } }))
    await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ readings }))
    await waitFor(() => queued('app-away') === 3, 5_000, 'the datums queued for the offline session')

    // A day short of the limit: kept.
    now += OFFLINE_MS_MAX - 86_400_000
    await new Promise((r) => setTimeout(r, 300))
    expect(await claims()).toEqual(['app-away', 'home-here'])
    expect(queued('app-away')).toBe(3)
    // Past it: gone, queue and all; the session connected throughout stays.
    now += 2 * 86_400_000
    await waitFor(async () => (await claims()).length === 1, 5_000, 'the offline claim ended')
    expect(await claims()).toEqual(['home-here'])
    expect(queued('app-away')).toBe(0)
    await waitFor(() => live.messages.length === 3, 5_000, 'the connected session served')

    // Coming back finds no session (session present 0), and nothing queued.
    const back = await connectSession(tb.url, away)
    clients.push(back.client)
    expect(back.sessionPresent).toBe(false)
    expect(await claims()).toEqual(['app-away', 'home-here'])
  })

  it('sends again with DUP set what it sent before and was not acknowledged, and what was queued meanwhile without [MQTT-3.3.1-1]', async () => {
    const session = { clientId: 'app-dup', username: utility.id, password: Buffer.from(utility.apiKey), clean: false }
    // A recipient that never acknowledges (MQTT.js would): written raw.
    const first = await RawMqttClient.connect(tb.port, session)
    expect(await first.connack()).toBe(0)
    first.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'readings/+', qos: 1 }] })
    await first.next((p) => p.cmd === 'suback')
    const m = await connectMeter(tb.url, meter)
    clients.push(m)
    const reading = (i: number) => ({ ts: new Date(Date.parse('2026-10-03T00:00:00Z') + i * 900_000).toISOString().replace('.000Z', 'Z'), values: { '1-0:1.8.0': 3_000 + i } })
    await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ readings: [reading(0), reading(1)] }))
    const publishes = (raw: RawMqttClient) => raw.received.flatMap((p) => (p.cmd === 'publish' ? [{ messageId: p.messageId, dup: p.dup, ts: (JSON.parse(p.payload.toString()) as { ts: string }).ts }] : []))
    await waitFor(() => publishes(first).length === 2, 5_000, 'two datums delivered')
    const sent = publishes(first)
    expect(sent.map((p) => [p.ts, p.dup])).toEqual([
      [reading(0).ts, false],
      [reading(1).ts, false],
    ])
    first.end()
    await first.closed
    await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ readings: [reading(2)] }))
    await waitFor(() => queued('app-dup') === 3, 5_000, 'the third datum queued')

    const back = await RawMqttClient.connect(tb.port, session)
    expect(await back.connack()).toBe(0)
    await waitFor(() => publishes(back).length === 3, 5_000, 'the queue sent again')
    expect(publishes(back)).toEqual([
      { messageId: sent[0]!.messageId, dup: true, ts: reading(0).ts },
      { messageId: sent[1]!.messageId, dup: true, ts: reading(1).ts },
      { messageId: expect.any(Number), dup: false, ts: reading(2).ts },
    ])
    for (const p of publishes(back)) back.send({ cmd: 'puback', messageId: p.messageId! })
    await waitFor(() => queued('app-dup') === 0, 5_000, 'the queue acknowledged')
    back.send({ cmd: 'disconnect' })
    back.end()
    // Ends the session.
    await endClient(await connectClient(tb.url, { ...session, password: utility.apiKey, clean: true }))
  })

  it('discards the queue of a persistent session that a clean connect replaces, at once, recording none of it as released', async () => {
    const first = await connectClient(tb.url, { clientId: 'app-replaced', username: utility.id, password: utility.apiKey, clean: false })
    expect((await subscribeCollect(first, 'readings/+')).granted).toBe(1)
    await endClient(first)
    const m = await connectMeter(tb.url, meter)
    clients.push(m)
    const readings = Array.from({ length: 3 }, (_, i) => ({ ts: new Date(Date.parse('2026-10-02T00:00:00Z') + i * 900_000).toISOString(), values: { '1-0:1.8.0': 2_000 + i } }))
    await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ readings }))
    await waitFor(() => queued('app-replaced') === 3, 5_000, 'the datums queued for the offline session')

    const received: string[] = []
    const fresh = await connectClient(tb.url, { clientId: 'app-replaced', username: utility.id, password: utility.apiKey, clean: true })
    clients.push(fresh)
    fresh.on('message', (topic) => received.push(topic))
    await waitFor(() => queued('app-replaced') === 0, 5_000, 'the queue discarded')
    await new Promise((r) => setTimeout(r, 200))
    await tb.recorder.flush()
    expect(received).toEqual([])
    // Nothing was sent to it: nothing is in its access log.
    expect(await t.db.selectFrom('access_log').select('datums').execute()).toEqual([])
  })

  it('ends claims whose session no broker holds any more (a broker restarted without Redis), once as old', async () => {
    const seen = (ms: number) => new Date(now - ms)
    await t.db
      .insertInto('mqtt_sessions')
      .values([
        { client_id: 'app-left-behind', principal: `party:${utility.id}`, created_at: seen(OFFLINE_MS_MAX + 1_000), seen_at: seen(OFFLINE_MS_MAX + 1_000) },
        { client_id: 'app-recent', principal: `party:${utility.id}`, created_at: seen(OFFLINE_MS_MAX + 1_000), seen_at: seen(60_000) },
      ])
      .execute()
    await waitFor(async () => (await claims()).length === 1, 5_000, 'the old claim ended')
    expect(await claims()).toEqual(['app-recent'])
  })
})
