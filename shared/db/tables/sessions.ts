import type { ColumnType } from 'kysely'

/** A household's portal session; the cookie's secret is kept only as a salted hash. */
export interface SessionsTable {
  id: string
  household_id: string
  token_hash: string
  created_at: ColumnType<Date, Date, never>
  expires_at: ColumnType<Date, Date, never>
}
