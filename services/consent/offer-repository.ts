import { sql, type Insertable, type Kysely, type Selectable, type Transaction } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { OfferSharesTable } from '../../shared/db/tables/offer-shares.ts'
import type { OffersTable } from '../../shared/db/tables/offers.ts'

/** Offers and their third-party shares. */

type Db = Kysely<Database> | Transaction<Database>

export type OfferRow = Selectable<OffersTable>
export type OfferShareRow = Selectable<OfferSharesTable>

export async function insertOffer(trx: Db, row: Insertable<OffersTable>, shares: readonly Insertable<OfferSharesTable>[]): Promise<void> {
  await trx.insertInto('offers').values(row).execute()
  if (shares.length > 0) await trx.insertInto('offer_shares').values([...shares]).execute()
}

/** `forShare`: the row locked against a withdrawal until the transaction ends (a grant, which a withdrawal committed meanwhile must refuse). */
export async function findOffer(db: Db, id: string, options: { forShare?: boolean; forUpdate?: boolean } = {}): Promise<OfferRow | undefined> {
  const q = db.selectFrom('offers').selectAll().where('id', '=', id)
  return (options.forUpdate === true ? q.forUpdate() : options.forShare === true ? q.forShare() : q).executeTakeFirst()
}

/** When the latest consent granted on an offer began (its `valid_from`), or null when none was. */
export async function latestGrantOf(db: Db, offerId: string): Promise<Date | null> {
  const row = await db.selectFrom('consents').select((eb) => eb.fn.max('valid_from').as('latest')).where('offer_id', '=', offerId).executeTakeFirst()
  return row?.latest ?? null
}

export async function findOffers(db: Db, ids: readonly string[]): Promise<OfferRow[]> {
  if (ids.length === 0) return []
  return db.selectFrom('offers').selectAll().where('id', 'in', [...ids]).execute()
}

/** A page of offers, oldest first, after the (created_at as text, id) key given; each with its key. */
export async function pageOfferRows(
  db: Db,
  options: { after: { createdAt: string; id: string } | null; limit: number; recipientId?: string | undefined; openOnly?: boolean | undefined },
): Promise<(OfferRow & { created_key: string })[]> {
  let q = db.selectFrom('offers').selectAll().select(sql<string>`created_at::text`.as('created_key'))
  if (options.recipientId !== undefined) q = q.where('recipient_id', '=', options.recipientId)
  if (options.openOnly === true) q = q.where('withdrawn_at', 'is', null)
  if (options.after !== null) q = q.where(sql<boolean>`(created_at, id) > (${options.after.createdAt}::timestamptz, ${options.after.id})`)
  return q.orderBy('created_at').orderBy('id').limit(options.limit).execute()
}

/** Every offer, oldest first. */
export async function listOfferRows(db: Db, filter: { recipientId?: string | undefined } = {}): Promise<OfferRow[]> {
  let q = db.selectFrom('offers').selectAll()
  if (filter.recipientId !== undefined) q = q.where('recipient_id', '=', filter.recipientId)
  return q.orderBy('created_at').orderBy('id').execute()
}

/** Withdraws an offer once; false when there is none, or it was withdrawn already. */
export async function withdrawOfferRow(db: Db, id: string, at: Date): Promise<boolean> {
  const r = await db.updateTable('offers').set({ withdrawn_at: at }).where('id', '=', id).where('withdrawn_at', 'is', null).executeTakeFirst()
  return r.numUpdatedRows > 0n
}

export async function listOfferShareRows(db: Db, offerIds: readonly string[]): Promise<OfferShareRow[]> {
  if (offerIds.length === 0) return []
  return db.selectFrom('offer_shares').selectAll().where('offer_id', 'in', [...offerIds]).orderBy('offer_id').orderBy('party_id').execute()
}

/** The parties among `ids` that exist, with their kind. */
export async function findParties(db: Db, ids: readonly string[]): Promise<{ id: string; kind: 'utility' | 'third_party'; name: string }[]> {
  if (ids.length === 0) return []
  return db.selectFrom('parties').select(['id', 'kind', 'name']).where('id', 'in', [...ids]).execute()
}
