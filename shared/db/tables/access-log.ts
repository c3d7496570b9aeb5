import type { ColumnType } from 'kysely'

export type ReleaseChannel = 'mqtt' | 'http'

/**
 * How many datums of a household's meter a recipient received, per local day the datums
 * belong to (a monthly datum: the first day of its month) and channel. Incremented by
 * upserts; never decremented.
 */
export interface AccessLogTable {
  recipient_id: string
  household_id: string
  meter_id: string
  day: string
  channel: ReleaseChannel
  datums: ColumnType<bigint, bigint, bigint>
  updated_at: ColumnType<Date, Date | undefined, Date | undefined>
}
