import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { newId } from '../../../shared/ids.ts'
import { settleMonth } from '../../../services/settlement/settlement-service.ts'
import { describePostgres, holdConnection } from '../../support/database.ts'

/** The advisory lock key settlement-repository takes (class 'mset', object 1). */
const SETTLEMENT_LOCK_CLASS = 0x6d73_6574
import { consent, ctxAt, household, hourly, ingest, meter, occupy, offer, paris, party, unbalancedJournals } from './settlement-fixtures.ts'

/** Lock-dependent behaviour: several processes (here, connection pools) settling at once. */
describePostgres('concurrent settlement runs', (t) => {
  it('let two processes settling the same month at once post it exactly once', async () => {
    const operator = await party(t.db, 'utility', 'Grid')
    const recipient = await party(t.db, 'third_party', 'Advice App')
    const offerId = await offer(t.db, { recipientId: recipient, granularity: 'load_curve', priceMicrosPerDatum: 100n, householdBps: 6_000, operatorBps: 2_000, platformBps: 2_000 })
    for (let i = 0; i < 3; i++) {
      const h = await household(t.db, `H${i}`)
      const m = await meter(t.db, operator)
      await occupy(t.db, m, h, paris('2026-09-01'))
      await consent(t.db, { householdId: h, recipientId: recipient, offerId, granularity: 'load_curve', meterIds: [m], validFrom: paris('2026-09-01') })
      await ingest(t.db, t.dialect, m, 'electricity', hourly(paris('2026-10-01'), paris('2026-10-11')))
    }
    const others = await Promise.all([t.openAnother(), t.openAnother(), t.openAnother()])
    try {
      const ctx = ctxAt(paris('2026-11-02'), 1n)
      const results = await Promise.all([settleMonth(t.db, '2026-10', ctx), ...others.map((o) => settleMonth(o.db, '2026-10', ctx))])
      expect(results.map((r) => r.kind).sort()).toEqual(['closing', 'unchanged', 'unchanged', 'unchanged'])
      expect(new Set(results.map((r) => r.runId)).size).toBe(1)
      const counts = await sql<{ runs: bigint; journals: bigint; payouts: bigint; lines: bigint }>`
        SELECT (SELECT count(*) FROM settlement_runs) AS runs, (SELECT count(*) FROM ledger_journals) AS journals,
               (SELECT count(*) FROM payouts) AS payouts, (SELECT count(*) FROM settlement_lines) AS lines`.execute(t.db)
      expect(counts.rows[0]).toEqual({ runs: 1n, journals: 2n, payouts: 3n, lines: 3n })
      expect(await unbalancedJournals(t.db)).toEqual([])
    } finally {
      await Promise.all(others.map((o) => o.close()))
    }
  })

  it('wait for the run in progress: the lock is held until its transaction has committed', async () => {
    const other = await t.openAnother()
    try {
      // Another process holds the settlement lock, as a run in progress does.
      const holder = await holdConnection(
        other.db,
        'session',
        (conn) => sql`SELECT pg_advisory_lock(${SETTLEMENT_LOCK_CLASS}::int, 1)`.execute(conn),
        (conn) => sql`SELECT pg_advisory_unlock(${SETTLEMENT_LOCK_CLASS}::int, 1)`.execute(conn),
      )
      let finished = false
      const run = settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-02'))).then((r) => {
        finished = true
        return r
      })
      // Until the run is seen waiting for the lock in pg_locks.
      for (;;) {
        const { rows } = await sql<{ n: bigint }>`SELECT count(*) AS n FROM pg_locks
          WHERE locktype = 'advisory' AND NOT granted AND classid = ${SETTLEMENT_LOCK_CLASS} AND objid = 1
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`.execute(other.db)
        if (rows[0]!.n > 0n) break
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      expect(finished).toBe(false)
      expect(await t.db.selectFrom('settlement_runs').select('id').execute()).toEqual([])
      holder.release()
      await holder.done
      expect((await run).kind).toBe('closing')
    } finally {
      await other.close()
    }
  })

  it('refuse a second run with the same number even without the lock (the unique key behind it)', async () => {
    const row = {
      month: '2026-10',
      seq: 1,
      posting_month: '2026-10',
      watermark: new Date(),
      input_hash: 'x',
      lines: 0,
      data_count: 0n,
      gross_micros: 0n,
      household_micros: 0n,
      operators_micros: 0n,
      platform_micros: 0n,
      third_parties_micros: 0n,
      journals: 0,
      payouts: 0,
      started_at: new Date(),
    }
    await t.db.insertInto('settlement_runs').values({ id: newId('run'), ...row }).execute()
    await expect(t.db.insertInto('settlement_runs').values({ id: newId('run'), ...row }).execute()).rejects.toThrow(/settlement_runs_month_seq_key/)
  })
})
