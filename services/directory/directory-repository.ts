import { sql, type Kysely, type Transaction } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { HouseholdsTable } from '../../shared/db/tables/households.ts'
import type { MetersTable } from '../../shared/db/tables/meters.ts'
import type { PartiesTable } from '../../shared/db/tables/parties.ts'
import type { Insertable, Selectable } from 'kysely'

type Db = Kysely<Database> | Transaction<Database>

export async function insertParty(db: Db, row: Insertable<PartiesTable>): Promise<void> {
  await db.insertInto('parties').values(row).execute()
}

export async function insertHousehold(db: Db, row: Insertable<HouseholdsTable>): Promise<void> {
  await db.insertInto('households').values(row).execute()
}

export async function insertMeter(db: Db, row: Insertable<MetersTable>): Promise<void> {
  await db.insertInto('meters').values(row).execute()
}

/** Channel on which a change of credentials is announced, so that every broker closes what the old ones opened. */
export const CREDENTIALS_CHANNEL = 'metershare_credentials'

/** Payload on CREDENTIALS_CHANNEL: whose credentials changed, as its owner key (principal.ts). */
export interface CredentialsNotice {
  principal: string
  /** Why: its credentials renewed, or the meter taken out of service (its connections' log line says which). */
  why?: 'renewed' | 'retired'
}

/** Announces, at the commit of `trx`, that an owner's credentials changed (or ended: a meter retired). */
export async function notifyCredentialsChanged(trx: Db, principal: string, why: 'renewed' | 'retired' = 'renewed'): Promise<void> {
  const notice: CredentialsNotice = { principal, why }
  await sql`SELECT pg_notify(${CREDENTIALS_CHANNEL}, ${JSON.stringify(notice)})`.execute(trx)
}

/** The hashed credentials a row holds: a meter's secret, a party's or household's API key, a household's password. */
export type CredentialColumn =
  | { table: 'meters'; column: 'secret_hash' }
  | { table: 'parties'; column: 'api_key_hash' }
  | { table: 'households'; column: 'api_key_hash' | 'password_hash' }

/**
 * Replaces a stored hash; false when there is no such row, or, given `expected`, when the stored hash
 * is no longer that one (compare-and-swap: a change made since the caller proved it knew the old
 * credential wins, and this one is refused rather than silently undoing it).
 */
export async function setCredentialHash(db: Db, where: CredentialColumn, id: string, hash: string, expected?: string): Promise<boolean> {
  const unchanged = expected === undefined ? sql`` : sql` AND ${sql.ref(where.column)} = ${expected}`
  const { rows } = await sql<{ id: string }>`UPDATE ${sql.table(where.table)} SET ${sql.ref(where.column)} = ${hash} WHERE id = ${id}${unchanged} RETURNING id`.execute(db)
  return rows.length > 0
}

/** Takes a meter out of service at `at`; false when it was already. */
export async function setMeterRetired(db: Db, id: string, at: Date): Promise<boolean> {
  const r = await db.updateTable('meters').set({ retired_at: at }).where('id', '=', id).where('retired_at', 'is', null).executeTakeFirst()
  return r.numUpdatedRows > 0n
}

export async function findParty(db: Db, id: string): Promise<Selectable<PartiesTable> | undefined> {
  return db.selectFrom('parties').selectAll().where('id', '=', id).executeTakeFirst()
}

/** The names of these parties, by id (an id that is no party is left out). */
export async function partyNames(db: Db, ids: readonly string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map()
  const rows = await db.selectFrom('parties').select(['id', 'name']).where('id', 'in', [...new Set(ids)]).execute()
  return new Map(rows.map((r) => [r.id, r.name]))
}

export async function findHousehold(db: Db, id: string): Promise<Selectable<HouseholdsTable> | undefined> {
  return db.selectFrom('households').selectAll().where('id', '=', id).executeTakeFirst()
}

export async function findHouseholdByEmail(db: Db, email: string): Promise<Selectable<HouseholdsTable> | undefined> {
  return db.selectFrom('households').selectAll().where('email', '=', email.toLowerCase()).executeTakeFirst()
}

export async function findMeter(db: Db, id: string): Promise<Selectable<MetersTable> | undefined> {
  return db.selectFrom('meters').selectAll().where('id', '=', id).executeTakeFirst()
}

export async function listParties(db: Db): Promise<Selectable<PartiesTable>[]> {
  return db.selectFrom('parties').selectAll().orderBy('created_at').orderBy('id').execute()
}

/**
 * Keyset pages in creation order. The key is `created_at` as PostgreSQL prints it (full
 * microsecond precision, which a JS Date would round away) and the id as a tie-break.
 */
export interface CreationKey {
  createdAt: string
  id: string
}

export type Keyed<T> = T & { created_key: string }

export async function pageParties(
  db: Db,
  options: { after: CreationKey | null; limit: number; kind?: PartiesTable['kind'] | undefined },
): Promise<Keyed<Selectable<PartiesTable>>[]> {
  let q = db.selectFrom('parties').selectAll().select(sql<string>`created_at::text`.as('created_key'))
  if (options.kind !== undefined) q = q.where('kind', '=', options.kind)
  if (options.after !== null) q = q.where(sql<boolean>`(created_at, id) > (${options.after.createdAt}::timestamptz, ${options.after.id})`)
  return q.orderBy('created_at').orderBy('id').limit(options.limit).execute()
}

export async function pageHouseholds(
  db: Db,
  options: { after: CreationKey | null; limit: number },
): Promise<Keyed<Selectable<HouseholdsTable>>[]> {
  let q = db.selectFrom('households').selectAll().select(sql<string>`created_at::text`.as('created_key'))
  if (options.after !== null) q = q.where(sql<boolean>`(created_at, id) > (${options.after.createdAt}::timestamptz, ${options.after.id})`)
  return q.orderBy('created_at').orderBy('id').limit(options.limit).execute()
}

export async function pageMeters(
  db: Db,
  options: { after: CreationKey | null; limit: number; operatorId?: string | undefined },
): Promise<Keyed<Selectable<MetersTable>>[]> {
  let q = db.selectFrom('meters').selectAll().select(sql<string>`created_at::text`.as('created_key'))
  if (options.operatorId !== undefined) q = q.where('operator_id', '=', options.operatorId)
  if (options.after !== null) q = q.where(sql<boolean>`(created_at, id) > (${options.after.createdAt}::timestamptz, ${options.after.id})`)
  return q.orderBy('created_at').orderBy('id').limit(options.limit).execute()
}
