import type { ColumnType } from 'kysely'
import type { Granularity } from '../../wire.ts'

/**
 * A (month, consent) line as a run computed it: how many datums the consent released in
 * the month, their gross price and the household's share. Written only by the run that
 * changed it (insert only); a month's statement shows the lines of its closing run.
 */
export interface SettlementLinesTable {
  run_id: string
  month: string
  consent_id: string
  household_id: string
  recipient_id: string
  /** Null for legal-basis consents, which are free. */
  offer_id: string | null
  granularity: Granularity
  data_count: ColumnType<bigint, bigint, never>
  gross_micros: ColumnType<bigint, bigint, never>
  household_share_micros: ColumnType<bigint, bigint, never>
}
