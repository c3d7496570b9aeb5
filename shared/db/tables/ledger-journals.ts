import type { ColumnType } from 'kysely'

export type JournalKind = 'settlement' | 'adjustment' | 'payout'

/**
 * A run's settlement, adjustment or payout journal (insert only), one entry per account.
 * Its entries sum to zero and there are at least two, checked by the database at the commit
 * of the transaction that created it, the only one that may add entries to it. An
 * adjustment is booked in `posting_month` and labelled with the month it corrects (`for_month`).
 */
export interface LedgerJournalsTable {
  id: string
  kind: JournalKind
  run_id: string
  posting_month: string
  for_month: string
  /** The transaction that created it (txid_current()); entries may be added in that one only. */
  created_txid: ColumnType<bigint, never, never>
  created_at: ColumnType<Date, Date | undefined, never>
}
