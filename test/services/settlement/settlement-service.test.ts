import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { addDays, daysOfMonth, startOfDayMs } from '../../../shared/calendar.ts'
import { InvalidInputError } from '../../../shared/errors.ts'
import { daysChangedSince } from '../../../services/settlement/settlement-repository.ts'
import { settleCompletedMonths, settleMonth } from '../../../services/settlement/settlement-service.ts'
import { describeDatabases, type TestDatabase } from '../../support/database.ts'
import {
  TZ,
  accountTotals,
  consent,
  ctxAt,
  household,
  hourEnds,
  hourly,
  ingest,
  journalsBookedIn,
  meter,
  occupy,
  offer,
  paris,
  party,
  unbalancedJournals,
} from './settlement-fixtures.ts'

/**
 * One month, written out by hand: two households, three meters (two operators), two paying
 * offers and a legal-basis consent, readings through the real ingest path (October 2026 in
 * Paris has a 25-hour day, the 25th).
 */
async function october(t: TestDatabase) {
  const db = t.db
  const u1 = await party(db, 'utility', 'Grid Elec')
  const u2 = await party(db, 'utility', 'Grid Gas')
  const r1 = await party(db, 'third_party', 'Advice App')
  const r2 = await party(db, 'utility', 'Supplier')
  const tp = await party(db, 'third_party', 'Charity')
  const h1 = await household(db, 'Alice')
  const h2 = await household(db, 'Bob')
  const m1 = await meter(db, u1)
  const m2 = await meter(db, u1)
  const m3 = await meter(db, u2, 'gas')
  await occupy(db, m1, h1, paris('2026-09-01'))
  await occupy(db, m2, h2, paris('2026-09-01'))
  await occupy(db, m3, h2, paris('2026-09-01'))

  const m1Times = hourly(paris('2026-09-30'), paris('2026-11-01'))
  const m2Times = hourly(paris('2026-10-01'), paris('2026-11-01'))
  const m3Times = hourly(paris('2026-10-05', 6), paris('2026-11-01'))
  await ingest(db, t.dialect, m1, 'electricity', m1Times)
  await ingest(db, t.dialect, m2, 'electricity', m2Times)
  await ingest(db, t.dialect, m3, 'gas', m3Times)
  // The index at the end of October, which completes its last day (and the month) for daily and monthly data.
  for (const [m, commodity] of [[m1, 'electricity'], [m2, 'electricity'], [m3, 'gas']] as const) await ingest(db, t.dialect, m, commodity, [paris('2026-11-01')])

  const offerA = await offer(db, {
    recipientId: r1,
    granularity: 'load_curve',
    priceMicrosPerDatum: 1_000n,
    householdBps: 5_000,
    operatorBps: 2_000,
    platformBps: 2_000,
    thirdParties: [{ partyId: tp, bps: 1_000 }],
  })
  const offerB = await offer(db, { recipientId: r2, granularity: 'daily', priceMicrosPerDatum: 7n, householdBps: 3_333, operatorBps: 3_333, platformBps: 3_334 })

  // Granted mid-day: the 10th is cut by the data window and counted from raw readings.
  const c1From = paris('2026-10-10', 12, 30)
  const c1 = await consent(db, { householdId: h1, recipientId: r1, offerId: offerA, granularity: 'load_curve', meterIds: [m1], validFrom: c1From })
  // Reaches back to September, granted on the 15th, revoked on the 20th at 09:00.
  const c2 = {
    validFrom: paris('2026-10-15'),
    dataFrom: paris('2026-09-01'),
    revokedAt: paris('2026-10-20', 9),
  }
  const c2Id = await consent(db, { householdId: h1, recipientId: r2, offerId: offerB, granularity: 'daily', meterIds: [m1], ...c2 })
  const c3 = await consent(db, {
    householdId: h2,
    recipientId: r1,
    offerId: offerA,
    granularity: 'load_curve',
    meterIds: [m2, m3],
    validFrom: paris('2026-09-15'),
  })
  const c4 = await consent(db, { householdId: h2, recipientId: r2, offerId: null, granularity: 'monthly', meterIds: [m2], validFrom: paris('2026-09-01') })
  return { u1, u2, r1, r2, tp, h1, h2, m1, m2, m3, m1Times, m2Times, m3Times, offerA, offerB, c1, c1From, c2Id, c2, c3, c4 }
}

/** A household living at one meter of a utility from `from`, and one offer of a third party to buy its data. */
async function oneMeterOneOffer(t: TestDatabase, name: string, from: Date, terms: Omit<Parameters<typeof offer>[1], 'recipientId'>) {
  const grid = await party(t.db, 'utility', 'Grid')
  const app = await party(t.db, 'third_party', 'App')
  const h = await household(t.db, name)
  const m = await meter(t.db, grid)
  await occupy(t.db, m, h, from)
  return { app, h, m, offerId: await offer(t.db, { recipientId: app, ...terms }) }
}

describeDatabases('settlement runs', (t) => {
  it('counts, prices and splits each consent of a month as written out by hand', async () => {
    const w = await october(t)
    const summary = await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-02')))

    // Written out: load-curve readings of m1 stamped from the grant to the end of October. A reading ends its
    // interval: October's are stamped after its first midnight, through its last (1 November 00:00, ingested apart).
    const octStart = paris('2026-10-01').getTime()
    const novStart = paris('2026-11-01').getTime()
    const inOctober = (times: Date[]) => [...times, paris('2026-11-01')].filter((ts) => ts.getTime() > octStart && ts.getTime() <= novStart)
    const n1 = BigInt(inOctober(w.m1Times).filter((ts) => ts.getTime() >= w.c1From.getTime()).length)
    expect(n1).toBe(BigInt(22 * 24 - 13 + 1 + 1)) // 10th 13:00 … 1 November 00:00, and the 25-hour 25th
    // Daily datums of m1: the day starts inside the window and the consent was active when the day was complete
    // (or, for history, when it began), before the revocation.
    const days = daysOfMonth('2026-10').filter((d) => {
      const releasedAt = Math.max(startOfDayMs(addDays(d, 1), TZ), w.c2.validFrom.getTime())
      return startOfDayMs(d, TZ) >= w.c2.dataFrom.getTime() && releasedAt < w.c2.revokedAt.getTime()
    })
    expect(days.length).toBe(19)
    const n2m = BigInt(inOctober(w.m2Times).length)
    const n3m = BigInt(inOctober(w.m3Times).length)
    expect([n2m, n3m]).toEqual([BigInt(31 * 24 + 1), BigInt(31 * 24 + 1 - (4 * 24 + 6) + 1)]) // the 25-hour 25th; m3 from the 5th, 06:00

    const lines = await t.db.selectFrom('settlement_lines').selectAll().where('run_id', '=', summary.runId).orderBy('consent_id').execute()
    const byConsent = new Map(lines.map((l) => [l.consent_id, l]))
    expect(lines).toHaveLength(4)
    expect(byConsent.get(w.c1)).toMatchObject({ data_count: n1, gross_micros: n1 * 1_000n, household_share_micros: n1 * 500n, offer_id: w.offerA })
    // 19 × 7 = 133 split 3333/3333/3334: 44.3289 + 44.3289 + 44.3422 = 132 + 1 unit, to the largest remainder (platform).
    expect(byConsent.get(w.c2Id)).toMatchObject({ data_count: 19n, gross_micros: 133n, household_share_micros: 44n })
    expect(byConsent.get(w.c3)).toMatchObject({ data_count: n2m + n3m, gross_micros: (n2m + n3m) * 1_000n, household_share_micros: (n2m + n3m) * 500n })
    expect(byConsent.get(w.c4)).toMatchObject({ data_count: 1n, gross_micros: 0n, household_share_micros: 0n, offer_id: null, granularity: 'monthly' })

    // Each account, written out. The operator's 20 % of c3 is shared by the datums of each operator's meter.
    const totals = await accountTotals(t.db, { forMonth: '2026-10' })
    expect(Object.fromEntries(totals)).toEqual({
      [`household:${w.h1}`]: n1 * 500n + 44n,
      [`household:${w.h2}`]: (n2m + n3m) * 500n,
      [`party:${w.u1}`]: n1 * 200n + 44n + n2m * 200n,
      [`party:${w.u2}`]: n3m * 200n,
      [`party:${w.tp}`]: (n1 + n2m + n3m) * 100n,
      platform: n1 * 200n + 45n + (n2m + n3m) * 200n,
      [`receivable:${w.r1}`]: -(n1 + n2m + n3m) * 1_000n,
      [`receivable:${w.r2}`]: -133n,
    })
    expect(summary).toMatchObject({
      month: '2026-10',
      kind: 'closing',
      seq: 1,
      postingMonth: '2026-10',
      lines: 4,
      dataCount: n1 + 19n + n2m + n3m + 1n,
      grossMicros: (n1 + n2m + n3m) * 1_000n + 133n,
      journals: 1,
      payouts: 0,
    })
    expect(summary.roles.household + summary.roles.operators + summary.roles.platform + summary.roles.thirdParties).toBe(summary.grossMicros)
    expect(await unbalancedJournals(t.db)).toEqual([])
  })

  it('posts nothing when a month is settled again with nothing new', async () => {
    await october(t)
    const first = await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-02')))
    const before = await journalsBookedIn(t.db, '2026-10')
    const again = await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-20')))
    expect(again).toMatchObject({
      kind: 'unchanged',
      runId: first.runId,
      journals: 0,
      lines: first.lines,
      dataCount: first.dataCount,
      grossMicros: first.grossMicros,
      roles: first.roles,
      inputHash: first.inputHash,
    })
    expect(await journalsBookedIn(t.db, '2026-10')).toEqual(before)
    expect(await journalsBookedIn(t.db, '2026-11')).toEqual([])
    const runs = await t.db.selectFrom('settlement_runs').select('id').execute()
    expect(runs).toHaveLength(1)
  })

  it('posts late readings of a closed month as adjustments in the current month, labelled with that month', async () => {
    const w = await october(t)
    await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-02')))
    const closed = await journalsBookedIn(t.db, '2026-10')

    // m3 sends the readings it had buffered from the 1st, 01:00 to the 5th, 05:00 (the gap: none twice).
    const late = hourly(paris('2026-10-01', 1), paris('2026-10-05', 6))
    await ingest(t.db, t.dialect, w.m3, 'gas', late)
    const run = await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-12')))
    expect(run).toMatchObject({ kind: 'adjustment', seq: 2, postingMonth: '2026-11', journals: 1, adjustmentJournals: 1 })
    expect(run.householdsPostedMicros).toBe(BigInt(late.length) * 500n)

    expect(await journalsBookedIn(t.db, '2026-10')).toEqual(closed)
    const adjustments = await t.db.selectFrom('ledger_journals').selectAll().where('posting_month', '=', '2026-11').execute()
    expect(adjustments.map((j) => [j.kind, j.for_month])).toEqual([['adjustment', '2026-10']])
    const posted = await accountTotals(t.db, { postingMonth: '2026-11' })
    expect(Object.fromEntries(posted)).toEqual({
      [`household:${w.h2}`]: BigInt(late.length) * 500n,
      [`party:${w.u2}`]: BigInt(late.length) * 200n,
      [`party:${w.tp}`]: BigInt(late.length) * 100n,
      platform: BigInt(late.length) * 200n,
      [`receivable:${w.r1}`]: -BigInt(late.length) * 1_000n,
    })
    // The new line state is recorded by the adjusting run; the closing run's line stays as it was.
    const c3Lines = await t.db
      .selectFrom('settlement_lines as l')
      .innerJoin('settlement_runs as r', 'r.id', 'l.run_id')
      .select(['r.seq', 'l.data_count'])
      .where('l.consent_id', '=', w.c3)
      .orderBy('r.seq')
      .execute()
    // October's: m2's hourly readings but the first (it closes 30 September), and each meter's closing one.
    const n3 = BigInt(w.m3Times.length + 1)
    const n2 = BigInt(w.m2Times.length - 1 + 1)
    expect(c3Lines).toEqual([
      { seq: 1, data_count: n2 + n3 },
      { seq: 2, data_count: n2 + n3 + BigInt(late.length) },
    ])
    expect(await unbalancedJournals(t.db)).toEqual([])
  })

  it('settles a consent granted later whose data window reaches back into a closed month', async () => {
    const w = await october(t)
    await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-02')))
    const late = await consent(t.db, {
      householdId: w.h2,
      recipientId: w.r2,
      offerId: w.offerB,
      granularity: 'daily',
      meterIds: [w.m2],
      validFrom: paris('2026-11-05'),
      dataFrom: paris('2026-10-01'),
    })
    const run = await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-06')))
    expect(run.kind).toBe('adjustment')
    const line = await t.db.selectFrom('settlement_lines').selectAll().where('consent_id', '=', late).executeTakeFirstOrThrow()
    // 31 days × 7 = 217 split 3333/3333/3334: 72.3261, 72.3261, 72.3478 → 72 + 72 + 72 = 216, one unit to the platform.
    expect(line).toMatchObject({ month: '2026-10', data_count: 31n, gross_micros: 217n, household_share_micros: 72n })
    expect(Object.fromEntries(await accountTotals(t.db, { postingMonth: '2026-11' }))).toEqual({
      [`household:${w.h2}`]: 72n,
      [`party:${w.u1}`]: 72n,
      platform: 73n,
      [`receivable:${w.r2}`]: -217n,
    })
  })

  it('charges a daily datum once its meter has data after its day, and the day a meter stopped in only when data after it comes', async () => {
    const db = t.db
    const { app, h, m, offerId: daily } = await oneMeterOneOffer(t, 'Carol', paris('2026-09-01'), { granularity: 'daily', priceMicrosPerDatum: 10n, householdBps: 5_000, operatorBps: 5_000, platformBps: 0 })
    const c = await consent(db, { householdId: h, recipientId: app, offerId: daily, granularity: 'daily', meterIds: [m], validFrom: paris('2026-09-01') })
    // The meter stops on 10 October at noon: the 10th is still filling in, as far as anyone can tell.
    await ingest(db, t.dialect, m, 'electricity', hourly(paris('2026-10-01'), paris('2026-10-10', 13)))
    await settleMonth(db, '2026-10', ctxAt(paris('2026-11-02')))
    // The line of the month's latest run.
    const line = () =>
      db
        .selectFrom('settlement_lines as l')
        .innerJoin('settlement_runs as r', 'r.id', 'l.run_id')
        .select(['l.data_count', 'l.gross_micros'])
        .where('l.consent_id', '=', c)
        .orderBy('r.seq', 'desc')
        .limit(1)
        .executeTakeFirstOrThrow()
    expect(await line()).toEqual({ data_count: 9n, gross_micros: 90n })
    // It comes back and sends the rest of the 10th and midnight: the 10th is complete, and a later run charges it.
    await ingest(db, t.dialect, m, 'electricity', hourly(paris('2026-10-10', 13), paris('2026-10-11', 1)))
    const run = await settleMonth(db, '2026-10', ctxAt(paris('2026-11-03')))
    expect(run.kind).toBe('adjustment')
    expect(await line()).toEqual({ data_count: 10n, gross_micros: 100n })
  })

  it('charges a revoked consent only what was stored before the revocation: data arriving after it never reached the recipient', async () => {
    const db = t.db
    const { app, h, m, offerId: curve } = await oneMeterOneOffer(t, 'Dora', paris('2026-08-01'), { granularity: 'load_curve', priceMicrosPerDatum: 333n, householdBps: 10_000, operatorBps: 0, platformBps: 0 })
    const revokedAt = paris('2026-08-02')
    const c = await consent(db, { householdId: h, recipientId: app, offerId: curve, granularity: 'load_curve', meterIds: [m], validFrom: paris('2026-08-01'), revokedAt })
    // Six hours stored as measured (their readings at 01:00 … 06:00); then ten more, of the same morning, stored a day after the
    // revocation (a meter catching up).
    await ingest(db, t.dialect, m, 'electricity', hourly(paris('2026-08-01', 1), paris('2026-08-01', 7)))
    await ingest(db, t.dialect, m, 'electricity', hourly(paris('2026-08-01', 7), paris('2026-08-01', 17)), paris('2026-08-03'))
    await settleMonth(db, '2026-08', ctxAt(paris('2026-09-02')))
    const line = await db.selectFrom('settlement_lines').select(['data_count', 'gross_micros']).where('consent_id', '=', c).executeTakeFirstOrThrow()
    expect(line).toEqual({ data_count: 6n, gross_micros: 6n * 333n })
  })

  it('counts the days of a revoked consent stored in time from their rollups, and the others from raw readings', async () => {
    const db = t.db
    const { app, h, m, offerId: curve } = await oneMeterOneOffer(t, 'Emma', paris('2026-08-01'), { granularity: 'load_curve', priceMicrosPerDatum: 1n, householdBps: 10_000, operatorBps: 0, platformBps: 0 })
    const c = await consent(db, { householdId: h, recipientId: app, offerId: curve, granularity: 'load_curve', meterIds: [m], validFrom: paris('2026-08-01'), revokedAt: paris('2026-08-10') })
    // 1 to 3 August stored as measured (each hour's reading at its end, the last at midnight); 5 August half stored
    // in time, half a week after the revocation.
    await ingest(db, t.dialect, m, 'electricity', hourly(paris('2026-08-01', 1), paris('2026-08-04', 1)))
    await ingest(db, t.dialect, m, 'electricity', hourly(paris('2026-08-05', 1), paris('2026-08-05', 13)))
    await ingest(db, t.dialect, m, 'electricity', hourly(paris('2026-08-05', 13), paris('2026-08-06', 1)), paris('2026-08-17'))
    await settleMonth(db, '2026-08', ctxAt(paris('2026-09-02')))
    const line = await db.selectFrom('settlement_lines').select('data_count').where('consent_id', '=', c).executeTakeFirstOrThrow()
    expect(line.data_count).toBe(3n * 24n + 12n)
    // Only 5 August changed after the revocation: the other days were counted from their rollups.
    const changed = await daysChangedSince(db, [{ meterId: m, householdId: h, sinceMs: paris('2026-08-10').getTime() }], '2026-08-01', '2026-08-31')
    expect([...changed.values()].map((days) => [...days])).toEqual([['2026-08-05']])
  })

  it('charges a datum once under an offer, however often the household revokes it and grants it again over the same history', async () => {
    const db = t.db
    const { app, h, m, offerId } = await oneMeterOneOffer(t, 'Fay', paris('2026-09-01'), { granularity: 'load_curve', priceMicrosPerDatum: 1_000n, householdBps: 5_000, operatorBps: 5_000, platformBps: 0 })
    // 10 October, stored live.
    await ingest(db, t.dialect, m, 'electricity', hourEnds(paris('2026-10-10'), paris('2026-10-11')))
    const at = (minutes: number) => new Date(paris('2026-11-02', 10).getTime() + minutes * 60_000)
    const grant = (validFrom: Date, revokedAt?: Date) =>
      consent(db, { householdId: h, recipientId: app, offerId, granularity: 'load_curve', meterIds: [m], validFrom, dataFrom: paris('2026-10-01'), ...(revokedAt === undefined ? {} : { revokedAt }) })
    // Granted over October's history and revoked a minute later, three times over, the last still in force.
    const c1 = await grant(at(0), at(1))
    const c2 = await grant(at(2), at(4))
    const c3 = await grant(at(5))
    // 12 October arrives while the second is in force: it is that one's to charge, once.
    await ingest(db, t.dialect, m, 'electricity', hourEnds(paris('2026-10-12'), paris('2026-10-13')), at(3))
    const run = await settleMonth(db, '2026-10', ctxAt(paris('2026-11-03')))
    const lines = await db.selectFrom('settlement_lines').select(['consent_id', 'data_count']).where('run_id', '=', run.runId).execute()
    const count = (c: string) => lines.find((l) => l.consent_id === c)?.data_count ?? 0n
    expect([count(c1), count(c2), count(c3)]).toEqual([24n, 24n, 0n])
    expect(run.grossMicros).toBe(48n * 1_000n)
  })

  it('charges no day nor month for the reading alone that closes the day before a move-in: it measures nothing', async () => {
    const db = t.db
    // Moving in at midnight on 1 November; its consents reach back over October, where only that reading is its.
    const { app, h, m, offerId: daily } = await oneMeterOneOffer(t, 'Gus', paris('2026-11-01'), { granularity: 'daily', priceMicrosPerDatum: 10n, householdBps: 5_000, operatorBps: 5_000, platformBps: 0 })
    const monthly = await offer(db, { recipientId: app, granularity: 'monthly', priceMicrosPerDatum: 100n, householdBps: 5_000, operatorBps: 5_000, platformBps: 0 })
    const cDaily = await consent(db, { householdId: h, recipientId: app, offerId: daily, granularity: 'daily', meterIds: [m], validFrom: paris('2026-11-01'), dataFrom: paris('2026-10-01') })
    const cMonthly = await consent(db, { householdId: h, recipientId: app, offerId: monthly, granularity: 'monthly', meterIds: [m], validFrom: paris('2026-11-01'), dataFrom: paris('2026-10-01') })
    await ingest(db, t.dialect, m, 'electricity', hourly(paris('2026-10-31', 20), paris('2026-11-03')))
    const oct = await settleMonth(db, '2026-10', ctxAt(paris('2026-12-02')))
    expect(oct.dataCount).toBe(0n)
    const nov = await settleMonth(db, '2026-11', ctxAt(paris('2026-12-02')))
    const lines = await db.selectFrom('settlement_lines').select(['consent_id', 'data_count']).where('run_id', '=', nov.runId).orderBy('consent_id').execute()
    // November: its 1st (the meter's data reaches 2 November 23:00, past the 1st's end); the 2nd and the month are not complete.
    expect(Object.fromEntries(lines.map((l) => [l.consent_id, l.data_count]))).toEqual({ [cDaily]: 1n })
    expect(lines.some((l) => l.consent_id === cMonthly)).toBe(false)
  })

  it('charges the load-curve datum stamped at a month’s last instant to that month, when the data window or the move-in starts there', async () => {
    const db = t.db
    // Moving in at midnight on 1 November: the reading stamped then ends October's last interval, so it is
    // an October datum of this household (README, "Time"), released to the recipient and charged in October.
    const { app, h, m, offerId } = await oneMeterOneOffer(t, 'Ida', paris('2026-11-01'), { granularity: 'load_curve', priceMicrosPerDatum: 10n, householdBps: 5_000, operatorBps: 5_000, platformBps: 0 })
    const atMoveIn = await consent(db, { householdId: h, recipientId: app, offerId, granularity: 'load_curve', meterIds: [m], validFrom: paris('2026-11-05'), dataFrom: paris('2026-11-01') })
    await ingest(db, t.dialect, m, 'electricity', hourly(paris('2026-10-31', 20), paris('2026-11-01', 4)))
    const now = ctxAt(paris('2026-12-02'))
    const oct = await settleMonth(db, '2026-10', now)
    expect(oct.dataCount).toBe(1n)
    const octLines = await db.selectFrom('settlement_lines').select(['consent_id', 'data_count']).where('run_id', '=', oct.runId).execute()
    expect(octLines.map((l) => [l.consent_id, l.data_count])).toEqual([[atMoveIn, 1n]])
    // November has the three after it (01:00, 02:00, 03:00), not that one again.
    expect((await settleMonth(db, '2026-11', now)).dataCount).toBe(3n)

    // The same with the data window alone starting there (the household lived there before).
    const other = await oneMeterOneOffer(t, 'Jo', paris('2026-10-01'), { granularity: 'load_curve', priceMicrosPerDatum: 10n, householdBps: 5_000, operatorBps: 5_000, platformBps: 0 })
    const fromWindow = await consent(db, { householdId: other.h, recipientId: other.app, offerId: other.offerId, granularity: 'load_curve', meterIds: [other.m], validFrom: paris('2026-11-05'), dataFrom: paris('2026-11-01') })
    await ingest(db, t.dialect, other.m, 'electricity', hourly(paris('2026-10-31', 20), paris('2026-11-01', 4)))
    const again = await settleMonth(db, '2026-10', now)
    const lines = await db.selectFrom('settlement_lines').select(['consent_id', 'data_count']).where('run_id', '=', again.runId).where('consent_id', '=', fromWindow).execute()
    expect(lines.map((l) => l.data_count)).toEqual([1n])
  })

  it('does not settle a month before it is over, nor a malformed month', async () => {
    await expect(settleMonth(t.db, '2026-10', ctxAt(paris('2026-10-31', 23, 59)))).rejects.toThrow(/month: 2026-10 is not over yet/)
    await expect(settleMonth(t.db, '2026-13', ctxAt(paris('2027-02-01')))).rejects.toBeInstanceOf(InvalidInputError)
    await expect(settleMonth(t.db, 'october', ctxAt(paris('2027-02-01')))).rejects.toThrow(/^month:/)
  })

  it('settles every month that is over since the first with data, and re-checks only the recent ones', async () => {
    expect(await settleCompletedMonths(t.db, paris('2026-11-15'), ctxAt(paris('2026-11-15')))).toEqual([])
    const w = await october(t)
    const first = await settleCompletedMonths(t.db, paris('2026-11-15'), ctxAt(paris('2026-11-15')))
    // m1's readings start on September 30th: September and October are over, November is not.
    expect(first.map((r) => [r.month, r.kind])).toEqual([
      ['2026-09', 'closing'],
      ['2026-10', 'closing'],
    ])
    const again = await settleCompletedMonths(t.db, paris('2026-12-02'), ctxAt(paris('2026-12-02')))
    expect(again.map((r) => [r.month, r.kind])).toEqual([
      ['2026-09', 'unchanged'],
      ['2026-10', 'unchanged'],
      ['2026-11', 'closing'],
    ])
    // Late October data: a re-check of the last month only misses it; of the last two, posts it.
    await ingest(t.db, t.dialect, w.m3, 'gas', hourly(paris('2026-10-01'), paris('2026-10-02')))
    const lastOnly = await settleCompletedMonths(t.db, paris('2026-12-03'), ctxAt(paris('2026-12-03')), { resettleMonthsMax: 1 })
    expect(lastOnly.map((r) => [r.month, r.kind])).toEqual([['2026-11', 'unchanged']])
    const lastTwo = await settleCompletedMonths(t.db, paris('2026-12-03'), ctxAt(paris('2026-12-03')), { resettleMonthsMax: 2 })
    expect(lastTwo.map((r) => [r.month, r.kind, r.postingMonth])).toEqual([
      ['2026-10', 'adjustment', '2026-12'],
      ['2026-11', 'unchanged', '2026-11'],
    ])
  })

  it('closes an empty month, so that anything found later is an adjustment', async () => {
    const run = await settleMonth(t.db, '2026-08', ctxAt(paris('2026-11-02')))
    expect(run).toMatchObject({ kind: 'closing', lines: 0, journals: 0, grossMicros: 0n })
    expect(await settleMonth(t.db, '2026-08', ctxAt(paris('2026-11-03')))).toMatchObject({ kind: 'unchanged', runId: run.runId })
  })
})

describeDatabases('the ledger', (t) => {
  it('refuses an unbalanced journal at commit, and any change to what was posted', async () => {
    const w = await october(t)
    await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-02')))
    const run = await t.db.selectFrom('settlement_runs').select('id').executeTakeFirstOrThrow()
    const unbalanced = t.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('ledger_journals')
        .values({ id: 'jnl_unbalanced', kind: 'adjustment', run_id: run.id, posting_month: '2026-11', for_month: '2026-10' })
        .execute()
      await trx.insertInto('ledger_entries').values({ journal_id: 'jnl_unbalanced', account_id: `household:${w.h1}`, amount_micros: 1_000_000n }).execute()
      await trx.insertInto('ledger_entries').values({ journal_id: 'jnl_unbalanced', account_id: 'platform', amount_micros: -999_999n }).execute()
    })
    await expect(unbalanced).rejects.toThrow(/journal jnl_unbalanced is unbalanced: its entries sum to 1 micro-euros/)
    expect(await t.db.selectFrom('ledger_journals').select('id').where('id', '=', 'jnl_unbalanced').execute()).toEqual([])

    // Balanced across two statements of one transaction: accepted (the check is deferred to commit).
    await t.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('ledger_journals')
        .values({ id: 'jnl_balanced', kind: 'adjustment', run_id: run.id, posting_month: '2026-11', for_month: '2026-10' })
        .execute()
      await trx.insertInto('ledger_entries').values({ journal_id: 'jnl_balanced', account_id: `household:${w.h1}`, amount_micros: 5n }).execute()
      await trx.insertInto('ledger_entries').values({ journal_id: 'jnl_balanced', account_id: 'platform', amount_micros: -5n }).execute()
    })
    // A journal is closed with the transaction that created it: nothing may be added to it later, balanced or not.
    await expect(
      t.db.insertInto('ledger_entries').values({ journal_id: 'jnl_balanced', account_id: `household:${w.h2}`, amount_micros: 1n }).execute(),
    ).rejects.toThrow(/journal jnl_balanced is closed or does not exist/)
    await expect(
      t.db.transaction().execute(async (trx) => {
        await trx.insertInto('ledger_entries').values({ journal_id: 'jnl_balanced', account_id: `household:${w.h2}`, amount_micros: 1n }).execute()
        await trx.insertInto('ledger_entries').values({ journal_id: 'jnl_balanced', account_id: 'platform', amount_micros: -1n }).execute()
      }),
    ).rejects.toThrow(/closed or does not exist/)
    // Entries name a journal and accounts that exist.
    await expect(
      t.db.insertInto('ledger_entries').values({ journal_id: 'jnl_nowhere', account_id: 'platform', amount_micros: 1n }).execute(),
    ).rejects.toThrow(/journal jnl_nowhere is closed or does not exist/)
    await expect(
      t.db.transaction().execute(async (trx) => {
        await trx
          .insertInto('ledger_journals')
          .values({ id: 'jnl_ghost', kind: 'adjustment', run_id: run.id, posting_month: '2026-11', for_month: '2026-10' })
          .execute()
        await trx
          .insertInto('ledger_entries')
          .values([
            { journal_id: 'jnl_ghost', account_id: 'household:hh_nobody', amount_micros: 1n },
            { journal_id: 'jnl_ghost', account_id: 'platform', amount_micros: -1n },
          ])
          .execute()
      }),
    ).rejects.toThrow(/ledger account household:hh_nobody does not exist/)
    // A journal with a single entry (of zero) or none is refused too.
    await expect(
      t.db
        .insertInto('ledger_journals')
        .values({ id: 'jnl_empty', kind: 'adjustment', run_id: run.id, posting_month: '2026-11', for_month: '2026-10' })
        .execute(),
    ).rejects.toThrow(/at least two/)

    await expect(sql`UPDATE ledger_entries SET amount_micros = amount_micros + 1`.execute(t.db)).rejects.toThrow(/append-only/)
    await expect(sql`DELETE FROM ledger_entries`.execute(t.db)).rejects.toThrow(/append-only/)
    await expect(sql`UPDATE ledger_journals SET posting_month = '2026-12'`.execute(t.db)).rejects.toThrow(/append-only/)
    await expect(sql`DELETE FROM settlement_lines`.execute(t.db)).rejects.toThrow(/append-only/)
    await expect(sql`UPDATE settlement_runs SET input_hash = 'x'`.execute(t.db)).rejects.toThrow(/append-only/)
    expect(await unbalancedJournals(t.db)).toEqual([])
  })
})
