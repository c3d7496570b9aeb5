import { sql, type Kysely, type Transaction } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { PayoutStatus } from '../../shared/db/tables/payouts.ts'
import type { Granularity } from '../../shared/wire.ts'

/** SQL of what settlement shows: statements, invoices, payouts and balances. */

type Db = Kysely<Database> | Transaction<Database>

export interface StatementLineRow {
  recipient_id: string
  offer_id: string | null
  granularity: Granularity
  data: bigint
  gross: bigint
  share: bigint
}

/** A household's lines of a closing run, one per (recipient, offer, granularity). */
export async function findStatementLines(db: Db, runId: string, month: string, householdId: string): Promise<StatementLineRow[]> {
  const { rows } = await sql<StatementLineRow>`
    SELECT l.recipient_id, l.offer_id, l.granularity,
      sum(l.data_count)::bigint AS data, sum(l.gross_micros)::bigint AS gross, sum(l.household_share_micros)::bigint AS share
    FROM settlement_lines l
    WHERE l.household_id = ${householdId} AND l.month = ${month} AND l.run_id = ${runId}
    GROUP BY l.recipient_id, l.offer_id, l.granularity
    ORDER BY l.recipient_id, l.offer_id NULLS LAST, l.granularity`.execute(db)
  return rows
}

export interface InvoiceLineRow {
  consent_id: string
  offer_id: string | null
  granularity: Granularity
  data_count: bigint
  gross_micros: bigint
}

/** A recipient's lines of a closing run, one per consent. */
export async function findInvoiceLines(db: Db, runId: string, month: string, recipientId: string): Promise<InvoiceLineRow[]> {
  return db
    .selectFrom('settlement_lines')
    .select(['consent_id', 'offer_id', 'granularity', 'data_count', 'gross_micros'])
    .where('recipient_id', '=', recipientId)
    .where('month', '=', month)
    .where('run_id', '=', runId)
    .orderBy('consent_id')
    .execute()
}

/** A consent's line as a later run changed it: data, gross and share less what the line was before (negative when less was released). */
export interface AdjustmentLineRow extends StatementLineRow {
  /** The month the run corrected. */
  for_month: string
  consent_id: string
}

/**
 * What the runs booked in `postingMonth` for earlier months changed, consent by consent, for one
 * recipient or one household: each line such a run wrote (runs write the lines whose state changed)
 * less the consent's line before it in that month. Oldest corrected month first.
 */
export async function findAdjustmentLines(db: Db, postingMonth: string, who: { recipientId: string } | { householdId: string }): Promise<AdjustmentLineRow[]> {
  const whose = 'recipientId' in who ? sql`l.recipient_id = ${who.recipientId}` : sql`l.household_id = ${who.householdId}`
  const { rows } = await sql<AdjustmentLineRow>`
    SELECT r.month AS for_month, l.consent_id, l.recipient_id, l.offer_id, l.granularity,
      (l.data_count - coalesce(p.data_count, 0))::bigint AS data,
      (l.gross_micros - coalesce(p.gross_micros, 0))::bigint AS gross,
      (l.household_share_micros - coalesce(p.household_share_micros, 0))::bigint AS share
    FROM settlement_runs r
    JOIN settlement_lines l ON l.run_id = r.id
    LEFT JOIN LATERAL (
      SELECT pl.data_count, pl.gross_micros, pl.household_share_micros
      FROM settlement_lines pl JOIN settlement_runs pr ON pr.id = pl.run_id
      WHERE pl.month = r.month AND pl.consent_id = l.consent_id AND pr.seq < r.seq
      ORDER BY pr.seq DESC LIMIT 1
    ) p ON true
    WHERE r.seq > 1 AND r.posting_month = ${postingMonth} AND ${whose}
    ORDER BY r.month, r.seq, l.consent_id`.execute(db)
  return rows.filter((r) => r.data !== 0n || r.gross !== 0n || r.share !== 0n)
}

/** Sum of an account's entries in adjustment journals booked in a month; null when there are none. */
export async function findAdjustmentsBookedIn(db: Db, postingMonth: string, accountId: string): Promise<bigint | null> {
  const { rows } = await sql<{ amount: bigint | null }>`
    SELECT sum(e.amount_micros)::bigint AS amount
    FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
    WHERE e.account_id = ${accountId} AND j.kind = 'adjustment' AND j.posting_month = ${postingMonth}`.execute(db)
  return rows[0]!.amount
}

/** An account's balance: the sum of all its entries. */
export async function findBalance(db: Db, accountId: string): Promise<bigint> {
  const { rows } = await sql<{ amount: bigint }>`
    SELECT coalesce(sum(amount_micros), 0)::bigint AS amount FROM ledger_entries WHERE account_id = ${accountId}`.execute(db)
  return rows[0]!.amount
}

export interface PayoutRow {
  month: string
  amount_micros: bigint
  status: PayoutStatus
}

export async function findPayouts(db: Db, householdId: string): Promise<PayoutRow[]> {
  return db.selectFrom('payouts').select(['month', 'amount_micros', 'status']).where('household_id', '=', householdId).orderBy('month').execute()
}

/**
 * Months in which a household has a statement with something on it, oldest first: closed months
 * with its lines, and months (closed or not yet) in which adjustments were booked for it.
 */
export async function findStatementMonths(db: Db, householdId: string): Promise<string[]> {
  const { rows } = await sql<{ month: string }>`
    SELECT r.month FROM settlement_runs r
    WHERE r.seq = 1 AND EXISTS (SELECT 1 FROM settlement_lines l WHERE l.run_id = r.id AND l.household_id = ${householdId})
    UNION
    SELECT j.posting_month FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
    WHERE e.account_id = ${'household:' + householdId} AND j.kind = 'adjustment'
    ORDER BY 1`.execute(db)
  return rows.map((r) => r.month)
}
