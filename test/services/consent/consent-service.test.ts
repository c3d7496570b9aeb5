import { sql } from 'kysely'
import { beforeEach, expect, it } from 'vitest'
import { sweepConsents } from '../../../services/consent/consent-lifecycle.ts'
import {
  addYearsUtc,
  createLegalBasisConsent,
  grantConsent,
  listConsentLog,
  listHouseholdConsents,
  listRecipientConsents,
  revokeConsent,
} from '../../../services/consent/consent-service.ts'
import { createOffer, listOffers, listOffersForHousehold, withdrawOffer } from '../../../services/consent/offer-service.ts'
import { moveOut } from '../../../services/metering/occupancy-service.ts'
import { ConflictError, InvalidInputError } from '../../../shared/errors.ts'
import { lockConsent } from '../../../services/consent/consent-repository.ts'
import { describeDatabases, describePostgres, holdConnection } from '../../support/database.ts'
import { offerInput, seedConsentWorld, seedOffer, type ConsentWorld } from './consent-world.ts'
import { seedMeter, seedOccupancy } from '../../support/seed.ts'

const NOW = new Date('2026-03-01T12:00:00Z')
const LATER = (ms: number) => new Date(NOW.getTime() + ms)
const DAY = 86_400_000
const CTX = { timezone: 'Europe/Paris' }

async function fieldOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise
  } catch (err) {
    if (err instanceof InvalidInputError) return err.field
    throw err
  }
  throw new Error('expected an InvalidInputError')
}

describeDatabases('consent service', (t) => {
  let w: ConsentWorld

  beforeEach(async () => {
    w = await seedConsentWorld(t.db)
  })

  async function logOf(consentId: string) {
    return t.db
      .selectFrom('consent_log')
      .select(['event', 'meter_id', 'actor', 'at'])
      .where('consent_id', '=', consentId)
      .orderBy('id')
      .execute()
  }

  async function statusOf(consentId: string) {
    return (await t.db.selectFrom('consents').select(['status', 'status_changed_at', 'revoked_at']).where('id', '=', consentId).executeTakeFirstOrThrow())
  }

  it('publishes an offer with a split of third parties and lists it with the household’s share', async () => {
    const { id } = await createOffer(
      t.db,
      offerInput(w.appId, {
        priceMicrosPerDatum: 3n,
        split: { householdBps: 5_000, operatorBps: 2_000, platformBps: 1_000, thirdParties: [{ partyId: w.labId, bps: 2_000 }] },
      }),
    )
    const offers = await listOffers(t.db)
    expect(offers).toHaveLength(1)
    expect(offers[0]).toMatchObject({
      id,
      recipientId: w.appId,
      recipientName: 'Energy advice app',
      priceMicrosPerDatum: 3n,
      split: { householdBps: 5_000, operatorBps: 2_000, platformBps: 1_000, thirdParties: [{ partyId: w.labId, bps: 2_000 }] },
    })
    const [mine] = await listOffersForHousehold(t.db)
    expect(mine).toMatchObject({ householdBps: 5_000, householdMicrosPerDatum: 1n, householdMicrosPer10000Datums: 15_000n })
  })

  it('refuses an offer whose split is wrong, naming the field, and writes nothing', async () => {
    const split = (s: Partial<ReturnType<typeof offerInput>['split']>) => ({ ...offerInput(w.appId).split, ...s })
    expect(await fieldOf(createOffer(t.db, offerInput(w.appId, { split: split({ householdBps: 5_999 }) })))).toBe('split')
    expect(await fieldOf(createOffer(t.db, offerInput(w.appId, { split: split({ householdBps: -1, operatorBps: 4_001 }) })))).toBe(
      'split.householdBps',
    )
    expect(await fieldOf(createOffer(t.db, offerInput(w.appId, { split: split({ platformBps: 1.5 }) })))).toBe('split.platformBps')
    expect(
      await fieldOf(createOffer(t.db, offerInput(w.appId, { split: split({ platformBps: 1_000, thirdParties: [{ partyId: 'pty_nobody', bps: 1_000 }] }) }))),
    ).toBe('split.thirdParties[0].partyId')
    expect(
      await fieldOf(
        createOffer(
          t.db,
          offerInput(w.appId, {
            split: split({ platformBps: 0, thirdParties: [{ partyId: w.labId, bps: 1_000 }, { partyId: w.labId, bps: 1_000 }] }),
          }),
        ),
      ),
    ).toBe('split.thirdParties[1].partyId')
    expect(await fieldOf(createOffer(t.db, offerInput(w.appId, { priceMicrosPerDatum: -1n })))).toBe('priceMicrosPerDatum')
    expect(await fieldOf(createOffer(t.db, offerInput('pty_nobody')))).toBe('recipientId')
    expect(await fieldOf(createOffer(t.db, offerInput(w.appId, { purpose: '  ' })))).toBe('purpose')
    expect(await listOffers(t.db)).toEqual([])
  })

  it('has the database refuse a split that does not sum to 10,000, and any change to an offer but its withdrawal', async () => {
    const insertBad = t.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('offers')
        .values({
          id: 'off_bad',
          recipient_id: w.appId,
          purpose: 'p',
          granularity: 'daily',
          price_micros_per_datum: 1n,
          household_bps: 5_000,
          operator_bps: 2_000,
          platform_bps: 2_000,
        })
        .execute()
      await trx.insertInto('offer_shares').values({ offer_id: 'off_bad', party_id: w.labId, bps: 500 }).execute()
    })
    await expect(insertBad).rejects.toThrow(/split sums to 9500/)
    expect(await listOffers(t.db)).toEqual([])
    const id = await seedOffer(t.db, w.appId)
    await expect(sql`UPDATE offers SET price_micros_per_datum = 1 WHERE id = ${id}`.execute(t.db)).rejects.toThrow(/offers are immutable/)
    await expect(sql`UPDATE offers SET price_micros_per_datum = 1, withdrawn_at = now() WHERE id = ${id}`.execute(t.db)).rejects.toThrow(/offers are immutable/)
    await sql`UPDATE offers SET withdrawn_at = now() WHERE id = ${id}`.execute(t.db)
    await expect(sql`UPDATE offers SET withdrawn_at = NULL WHERE id = ${id}`.execute(t.db)).rejects.toThrow(/offers are immutable/)
  })

  it('grants a consent on chosen meters: row, meters, one log entry by the household, a change notice', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const heard: string[] = []
    const unlisten = await t.handle.listen('metershare_changes', (p) => heard.push(p))
    const { id } = await grantConsent(t.db, w.h1, { offerId, meterIds: [w.m2], validUntil: LATER(365 * DAY) }, NOW)
    const [c] = (await listHouseholdConsents(t.db, w.h1, { limit: 10 }, NOW)).items
    expect(c).toMatchObject({
      id,
      kind: 'offer',
      recipientId: w.appId,
      offerId,
      granularity: 'load_curve',
      allMeters: false,
      meterIds: [w.m2],
      validFrom: NOW,
      dataFrom: NOW,
      dataUntil: null,
      status: 'active',
      priceMicrosPerDatum: 100n,
      householdBps: 6_000,
    })
    expect(await logOf(id)).toEqual([{ event: 'granted', meter_id: null, actor: w.h1, at: NOW }])
    await expect.poll(() => heard.map((p) => JSON.parse(p) as { kind: string; id: string })).toContainEqual(
      expect.objectContaining({ kind: 'consent', id, event: 'granted' }),
    )
    await unlisten()
  })

  it('resolves "all meters" to the meters the household occupies at the grant', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const { id } = await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(DAY), dataFrom: new Date('2025-01-01T00:00:00Z') }, NOW)
    const [c] = (await listHouseholdConsents(t.db, w.h1, { limit: 10 }, NOW)).items
    expect(c!.id).toBe(id)
    expect(c!.allMeters).toBe(true)
    expect(c!.meterIds).toEqual([w.m1, w.m2].sort())
    expect(c!.dataFrom).toEqual(new Date('2025-01-01T00:00:00Z'))
  })

  it('refuses a grant with bad terms, naming the field, and writes nothing', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const ok = { offerId, validUntil: LATER(DAY) }
    expect(await fieldOf(grantConsent(t.db, w.h1, { ...ok, offerId: 'off_nothing' }, NOW))).toBe('offerId')
    expect(await fieldOf(grantConsent(t.db, w.h1, { ...ok, validUntil: NOW }, NOW))).toBe('validUntil')
    expect(await fieldOf(grantConsent(t.db, w.h1, { ...ok, validUntil: new Date(addYearsUtc(NOW, 3).getTime() + 1) }, NOW))).toBe('validUntil')
    expect(await fieldOf(grantConsent(t.db, w.h1, { ...ok, meterIds: [w.m3] }, NOW))).toBe('meterIds[0]')
    expect(await fieldOf(grantConsent(t.db, w.h1, { ...ok, meterIds: [w.m1, 'no-such-meter'] }, NOW))).toBe('meterIds[1]')
    expect(await fieldOf(grantConsent(t.db, w.h1, { ...ok, meterIds: [] }, NOW))).toBe('meterIds')
    expect(await fieldOf(grantConsent(t.db, w.h1, { ...ok, meterIds: [w.m1, w.m1] }, NOW))).toBe('meterIds[1]')
    expect(await fieldOf(grantConsent(t.db, w.h1, { ...ok, dataFrom: NOW, dataUntil: NOW }, NOW))).toBe('dataUntil')
    expect(await t.db.selectFrom('consents').selectAll().execute()).toEqual([])
    expect(await t.db.selectFrom('consent_log').selectAll().execute()).toEqual([])
  })

  it('accepts a validity of exactly three years, counted in UTC like the database does', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const leapDay = new Date('2028-02-29T10:00:00Z')
    expect(addYearsUtc(leapDay, 3)).toEqual(new Date('2031-02-28T10:00:00Z'))
    await grantConsent(t.db, w.h1, { offerId, validUntil: addYearsUtc(NOW, 3) }, NOW)
    await grantConsent(t.db, w.h2, { offerId, validUntil: addYearsUtc(leapDay, 3) }, leapDay)
    expect(await t.db.selectFrom('consents').select('valid_until').orderBy('valid_until').execute()).toEqual([
      { valid_until: addYearsUtc(NOW, 3) },
      { valid_until: new Date('2031-02-28T10:00:00Z') },
    ])
  })

  it('refuses a second consent that would give the same recipient the same data, so that no datum is billed twice', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const first = await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(30 * DAY) }, NOW)
    const refused = async (p: Promise<unknown>): Promise<string> => {
      const err = await p.then(
        () => null,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(ConflictError)
      return (err as ConflictError).message
    }
    // The same offer again, and another offer of the same recipient at the same granularity.
    expect(await refused(grantConsent(t.db, w.h1, { offerId, validUntil: LATER(60 * DAY) }, LATER(1)))).toMatch(
      new RegExp(`^offerId: consent ${first.id} already gives this recipient the household's load_curve data of all its meters stamped from \\S+, in force until `),
    )
    const cheaper = await seedOffer(t.db, w.appId, { priceMicrosPerDatum: 50n })
    await refused(grantConsent(t.db, w.h1, { offerId: cheaper, meterIds: [w.m2], validUntil: LATER(60 * DAY) }, LATER(1)))
    expect(await t.db.selectFrom('consents').select('id').execute()).toEqual([{ id: first.id }])

    // Other data: another granularity, another recipient, another household.
    await grantConsent(t.db, w.h1, { offerId: await seedOffer(t.db, w.appId, { granularity: 'daily' }), validUntil: LATER(60 * DAY) }, LATER(1))
    await grantConsent(t.db, w.h1, { offerId: await seedOffer(t.db, w.labId), validUntil: LATER(60 * DAY) }, LATER(1))
    await grantConsent(t.db, w.h2, { offerId, validUntil: LATER(60 * DAY) }, LATER(1))

    // Once the first is revoked, the household may grant other terms.
    await revokeConsent(t.db, first.id, { role: 'household', householdId: w.h1 }, LATER(2))
    const narrower = await grantConsent(t.db, w.h1, { offerId: cheaper, meterIds: [w.m1], validUntil: LATER(60 * DAY) }, LATER(3))
    // Other meters, or another stretch of data, share nothing with it.
    const onM2 = await grantConsent(t.db, w.h1, { offerId, meterIds: [w.m2], validUntil: LATER(60 * DAY) }, LATER(4))
    await grantConsent(t.db, w.h1, { offerId, meterIds: [w.m1], dataFrom: new Date('2025-01-01T00:00:00Z'), dataUntil: LATER(3), validUntil: LATER(60 * DAY) }, LATER(4))
    // All meters again: it shares a meter with both.
    const overlapping = await refused(grantConsent(t.db, w.h1, { offerId, validUntil: LATER(60 * DAY) }, LATER(5)))
    const named = /^offerId: consent (\S+) already gives this recipient the household's load_curve data of (\S+) stamped from /.exec(overlapping)
    expect([
      [narrower.id, w.m1],
      [onM2.id, w.m2],
    ]).toContainEqual([named?.[1], named?.[2]])
  })

  it('does not refuse a grant over a consent a move-out has ended, before the sweep has recorded it', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const first = await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(365 * DAY) }, NOW)
    // The household moved from m1 and m2 to m4 a day later; no sweep has run since.
    const occ = await t.db.selectFrom('occupancies').select('id').where('household_id', '=', w.h1).execute()
    for (const o of occ) await moveOut(t.db, o.id, LATER(DAY), CTX)
    const m4 = await seedMeter(t.db, { operatorId: w.operatorId })
    await seedOccupancy(t.db, { meterId: m4, householdId: w.h1, from: LATER(DAY) })
    const again = await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(365 * DAY) }, LATER(DAY + 1_000))
    // The ended consent was recorded as such on the way, as the sweep would have.
    expect(await statusOf(first.id)).toEqual({ status: 'ended_by_move_out', status_changed_at: LATER(DAY), revoked_at: null })
    expect((await logOf(first.id)).map((e) => [e.event, e.meter_id])).toEqual([
      ['granted', null],
      ['ended_by_move_out', w.m1],
      ['ended_by_move_out', w.m2],
    ])
    // The new one is in force over m4: a second grant there is refused.
    await expect(grantConsent(t.db, w.h1, { offerId, meterIds: [m4], validUntil: LATER(60 * DAY) }, LATER(DAY + 2_000))).rejects.toThrow(
      new RegExp(`consent ${again.id} already gives this recipient`),
    )
  })

  it('refuses again once a consent has run out only when it is still in force', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(DAY) }, NOW)
    // Past its validity it no longer counts, whether or not the sweeper has marked it expired yet.
    await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(3 * DAY) }, LATER(DAY))
    await expect(grantConsent(t.db, w.h1, { offerId, validUntil: LATER(4 * DAY) }, LATER(2 * DAY))).rejects.toBeInstanceOf(ConflictError)
  })

  it('lets only one of two grants of the same data made at the same time through', async () => {
    // On PostgreSQL from two pools, as two API processes would (without the household's lock, both
    // went through in 19 of 20 tries); PGlite is one connection.
    const other = t.url !== null ? await t.openAnother() : t.handle
    try {
      for (const household of [w.h1, w.h2]) {
        for (let i = 0; i < 3; i++) {
          const offerId = await seedOffer(t.db, w.appId)
          const results = await Promise.allSettled([t.db, other.db].map((db, k) => grantConsent(db, household, { offerId, validUntil: LATER((30 + k) * DAY) }, LATER(i))))
          expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected'])
          expect((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError)
          const granted = (results.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<{ id: string }>).value
          await revokeConsent(t.db, granted.id, { role: 'household', householdId: household }, LATER(i + 1))
        }
      }
      expect(await t.db.selectFrom('consents').select('id').execute()).toHaveLength(6)
    } finally {
      if (other !== t.handle) await other.close()
    }
  })

  it('revokes at once: status, one log entry by the household, idempotent, and others cannot', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const { id } = await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(DAY) }, NOW)
    await expect(revokeConsent(t.db, id, { role: 'household', householdId: w.h2 }, LATER(1000))).rejects.toMatchObject({ statusCode: 404 })
    await revokeConsent(t.db, id, { role: 'household', householdId: w.h1 }, LATER(1000))
    await revokeConsent(t.db, id, { role: 'household', householdId: w.h1 }, LATER(2000))
    expect(await statusOf(id)).toEqual({ status: 'revoked', status_changed_at: LATER(1000), revoked_at: LATER(1000) })
    expect((await logOf(id)).map((e) => [e.event, e.actor, e.at])).toEqual([
      ['granted', w.h1, NOW],
      ['revoked', w.h1, LATER(1000)],
    ])
    await expect(revokeConsent(t.db, 'cns_missing', { role: 'operator' }, NOW)).rejects.toMatchObject({ statusCode: 404 })
  })

  it('expires a consent at valid_until, logged once however often and by however many sweepers', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const { id } = await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(DAY) }, NOW)
    expect(await sweepConsents(t.db, LATER(DAY - 1))).toEqual({ expired: 0, endedByMoveOut: 0, meterEnds: 0 })
    expect((await statusOf(id)).status).toBe('active')
    const reports = await Promise.all([sweepConsents(t.db, LATER(DAY)), sweepConsents(t.db, LATER(DAY)), sweepConsents(t.db, LATER(2 * DAY))])
    expect(reports.reduce((n, r) => n + r.expired, 0)).toBe(1)
    expect(await statusOf(id)).toEqual({ status: 'expired', status_changed_at: LATER(DAY), revoked_at: null })
    expect((await logOf(id)).map((e) => [e.event, e.actor, e.at])).toEqual([
      ['granted', w.h1, NOW],
      ['expired', 'system', LATER(DAY)],
    ])
    await expect(revokeConsent(t.db, id, { role: 'household', householdId: w.h1 }, LATER(3 * DAY))).rejects.toMatchObject({ statusCode: 409 })
  })

  it('records an expiry due when the household revokes, and then refuses the revocation', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const { id } = await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(DAY) }, NOW)
    await expect(revokeConsent(t.db, id, { role: 'household', householdId: w.h1 }, LATER(DAY + 5))).rejects.toMatchObject({ statusCode: 409 })
    expect((await logOf(id)).map((e) => e.event)).toEqual(['granted', 'expired'])
  })

  it('ends a consent per meter on move-out, each logged once at the move-out, and the consent when no meter is left', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const { id } = await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(365 * DAY) }, NOW)
    const occ = await t.db.selectFrom('occupancies').select(['id', 'meter_id']).where('household_id', '=', w.h1).execute()
    const occOf = (m: string) => occ.find((o) => o.meter_id === m)!.id

    await moveOut(t.db, occOf(w.m1), LATER(10 * DAY), CTX)
    expect(await sweepConsents(t.db, LATER(10 * DAY - 1))).toEqual({ expired: 0, endedByMoveOut: 0, meterEnds: 0 })
    expect(await sweepConsents(t.db, LATER(11 * DAY))).toEqual({ expired: 0, endedByMoveOut: 0, meterEnds: 1 })
    expect(await sweepConsents(t.db, LATER(12 * DAY))).toEqual({ expired: 0, endedByMoveOut: 0, meterEnds: 0 })
    expect((await statusOf(id)).status).toBe('active')

    await moveOut(t.db, occOf(w.m2), LATER(20 * DAY), CTX)
    await Promise.all([sweepConsents(t.db, LATER(21 * DAY)), sweepConsents(t.db, LATER(21 * DAY))])
    expect(await statusOf(id)).toEqual({ status: 'ended_by_move_out', status_changed_at: LATER(20 * DAY), revoked_at: null })
    expect((await logOf(id)).map((e) => [e.event, e.meter_id, e.actor, e.at])).toEqual([
      ['granted', null, w.h1, NOW],
      ['ended_by_move_out', w.m1, 'system', LATER(10 * DAY)],
      ['ended_by_move_out', w.m2, 'system', LATER(20 * DAY)],
    ])
    // Past its validity it stays ended by move-out: nothing more is logged.
    await sweepConsents(t.db, LATER(400 * DAY))
    expect((await logOf(id)).map((e) => e.event)).toEqual(['granted', 'ended_by_move_out', 'ended_by_move_out'])
  })

  it('ends a meter at the grant when a move-out entered afterwards dates from before the grant', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const { id } = await grantConsent(t.db, w.h1, { offerId, meterIds: [w.m1, w.m2], validUntil: LATER(DAY) }, NOW)
    const [occ] = await t.db.selectFrom('occupancies').select('id').where('meter_id', '=', w.m1).execute()
    await moveOut(t.db, occ!.id, new Date('2026-02-01T00:00:00Z'), CTX)
    expect(await sweepConsents(t.db, LATER(1000))).toEqual({ expired: 0, endedByMoveOut: 0, meterEnds: 1 })
    expect((await logOf(id)).map((e) => [e.event, e.meter_id, e.at])).toEqual([
      ['granted', null, NOW],
      ['ended_by_move_out', w.m1, NOW],
    ])
    expect((await statusOf(id)).status).toBe('active')
  })

  it('logs no move-out that happens after the consent expired', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const { id } = await grantConsent(t.db, w.h1, { offerId, meterIds: [w.m1], validUntil: LATER(DAY) }, NOW)
    const [occ] = await t.db.selectFrom('occupancies').select('id').where('meter_id', '=', w.m1).execute()
    await moveOut(t.db, occ!.id, LATER(2 * DAY), CTX)
    await sweepConsents(t.db, LATER(3 * DAY))
    expect((await statusOf(id)).status).toBe('expired')
    expect((await logOf(id)).map((e) => e.event)).toEqual(['granted', 'expired'])
  })

  it('keeps the consent log append-only and consent terms immutable, in the database itself', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const { id } = await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(DAY) }, NOW)
    await expect(sql`UPDATE consent_log SET actor = 'someone' WHERE consent_id = ${id}`.execute(t.db)).rejects.toThrow(/append-only/)
    await expect(sql`DELETE FROM consent_log WHERE consent_id = ${id}`.execute(t.db)).rejects.toThrow(/append-only/)
    await expect(sql`UPDATE consents SET data_from = '2020-01-01' WHERE id = ${id}`.execute(t.db)).rejects.toThrow(/immutable/)
    await revokeConsent(t.db, id, { role: 'operator' }, LATER(5))
    await expect(sql`UPDATE consents SET status = 'active', revoked_at = NULL WHERE id = ${id}`.execute(t.db)).rejects.toThrow(/cannot become/)
    expect((await logOf(id)).map((e) => [e.event, e.actor])).toEqual([
      ['granted', w.h1],
      ['revoked', 'operator'],
    ])
  })

  it('creates a supplier’s legal basis: monthly, free, shown to the household, revocable only by the operator', async () => {
    expect(
      await fieldOf(createLegalBasisConsent(t.db, { recipientId: w.appId, householdId: w.h1, validUntil: LATER(DAY) }, NOW)),
    ).toBe('recipientId')
    expect(
      await fieldOf(createLegalBasisConsent(t.db, { recipientId: w.supplierId, householdId: 'hh_nobody', validUntil: LATER(DAY) }, NOW)),
    ).toBe('householdId')
    const { id } = await createLegalBasisConsent(t.db, { recipientId: w.supplierId, householdId: w.h1, validUntil: LATER(DAY) }, NOW)
    const [c] = (await listHouseholdConsents(t.db, w.h1, { limit: 10 }, NOW)).items
    expect(c).toMatchObject({
      id,
      kind: 'legal_basis',
      offerId: null,
      granularity: 'monthly',
      priceMicrosPerDatum: 0n,
      householdBps: null,
      recipientName: 'Energy supplier',
    })
    await expect(revokeConsent(t.db, id, { role: 'household', householdId: w.h1 }, LATER(5))).rejects.toMatchObject({ statusCode: 403 })
    await revokeConsent(t.db, id, { role: 'operator' }, LATER(5))
    expect((await logOf(id)).map((e) => [e.event, e.actor])).toEqual([
      ['granted', 'operator'],
      ['revoked', 'operator'],
    ])
  })

  it('lists consents naming a recipient and the household’s log, page by page', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const ids: string[] = []
    // Three stretches of history: consents in force at once may not give the same data twice.
    for (let i = 0; i < 3; i++) {
      const dataFrom = new Date(Date.UTC(2025, i, 1))
      ids.push((await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(DAY), dataFrom, dataUntil: new Date(Date.UTC(2025, i + 1, 1)) }, LATER(i))).id)
    }
    await grantConsent(t.db, w.h2, { offerId: await seedOffer(t.db, w.labId), validUntil: LATER(DAY) }, NOW)
    await revokeConsent(t.db, ids[1]!, { role: 'household', householdId: w.h1 }, LATER(10))

    const first = await listRecipientConsents(t.db, w.appId, { limit: 2 })
    const second = await listRecipientConsents(t.db, w.appId, { limit: 2, cursor: first.next! })
    expect([...first.items, ...second.items].map((c) => c.id)).toEqual(ids)
    expect(second.next).toBeNull()

    const log1 = await listConsentLog(t.db, w.h1, { limit: 3 }, LATER(20))
    const log2 = await listConsentLog(t.db, w.h1, { limit: 3, cursor: log1.next! }, LATER(20))
    expect([...log1.items, ...log2.items].map((e) => [e.consentId, e.event])).toEqual([
      [ids[0], 'granted'],
      [ids[1], 'granted'],
      [ids[2], 'granted'],
      [ids[1], 'revoked'],
    ])
    await expect(listConsentLog(t.db, w.h1, { limit: 3, cursor: 'x' }, NOW)).rejects.toMatchObject({ field: 'cursor' })
  })

  it('lets a household that moved out of one meter consent only for the meters it still occupies', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const [occ] = await t.db.selectFrom('occupancies').select('id').where('meter_id', '=', w.m1).execute()
    await moveOut(t.db, occ!.id, LATER(DAY), CTX)
    expect(await fieldOf(grantConsent(t.db, w.h1, { offerId, meterIds: [w.m1], validUntil: LATER(3 * DAY) }, LATER(2 * DAY)))).toBe('meterIds[0]')
    const { id } = await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(3 * DAY) }, LATER(2 * DAY))
    expect((await listHouseholdConsents(t.db, w.h1, { limit: 10 }, LATER(2 * DAY))).items.find((c) => c.id === id)!.meterIds).toEqual([w.m2])
  })

  it('stamps a withdrawal no earlier than the last consent its offer let in (a grant that arrived after it but committed before it read as taken after the withdrawal)', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const { id } = await grantConsent(t.db, w.h1, { offerId, validUntil: LATER(DAY) }, LATER(1_000))
    await withdrawOffer(t.db, offerId, NOW)
    const validFrom = (await t.db.selectFrom('consents').select('valid_from').where('id', '=', id).executeTakeFirstOrThrow()).valid_from
    expect((await listOffers(t.db)).find((o) => o.id === offerId)!.withdrawnAt).toEqual(validFrom)
    // Without such a consent, the withdrawal's own time.
    const other = await seedOffer(t.db, w.appId)
    await withdrawOffer(t.db, other, NOW)
    expect((await listOffers(t.db)).find((o) => o.id === other)!.withdrawnAt).toEqual(NOW)
  })
})

describePostgres('consent service, locks between a household’s grant and another of its consents', (t) => {
  let w: ConsentWorld

  beforeEach(async () => {
    w = await seedConsentWorld(t.db)
  })

  /** Until `n` backends of this database wait for a lock (a row's, here). */
  async function untilWaitingForLocks(n: number, settled: () => boolean): Promise<void> {
    for (;;) {
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(t.db)
      if (rows[0]!.n >= n || settled()) return
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }

  /**
   * The race the concurrency tester found, made certain: another transaction holds consent C's lock;
   * `end` (a revocation or the sweep) queues for it first, then a grant of the same data locks the
   * household and queues for C too (refuseOverlap). Once C is released, `end` writes consent_log,
   * whose foreign key needs a KEY SHARE lock on the household's row: with the grant holding that row
   * FOR UPDATE, PostgreSQL found a deadlock and one of them failed (a 500).
   */
  async function endWhileGranting(end: (consentId: string) => Promise<unknown>): Promise<{ consentId: string; ended: PromiseSettledResult<unknown>; granted: PromiseSettledResult<{ id: string }> }> {
    const first = await seedOffer(t.db, w.appId)
    const second = await seedOffer(t.db, w.appId, { purpose: 'other advice' })
    const { id: consentId } = await grantConsent(t.db, w.h1, { offerId: first, validUntil: LATER(DAY) }, NOW)
    const other = await t.openAnother()
    try {
      const holder = await holdConnection(other.db, 'transaction', (trx) => lockConsent(trx, consentId))
      let settled = 0
      const count = <T>(p: Promise<T>): Promise<PromiseSettledResult<T>> => {
        const outcome = Promise.allSettled([p]).then(([r]) => r!)
        void outcome.then(() => settled++)
        return outcome
      }
      const ended = count(end(consentId))
      await untilWaitingForLocks(1, () => settled > 0)
      const granted = count(grantConsent(t.db, w.h1, { offerId: second, validUntil: LATER(2 * DAY) }, NOW))
      await untilWaitingForLocks(2, () => settled > 0)
      holder.release()
      await holder.done
      return { consentId, ended: await ended, granted: await granted }
    } finally {
      await other.close()
    }
  }

  it('refuses a grant that waited for a withdrawal of its offer to commit: no consent is taken after its offer was withdrawn', async () => {
    const offerId = await seedOffer(t.db, w.appId)
    const other = await t.openAnother()
    try {
      // The withdrawal's transaction has written its row, not yet committed, as a grant of the offer begins.
      const holder = await holdConnection(other.db, 'transaction', (trx) => trx.updateTable('offers').set({ withdrawn_at: NOW }).where('id', '=', offerId).execute())
      let settled = false
      const granted = Promise.allSettled([grantConsent(t.db, w.h1, { offerId, validUntil: LATER(DAY) }, NOW)]).then(([r]) => ((settled = true), r!))
      await untilWaitingForLocks(1, () => settled)
      holder.release()
      await holder.done
      const outcome = await granted
      expect(outcome.status).toBe('rejected')
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({ code: 'OFFER_WITHDRAWN' })
      expect(await t.db.selectFrom('consents').select('id').where('offer_id', '=', offerId).execute()).toEqual([])
    } finally {
      await other.close()
    }
  })

  it('lets a revocation and a grant of the same data meet without a deadlock, and the revocation holds', async () => {
    const { consentId, ended, granted } = await endWhileGranting((id) => revokeConsent(t.db, id, { role: 'household', householdId: w.h1 }, NOW))
    expect(ended).toEqual({ status: 'fulfilled', value: undefined })
    // The revocation went first, so the grant no longer overlaps anything.
    expect(granted).toMatchObject({ status: 'fulfilled' })
    const statuses = await t.db.selectFrom('consents').select(['id', 'status']).where('household_id', '=', w.h1).execute()
    expect(statuses).toContainEqual({ id: consentId, status: 'revoked' })
    expect(statuses.filter((c) => c.status === 'active')).toHaveLength(1)
  })

  it('lets the sweep end a consent while a grant of the same data waits for it, without a deadlock', async () => {
    const { consentId, ended, granted } = await endWhileGranting((id) => sweepConsents(t.db, LATER(DAY), { consentId: id }))
    expect(ended).toEqual({ status: 'fulfilled', value: { expired: 1, endedByMoveOut: 0, meterEnds: 0 } })
    if (granted.status === 'rejected') expect(granted.reason).toBeInstanceOf(ConflictError)
    expect((await t.db.selectFrom('consents').select('status').where('id', '=', consentId).executeTakeFirstOrThrow()).status).toBe('expired')
  })
})
