import type { ColumnType } from 'kysely'

export type JournalKind = 'settlement' | 'adjustment' | 'payout'

/**
 * A journal of one household in one run (insert only). Its entries sum to zero and there
 * are at least two, checked by the database at commit. An adjustment is booked in
 * `posting_month` and labelled with the earlier month it corrects (`for_month`).
 */
export interface LedgerJournalsTable {
  id: string
  kind: JournalKind
  run_id: string
  posting_month: string
  for_month: string
  household_id: string
  created_at: ColumnType<Date, Date | undefined, never>
}
