import type { ColumnType } from 'kysely'
import type { Commodity } from '../../obis.ts'

export interface MetersTable {
  id: string
  operator_id: string
  commodity: Commodity
  interval_minutes: 15 | 30 | 60
  secret_hash: string
  created_at: ColumnType<Date, Date | undefined, never>
  /** When it was taken out of service: it may not connect since; null while in service. */
  retired_at: ColumnType<Date | null, never, Date>
}
