import type { ColumnType } from 'kysely'

export type PayoutStatus = 'paid'

/** A household's payout for a month (at most one; insert only), posted by its run's payout journal `journal_id`. */
export interface PayoutsTable {
  id: string
  household_id: string
  month: string
  amount_micros: ColumnType<bigint, bigint, never>
  status: PayoutStatus
  journal_id: string
  run_id: string
  created_at: ColumnType<Date, Date | undefined, never>
}
