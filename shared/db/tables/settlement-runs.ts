import type { ColumnType } from 'kysely'

/**
 * One settlement run of a month that posted something or closed the month (insert only).
 * `posting_month` is where its journals are booked: the month itself for the run that
 * closes it (seq 1), the then current month for every later run (adjustments).
 */
export interface SettlementRunsTable {
  id: string
  month: string
  seq: number
  posting_month: string
  /** Every datum ingested before this instant is in the run (see settlement-service). */
  watermark: Date
  input_hash: string
  lines: number
  data_count: ColumnType<bigint, bigint, never>
  /** The month's gross as this run computed it (not what it posted). */
  gross_micros: ColumnType<bigint, bigint, never>
  /** The gross's split by role (they sum to gross_micros). */
  household_micros: ColumnType<bigint, bigint, never>
  operators_micros: ColumnType<bigint, bigint, never>
  platform_micros: ColumnType<bigint, bigint, never>
  third_parties_micros: ColumnType<bigint, bigint, never>
  journals: number
  payouts: number
  started_at: Date
  created_at: ColumnType<Date, Date | undefined, never>
}
