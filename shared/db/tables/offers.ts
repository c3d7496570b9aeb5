import type { ColumnType } from 'kysely'
import type { Granularity } from '../../wire.ts'

/**
 * An offer the operator publishes: a recipient pays `price_micros_per_datum` for each datum
 * of `granularity`, split in basis points among the household, the meter's operator, the
 * platform and the third parties of `offer_shares`; all parts sum to 10,000 (checked by the
 * database at commit). Its terms are immutable once published; it may be withdrawn, once
 * (`withdrawn_at`), after which it takes no new consents.
 */
export interface OffersTable {
  id: string
  recipient_id: string
  purpose: string
  granularity: Granularity
  price_micros_per_datum: ColumnType<bigint, bigint, never>
  household_bps: number
  operator_bps: number
  platform_bps: number
  created_at: ColumnType<Date, Date | undefined, never>
  withdrawn_at: ColumnType<Date | null, never, Date>
}
