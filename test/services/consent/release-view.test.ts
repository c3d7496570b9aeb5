import { sql } from 'kysely'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { grantConsent, revokeConsent } from '../../../services/consent/consent-service.ts'
import { METER_CONSENTS_LIST_MAX, openReleaseView, type ReleaseView } from '../../../services/consent/release-view.ts'
import { moveOut } from '../../../services/metering/occupancy-service.ts'
import type { DatabaseHandle } from '../../../shared/db/database.ts'
import { createMetrics } from '../../../shared/metrics.ts'
import { describeDatabases, describePostgres } from '../../support/database.ts'
import { seedConsentWorld, seedOffer, seedParty, type ConsentWorld } from './consent-world.ts'

const TZ = 'Europe/Paris'
const NOW = new Date('2026-03-01T12:00:00Z')
const NOW_MS = NOW.getTime()
const DAY = 86_400_000
const LATER = (ms: number) => new Date(NOW_MS + ms)
const TS = Date.parse('2026-03-01T10:00:00Z')
/** A change must reach the view within this (the contract's "revocation stops delivery within one second"). */
const PROPAGATION_MS_MAX = 1_000

function loadCurve(meterId: string, ts = TS) {
  return { meterId, granularity: 'load_curve' as const, ts }
}

describeDatabases('release view', (t) => {
  let w: ConsentWorld
  let view: ReleaseView | undefined

  beforeEach(async () => {
    w = await seedConsentWorld(t.db)
  })

  afterEach(async () => {
    await view?.close()
    view = undefined
  })

  it('releases a day or a month live only when its whole period lies in the data window', async () => {
    const offerId = await seedOffer(t.db, w.appId, { granularity: 'daily' })
    // Until 1 February 00:00Z, which is 01:00 in Paris: 1 February's day and month run past it.
    await grantConsent(t.db, w.h1, { offerId, meterIds: [w.m1], validUntil: LATER(DAY), dataFrom: new Date('2026-01-01T00:00:00Z'), dataUntil: new Date('2026-02-01T00:00:00Z') }, NOW)
    view = await openReleaseView(t.handle, { timeZone: TZ, clock: () => NOW_MS })
    expect(view.releasedTo(w.appId, { meterId: w.m1, granularity: 'daily', day: '2026-01-31' }, NOW_MS)).toBe(w.h1)
    expect(view.releasedTo(w.appId, { meterId: w.m1, granularity: 'daily', day: '2026-02-01' }, NOW_MS)).toBeNull()
    expect(view.releasedTo(w.appId, { meterId: w.m1, granularity: 'monthly', month: '2026-02' }, NOW_MS)).toBeNull()
    // January from 01:00 on the 1st: neither its first day nor the month lies in the window whole.
    expect(view.releasedTo(w.appId, { meterId: w.m1, granularity: 'daily', day: '2026-01-01' }, NOW_MS)).toBeNull()
    expect(view.releasedTo(w.appId, { meterId: w.m1, granularity: 'monthly', month: '2026-01' }, NOW_MS)).toBeNull()
    expect(view.releasedTo(w.appId, { meterId: w.m1, granularity: 'daily', day: '2026-01-02' }, NOW_MS)).toBe(w.h1)
  })

  it('decides from the database as it was at start: consents by meter and recipient, owners by occupancy', async () => {
    const offerId = await seedOffer(t.db, w.appId, { granularity: 'daily' })
    await grantConsent(t.db, w.h1, { offerId, meterIds: [w.m1], validUntil: LATER(DAY), dataFrom: new Date('2026-01-01T00:00:00Z') }, NOW)
    const metrics = createMetrics({ defaultMetrics: false })
    view = await openReleaseView(t.handle, { timeZone: TZ, metrics, clock: () => NOW_MS })

    const daily = { meterId: w.m1, granularity: 'daily' as const, day: '2026-02-10' }
    expect(view.releasedTo(w.appId, daily, NOW_MS)).toBe(w.h1)
    expect(view.releasedTo(w.appId, { ...daily, householdId: w.h1 }, NOW_MS)).toBe(w.h1)
    expect(view.releasedTo(w.appId, { ...daily, householdId: w.h2 }, NOW_MS)).toBeNull()
    expect(view.releasedTo(w.appId, { meterId: w.m1, granularity: 'monthly', month: '2026-02' }, NOW_MS)).toBe(w.h1)
    expect(view.releasedTo(w.appId, loadCurve(w.m1), NOW_MS)).toBeNull()
    expect(view.releasedTo(w.labId, daily, NOW_MS)).toBeNull()
    expect(view.releasedTo(w.appId, { ...daily, meterId: w.m2 }, NOW_MS)).toBeNull()
    expect(view.releasedTo(w.appId, { ...daily, meterId: 'no-such-meter' }, NOW_MS)).toBeNull()
    expect(view.releasedTo(w.appId, daily, NOW_MS + DAY)).toBeNull()
    expect(view.releasedTo(w.appId, { meterId: w.m1, granularity: 'daily' }, NOW_MS)).toBeNull()

    expect(view.householdOwns(w.h1, loadCurve(w.m1), NOW_MS)).toBe(true)
    expect(view.householdOwns(w.h2, loadCurve(w.m1), NOW_MS)).toBe(false)
    expect(view.householdOwns(w.h1, loadCurve(w.m1, Date.parse('2025-06-01T00:00:00Z')), NOW_MS)).toBe(false)
    expect(view.householdMayFollow(w.h1, w.m1, NOW_MS)).toBe(true)
    expect(view.householdMayFollow(w.h1, w.m3, NOW_MS)).toBe(false)
    expect(view.householdMayFollow(w.h1, 'no-such-meter', NOW_MS)).toBe(false)

    expect(view.activeConsentsCount()).toBe(1)
    expect(view.activeConsentsCount(NOW_MS + DAY)).toBe(0)
    expect((await metrics.registry.getSingleMetricAsString('metershare_consents_active')).trim().split('\n').pop()).toBe(
      'metershare_consents_active 1',
    )
  })

  it('withholds a daily datum that arrives without its owner on a day the meter changed hands', async () => {
    const [occ] = await t.db.selectFrom('occupancies').select('id').where('meter_id', '=', w.m1).execute()
    const move = new Date('2026-02-10T12:00:00Z')
    await moveOut(t.db, occ!.id, move, { timezone: TZ })
    await t.db.insertInto('occupancies').values({ id: 'occ_next_tenant', meter_id: w.m1, household_id: w.h2, valid_from: move, valid_until: null }).execute()
    const offerId = await seedOffer(t.db, w.appId, { granularity: 'daily' })
    await grantConsent(t.db, w.h2, { offerId, meterIds: [w.m1], validUntil: LATER(DAY), dataFrom: new Date('2026-01-01T00:00:00Z') }, NOW)
    view = await openReleaseView(t.handle, { timeZone: TZ, clock: () => NOW_MS })

    // Published by this broker, a datum names its owner: the new tenant's part of the moving day.
    expect(view.releasedTo(w.appId, { meterId: w.m1, granularity: 'daily', day: '2026-02-10', householdId: w.h2 }, NOW_MS)).toBe(w.h2)
    // From another broker the owner is read from the occupancies: ambiguous on the moving day, clear after it.
    expect(view.releasedTo(w.appId, { meterId: w.m1, granularity: 'daily', day: '2026-02-10' }, NOW_MS)).toBeNull()
    expect(view.releasedTo(w.appId, { meterId: w.m1, granularity: 'daily', day: '2026-02-11' }, NOW_MS)).toBe(w.h2)
    expect(view.releasedTo(w.appId, { meterId: w.m1, granularity: 'monthly', month: '2026-02' }, NOW_MS)).toBeNull()
  })

  it('follows grants, revocations and move-outs made through the service, within a second', async () => {
    view = await openReleaseView(t.handle, { timeZone: TZ })
    const offerId = await seedOffer(t.db, w.appId)
    const { id } = await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(DAY), dataFrom: new Date('2026-01-01T00:00:00Z') }, NOW)
    await expect.poll(() => view!.releasedTo(w.appId, loadCurve(w.m2), NOW_MS), { timeout: PROPAGATION_MS_MAX, interval: 5 }).toBe(w.h1)

    const [occ] = await t.db.selectFrom('occupancies').select('id').where('meter_id', '=', w.m2).execute()
    await moveOut(t.db, occ!.id, LATER(60_000), { timezone: TZ })
    await expect.poll(() => view!.householdMayFollow(w.h1, w.m2, NOW_MS + 120_000), { timeout: PROPAGATION_MS_MAX, interval: 5 }).toBe(false)
    expect(view.releasedTo(w.appId, loadCurve(w.m2), NOW_MS + 120_000)).toBeNull()
    expect(view.releasedTo(w.appId, loadCurve(w.m1), NOW_MS + 120_000)).toBe(w.h1)

    await revokeConsent(t.db, id, { role: 'household', householdId: w.h1 }, LATER(180_000))
    await expect.poll(() => view!.releasedTo(w.appId, loadCurve(w.m1), NOW_MS + 120_000), { timeout: PROPAGATION_MS_MAX, interval: 5 }).toBeNull()
    expect(view.activeConsentsCount(NOW_MS)).toBe(0)
  })

  it('keeps deciding right for a meter with more consents than its short list holds', async () => {
    view = await openReleaseView(t.handle, { timeZone: TZ })
    const recipients: string[] = []
    const consents: string[] = []
    for (let i = 0; i < METER_CONSENTS_LIST_MAX + 2; i++) {
      const recipient = await seedParty(t.db, 'third_party', `Recipient ${i}`)
      recipients.push(recipient)
      const offerId = await seedOffer(t.db, recipient)
      consents.push((await grantConsent(t.db, w.h1, { offerId, meterIds: [w.m1], validUntil: LATER(DAY), dataFrom: new Date('2026-01-01T00:00:00Z') }, NOW)).id)
    }
    await expect.poll(() => recipients.map((r) => view!.releasedTo(r, loadCurve(w.m1), NOW_MS)), { timeout: 5_000, interval: 10 }).toEqual(
      recipients.map(() => w.h1),
    )
    expect(view.releasedTo(w.appId, loadCurve(w.m1), NOW_MS)).toBeNull()
    for (const id of consents.slice(0, -1)) await revokeConsent(t.db, id, { role: 'operator' }, LATER(1))
    const expected = recipients.map((_, i) => (i === recipients.length - 1 ? w.h1 : null))
    await expect.poll(() => recipients.map((r) => view!.releasedTo(r, loadCurve(w.m1), NOW_MS)), { timeout: 5_000, interval: 10 }).toEqual(expected)
    await view.refresh()
    expect(recipients.map((r) => view!.releasedTo(r, loadCurve(w.m1), NOW_MS))).toEqual(expected)
  })

  it('repairs by its periodic reload what no notice announced', async () => {
    view = await openReleaseView(t.handle, { timeZone: TZ, refreshIntervalMs: 50 })
    const offerId = await seedOffer(t.db, w.appId)
    // A consent written without its notice: only the reload can find it.
    await t.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('consents')
        .values({
          id: 'cns_silent',
          household_id: w.h1,
          recipient_id: w.appId,
          offer_id: offerId,
          kind: 'offer',
          purpose: 'p',
          granularity: 'load_curve',
          all_meters: false,
          valid_from: NOW,
          valid_until: LATER(DAY),
          data_from: new Date('2026-01-01T00:00:00Z'),
          data_until: null,
          status: 'active',
          status_changed_at: NOW,
          revoked_at: null,
        })
        .execute()
      await trx.insertInto('consent_meters').values({ consent_id: 'cns_silent', meter_id: w.m1 }).execute()
    })
    await expect.poll(() => view!.releasedTo(w.appId, loadCurve(w.m1), NOW_MS), { timeout: 5_000, interval: 10 }).toBe(w.h1)
    await sql`UPDATE consents SET status = 'revoked', revoked_at = ${NOW}, status_changed_at = ${NOW} WHERE id = 'cns_silent'`.execute(t.db)
    await expect.poll(() => view!.releasedTo(w.appId, loadCurve(w.m1), NOW_MS), { timeout: 5_000, interval: 10 }).toBeNull()
  })

  it('applies a change its own process committed when told, without waiting for the notice', async () => {
    view = await openReleaseView(t.handle, { timeZone: TZ, refreshIntervalMs: 3_600_000 })
    const offerId = await seedOffer(t.db, w.appId)
    const { id } = await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(DAY), dataFrom: new Date('2026-01-01T00:00:00Z') }, NOW)
    await view.apply({ kind: 'consent', id })
    expect(view.releasedTo(w.appId, loadCurve(w.m1), NOW_MS)).toBe(w.h1)
    // Revoked and moved out without a notice (as if it were still on its way): applying is enough.
    await sql`UPDATE consents SET status = 'revoked', revoked_at = ${NOW}, status_changed_at = ${NOW} WHERE id = ${id}`.execute(t.db)
    await view.apply({ kind: 'consent', id })
    expect(view.releasedTo(w.appId, loadCurve(w.m1), NOW_MS)).toBeNull()
    await sql`UPDATE occupancies SET valid_until = ${LATER(-DAY)}, consents_end_at = ${LATER(-DAY)} WHERE meter_id = ${w.m2}`.execute(t.db)
    expect(view.householdMayFollow(w.h1, w.m2, NOW_MS)).toBe(true)
    await view.apply({ kind: 'occupancy', meterId: w.m2 })
    expect(view.householdMayFollow(w.h1, w.m2, NOW_MS)).toBe(false)
  })

  it('stops listening when closed, and closing twice is harmless', async () => {
    const closed = await openReleaseView(t.handle, { timeZone: TZ })
    await closed.close()
    await closed.close()
    view = await openReleaseView(t.handle, { timeZone: TZ })
    const offerId = await seedOffer(t.db, w.appId)
    await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(DAY), dataFrom: new Date('2026-01-01T00:00:00Z') }, NOW)
    // The open view hears of the grant; the closed one, which heard the same channel, does not.
    await expect.poll(() => view!.releasedTo(w.appId, loadCurve(w.m1), NOW_MS), { timeout: PROPAGATION_MS_MAX, interval: 5 }).toBe(w.h1)
    await view.settled()
    expect(closed.releasedTo(w.appId, loadCurve(w.m1), NOW_MS)).toBeNull()
  })
})

describePostgres('release view across processes', (t) => {
  let w: ConsentWorld
  let views: ReleaseView[] = []
  let other: DatabaseHandle | undefined

  beforeEach(async () => {
    w = await seedConsentWorld(t.db)
  })

  afterEach(async () => {
    await Promise.all(views.map((v) => v.close()))
    views = []
    await other?.close()
    other = undefined
  })

  it('takes a grant and a revocation made through another connection within one second, on every view', async () => {
    other = await t.openAnother()
    // Two brokers, each with its own connection and view; the change comes from a third.
    const second = await t.openAnother()
    try {
      views = [await openReleaseView(t.handle, { timeZone: TZ }), await openReleaseView(second, { timeZone: TZ })]
      const offerId = await seedOffer(other.db, w.appId)
      const { id } = await grantConsent(other.db, w.h1, { offerId, meterIds: [w.m1], validUntil: LATER(DAY), dataFrom: new Date('2026-01-01T00:00:00Z') }, NOW)
      for (const v of views) {
        await expect.poll(() => v.releasedTo(w.appId, loadCurve(w.m1), NOW_MS), { timeout: PROPAGATION_MS_MAX, interval: 5 }).toBe(w.h1)
      }
      const revokedAt = performance.now()
      await revokeConsent(other.db, id, { role: 'household', householdId: w.h1 }, LATER(1_000))
      for (const v of views) {
        await expect.poll(() => v.releasedTo(w.appId, loadCurve(w.m1), NOW_MS), { timeout: PROPAGATION_MS_MAX, interval: 5 }).toBeNull()
      }
      expect(performance.now() - revokedAt).toBeLessThan(PROPAGATION_MS_MAX)
    } finally {
      await Promise.all(views.map((v) => v.close()))
      views = []
      await second.close()
    }
  })

  it('releases nothing from the loss of its changes channel until it is back and reloaded, so that a revocation made meanwhile in another process is never missed', async () => {
    other = await t.openAnother()
    const broker = await t.openAnother()
    try {
      const kept = await seedOffer(other.db, w.appId)
      const toRevoke = await seedOffer(other.db, w.labId)
      await grantConsent(other.db, w.h1, { offerId: kept, meterIds: [w.m1], validUntil: LATER(DAY), dataFrom: new Date('2026-01-01T00:00:00Z') }, NOW)
      const { id } = await grantConsent(other.db, w.h1, { offerId: toRevoke, meterIds: [w.m1], validUntil: LATER(DAY), dataFrom: new Date('2026-01-01T00:00:00Z') }, NOW)
      const view = await openReleaseView(broker, { timeZone: TZ })
      views = [view]
      const decisions = () => [view.releasedTo(w.appId, loadCurve(w.m1), NOW_MS), view.releasedTo(w.labId, loadCurve(w.m1), NOW_MS), view.householdMayFollow(w.h1, w.m1, NOW_MS)]
      expect(decisions()).toEqual([w.h1, w.h1, true])
      // The broker's LISTEN connection is lost (a restart of its backend, a network fault).
      // Its listen connection is the newest of this database's.
      await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name LIKE '%:listen' ORDER BY backend_start DESC LIMIT 1`.execute(other.db)
      await expect.poll(() => view.behind, { timeout: 5_000, interval: 2 }).toBe(true)
      expect(decisions()).toEqual([null, null, false])
      // Revoked in another process while the view hears nothing: its notice is lost.
      await revokeConsent(other.db, id, { role: 'household', householdId: w.h1 }, LATER(1_000))
      const seen: unknown[][] = []
      while (view.behind) {
        seen.push(decisions())
        await new Promise((r) => setTimeout(r, 2))
      }
      expect(seen.every((d) => d[0] === null && d[1] === null)).toBe(true)
      // Back and reloaded: the kept consent releases again, the revoked one never did after its revocation.
      expect(decisions()).toEqual([w.h1, null, true])
    } finally {
      await Promise.all(views.map((v) => v.close()))
      views = []
      await broker.close()
    }
  })
})
