import { sql, type Kysely, type Transaction } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'

/** SQL of a household's statement totals over many months at once (the portal's chart). */

type Db = Kysely<Database> | Transaction<Database>

export interface MonthTotalsRow {
  month: string
  closed: boolean
  shares: bigint
  adjustments: bigint
}

/**
 * Per month in which the household has lines or adjustments (as findStatementMonths): its
 * shares in the closing run's lines (none while the month is open), and what adjustment
 * journals booked that month on its account. The newest `monthsMax` months, newest first.
 */
export async function findHouseholdMonthTotals(db: Db, householdId: string, accountId: string, monthsMax: number): Promise<MonthTotalsRow[]> {
  const { rows } = await sql<MonthTotalsRow>`
    WITH closing AS (SELECT id, month FROM settlement_runs WHERE seq = 1),
    shares AS (
      SELECT c.month, sum(l.household_share_micros)::bigint AS shares
      FROM closing c JOIN settlement_lines l ON l.run_id = c.id
      WHERE l.household_id = ${householdId}
      GROUP BY c.month),
    adjustments AS (
      SELECT j.posting_month AS month, sum(e.amount_micros)::bigint AS adjustments
      FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
      WHERE e.account_id = ${accountId} AND j.kind = 'adjustment'
      GROUP BY j.posting_month),
    months AS (SELECT month FROM shares UNION SELECT month FROM adjustments)
    SELECT m.month, EXISTS (SELECT 1 FROM closing c WHERE c.month = m.month) AS closed,
      coalesce(s.shares, 0)::bigint AS shares, coalesce(a.adjustments, 0)::bigint AS adjustments
    FROM months m LEFT JOIN shares s ON s.month = m.month LEFT JOIN adjustments a ON a.month = m.month
    ORDER BY m.month DESC
    LIMIT ${monthsMax}`.execute(db)
  return rows
}
