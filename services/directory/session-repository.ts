import { sql, type Insertable, type Kysely, type Selectable, type Transaction } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { SessionsTable } from '../../shared/db/tables/sessions.ts'

/** SQL of the portal's sessions. */

type Db = Kysely<Database> | Transaction<Database>

/**
 * Whether the household's password is still the one whose hash a sign-in verified; if so, the row is
 * held FOR SHARE until the end of the transaction, so a password change (an UPDATE of the row) waits
 * for the session to be committed and then ends it with the others. A change already under way makes
 * this wait for its commit and then read the new hash.
 */
export async function holdPasswordHash(db: Db, householdId: string, passwordHash: string): Promise<boolean> {
  const row = await db.selectFrom('households').select('id').where('id', '=', householdId).where('password_hash', '=', passwordHash).forShare().executeTakeFirst()
  return row !== undefined
}

export async function insertSession(db: Db, row: Insertable<SessionsTable>): Promise<void> {
  await db.insertInto('sessions').values(row).execute()
}

export async function findSession(db: Db, id: string): Promise<Selectable<SessionsTable> | undefined> {
  return db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirst()
}

export async function deleteSession(db: Db, id: string): Promise<void> {
  await db.deleteFrom('sessions').where('id', '=', id).execute()
}

/** Sessions past their expiry, of every household (the expiry index keeps this cheap). */
export async function deleteExpiredSessions(db: Db, now: Date): Promise<number> {
  const result = await db.deleteFrom('sessions').where('expires_at', '<=', now).executeTakeFirst()
  return Number(result.numDeletedRows)
}

/** Keeps a household's `keep` newest sessions and ends the others. */
export async function deleteSessionsBeyond(db: Db, householdId: string, keep: number): Promise<number> {
  const result = await sql`
    DELETE FROM sessions WHERE household_id = ${householdId} AND id NOT IN (
      SELECT id FROM sessions WHERE household_id = ${householdId} ORDER BY created_at DESC, id DESC LIMIT ${keep})`.execute(db)
  return Number(result.numAffectedRows ?? 0n)
}

/** Ends every portal session of a household. */
export async function deleteHouseholdSessions(db: Db, householdId: string): Promise<number> {
  const result = await db.deleteFrom('sessions').where('household_id', '=', householdId).executeTakeFirst()
  return Number(result.numDeletedRows)
}
