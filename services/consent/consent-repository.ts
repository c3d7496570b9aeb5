import { sql, type Insertable, type Kysely, type Selectable, type Transaction } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { ConsentEvent, ConsentLogTable } from '../../shared/db/tables/consent-log.ts'
import type { ConsentStatus, ConsentsTable } from '../../shared/db/tables/consents.ts'

/** Consents, their meters and their append-only log. */

type Db = Kysely<Database> | Transaction<Database>

export type ConsentRow = Selectable<ConsentsTable>
export type ConsentLogRow = Selectable<ConsentLogTable>

export async function insertConsent(trx: Db, row: Insertable<ConsentsTable>, meterIds: readonly string[]): Promise<void> {
  await trx.insertInto('consents').values(row).execute()
  await trx
    .insertInto('consent_meters')
    .values(meterIds.map((meter_id) => ({ consent_id: row.id, meter_id })))
    .execute()
}

export async function findConsent(db: Db, id: string): Promise<ConsentRow | undefined> {
  return db.selectFrom('consents').selectAll().where('id', '=', id).executeTakeFirst()
}

/** The consent row, locked until the end of the transaction (sweepers and revocations queue here). */
export async function lockConsent(trx: Db, id: string): Promise<ConsentRow | undefined> {
  return trx.selectFrom('consents').selectAll().where('id', '=', id).forUpdate().executeTakeFirst()
}

export async function setConsentStatus(
  trx: Db,
  id: string,
  change: { status: Exclude<ConsentStatus, 'active'>; at: Date; revokedAt?: Date | undefined },
): Promise<boolean> {
  const updated = await trx
    .updateTable('consents')
    .set({ status: change.status, status_changed_at: change.at, revoked_at: change.revokedAt ?? null })
    .where('id', '=', id)
    .where('status', '=', 'active')
    .returning('id')
    .executeTakeFirst()
  return updated !== undefined
}

/** Appends to the log unless this event was logged already (once per consent, or per meter). */
export async function appendConsentLog(
  trx: Db,
  entry: { consentId: string; householdId: string; event: ConsentEvent; meterId: string | null; actor: string; at: Date },
): Promise<boolean> {
  const inserted = await trx
    .insertInto('consent_log')
    .values({
      consent_id: entry.consentId,
      household_id: entry.householdId,
      event: entry.event,
      meter_id: entry.meterId,
      actor: entry.actor,
      at: entry.at,
    })
    .onConflict((oc) => oc.doNothing())
    .returning('id')
    .executeTakeFirst()
  return inserted !== undefined
}

export async function meterIdsOfConsents(db: Db, consentIds: readonly string[]): Promise<Map<string, string[]>> {
  const byConsent = new Map<string, string[]>()
  if (consentIds.length === 0) return byConsent
  const rows = await db
    .selectFrom('consent_meters')
    .select(['consent_id', 'meter_id'])
    .where('consent_id', 'in', [...consentIds])
    .orderBy('consent_id')
    .orderBy('meter_id')
    .execute()
  for (const r of rows) {
    const list = byConsent.get(r.consent_id) ?? []
    list.push(r.meter_id)
    byConsent.set(r.consent_id, list)
  }
  return byConsent
}

/** Meters of a consent whose move-out is already in the log. */
export async function loggedMeterEnds(db: Db, consentId: string): Promise<Set<string>> {
  return (await loggedMeterEndsOf(db, [consentId])).get(consentId) ?? new Set()
}

/** The meters each consent's log says it ended for (move-outs), by consent. */
export async function loggedMeterEndsOf(db: Db, consentIds: readonly string[]): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>()
  if (consentIds.length === 0) return out
  const rows = await db
    .selectFrom('consent_log')
    .select(['consent_id', 'meter_id'])
    .where('consent_id', 'in', [...consentIds])
    .where('event', '=', 'ended_by_move_out')
    .execute()
  for (const r of rows) {
    const set = out.get(r.consent_id) ?? new Set<string>()
    set.add(r.meter_id!)
    out.set(r.consent_id, set)
  }
  return out
}

/**
 * Locks the household's row until the end of the transaction: its grants are checked and made one at a
 * time. FOR NO KEY UPDATE, not FOR UPDATE: a revocation or the sweep holding a consent of the household
 * inserts into consent_log, whose foreign key takes a KEY SHARE lock on this row; FOR UPDATE would make
 * it wait for the grant, which waits for that consent's lock (refuseOverlap): a deadlock.
 */
export async function lockHousehold(trx: Db, householdId: string): Promise<void> {
  await trx.selectFrom('households').select('id').where('id', '=', householdId).forNoKeyUpdate().execute()
}

/** The household's consents to a recipient at a granularity that are in force at `at`. */
export async function consentsInForce(db: Db, householdId: string, recipientId: string, granularity: ConsentRow['granularity'], at: Date): Promise<ConsentRow[]> {
  return db
    .selectFrom('consents')
    .selectAll()
    .where('household_id', '=', householdId)
    .where('recipient_id', '=', recipientId)
    .where('granularity', '=', granularity)
    .where('status', '=', 'active')
    .where('valid_until', '>', at)
    .orderBy('id')
    .execute()
}

export async function householdExists(db: Db, householdId: string): Promise<boolean> {
  return (await db.selectFrom('households').select('id').where('id', '=', householdId).executeTakeFirst()) !== undefined
}

/** The meters a household occupies at an instant. */
export async function metersOccupiedAt(db: Db, householdId: string, at: Date): Promise<string[]> {
  const rows = await db
    .selectFrom('occupancies')
    .select('meter_id')
    .where('household_id', '=', householdId)
    .where('valid_from', '<=', at)
    .where((eb) => eb.or([eb('valid_until', 'is', null), eb('valid_until', '>', at)]))
    .orderBy('meter_id')
    .execute()
  return rows.map((r) => r.meter_id)
}

export interface ConsentListFilter {
  householdId?: string | undefined
  recipientId?: string | undefined
}

/** Keyset pages in grant order: (valid_from as exact text, id). */
export interface GrantKey {
  validFrom: string
  id: string
}

export async function pageConsentRows(
  db: Db,
  filter: ConsentListFilter,
  after: GrantKey | null,
  limit: number,
): Promise<(ConsentRow & { grant_key: string })[]> {
  let q = db.selectFrom('consents').selectAll().select(sql<string>`valid_from::text`.as('grant_key'))
  if (filter.householdId !== undefined) q = q.where('household_id', '=', filter.householdId)
  if (filter.recipientId !== undefined) q = q.where('recipient_id', '=', filter.recipientId)
  if (after !== null) q = q.where(sql<boolean>`(valid_from, id) > (${after.validFrom}::timestamptz, ${after.id})`)
  return q.orderBy('valid_from').orderBy('id').limit(limit).execute()
}

export async function pageConsentLogRows(db: Db, householdId: string, afterId: bigint | null, limit: number): Promise<ConsentLogRow[]> {
  let q = db.selectFrom('consent_log').selectAll().where('household_id', '=', householdId)
  if (afterId !== null) q = q.where('id', '>', afterId)
  return q.orderBy('id').limit(limit).execute()
}

/**
 * Active consents that may need a lifecycle step now: past their validity, or naming a
 * meter whose move-out is not logged yet although the household's occupancy of it ended
 * its consents (`consents_end_at`, else its end: since the grant, or before it) and does not
 * hold now. Driven by the two small sets, expiring consents and ended occupancies, so that a
 * sweep stays cheap however many consents are active.
 */
export async function sweepCandidates(
  db: Db,
  now: Date,
  scope: { householdId?: string | undefined; consentId?: string | undefined },
  limit: number,
): Promise<string[]> {
  const parts = [sql`c.status = 'active'`]
  if (scope.householdId !== undefined) parts.push(sql`c.household_id = ${scope.householdId}`)
  if (scope.consentId !== undefined) parts.push(sql`c.id = ${scope.consentId}`)
  const where = sql.join(parts, sql` AND `)
  const { rows } = await sql<{ id: string }>`
    SELECT id FROM (
      SELECT c.id, c.valid_until FROM consents c WHERE ${where} AND c.valid_until <= ${now}
      UNION
      SELECT c.id, c.valid_until
      FROM occupancies o
      JOIN consent_meters cm ON cm.meter_id = o.meter_id
      JOIN consents c ON c.id = cm.consent_id AND c.household_id = o.household_id
      WHERE ${where} AND COALESCE(o.consents_end_at, o.valid_until) <= ${now}
        AND NOT EXISTS (SELECT 1 FROM occupancies cur
                        WHERE cur.meter_id = o.meter_id AND cur.household_id = o.household_id
                          AND cur.valid_from <= ${now} AND (cur.valid_until IS NULL OR COALESCE(cur.consents_end_at, cur.valid_until) > ${now})
                          AND cur.valid_from <= c.valid_from)
        AND NOT EXISTS (SELECT 1 FROM consent_log l
                        WHERE l.consent_id = c.id AND l.meter_id = cm.meter_id AND l.event = 'ended_by_move_out')
    ) AS due
    ORDER BY valid_until, id
    LIMIT ${limit}`.execute(db)
  return rows.map((r) => r.id)
}

/** Consents in force at `now`, as the release view counts them (`consentActiveAt`): begun, not yet ended nor revoked. */
export async function countActiveConsents(db: Db, now: Date): Promise<number> {
  const row = await db
    .selectFrom('consents')
    .select(sql<number>`count(*)::int`.as('n'))
    .where('valid_from', '<=', now)
    .where('valid_until', '>', now)
    .where((eb) => eb.or([eb('revoked_at', 'is', null), eb('revoked_at', '>', now)]))
    .executeTakeFirstOrThrow()
  return row.n
}
