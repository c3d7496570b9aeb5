import type { ChildProcess } from 'node:child_process'
import type { FastifyInstance } from 'fastify'
import { createRequire } from 'node:module'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { redisCoupling } from '../../broker/redis-coupling.ts'
import { buildApi } from '../../services/api/app.ts'
import { grantConsent } from '../../services/consent/consent-service.ts'
import { createOffer } from '../../services/consent/offer-service.ts'
import { createParty } from '../../services/directory/directory-service.ts'
import { createOccupancy } from '../../services/metering/occupancy-service.ts'
import type { DatabaseHandle } from '../../shared/db/database.ts'
import { openReleaseView, type ReleaseView } from '../../services/consent/release-view.ts'
import { formatTimestamp, startOfDayMs } from '../../shared/calendar.ts'
import { envToConfig } from '../../shared/config.ts'
import { egressTopic, meterReadingsTopic } from '../../shared/topics.ts'
import { connectClient, connectMeter, endClient, publishAcked, startTestBroker, subscribeCollect, waitFor, type TestBroker } from '../support/broker.ts'
import { describeDatabases, describePostgres } from '../support/database.ts'
import { freePort, hasCommand, skipReason, startRedisServer } from '../support/tools.ts'
import { createTestHousehold, createTestMeter, createUtility } from '../support/world.ts'

/**
 * Days that a move registered after the fact gives to a household are published live on
 * `daily/{meterId}`, under the release rule, once each (README "Daily and monthly data"): through
 * the operator's HTTP API, a broker on a socket and recipients over MQTT.js with their API keys.
 * The clocks of the API and the broker run at the data's time.
 */
const ADMIN = 'late-occupancy-admin-token-0123456789'
const TZ = 'Europe/Paris'
const HOUR_MS = 3_600_000
/** The meter's hourly readings are numbered from 1 October 2026, 00:00 in Paris. */
const T0 = startOfDayMs('2026-10-01', TZ)
const IMPORT = '1-0:1.8.0'

/** Reading i's import index: growing by 100 Wh an hour, give or take, so that every day differs. */
function indexAt(i: number): number {
  return 10_000 + i * 100 + ((i * i) % 37)
}

function at(i: number): string {
  return formatTimestamp(T0 + i * HOUR_MS)
}

/** Paris, 1 October + `days` days, `hours` hours. */
function paris(days: number, hours = 0, minutes = 0): number {
  return T0 + (days * 24 + hours) * HOUR_MS + minutes * 60_000
}

/** Day `d` of October runs from reading 24(d-1) (its opening midnight) to reading 24d. */
function dayOf(d: number): { day: string; energy: number } {
  return { day: `2026-10-${String(d).padStart(2, '0')}`, energy: indexAt(24 * d) - indexAt(24 * (d - 1)) }
}

const Redis = createRequire(import.meta.url)('ioredis') as new (url: string) => {
  llen(key: string): Promise<number>
  keys(pattern: string): Promise<string[]>
  pttl(key: string): Promise<number>
  disconnect(): void
}

type Daily = { meterId: string; day: string; granularity: string; values: Record<string, number> }

/** The meter sends its readings `first` to `last` in one message, and goes. */
async function send(url: string, meter: { id: string; secret: string }, first: number, last: number): Promise<void> {
  const m = await connectMeter(url, meter)
  const readings = []
  for (let i = first; i <= last; i++) readings.push({ ts: at(i), values: { [IMPORT]: indexAt(i) } })
  await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ readings }))
  await endClient(m)
}

/** What a recipient received on daily/: each day and its energy, in order. */
function days(live: { messages: Array<{ payload: unknown }> }): Array<{ day: string; energy: number | undefined }> {
  return live.messages.map((m) => m.payload as Daily).map((p) => ({ day: p.day, energy: p.values[IMPORT] }))
}

describeDatabases('days a late move gives to a household, on daily/', (t) => {
  let nowMs = 0
  let view: ReleaseView
  let tb: TestBroker
  let api: FastifyInstance
  const clients: MqttClient[] = []

  beforeAll(async () => {
    view = await openReleaseView(t.handle, { timeZone: TZ })
    tb = await startTestBroker(t.handle, { policy: view, timezone: TZ, deps: { clock: () => nowMs } })
    api = await buildApi({
      config: envToConfig({ adminToken: ADMIN, logLevel: 'silent', timezone: TZ }),
      db: t.handle,
      metrics: tb.metrics,
      clock: () => new Date(nowMs),
      health: async () => ({ broker: true, database: true }),
      // As `metershare up` does: the view decides by a change before the answer.
      releaseChanged: (change) => view.apply(change),
    })
  })
  afterAll(async () => {
    await api.close()
    await tb.close()
    await view.close()
  })
  beforeEach(async () => {
    await view.refresh()
  })
  afterEach(async () => {
    for (const c of clients.splice(0)) await endClient(c)
  })

  async function call(method: 'GET' | 'POST' | 'PATCH', url: string, token: string, body?: object): Promise<{ id: string; apiKey: string; secret: string; items: Daily[] }> {
    const res = await api.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { payload: body }) })
    expect(res.statusCode, `${method} ${url}: ${res.body}`).toBeLessThan(300)
    return res.json()
  }
  const operator = (method: 'POST' | 'PATCH', url: string, body: object) => call(method, url, ADMIN, body)

  /** A utility's hourly meter, a recipient buying daily data (`app`), and another (`other`). */
  async function world() {
    const utility = await operator('POST', '/admin/parties', { kind: 'utility', name: 'Grid' })
    const app = await operator('POST', '/admin/parties', { kind: 'third_party', name: 'Advice app' })
    const other = await operator('POST', '/admin/parties', { kind: 'third_party', name: 'Other' })
    const meter = await operator('POST', '/admin/meters', { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 60 })
    const split = { householdBps: 10_000, operatorBps: 0, platformBps: 0 }
    const appOffer = await operator('POST', '/admin/offers', { recipientId: app.id, purpose: 'advice', granularity: 'daily', priceMicrosPerDatum: '1000', split })
    const otherOffer = await operator('POST', '/admin/offers', { recipientId: other.id, purpose: 'other', granularity: 'daily', priceMicrosPerDatum: '1000', split })
    let n = 0
    const household = () => operator('POST', '/admin/households', { name: `H${++n}`, email: `h${n}-${Date.now()}@example.test`, password: 'a household password' })
    return { app, other, meter, appOffer, otherOffer, household }
  }

  /** The household grants the offer from now for a year, over data from 1 October. */
  const grant = (household: { apiKey: string }, offerId: string) =>
    call('POST', '/me/consents', household.apiKey, { offerId, validUntil: formatTimestamp(nowMs + 365 * 24 * HOUR_MS), dataFrom: formatTimestamp(T0) })

  async function follow(party: { id: string; apiKey: string }, filter: string) {
    const client = await connectClient(tb.url, { clientId: `${party.id}-live`, username: party.id, password: party.apiKey })
    clients.push(client)
    return subscribeCollect(client, filter)
  }

  /** Lets whatever else would be published arrive (nothing should). */
  const settle = () => new Promise((r) => setTimeout(r, 300))

  it('publishes the days a move-in registered a week late gives to a household, once each, to the recipients it authorised only', async () => {
    const w = await world()
    const b = await w.household()
    // 8 October: the household's move-in is registered that day, and it grants the app daily data from 1 October.
    nowMs = paris(7, 0, 5)
    await operator('POST', '/admin/occupancies', { meterId: w.meter.id, householdId: b.id, from: formatTimestamp(paris(7)) })
    await grant(b, w.appOffer.id)
    const app = await follow(w.app, egressTopic('daily', w.meter.id))
    const other = await follow(w.other, 'daily/+')

    // 10 October: the meter sends everything since 1 October. Only the 8th and the 9th are the household's.
    nowMs = paris(9, 0, 30)
    await send(tb.url, w.meter, 0, 9 * 24)
    await waitFor(() => app.messages.length >= 2, 10_000, 'the 8th and the 9th')
    expect(days(app)).toEqual([dayOf(8), dayOf(9)])

    // The operator learns that it moved in on 1 October, and registers that stay.
    nowMs = paris(9, 1)
    await operator('POST', '/admin/occupancies', { meterId: w.meter.id, householdId: b.id, from: formatTimestamp(T0), until: formatTimestamp(paris(7)) })
    await waitFor(() => app.messages.length >= 9, 10_000, 'the days from 1 to 7 October, live')
    await settle()
    // Each once; the 8th and the 9th, which stand, not again.
    expect(days(app)).toEqual([8, 9, 1, 2, 3, 4, 5, 6, 7].map(dayOf))
    expect(app.messages.every((m) => m.topic === egressTopic('daily', w.meter.id))).toBe(true)
    expect(other.messages).toEqual([])

    // The registration ended none of the household's consents: the pull lists the same days, and later days still come.
    const pulled = await call('GET', `/data/readings?meterId=${w.meter.id}&from=${formatTimestamp(T0)}&to=${formatTimestamp(paris(10))}&granularity=daily`, w.app.apiKey)
    expect(pulled.items.map((p) => ({ day: p.day, energy: p.values[IMPORT] }))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9].map(dayOf))
    nowMs = paris(10, 0, 30)
    await send(tb.url, w.meter, 9 * 24 + 1, 10 * 24)
    await waitFor(() => app.messages.length >= 10, 10_000, 'the 10th')
    expect(days(app)[9]).toEqual(dayOf(10))
  })

  it('publishes a day that a corrected move gives from one household to another for the new one, to its recipients, and nothing to the old one’s', async () => {
    const w = await world()
    const a = await w.household()
    const b = await w.household()
    nowMs = paris(0, 0, 5)
    const occupancyA = await operator('POST', '/admin/occupancies', { meterId: w.meter.id, householdId: a.id, from: formatTimestamp(T0) })
    await grant(a, w.appOffer.id)
    await grant(a, w.otherOffer.id)
    const app = await follow(w.app, 'daily/+')
    const other = await follow(w.other, 'daily/+')

    // 7 October, noon: household A moves out and B moves in, registered five minutes later; B grants the app daily data.
    nowMs = paris(6, 12, 5)
    await send(tb.url, w.meter, 0, 6 * 24 + 12)
    await waitFor(() => app.messages.length >= 6 && other.messages.length >= 6, 10_000, "A's days 1 to 6")
    expect(days(other)).toEqual([1, 2, 3, 4, 5, 6].map(dayOf))
    await operator('PATCH', `/admin/occupancies/${occupancyA.id}`, { until: formatTimestamp(paris(6, 12)) })
    await operator('POST', '/admin/occupancies', { meterId: w.meter.id, householdId: b.id, from: formatTimestamp(paris(6, 12)) })
    await grant(b, w.appOffer.id)
    nowMs = paris(8, 0, 30)
    await send(tb.url, w.meter, 6 * 24 + 13, 8 * 24)
    // B's part of the 7th (its energy from 13:00: the interval ending at noon straddles the move) and the 8th.
    const bOn7th = { day: '2026-10-07', energy: indexAt(7 * 24) - indexAt(6 * 24 + 12) }
    await waitFor(() => app.messages.length >= 8, 10_000, "B's 7th and 8th")
    expect(days(app).slice(6)).toEqual([bOn7th, dayOf(8)])

    // 9 October: the move was on the 5th. A's move-out is moved back to it, and B's stay from it registered.
    nowMs = paris(8, 1)
    await operator('PATCH', `/admin/occupancies/${occupancyA.id}`, { until: formatTimestamp(paris(4)) })
    await operator('POST', '/admin/occupancies', { meterId: w.meter.id, householdId: b.id, from: formatTimestamp(paris(4)), until: formatTimestamp(paris(6, 12)) })
    // The 5th and the 6th are now B's (same energy as when they were A's), and the 7th is B's whole day.
    await waitFor(() => app.messages.length >= 11, 10_000, "B's 5th, 6th and 7th")
    await settle()
    expect(days(app).slice(8)).toEqual([dayOf(5), dayOf(6), dayOf(7)])
    // A's consents ended when its move-out was registered: its recipients get nothing more, and nothing is withdrawn.
    expect(days(other)).toEqual([1, 2, 3, 4, 5, 6].map(dayOf))
    const pulled = await call('GET', `/data/readings?meterId=${w.meter.id}&from=${formatTimestamp(paris(4))}&to=${formatTimestamp(paris(8))}&granularity=daily`, w.app.apiKey)
    expect(pulled.items.map((p) => ({ day: p.day, energy: p.values[IMPORT] }))).toEqual([5, 6, 7, 8].map(dayOf))
  })
})

describe.skipIf(!hasCommand('redis-server'))(`days a late move gives, with several brokers${skipReason('redis-server', 'redis-server')}`, () => {
  describePostgres('coupled through Redis', (t) => {
    let redis: ChildProcess
    let nowMs = 0
    const brokers: TestBroker[] = []
    const views: ReleaseView[] = []
    const handles: DatabaseHandle[] = []
    const clients: MqttClient[] = []

    let redisPort = 0

    beforeAll(async () => {
      const port = await freePort()
      redisPort = port
      redis = await startRedisServer(port)
      for (let i = 0; i < 2; i++) {
        const handle = await t.openAnother()
        handles.push(handle)
        const view = await openReleaseView(handle, { timeZone: TZ })
        views.push(view)
        brokers.push(await startTestBroker(handle, { policy: view, timezone: TZ, deps: { aedesOptions: redisCoupling(`redis://127.0.0.1:${port}`), clock: () => nowMs } }))
      }
    })
    afterAll(async () => {
      for (const c of clients) await endClient(c)
      for (const b of brokers) await b.close()
      for (const v of views) await v.close()
      for (const h of handles) await h.close()
      redis?.kill('SIGTERM')
    })

    // First: the next test leaves the second broker's release view closed.
    /**
     * An hourly meter whose household moves out on 2 October at noon, registered in advance, and the
     * arriving household's recipient of daily data (`app`), granted from 1 October.
     */
    async function movingDay(appName: string) {
      const utility = await createUtility(t.db)
      const app = await createParty(t.db, { kind: 'third_party', name: appName })
      const leaving = await createTestHousehold(t.db)
      const arriving = await createTestHousehold(t.db)
      const meter = await createTestMeter(t.db, utility.id, { intervalMinutes: 60 })
      nowMs = paris(0, 0, 5)
      await createOccupancy(t.db, { meterId: meter.id, householdId: leaving.id, from: new Date(T0), until: new Date(paris(1, 12)) }, { timezone: TZ }, new Date(nowMs))
      await createOccupancy(t.db, { meterId: meter.id, householdId: arriving.id, from: new Date(paris(1, 12)), until: null }, { timezone: TZ }, new Date(nowMs))
      nowMs = paris(1, 13)
      const split = { householdBps: 10_000, operatorBps: 0, platformBps: 0, thirdParties: [] }
      const offer = await createOffer(t.db, { recipientId: app.id, purpose: 'p', granularity: 'daily', priceMicrosPerDatum: 1n, split })
      await grantConsent(t.db, arriving.id, { offerId: offer.id, validUntil: new Date(nowMs + 365 * 24 * HOUR_MS), dataFrom: new Date(T0) }, new Date(nowMs))
      for (const v of views) await v.refresh()
      return { app, meter }
    }

    it("releases a moving day's part to the new household's recipient on every broker, its owner carried with it", async () => {
      const { app, meter } = await movingDay('App of the new household')
      const live: Array<Awaited<ReturnType<typeof subscribeCollect>>> = []
      for (const [i, b] of brokers.entries()) {
        const c = await connectClient(b.url, { clientId: `mover-app-${i}`, username: app.id, password: app.apiKey })
        clients.push(c)
        live.push(await subscribeCollect(c, 'daily/+'))
      }
      // The meter sends the two days to the first broker. The 2nd is the arriving household's from noon:
      // the second broker, which cannot tell whose a moving day is from its payload alone, withheld it.
      nowMs = paris(2, 0, 30)
      await send(brokers[0]!.url, meter, 0, 48)
      await waitFor(() => live.every((l) => l.messages.length >= 1), 10_000, "the arriving household's part of the 2nd on both brokers")
      await new Promise((r) => setTimeout(r, 300))
      for (const l of live) expect(days(l)).toEqual([{ day: '2026-10-02', energy: indexAt(48) - indexAt(36) }])
    })

    it("sends a moving day's part queued for a persistent session while it was away, its owner kept with it in Redis", async () => {
      const { app, meter } = await movingDay('App that was away')
      // The recipient subscribes on the second broker with a persistent session, and goes away.
      const session = { clientId: 'away-app', username: app.id, password: app.apiKey, clean: false }
      const first = await connectClient(brokers[1]!.url, session)
      await subscribeCollect(first, 'daily/+')
      await endClient(first)
      // Meanwhile the meter sends the two days to the first broker. With Redis every datum of the topic
      // is queued for the session (the rule is asked at its reconnect): the 1st, and the 2nd's two parts,
      // payloads that come back from Redis decoded anew.
      nowMs = paris(2, 0, 30)
      await send(brokers[0]!.url, meter, 0, 48)
      const redisClient = new Redis(`redis://127.0.0.1:${redisPort}`)
      try {
        await waitFor(async () => (await redisClient.llen('outgoing:away-app')) === 3, 10_000, 'the three daily datums queued in Redis for the session')
        // Each one's owner beside it, for as long as an offline session lives (7 days by default), no longer.
        const kept = await redisClient.keys('metershare:egress-meta:*')
        expect(kept).toHaveLength(3)
        for (const key of kept) expect(await redisClient.pttl(key)).toSatisfy((ms: number) => ms > 0 && ms <= 7 * 24 * HOUR_MS)
      } finally {
        redisClient.disconnect()
      }
      const received: Daily[] = []
      const back = await connectClient(brokers[1]!.url, session)
      clients.push(back)
      back.on('message', (_topic, payload) => received.push(JSON.parse(payload.toString('utf8')) as Daily))
      await waitFor(() => received.length >= 1, 10_000, "the arriving household's part of the 2nd at the reconnect")
      await new Promise((r) => setTimeout(r, 300))
      expect(received.map((p) => ({ day: p.day, energy: p.values[IMPORT] }))).toEqual([{ day: '2026-10-02', energy: indexAt(48) - indexAt(36) }])
    })

    it('publishes each day once, whichever broker takes it, to recipients on every broker', async () => {
      const utility = await createUtility(t.db)
      const app = await createParty(t.db, { kind: 'third_party', name: 'App' })
      const household = await createTestHousehold(t.db)
      const meter = await createTestMeter(t.db, utility.id, { intervalMinutes: 60 })
      nowMs = paris(7, 0, 5)
      await createOccupancy(t.db, { meterId: meter.id, householdId: household.id, from: new Date(paris(7)), until: null }, { timezone: TZ }, new Date(nowMs))
      const split = { householdBps: 10_000, operatorBps: 0, platformBps: 0, thirdParties: [] }
      const offer = await createOffer(t.db, { recipientId: app.id, purpose: 'p', granularity: 'daily', priceMicrosPerDatum: 1n, split })
      await grantConsent(t.db, household.id, { offerId: offer.id, validUntil: new Date(nowMs + 365 * 24 * HOUR_MS), dataFrom: new Date(T0) }, new Date(nowMs))
      for (const v of views) await v.refresh()
      // The second broker's release view hears nothing more from here: as one that has not yet heard of
      // the change when the days reach it (each broker hears it from PostgreSQL on its own). The days'
      // owner travels with them through Redis, so it releases them all the same.
      await views[1]!.close()
      // The recipient follows on each broker (two sessions of its own); the meter sends to the first.
      const live: Array<Awaited<ReturnType<typeof subscribeCollect>>> = []
      for (const [i, b] of brokers.entries()) {
        const c = await connectClient(b.url, { clientId: `app-${i}`, username: app.id, password: app.apiKey })
        clients.push(c)
        live.push(await subscribeCollect(c, 'daily/+'))
      }
      nowMs = paris(9, 0, 30)
      await send(brokers[0]!.url, meter, 0, 9 * 24)
      await waitFor(() => live.every((l) => l.messages.length >= 2), 10_000, 'the 8th and the 9th on both brokers')

      // Registered by another process (the API's): both brokers hear of it; one takes the days, both deliver them.
      nowMs = paris(9, 1)
      await createOccupancy(t.db, { meterId: meter.id, householdId: household.id, from: new Date(T0), until: new Date(paris(7)) }, { timezone: TZ }, new Date(nowMs))
      await waitFor(() => live.every((l) => l.messages.length >= 9), 10_000, 'the days from 1 to 7 October on both brokers')
      await new Promise((r) => setTimeout(r, 500))
      for (const l of live) expect(days(l)).toEqual([8, 9, 1, 2, 3, 4, 5, 6, 7].map(dayOf))
      expect(await t.db.selectFrom('daily_publications_due').select('id').execute()).toEqual([])
    })
  })
})
