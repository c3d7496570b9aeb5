import type { ColumnType } from 'kysely'
import type { Granularity } from '../../wire.ts'

export type ConsentKind = 'offer' | 'legal_basis'
export type ConsentStatus = 'active' | 'revoked' | 'expired' | 'ended_by_move_out'

/**
 * A household's consent for a recipient: valid over [valid_from, valid_until) (at most three
 * years), releasing data stamped in [data_from, data_until) (until null = open) of the meters
 * in `consent_meters`. The terms never change; only `status` moves on from 'active', once.
 * `offer_id` is null exactly for kind 'legal_basis' (a supplier's monthly billing data, free).
 */
export interface ConsentsTable {
  id: string
  household_id: string
  recipient_id: string
  offer_id: string | null
  kind: ConsentKind
  purpose: string
  granularity: Granularity
  /** The household chose "all my meters"; consent_meters holds the ones it occupied then. */
  all_meters: boolean
  valid_from: Date
  valid_until: Date
  data_from: Date
  data_until: Date | null
  status: ConsentStatus
  status_changed_at: Date
  revoked_at: Date | null
  created_at: ColumnType<Date, Date | undefined, never>
}
