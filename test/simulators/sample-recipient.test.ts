import { mkdtempSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApi } from '../../services/api/app.ts'
import { grantConsent } from '../../services/consent/consent-service.ts'
import { createOffer } from '../../services/consent/offer-service.ts'
import { openReleaseView, type ReleaseView } from '../../services/consent/release-view.ts'
import { createParty } from '../../services/directory/directory-service.ts'
import { envToConfig } from '../../shared/config.ts'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { nextFromMs, periodStartMs, startSampleRecipient } from '../../simulators/sample-recipient.ts'
import { connectMeter, endClient, publishAcked, startTestBroker, waitFor, type TestBroker } from '../support/broker.ts'
import { useTestDatabase } from '../support/database.ts'
import { createTestHousehold, createTestMeter, createUtility, insertOccupancy, type TestMeter } from '../support/world.ts'

describe('the sample recipient', () => {
  const t = useTestDatabase('pglite')
  let view: ReleaseView
  let tb: TestBroker
  let api: FastifyInstance
  let apiUrl: string

  beforeAll(async () => {
    view = await openReleaseView(t.handle, { timeZone: 'Europe/Paris' })
    tb = await startTestBroker(t.handle, { policy: view })
    api = await buildApi({ config: envToConfig({ logLevel: 'silent' }), db: t.handle, metrics: tb.metrics, health: async () => ({ broker: true, database: true }) })
    await api.listen({ port: 0, host: '127.0.0.1' })
    apiUrl = `http://127.0.0.1:${(api.server.address() as AddressInfo).port}`
  })
  afterAll(async () => {
    await api.close()
    await tb.close()
    await view.close()
  })

  /** A third party `name` with a load-curve consent from 1 October over every meter of a household occupying `meters` meters. */
  async function consentedWorld(name: string, meters: number) {
    const utility = await createUtility(t.db)
    const app = await createParty(t.db, { kind: 'third_party', name })
    const household = await createTestHousehold(t.db)
    const list = []
    for (let i = 0; i < meters; i++) {
      const meter = await createTestMeter(t.db, utility.id)
      await insertOccupancy(t.db, meter.id, household.id, new Date('2026-09-01T00:00:00Z'))
      list.push(meter)
    }
    const offer = await createOffer(t.db, { recipientId: app.id, purpose: 'p', granularity: 'load_curve', priceMicrosPerDatum: 1n, split: { householdBps: 10_000, operatorBps: 0, platformBps: 0, thirdParties: [] } })
    await grantConsent(t.db, household.id, { offerId: offer.id, validUntil: new Date(Date.now() + 86_400_000), dataFrom: new Date('2026-10-01T00:00:00Z') }, new Date())
    return { app, household, meters: list }
  }

  it('receives its consented datums live and pulls them over HTTP', async () => {
    const { app, meters } = await consentedWorld('App', 1)
    const meter = meters[0]!
    await view.refresh()

    const recipient = startSampleRecipient({
      partyId: app.id,
      apiKey: app.apiKey,
      mqttUrl: tb.url,
      topics: ['readings/+'],
      apiUrl,
      pull: { granularity: 'load_curve', fromMs: Date.parse('2026-10-01T00:00:00Z'), intervalMs: 200 },
    })
    try {
      // Subscribed before the meter publishes: it receives every datum live.
      await recipient.subscribed
      const m = await connectMeter(tb.url, meter)
      const readings = [1, 2, 3].map((i) => ({ ts: `2026-10-02T0${i}:00:00Z`, values: { '1-0:1.8.0': i } }))
      await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ readings }))
      await endClient(m)
      await waitFor(() => recipient.stats().live === 3 && recipient.stats().pulled === 3, 10_000, 'live and pulled datums')
      expect(recipient.stats()).toMatchObject({ live: 3, pulled: 3, errors: 0 })

      // Later pulls ask only for what is new: each released datum is pulled once.
      const pulls = recipient.stats().pulls
      await waitFor(() => recipient.stats().pulls >= pulls + 3, 10_000, 'three more pulls')
      expect(recipient.stats().pulled).toBe(3)
      const again = await connectMeter(tb.url, meter)
      await publishAcked(again, meterReadingsTopic(meter.id), JSON.stringify({ ts: '2026-10-02T04:00:00Z', values: { '1-0:1.8.0': 4 } }))
      await endClient(again)
      const after = recipient.stats().pulls
      await waitFor(() => recipient.stats().pulls >= after + 3, 10_000, 'three pulls after the new reading')
      expect(recipient.stats()).toMatchObject({ live: 4, pulled: 4, errors: 0 })
      const released = await t.db.selectFrom('access_log').select((eb) => eb.fn.sum<string>('datums').as('n')).where('channel', '=', 'http').executeTakeFirst()
      expect(Number(released?.n)).toBe(4)
    } finally {
      await recipient.stop()
    }
  })

  it('pulls each meter from its own latest datum: a meter ahead is not pulled again, one behind or late is not skipped', async () => {
    const { app, meters } = await consentedWorld('Meter by meter', 3)
    const [ahead, behind, late] = meters as [TestMeter, TestMeter, TestMeter]
    const publish = async (meter: TestMeter, hours: number[]): Promise<void> => {
      const c = await connectMeter(tb.url, meter)
      const readings = hours.map((h) => ({ ts: `2026-10-02T${String(h).padStart(2, '0')}:00:00Z`, values: { '1-0:1.8.0': h } }))
      await publishAcked(c, meterReadingsTopic(meter.id), JSON.stringify({ readings }))
      await endClient(c)
    }
    await publish(ahead, [1, 2, 3, 4])
    await publish(behind, [1])
    const recipient = startSampleRecipient({ partyId: app.id, apiKey: app.apiKey, apiUrl, pull: { granularity: 'load_curve', fromMs: Date.parse('2026-10-01T00:00:00Z'), intervalMs: 100 } })
    try {
      await waitFor(() => recipient.stats().pulled === 5, 10_000, 'the first five datums')
      // The one behind goes on, below the other's latest; the third meter sends its first datums only now.
      await publish(behind, [2])
      await publish(late, [1, 2])
      const pulls = recipient.stats().pulls
      await waitFor(() => recipient.stats().pulls >= pulls + 3, 10_000, 'three more pulls')
      expect(recipient.stats()).toMatchObject({ pulled: 8, errors: 0 })
      // Each datum released once over HTTP.
      const released = await t.db.selectFrom('access_log').select((eb) => eb.fn.sum<string>('datums').as('n')).where('channel', '=', 'http').where('recipient_id', '=', app.id).executeTakeFirst()
      expect(Number(released?.n)).toBe(8)
    } finally {
      await recipient.stop()
    }
  })

  it('goes on after a restart from where its progress file says, pulling nothing twice', async () => {
    const { app, meters } = await consentedWorld('Restarted', 1)
    const meter = meters[0]!
    const m = await connectMeter(tb.url, meter)
    await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ readings: [1, 2, 3].map((h) => ({ ts: `2026-10-02T0${h}:00:00Z`, values: { '1-0:1.8.0': h } })) }))
    const progressFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'sample-recipient-')), 'progress.json')
    const start = () => startSampleRecipient({ partyId: app.id, apiKey: app.apiKey, apiUrl, pull: { granularity: 'load_curve', fromMs: Date.parse('2026-10-01T00:00:00Z'), intervalMs: 100, progressFile } })
    const first = start()
    await waitFor(() => first.stats().pulled === 3, 10_000, 'the first pull')
    await first.stop()
    await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ ts: '2026-10-02T04:00:00Z', values: { '1-0:1.8.0': 4 } }))
    await endClient(m)
    const second = start()
    try {
      await waitFor(() => second.stats().pulls >= 2, 10_000, 'two pulls after the restart')
      expect(second.stats()).toMatchObject({ pulled: 1, errors: 0 })
      const released = await t.db.selectFrom('access_log').select((eb) => eb.fn.sum<string>('datums').as('n')).where('recipient_id', '=', app.id).executeTakeFirst()
      expect(Number(released?.n)).toBe(4)
    } finally {
      await second.stop()
    }
  })

  it('pulls a meter next from just after its latest reading, day or month, in the deployment\'s calendar', () => {
    expect(nextFromMs({ meterId: 'm', ts: '2026-10-02T04:00:00Z' }, 'Europe/Paris')).toBe(Date.parse('2026-10-02T04:00:00.001Z'))
    expect(nextFromMs({ meterId: 'm', day: '2026-10-02' }, 'Europe/Paris')).toBe(Date.parse('2026-10-02T22:00:00Z'))
    // The day the clocks go back is 25 hours long.
    expect(nextFromMs({ meterId: 'm', day: '2026-10-25' }, 'Europe/Paris')).toBe(Date.parse('2026-10-25T23:00:00Z'))
    expect(nextFromMs({ meterId: 'm', month: '2026-11' }, 'Europe/Paris')).toBe(Date.parse('2026-11-30T23:00:00Z'))
    expect(nextFromMs({ meterId: 'm', month: '2026-12' }, 'Europe/Paris')).toBe(Date.parse('2026-12-31T23:00:00Z'))
    expect(nextFromMs({ meterId: 'm', day: '2026-10-02' }, 'America/New_York')).toBe(Date.parse('2026-10-03T04:00:00Z'))
    // A first pull begins at the start of the period its instant falls in.
    const at = Date.parse('2026-10-15T21:30:00Z')
    expect(periodStartMs(at, 'load_curve', 'Europe/Paris')).toBe(at)
    expect(periodStartMs(at, 'daily', 'Europe/Paris')).toBe(Date.parse('2026-10-14T22:00:00Z'))
    expect(periodStartMs(at, 'monthly', 'Europe/Paris')).toBe(Date.parse('2026-09-30T22:00:00Z'))
    expect(periodStartMs(at, 'daily', 'America/New_York')).toBe(Date.parse('2026-10-15T04:00:00Z'))
  })
})
