import type { ColumnType, Generated } from 'kysely'

export type ConsentEvent = 'granted' | 'revoked' | 'expired' | 'ended_by_move_out'

/**
 * Append-only history of every consent (UPDATE and DELETE are refused by a trigger). Each
 * event appears once per consent; `ended_by_move_out` once per meter, with `meter_id`.
 * `actor` is the household's id, 'operator' or 'system'.
 */
export interface ConsentLogTable {
  id: Generated<bigint>
  consent_id: string
  household_id: string
  event: ConsentEvent
  meter_id: string | null
  actor: string
  at: Date
  created_at: ColumnType<Date, Date | undefined, never>
}
