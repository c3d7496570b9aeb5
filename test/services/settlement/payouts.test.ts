import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { moveOut } from '../../../services/metering/occupancy-service.ts'
import { settleMonth } from '../../../services/settlement/settlement-service.ts'
import { householdPayouts, householdStatement } from '../../../services/settlement/statement-service.ts'
import { newId } from '../../../shared/ids.ts'
import { describeDatabases, type TestDatabase } from '../../support/database.ts'
import { TZ, consent, ctxAt, household, hourEnds, ingest, journalsBookedIn, meter, occupy, offer, paris, party, unbalancedJournals } from './settlement-fixtures.ts'

/** 8,054 µ€ a datum, half to the household: 4,027 µ€ of household share per reading. */
const PRICE = 8_054n
const SHARE = 4_027n

async function world(t: TestDatabase) {
  const db = t.db
  const operator = await party(db, 'utility', 'Grid')
  const recipient = await party(db, 'third_party', 'Advice App')
  const h = await household(db, 'Alice')
  const m1 = await meter(db, operator)
  const occupancy = await occupy(db, m1, h, paris('2026-09-01'))
  const offerId = await offer(db, {
    recipientId: recipient,
    granularity: 'load_curve',
    priceMicrosPerDatum: PRICE,
    householdBps: 5_000,
    operatorBps: 5_000,
    platformBps: 0,
  })
  const c1 = await consent(db, { householdId: h, recipientId: recipient, offerId, granularity: 'load_curve', meterIds: [m1], validFrom: paris('2026-09-01') })
  return { operator, recipient, h, m1, occupancy, offerId, c1 }
}

describeDatabases('payouts', (t) => {
  it('carries a balance below the minimum forward and pays it all once it reaches the minimum, once', async () => {
    const w = await world(t)
    const oct = hourEnds(paris('2026-10-01'), paris('2026-11-01'))
    const nov = hourEnds(paris('2026-11-01'), paris('2026-12-01'))
    expect([oct.length, nov.length]).toEqual([745, 720])
    await ingest(t.db, t.dialect, w.m1, 'electricity', [...oct, ...nov])

    // October: 745 × 4,027 = 3,000,115 µ€, under the 5 EUR minimum: carried forward.
    const octRun = await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-01', 2)))
    expect(octRun).toMatchObject({ payouts: 0, payoutsMicros: 0n })
    expect(await householdPayouts(t.db, w.h)).toEqual({ payouts: [], balanceMicros: 3_000_115n })

    // November: 720 × 4,027 = 2,899,440 µ€; the balance reaches 5,899,555 µ€ and is paid in whole
    // cents, as a transfer moves them: 5,890,000; the 9,555 µ€ left carry forward.
    const novRun = await settleMonth(t.db, '2026-11', ctxAt(paris('2026-12-01', 2)))
    expect(novRun).toMatchObject({ payouts: 1, payoutsMicros: 5_890_000n, journals: 2 })
    expect(await householdPayouts(t.db, w.h)).toEqual({
      payouts: [{ month: '2026-11', amountMicros: 5_890_000n, status: 'paid' }],
      balanceMicros: 9_555n,
    })

    // Idempotent: running again pays nothing more, and the database holds one payout per household and month.
    expect(await settleMonth(t.db, '2026-11', ctxAt(paris('2026-12-05')))).toMatchObject({ kind: 'unchanged', payouts: 0 })
    const run = await t.db.selectFrom('settlement_runs').select('id').where('month', '=', '2026-11').executeTakeFirstOrThrow()
    const journal = await t.db.selectFrom('payouts').select('journal_id').executeTakeFirstOrThrow()
    await expect(
      t.db
        .insertInto('payouts')
        .values({ id: newId('payout'), household_id: w.h, month: '2026-11', amount_micros: 1n, status: 'paid', journal_id: journal.journal_id, run_id: run.id })
        .execute(),
    ).rejects.toThrow(/unique|duplicate/i)
    expect(await unbalancedJournals(t.db)).toEqual([])
  })

  it('nets a negative balance left by a correction against later earnings and never pays it', async () => {
    const w = await world(t)
    const ctxMin = (at: Date) => ctxAt(at, 1_000_000n)
    await ingest(t.db, t.dialect, w.m1, 'electricity', hourEnds(paris('2026-10-01'), paris('2026-11-01')))
    const oct = await settleMonth(t.db, '2026-10', ctxMin(paris('2026-11-01', 1)))
    // Paid in whole cents; the fraction of a cent is carried forward.
    const cents = (micros: bigint): bigint => micros - (micros % 10_000n)
    expect(oct.payoutsMicros).toBe(cents(745n * SHARE))
    const carried = 745n * SHARE - cents(745n * SHARE)

    // The household had in fact moved out on the 16th: from then on the data was nobody's, the reading stamped at
    // the move-out (which closes the 15th) too. It keeps 01:00 on the 1st to 23:00 on the 15th.
    await moveOut(t.db, w.occupancy, paris('2026-10-16'), { timezone: TZ })
    const adjustment = await settleMonth(t.db, '2026-10', ctxMin(paris('2026-11-10')))
    const kept = 15n * 24n - 1n
    const taken = (745n - kept) * SHARE
    expect(adjustment).toMatchObject({ kind: 'adjustment', postingMonth: '2026-11', householdsPostedMicros: -taken })

    // It moved to another meter on November 1st and earns there, but not enough to cover the correction in November.
    const m2 = await meter(t.db, w.operator)
    await occupy(t.db, m2, w.h, paris('2026-11-01'))
    await consent(t.db, { householdId: w.h, recipientId: w.recipient, offerId: w.offerId, granularity: 'load_curve', meterIds: [m2], validFrom: paris('2026-11-01') })
    await ingest(t.db, t.dialect, m2, 'electricity', hourEnds(paris('2026-11-01'), paris('2026-11-11')))
    const nov = await settleMonth(t.db, '2026-11', ctxMin(paris('2026-12-01', 1)))
    expect(nov).toMatchObject({ kind: 'closing', payouts: 0 })
    const novBalance = carried + 240n * SHARE - taken
    expect(novBalance).toBeLessThan(0n)
    expect(await householdPayouts(t.db, w.h)).toEqual({
      payouts: [{ month: '2026-10', amountMicros: cents(745n * SHARE), status: 'paid' }],
      balanceMicros: novBalance,
    })
    const novStatement = await householdStatement(t.db, w.h, '2026-11')
    expect(novStatement.adjustmentsMicros).toBe(-taken)
    // The month's own total; the balance also carries October's fraction of a cent.
    expect(novStatement.totalMicros).toBe(240n * SHARE - taken)

    // December's earnings cover it: the payout is what is left after netting.
    await ingest(t.db, t.dialect, m2, 'electricity', hourEnds(paris('2026-12-01'), paris('2027-01-01')))
    const dec = await settleMonth(t.db, '2026-12', ctxMin(paris('2027-01-01', 1)))
    expect(dec.payoutsMicros).toBe(cents(novBalance + 744n * SHARE))
    const all = await householdPayouts(t.db, w.h)
    expect(all.payouts.map((p) => [p.month, p.amountMicros])).toEqual([
      ['2026-10', cents(745n * SHARE)],
      ['2026-12', cents(novBalance + 744n * SHARE)],
    ])
    expect(all.balanceMicros).toBe((novBalance + 744n * SHARE) % 10_000n)
    // Everything earned, net of the correction, was paid or is carried: no more, no less.
    const { rows } = await sql<{ paid: bigint }>`SELECT sum(amount_micros)::bigint AS paid FROM payouts`.execute(t.db)
    expect(rows[0]!.paid + all.balanceMicros).toBe((kept + 240n + 744n) * SHARE)
    expect(await unbalancedJournals(t.db)).toEqual([])
  })
  it('never pays a household more than it is owed now: a correction booked after the month is netted first', async () => {
    const w = await world(t)
    // October on m1 (745 datums), under the 5 EUR minimum: carried forward.
    await ingest(t.db, t.dialect, w.m1, 'electricity', hourEnds(paris('2026-10-01'), paris('2026-11-01')))
    expect(await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-01', 2)))).toMatchObject({ kind: 'closing', payouts: 0 })
    // From November the household earns on m2 too (720 datums).
    const m2 = await meter(t.db, w.operator)
    await occupy(t.db, m2, w.h, paris('2026-11-01'))
    await consent(t.db, { householdId: w.h, recipientId: w.recipient, offerId: w.offerId, granularity: 'load_curve', meterIds: [m2], validFrom: paris('2026-11-01') })
    await ingest(t.db, t.dialect, m2, 'electricity', hourEnds(paris('2026-11-01'), paris('2026-12-01')))

    // On 1 December a move-out from m1 on 16 October is registered; the worker re-settles October
    // (its correction is booked in December), then closes November.
    await moveOut(t.db, w.occupancy, paris('2026-10-16'), { timezone: TZ })
    const at = ctxAt(paris('2026-12-01', 2))
    // It keeps 01:00 on the 1st to 23:00 on the 15th: the reading stamped at the move-out is nobody's.
    const taken = (745n - (15n * 24n - 1n)) * SHARE
    expect(await settleMonth(t.db, '2026-10', at)).toMatchObject({ kind: 'adjustment', postingMonth: '2026-12', householdsPostedMicros: -taken })
    const nov = await settleMonth(t.db, '2026-11', at)
    // Up to November it was owed 5,899,555 µ€, over the minimum; but December's correction leaves it
    // 4,345,133 µ€ now, under it: nothing is paid (5,890,000 µ€ were, before the netting).
    const owed = 745n * SHARE + 720n * SHARE - taken
    expect(owed).toBe(4_345_133n)
    expect(nov).toMatchObject({ kind: 'closing', payouts: 0, payoutsMicros: 0n })
    expect(await householdPayouts(t.db, w.h)).toEqual({ payouts: [], balanceMicros: owed })

    // December's closing, with a minimum of 1 EUR: paid what it is owed, in whole cents.
    const dec = await settleMonth(t.db, '2026-12', ctxAt(paris('2027-01-01', 2), 1_000_000n))
    expect(dec.payoutsMicros).toBe(4_340_000n)
    expect(await householdPayouts(t.db, w.h)).toEqual({ payouts: [{ month: '2026-12', amountMicros: 4_340_000n, status: 'paid' }], balanceMicros: 5_133n })
    expect(await unbalancedJournals(t.db)).toEqual([])
  })

  it('settles a month older than a closed one as an adjustment in the current month, never into closed books', async () => {
    const w = await world(t)
    await ingest(t.db, t.dialect, w.m1, 'electricity', hourEnds(paris('2026-10-01'), paris('2026-11-01')))
    expect(await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-01', 2)))).toMatchObject({ kind: 'closing', seq: 1, payouts: 0 })

    // September's data arrives (backfilled) after October was closed: 720 datums.
    await ingest(t.db, t.dialect, w.m1, 'electricity', hourEnds(paris('2026-09-01'), paris('2026-10-01')))
    const sep = await settleMonth(t.db, '2026-09', ctxAt(paris('2026-11-10')))
    expect(sep).toMatchObject({ kind: 'adjustment', seq: 2, postingMonth: '2026-11', dataCount: 720n, householdsPostedMicros: 720n * SHARE, payouts: 0 })
    // September is closed empty in its own month; nothing is booked there.
    const runs = await t.db.selectFrom('settlement_runs').select(['seq', 'posting_month', 'lines', 'journals', 'payouts']).where('month', '=', '2026-09').orderBy('seq').execute()
    expect(runs).toEqual([
      { seq: 1, posting_month: '2026-09', lines: 0, journals: 0, payouts: 0 },
      { seq: 2, posting_month: '2026-11', lines: 1, journals: 1, payouts: 0 },
    ])
    expect(await journalsBookedIn(t.db, '2026-09')).toEqual([])
    expect(await settleMonth(t.db, '2026-09', ctxAt(paris('2026-11-11')))).toMatchObject({ kind: 'unchanged', seq: 2 })
    // A month older still, without data, is closed empty and posts nothing.
    expect(await settleMonth(t.db, '2026-08', ctxAt(paris('2026-11-11')))).toMatchObject({ kind: 'closing', seq: 1, journals: 0, payouts: 0 })

    // November's statement shows it, and November's closing pays it with October's carried balance.
    const statement = await householdStatement(t.db, w.h, '2026-11')
    expect(statement.adjustments).toEqual([
      { forMonth: '2026-09', recipientId: w.recipient, offerId: w.offerId, granularity: 'load_curve', data: 720n, grossMicros: 720n * PRICE, shareMicros: 720n * SHARE },
    ])
    const nov = await settleMonth(t.db, '2026-11', ctxAt(paris('2026-12-01', 2)))
    expect(nov.payoutsMicros).toBe(5_890_000n)
    expect(await householdPayouts(t.db, w.h)).toEqual({ payouts: [{ month: '2026-11', amountMicros: 5_890_000n, status: 'paid' }], balanceMicros: 9_555n })
    expect(await unbalancedJournals(t.db)).toEqual([])
  })
})
