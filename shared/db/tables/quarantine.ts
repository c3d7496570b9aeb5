import type { ColumnType, Generated } from 'kysely'
import type { QuarantineReason } from '../../errors.ts'

/** Data a meter sent that was acknowledged but not stored as a reading, with the reason. */
export interface QuarantineTable {
  id: Generated<bigint>
  meter_id: string
  received_at: Date
  reason: QuarantineReason
  /** The datum's timestamp when one could be read. */
  ts: Date | null
  /** The raw bytes kept (the whole payload or datum, or the first 4 KiB of an oversized one). */
  payload: Buffer
  /** Size of what the meter sent, in bytes. */
  payload_bytes: number
  detail: string
  created_at: ColumnType<Date, Date | undefined, never>
}
