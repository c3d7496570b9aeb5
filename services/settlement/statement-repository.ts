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
