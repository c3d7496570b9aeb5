import type { ColumnType, Generated } from 'kysely'
import type { RegisterValues } from './readings.ts'

/**
 * Daily datums an occupancy change made due on `daily/{meterId}`, written in the change's
 * transaction and deleted by the broker that takes them to publish (one broker of several).
 */
export interface DailyPublicationsDueTable {
  id: ColumnType<bigint, never, never>
  meter_id: string
  household_id: string
  day: string
  values: ColumnType<RegisterValues, string, string>
  created_at: Generated<Date>
}
