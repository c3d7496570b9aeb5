import { spawn, type ChildProcess } from 'node:child_process'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { buildApi } from '../../services/api/app.ts'
import { createOffer } from '../../services/consent/offer-service.ts'
import { grantConsent, revokeConsent } from '../../services/consent/consent-service.ts'
import { openReleaseView, type ReleaseView } from '../../services/consent/release-view.ts'
import { createParty } from '../../services/directory/directory-service.ts'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { connectClient, connectMeter, endClient, publishAcked, startTestBroker, subscribeCollect, waitFor, type TestBroker } from '../support/broker.ts'
import { describeDatabases, describePostgres, type TestDatabase } from '../support/database.ts'
import { hasCommand, skipReason } from '../support/tools.ts'
import { createTestHousehold, createTestMeter, createUtility, insertOccupancy, type TestMeter } from '../support/world.ts'
import type { FastifyInstance } from 'fastify'
import { envToConfig } from '../../shared/config.ts'
import { formatTimestamp } from '../../shared/calendar.ts'

/**
 * Live delivery and pull under real consents: a broker whose forwarding asks the consent
 * view, recipients over mosquitto_sub and MQTT.js, the pull API, the access and consent logs.
 */
const ADMIN = 'e2e-admin-token-abcdefghijkl'
const MOVE_IN = new Date('2026-09-01T00:00:00Z')
const DATA_FROM = new Date('2026-10-01T00:00:00Z')
const T0 = Date.parse('2026-10-05T00:00:00Z')

interface World {
  a: { id: string; apiKey: string }
  b: { id: string; apiKey: string }
  households: Array<{ id: string; apiKey: string; meter: TestMeter }>
  consents: { h0a: string; h1a: string; h1b: string; h2b: string }
}

async function buildWorld(t: TestDatabase): Promise<World> {
  const utility = await createUtility(t.db)
  const a = await createParty(t.db, { kind: 'third_party', name: 'Advice app' })
  const b = await createParty(t.db, { kind: 'third_party', name: 'Research lab' })
  const split = { householdBps: 7000, operatorBps: 1000, platformBps: 2000, thirdParties: [] }
  const offerA = await createOffer(t.db, { recipientId: a.id, purpose: 'advice', granularity: 'load_curve', priceMicrosPerDatum: 1000n, split })
  const offerB = await createOffer(t.db, { recipientId: b.id, purpose: 'research', granularity: 'load_curve', priceMicrosPerDatum: 500n, split })
  const households: World['households'] = []
  for (let i = 0; i < 4; i++) {
    const h = await createTestHousehold(t.db, `H${i}`)
    const meter = await createTestMeter(t.db, utility.id)
    await insertOccupancy(t.db, meter.id, h.id, MOVE_IN)
    households.push({ id: h.id, apiKey: h.apiKey, meter })
  }
  const now = new Date()
  const validUntil = new Date(now.getTime() + 365 * 86_400_000)
  const grant = (h: number, offerId: string): Promise<{ id: string }> => grantConsent(t.db, households[h]!.id, { offerId, validUntil, dataFrom: DATA_FROM }, now)
  const consents = {
    h0a: (await grant(0, offerA.id)).id,
    h1a: (await grant(1, offerA.id)).id,
    h1b: (await grant(1, offerB.id)).id,
    h2b: (await grant(2, offerB.id)).id,
  }
  return { a, b, households, consents }
}

describeDatabases('delivery under consents', (t) => {
  let tb: TestBroker
  let view: ReleaseView
  let api: FastifyInstance
  let world: World
  const clients: MqttClient[] = []
  const children: ChildProcess[] = []

  beforeAll(async () => {
    view = await openReleaseView(t.handle, { timeZone: 'Europe/Paris' })
    tb = await startTestBroker(t.handle, { policy: view, overrides: {} })
    api = await buildApi({ config: envToConfig({ adminToken: ADMIN, logLevel: 'silent' }), db: t.handle, metrics: tb.metrics, health: async () => ({ broker: true, database: true }) })
  })
  afterAll(async () => {
    await api.close()
    await tb.close()
    await view.close()
  })
  beforeEach(async () => {
    world = await buildWorld(t)
    await view.refresh()
  })
  afterEach(async () => {
    for (const c of clients.splice(0)) await endClient(c)
    for (const c of children.splice(0)) c.kill('SIGTERM')
  })

  /** Each household's meter publishes `count` readings from `fromMs`, every 15 minutes. */
  async function publishAll(fromMs: number, count: number): Promise<Map<string, string[]>> {
    const sent = new Map<string, string[]>()
    for (const h of world.households) {
      const m = await connectMeter(tb.url, h.meter)
      const readings = Array.from({ length: count }, (_, i) => ({ ts: formatTimestamp(fromMs + i * 900_000), values: { '1-0:1.8.0': Math.floor(fromMs / 1000) + i } }))
      await publishAcked(m, meterReadingsTopic(h.meter.id), JSON.stringify({ readings }))
      await endClient(m)
      sent.set(h.meter.id, readings.map((r) => r.ts))
    }
    return sent
  }

  const key = (meterId: string, ts: string): string => `${meterId} ${ts}`

  it('forwards to each recipient exactly its consented datums, and nothing after a revocation', async () => {
    const recipientB = await connectClient(tb.url, { clientId: 'lab-collector', username: world.b.id, password: world.b.apiKey })
    clients.push(recipientB)
    const liveB = await subscribeCollect(recipientB, 'readings/+')
    const recipientA = await connectClient(tb.url, { clientId: 'advice-collector', username: world.a.id, password: world.a.apiKey })
    clients.push(recipientA)
    const liveA = await subscribeCollect(recipientA, 'readings/+')

    const [h0, h1, h2, h3] = world.households
    await publishAll(T0, 4)
    const expectA = [h0!, h1!].flatMap((h) => [0, 1, 2, 3].map((i) => key(h.meter.id, formatTimestamp(T0 + i * 900_000))))
    const expectB = [h1!, h2!].flatMap((h) => [0, 1, 2, 3].map((i) => key(h.meter.id, formatTimestamp(T0 + i * 900_000))))
    const got = (live: { messages: Array<{ payload: unknown }> }): string[] =>
      live.messages.map((m) => { const p = m.payload as { meterId: string; ts: string }; return key(p.meterId, p.ts) }).sort()
    await waitFor(() => liveA.messages.length >= expectA.length && liveB.messages.length >= expectB.length, 10_000, 'the first deliveries')
    await new Promise((r) => setTimeout(r, 200))
    expect(got(liveA)).toEqual(expectA.sort())
    expect(got(liveB)).toEqual(expectB.sort())
    expect(got(liveA).some((k) => k.startsWith(h3!.meter.id))).toBe(false)

    // The pull API releases exactly what live delivery released, for the same window.
    const pulled: string[] = []
    let cursor: string | null = null
    do {
      const res = await api.inject({
        method: 'GET',
        url: `/data/readings?from=${formatTimestamp(T0)}&to=${formatTimestamp(T0 + 3_600_000)}&granularity=load_curve${cursor !== null ? `&cursor=${cursor}` : ''}`,
        headers: { authorization: `Bearer ${world.a.apiKey}` },
      })
      expect(res.statusCode).toBe(200)
      const page = res.json() as { items: Array<{ meterId: string; ts: string }>; nextCursor: string | null }
      pulled.push(...page.items.map((i) => key(i.meterId, i.ts)))
      cursor = page.nextCursor
    } while (cursor !== null)
    expect(pulled.sort()).toEqual(got(liveA))

    // Household 1 revokes A through the API: A gets nothing more of it, B is unaffected.
    const revoke = await api.inject({ method: 'DELETE', url: `/me/consents/${world.consents.h1a}`, headers: { authorization: `Bearer ${h1!.apiKey}` } })
    expect(revoke.statusCode).toBe(204)
    await view.settled()
    const beforeA = liveA.messages.length
    const beforeB = liveB.messages.length
    await publishAll(T0 + 3_600_000, 2)
    await waitFor(() => liveB.messages.length >= beforeB + 4 && liveA.messages.length >= beforeA + 2, 10_000, 'the second deliveries')
    await new Promise((r) => setTimeout(r, 200))
    const newA = got({ messages: liveA.messages.slice(beforeA) })
    expect(newA).toEqual([0, 1].map((i) => key(h0!.meter.id, formatTimestamp(T0 + 3_600_000 + i * 900_000))).sort())

    // The access log counts what was delivered live and pulled.
    await tb.recorder.flush()
    const log = await api.inject({ method: 'GET', url: '/me/access-log', headers: { authorization: `Bearer ${h1!.apiKey}` } })
    expect(log.statusCode).toBe(200)
    const totals: Record<string, number> = {}
    for (const e of (log.json() as { items: Array<{ recipientId: string; channel: string; datums: string | number }> }).items) {
      const k = `${e.recipientId === world.a.id ? 'A' : 'B'} ${e.channel}`
      totals[k] = (totals[k] ?? 0) + Number(e.datums)
    }
    // Household 1: A got 4 live and pulled the same 4 before the revocation; B got 4 + 2 live.
    expect(totals).toEqual({ 'A mqtt': 4, 'A http': 4, 'B mqtt': 6 })
    const consentLog = await api.inject({ method: 'GET', url: '/me/consent-log', headers: { authorization: `Bearer ${h1!.apiKey}` } })
    const events = (consentLog.json() as { items: Array<{ consentId: string; event: string }> }).items.filter((e) => e.consentId === world.consents.h1a).map((e) => e.event)
    expect(events.sort()).toEqual(['granted', 'revoked'])
  })

  describe.skipIf(!hasCommand('mosquitto_sub'))(`with mosquitto_sub as a recipient${skipReason('mosquitto_sub', 'mosquitto-clients')}`, () => {
    it('delivers the consented datums to an independent client and stops after a revocation', async () => {
      const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(tb.port), '-V', 'mqttv311', '-i', 'advice-mosquitto', '-u', world.a.id, '-P', world.a.apiKey, '-t', 'readings/+', '-q', '1'])
      children.push(sub)
      let out = ''
      sub.stdout!.on('data', (d: Buffer) => (out += d.toString()))
      await waitFor(() => tb.broker.aedes.connectedClients > 0, 5_000, 'mosquitto_sub connected')
      await new Promise((r) => setTimeout(r, 300))
      await publishAll(T0, 2)
      const lines = (): Array<{ meterId: string; ts: string }> => out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { meterId: string; ts: string })
      await waitFor(() => lines().length >= 4, 10_000, 'mosquitto_sub to receive')
      const [h0, h1] = world.households
      expect(lines().map((l) => l.meterId).sort()).toEqual([h0!.meter.id, h0!.meter.id, h1!.meter.id, h1!.meter.id].sort())
      await revokeConsent(t.db, world.consents.h0a, { role: 'household', householdId: h0!.id }, new Date())
      await view.settled()
      await publishAll(T0 + 3_600_000, 1)
      await waitFor(() => lines().length >= 5, 10_000, 'the datum still consented')
      await new Promise((r) => setTimeout(r, 300))
      expect(lines().slice(4).map((l) => l.meterId)).toEqual([h1!.meter.id])
    })
  })
})

describePostgres('consent changes made by another process', (t) => {
  let tb: TestBroker
  let view: ReleaseView
  let world: World
  const clients: MqttClient[] = []

  beforeAll(async () => {
    view = await openReleaseView(t.handle, { timeZone: 'Europe/Paris' })
    tb = await startTestBroker(t.handle, { policy: view })
  })
  afterAll(async () => {
    for (const c of clients.splice(0)) await endClient(c)
    await tb.close()
    await view.close()
  })

  it('take effect on the broker within one second', async () => {
    world = await buildWorld(t)
    await view.refresh()
    const [h0, , , h3] = world.households
    const recipient = await connectClient(tb.url, { clientId: 'advice', username: world.a.id, password: world.a.apiKey })
    clients.push(recipient)
    const live = await subscribeCollect(recipient, 'readings/+')
    const m0 = await connectMeter(tb.url, h0!.meter)
    const m3 = await connectMeter(tb.url, h3!.meter)
    clients.push(m0, m3)
    const other = await t.openAnother()
    try {
      // Revoked elsewhere: one second later nothing of household 0 is forwarded any more.
      await revokeConsent(other.db, world.consents.h0a, { role: 'household', householdId: h0!.id }, new Date())
      await new Promise((r) => setTimeout(r, 1_000))
      await publishAcked(m0, meterReadingsTopic(h0!.meter.id), JSON.stringify({ ts: formatTimestamp(T0), values: { '1-0:1.8.0': 1 } }))
      // Granted elsewhere: household 3's data flows within one second.
      const offers = await other.db.selectFrom('offers').select('id').where('recipient_id', '=', world.a.id).execute()
      const granted = Date.now()
      await grantConsent(other.db, h3!.id, { offerId: offers[0]!.id, validUntil: new Date(Date.now() + 86_400_000), dataFrom: DATA_FROM }, new Date())
      let i = 0
      await waitFor(async () => {
        await publishAcked(m3, meterReadingsTopic(h3!.meter.id), JSON.stringify({ ts: formatTimestamp(T0 + ++i * 60_000), values: { '1-0:1.8.0': i } }))
        return live.messages.some((m) => (m.payload as { meterId: string }).meterId === h3!.meter.id)
      }, 5_000, 'the grant to reach the broker')
      expect(Date.now() - granted).toBeLessThan(1_000 + 500)
      expect(live.messages.some((m) => (m.payload as { meterId: string }).meterId === h0!.meter.id)).toBe(false)
    } finally {
      await other.close()
    }
  })
})
