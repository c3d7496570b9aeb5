import type { ColumnType } from 'kysely'

/**
 * A household occupies a meter's premises over [valid_from, valid_until); valid_until null = still there.
 * The database refuses overlapping occupancies of one meter (an exclusion constraint on the
 * generated `period` range), so attribution is never ambiguous.
 */
export interface OccupanciesTable {
  id: string
  meter_id: string
  household_id: string
  valid_from: Date
  valid_until: Date | null
  /**
   * When the occupancy's end ends the household's consents for the meter: the move-out, or when it
   * was registered if that was later (a move-out entered after the fact), and never later than a
   * moment at which they had already ended. Null: at valid_until.
   */
  consents_end_at: ColumnType<Date | null, Date | null | undefined, Date | null>
  period: ColumnType<string, never, never>
  created_at: ColumnType<Date, Date | undefined, never>
}
