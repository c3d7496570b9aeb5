import { sql, type Kysely } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import { CHANGES_CHANNEL } from '../metering/occupancy-repository.ts'

/**
 * Change notices of the consent service on the shared channel, sent inside the changing
 * transaction so that listeners (every broker's release view) hear of a change only once it
 * is committed. Payloads are small JSON objects well under NOTIFY's 8,000 bytes.
 */

export type ConsentChangeEvent = 'granted' | 'revoked' | 'expired' | 'ended_by_move_out' | 'meter_ended'

export type ChangeNotice =
  | { kind: 'consent'; id: string; householdId: string; recipientId: string; event: ConsentChangeEvent }
  | { kind: 'offer'; id: string; recipientId: string }

export async function notifyChange(trx: Kysely<Database>, notice: ChangeNotice): Promise<void> {
  await sql`SELECT pg_notify(${CHANGES_CHANNEL}, ${JSON.stringify(notice)})`.execute(trx)
}
