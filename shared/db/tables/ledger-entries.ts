import type { ColumnType, Generated } from 'kysely'

/**
 * One signed amount on one account in one journal (insert only): positive credits the
 * account, negative debits it; never zero. One entry per account per journal. Its journal
 * (created by the same transaction) and its account must exist, checked per statement.
 */
export interface LedgerEntriesTable {
  id: Generated<bigint>
  journal_id: string
  account_id: string
  amount_micros: ColumnType<bigint, bigint, never>
}
