import type { Kysely } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'

/**
 * Persistent MQTT sessions of recipients and households, by client id. aedes keeps a session
 * (its subscriptions and the messages queued while its client is offline) per client id only:
 * without an owner recorded here, another principal connecting with that id would take the
 * session over, or wipe it with a clean connect.
 */

/**
 * Claims `clientId` for `principal` as it connects: false when another principal holds a
 * persistent session under it. A persistent connect (`persistent`, clean session 0) records the
 * claim; a clean one by the owner releases it (MQTT discards the stored session then).
 */
export async function claimMqttSession(db: Kysely<Database>, clientId: string, principal: string, persistent: boolean, now: Date): Promise<boolean> {
  if (persistent) {
    const inserted = await db
      .insertInto('mqtt_sessions')
      .values({ client_id: clientId, principal, created_at: now })
      .onConflict((oc) => oc.column('client_id').doNothing())
      .returning('principal')
      .executeTakeFirst()
    if (inserted !== undefined) return true
  }
  const held = await db.selectFrom('mqtt_sessions').select('principal').where('client_id', '=', clientId).executeTakeFirst()
  if (held === undefined) return true
  if (held.principal !== principal) return false
  if (!persistent) await db.deleteFrom('mqtt_sessions').where('client_id', '=', clientId).where('principal', '=', principal).execute()
  return true
}
