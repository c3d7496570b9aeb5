import type { ColumnType } from 'kysely'

export interface HouseholdsTable {
  id: string
  name: string
  /** Stored lower-cased; unique. */
  email: string
  password_hash: string
  api_key_hash: string
  created_at: ColumnType<Date, Date | undefined, never>
}
