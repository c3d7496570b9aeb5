import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { moveOut } from '../../../services/metering/occupancy-service.ts'
import { settleMonth } from '../../../services/settlement/settlement-service.ts'
import { householdPayouts, householdStatement } from '../../../services/settlement/statement-service.ts'
import { newId } from '../../../shared/ids.ts'
import { describeDatabases, type TestDatabase } from '../../support/database.ts'
import { TZ, consent, ctxAt, household, hourly, ingest, meter, occupy, offer, paris, party, unbalancedJournals } from './settlement-fixtures.ts'

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
    const oct = hourly(paris('2026-10-01'), paris('2026-11-01'))
    const nov = hourly(paris('2026-11-01'), paris('2026-12-01'))
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
    await ingest(t.db, t.dialect, w.m1, 'electricity', hourly(paris('2026-10-01'), paris('2026-11-01')))
    const oct = await settleMonth(t.db, '2026-10', ctxMin(paris('2026-11-01', 1)))
    // Paid in whole cents; the fraction of a cent is carried forward.
    const cents = (micros: bigint): bigint => micros - (micros % 10_000n)
    expect(oct.payoutsMicros).toBe(cents(745n * SHARE))
    const carried = 745n * SHARE - cents(745n * SHARE)

    // The household had in fact moved out on the 16th: from then on the data was nobody's.
    await moveOut(t.db, w.occupancy, paris('2026-10-16'), { timezone: TZ })
    const adjustment = await settleMonth(t.db, '2026-10', ctxMin(paris('2026-11-10')))
    const taken = (745n - 15n * 24n) * SHARE
    expect(adjustment).toMatchObject({ kind: 'adjustment', postingMonth: '2026-11', householdsPostedMicros: -taken })

    // It moved to another meter on November 1st and earns there, but not enough to cover the correction in November.
    const m2 = await meter(t.db, w.operator)
    await occupy(t.db, m2, w.h, paris('2026-11-01'))
    await consent(t.db, { householdId: w.h, recipientId: w.recipient, offerId: w.offerId, granularity: 'load_curve', meterIds: [m2], validFrom: paris('2026-11-01') })
    await ingest(t.db, t.dialect, m2, 'electricity', hourly(paris('2026-11-01'), paris('2026-11-11')))
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
    await ingest(t.db, t.dialect, m2, 'electricity', hourly(paris('2026-12-01'), paris('2027-01-01')))
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
    expect(rows[0]!.paid + all.balanceMicros).toBe((15n * 24n + 240n + 744n) * SHARE)
    expect(await unbalancedJournals(t.db)).toEqual([])
  })
})
