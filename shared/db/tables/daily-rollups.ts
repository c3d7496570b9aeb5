import type { ColumnType } from 'kysely'
import type { RegisterValues } from './readings.ts'

/**
 * Per (meter, household, local day): how many datums, their time span and the lowest and
 * highest value of each cumulative register. Updated in the ingest transaction, so daily
 * energy and settlement counts never scan raw readings. household_id null = nobody's.
 */
export interface DailyRollupsTable {
  meter_id: string
  household_id: string | null
  day: string
  readings_count: number
  first_ts: Date
  last_ts: Date
  index_min: ColumnType<RegisterValues, string, string>
  index_max: ColumnType<RegisterValues, string, string>
  updated_at: ColumnType<Date, Date | undefined, Date | undefined>
}
