import type { ColumnType } from 'kysely'

export type LedgerAccountKind = 'household' | 'party' | 'receivable' | 'platform' | 'payouts'

/**
 * A ledger account (insert only): a household's earnings, a party's shares as operator or
 * third party, what a recipient owes (receivable), the platform's share, the payouts sent.
 * owner_id is the household or party, null for the platform and payouts accounts.
 */
export interface LedgerAccountsTable {
  id: string
  kind: LedgerAccountKind
  owner_id: string | null
  created_at: ColumnType<Date, Date | undefined, never>
}
