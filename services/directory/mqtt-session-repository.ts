import { sql, type Kysely } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'

/**
 * Persistent MQTT sessions of recipients and households, by client id. aedes keeps a session
 * (its subscriptions and the messages queued while its client is offline) per client id only:
 * without an owner recorded here, another principal connecting with that id would take the
 * session over, or wipe it with a clean connect.
 */

/**
 * What a connect's claim on its client id comes to: `claimed` (it may connect), `taken` (another
 * principal's persistent session waits under that id), `full` (a persistent session under a new
 * client id while the principal holds `sessionsMax` already, on whatever broker).
 */
export type MqttSessionClaim = 'claimed' | 'taken' | 'full'

// One advisory lock per principal while its sessions are counted and one is added, on PostgreSQL
// and PGlite alike: two connects of one principal on two brokers would otherwise both count
// sessionsMax - 1 and both insert.
const LOCK_CLASS = 0x6d71_7373 // 'mqss'

/**
 * Claims `clientId` for `principal` as it connects. A persistent connect (`persistent`, clean
 * session 0) records the claim, unless the principal holds `sessionsMax` persistent sessions under
 * other client ids already; its own session under `clientId` it may always take up again. A clean
 * connect by the owner releases the claim (MQTT discards the stored session then).
 */
export async function claimMqttSession(
  db: Kysely<Database>,
  clientId: string,
  principal: string,
  persistent: boolean,
  now: Date,
  sessionsMax: number,
): Promise<MqttSessionClaim> {
  const held = await db.selectFrom('mqtt_sessions').select('principal').where('client_id', '=', clientId).executeTakeFirst()
  if (held !== undefined && held.principal !== principal) return 'taken'
  if (!persistent) {
    if (held !== undefined) await db.deleteFrom('mqtt_sessions').where('client_id', '=', clientId).where('principal', '=', principal).execute()
    return 'claimed'
  }
  if (held !== undefined) {
    await touchMqttSessions(db, [clientId], now)
    return 'claimed'
  }
  return db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(${LOCK_CLASS}::int, hashtext(${principal}))`.execute(trx)
    const { count } = await trx
      .selectFrom('mqtt_sessions')
      .select((eb) => eb.fn.countAll<string>().as('count'))
      .where('principal', '=', principal)
      .executeTakeFirstOrThrow()
    if (Number(count) >= sessionsMax) return 'full'
    const inserted = await trx
      .insertInto('mqtt_sessions')
      .values({ client_id: clientId, principal, created_at: now, seen_at: now })
      .onConflict((oc) => oc.column('client_id').doNothing())
      .returning('principal')
      .executeTakeFirst()
    if (inserted !== undefined) return 'claimed'
    // Claimed meanwhile by a connect on another broker: by this principal (its own) or another.
    const owner = await trx.selectFrom('mqtt_sessions').select('principal').where('client_id', '=', clientId).executeTakeFirst()
    return owner?.principal === principal ? 'claimed' : 'taken'
  })
}

/**
 * Records the sessions connected here as seen `now`, and claims again any whose claim is gone (ended
 * by a sweep as the session reconnected): it is its owner's, connected.
 */
export async function recordConnectedMqttSessions(db: Kysely<Database>, sessions: ReadonlyArray<{ clientId: string; principal: string }>, now: Date): Promise<void> {
  if (sessions.length === 0) return
  await sql`INSERT INTO mqtt_sessions (client_id, principal, created_at, seen_at)
    SELECT s.client_id, s.principal, ${now}, ${now} FROM unnest(${sessions.map((s) => s.clientId)}::text[], ${sessions.map((s) => s.principal)}::text[]) AS s (client_id, principal)
    ON CONFLICT (client_id) DO UPDATE SET seen_at = excluded.seen_at WHERE mqtt_sessions.principal = excluded.principal`.execute(db)
}

/** Records the sessions as seen `now` (just disconnected, or taken up again). */
export async function touchMqttSessions(db: Kysely<Database>, clientIds: readonly string[], now: Date): Promise<void> {
  if (clientIds.length === 0) return
  await db
    .updateTable('mqtt_sessions')
    .set({ seen_at: now })
    .where(sql<boolean>`client_id = ANY(${[...clientIds]}::text[])`)
    .execute()
}

/**
 * Ends the claims of the sessions last seen before `cutoff`, but those in `connected` (connected
 * here, whatever their row says), and answers their client ids: their sessions are to be dropped.
 */
export async function expireMqttSessions(db: Kysely<Database>, cutoff: Date, connected: readonly string[]): Promise<string[]> {
  const rows = await db
    .deleteFrom('mqtt_sessions')
    .where('seen_at', '<', cutoff)
    .where(sql<boolean>`NOT (client_id = ANY(${[...connected]}::text[]))`)
    .returning('client_id')
    .execute()
  return rows.map((r) => r.client_id)
}
