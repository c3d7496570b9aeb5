import type { ColumnType } from 'kysely'

/** Register values of one datum: OBIS code to an integer in the register's base unit. */
export type RegisterValues = Record<string, number>

/**
 * One row per datum, keyed (meter_id, ts), range-partitioned by UTC month.
 * household_id is the occupant at ts, or null when nobody occupied the meter then.
 */
export interface ReadingsTable {
  meter_id: string
  ts: Date
  household_id: string | null
  values: ColumnType<RegisterValues, string, string>
  ingested_at: ColumnType<Date, Date | undefined, never>
}
