import type { Kysely } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import { InvalidInputError, NotFoundError } from '../../shared/errors.ts'
import { newId } from '../../shared/ids.ts'
import { BPS_TOTAL } from '../../shared/money.ts'
import { GRANULARITIES, type Granularity } from '../../shared/wire.ts'
import { notifyChange } from './change-notice-repository.ts'
import * as repo from './offer-repository.ts'

/**
 * Offers: what a recipient pays per datum of a granularity, and how that money is split
 * among the household, the meter's operator, the platform and named third parties (basis
 * points summing to exactly 10,000; the database checks it again at commit). Published by
 * the operator, immutable afterwards: a new price is a new offer.
 */

export const PURPOSE_LENGTH_MAX = 500
export const OFFER_THIRD_PARTIES_MAX = 20
/** 1,000 EUR per datum: far above any real price, low enough to keep sums far from overflow. */
export const PRICE_MICROS_PER_DATUM_MAX = 1_000_000_000n

export interface OfferSplit {
  householdBps: number
  operatorBps: number
  platformBps: number
  thirdParties: { partyId: string; bps: number }[]
}

export interface OfferInput {
  recipientId: string
  purpose: string
  granularity: Granularity
  priceMicrosPerDatum: bigint
  split: OfferSplit
}

export interface Offer {
  id: string
  recipientId: string
  recipientName: string
  purpose: string
  granularity: Granularity
  priceMicrosPerDatum: bigint
  split: OfferSplit
  createdAt: Date
  /** When it stopped taking new consents; null while open. */
  withdrawnAt: Date | null
}

/** An offer as a household sees it: with what its share means in money. */
export interface HouseholdOffer extends Offer {
  householdBps: number
  /** The household's part of one datum's price, rounded down to the micro-euro. */
  householdMicrosPerDatum: bigint
  /** The household's part of 10,000 datums' price: exact (price × bps). */
  householdMicrosPer10000Datums: bigint
}

function isBps(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= BPS_TOTAL
}

/** Checks an offer before anything is written; the error names the field. */
export function validateOffer(input: OfferInput): void {
  if (typeof input.recipientId !== 'string' || input.recipientId === '') throw new InvalidInputError('recipientId: required', 'recipientId')
  const purpose = typeof input.purpose === 'string' ? input.purpose.trim() : ''
  if (purpose.length === 0 || purpose.length > PURPOSE_LENGTH_MAX) {
    throw new InvalidInputError(`purpose: 1 to ${PURPOSE_LENGTH_MAX} characters`, 'purpose')
  }
  if (!GRANULARITIES.includes(input.granularity)) {
    throw new InvalidInputError(`granularity: expected one of ${GRANULARITIES.join(', ')}`, 'granularity')
  }
  if (typeof input.priceMicrosPerDatum !== 'bigint' || input.priceMicrosPerDatum < 0n) {
    throw new InvalidInputError('priceMicrosPerDatum: must be an integer of micro-euros, at least 0', 'priceMicrosPerDatum')
  }
  if (input.priceMicrosPerDatum > PRICE_MICROS_PER_DATUM_MAX) {
    throw new InvalidInputError(`priceMicrosPerDatum: at most ${PRICE_MICROS_PER_DATUM_MAX}`, 'priceMicrosPerDatum')
  }
  const s = input.split
  for (const field of ['householdBps', 'operatorBps', 'platformBps'] as const) {
    if (!isBps(s[field])) throw new InvalidInputError(`split.${field}: an integer from 0 to ${BPS_TOTAL}`, `split.${field}`)
  }
  if (!Array.isArray(s.thirdParties)) throw new InvalidInputError('split.thirdParties: expected an array', 'split.thirdParties')
  if (s.thirdParties.length > OFFER_THIRD_PARTIES_MAX) {
    throw new InvalidInputError(`split.thirdParties: at most ${OFFER_THIRD_PARTIES_MAX}`, 'split.thirdParties')
  }
  const seen = new Set<string>()
  let total = s.householdBps + s.operatorBps + s.platformBps
  s.thirdParties.forEach((t, i) => {
    if (typeof t.partyId !== 'string' || t.partyId === '') {
      throw new InvalidInputError(`split.thirdParties[${i}].partyId: required`, `split.thirdParties[${i}].partyId`)
    }
    if (seen.has(t.partyId)) {
      throw new InvalidInputError(`split.thirdParties[${i}].partyId: listed twice`, `split.thirdParties[${i}].partyId`)
    }
    seen.add(t.partyId)
    if (!isBps(t.bps)) throw new InvalidInputError(`split.thirdParties[${i}].bps: an integer from 0 to ${BPS_TOTAL}`, `split.thirdParties[${i}].bps`)
    total += t.bps
  })
  if (total !== BPS_TOTAL) throw new InvalidInputError(`split: the parts sum to ${total} basis points, not ${BPS_TOTAL}`, 'split')
}

/** Publishes an offer (operator). */
export async function createOffer(db: Kysely<Database>, input: OfferInput): Promise<{ id: string }> {
  validateOffer(input)
  const id = newId('offer')
  await db.transaction().execute(async (trx) => {
    const partyIds = [input.recipientId, ...input.split.thirdParties.map((t) => t.partyId)]
    const found = new Set((await repo.findParties(trx, partyIds)).map((p) => p.id))
    if (!found.has(input.recipientId)) throw new InvalidInputError('recipientId: no such party', 'recipientId')
    input.split.thirdParties.forEach((t, i) => {
      if (!found.has(t.partyId)) throw new InvalidInputError(`split.thirdParties[${i}].partyId: no such party`, `split.thirdParties[${i}].partyId`)
    })
    await repo.insertOffer(
      trx,
      {
        id,
        recipient_id: input.recipientId,
        purpose: input.purpose.trim(),
        granularity: input.granularity,
        price_micros_per_datum: input.priceMicrosPerDatum,
        household_bps: input.split.householdBps,
        operator_bps: input.split.operatorBps,
        platform_bps: input.split.platformBps,
      },
      input.split.thirdParties.map((t) => ({ offer_id: id, party_id: t.partyId, bps: t.bps })),
    )
    await notifyChange(trx, { kind: 'offer', id, recipientId: input.recipientId })
  })
  return { id }
}

async function toOffers(db: Kysely<Database>, rows: repo.OfferRow[]): Promise<Offer[]> {
  const shares = await repo.listOfferShareRows(
    db,
    rows.map((r) => r.id),
  )
  const names = new Map((await repo.findParties(db, [...new Set(rows.map((r) => r.recipient_id))])).map((p) => [p.id, p.name]))
  const sharesByOffer = new Map<string, { partyId: string; bps: number }[]>()
  for (const s of shares) {
    const list = sharesByOffer.get(s.offer_id) ?? []
    list.push({ partyId: s.party_id, bps: s.bps })
    sharesByOffer.set(s.offer_id, list)
  }
  return rows.map((r) => ({
    id: r.id,
    recipientId: r.recipient_id,
    recipientName: names.get(r.recipient_id) ?? '',
    purpose: r.purpose,
    granularity: r.granularity,
    priceMicrosPerDatum: r.price_micros_per_datum,
    split: {
      householdBps: r.household_bps,
      operatorBps: r.operator_bps,
      platformBps: r.platform_bps,
      thirdParties: sharesByOffer.get(r.id) ?? [],
    },
    createdAt: r.created_at,
    withdrawnAt: r.withdrawn_at,
  }))
}

export async function listOffers(db: Kysely<Database>, filter: { recipientId?: string | undefined } = {}): Promise<Offer[]> {
  return toOffers(db, await repo.listOfferRows(db, filter))
}

/** A page of offers, oldest first, and the key of its last when there are more. */
export async function listOffersPage(
  db: Kysely<Database>,
  options: { after: { createdAt: string; id: string } | null; limit: number; recipientId?: string | undefined; openOnly?: boolean | undefined },
): Promise<{ items: Offer[]; next: { createdAt: string; id: string } | null }> {
  const rows = await repo.pageOfferRows(db, { ...options, limit: options.limit + 1 })
  const kept = rows.length > options.limit ? rows.slice(0, options.limit) : rows
  const last = kept[kept.length - 1]
  return { items: await toOffers(db, kept), next: rows.length > options.limit && last !== undefined ? { createdAt: last.created_key, id: last.id } : null }
}

export async function getOffer(db: Kysely<Database>, id: string): Promise<Offer | undefined> {
  const row = await repo.findOffer(db, id)
  return row === undefined ? undefined : (await toOffers(db, [row]))[0]
}

/** What a household's share of an offer means per datum. */
export function householdShare(offer: Offer): Pick<HouseholdOffer, 'householdBps' | 'householdMicrosPerDatum' | 'householdMicrosPer10000Datums'> {
  const bps = BigInt(offer.split.householdBps)
  return {
    householdBps: offer.split.householdBps,
    householdMicrosPerDatum: (offer.priceMicrosPerDatum * bps) / BigInt(BPS_TOTAL),
    householdMicrosPer10000Datums: offer.priceMicrosPerDatum * bps,
  }
}

/** Offers a household may accept: every offer published and not withdrawn, with its share. */
export async function listOffersForHousehold(db: Kysely<Database>): Promise<HouseholdOffer[]> {
  return (await listOffers(db)).filter((o) => o.withdrawnAt === null).map((o) => ({ ...o, ...householdShare(o) }))
}

/**
 * Withdraws an offer (operator): it takes no new consents from now on, and households no longer
 * see it among the offers; the consents that accepted it keep its terms until they end. Withdrawing
 * it again changes nothing.
 */
export async function withdrawOffer(db: Kysely<Database>, id: string, now: Date): Promise<void> {
  await db.transaction().execute(async (trx) => {
    // Locked first: grants under way (each holds the offer FOR SHARE) commit before, and are read after.
    const offer = await repo.findOffer(trx, id, { forUpdate: true })
    if (offer === undefined) throw new NotFoundError(`offer ${id} not found`)
    // Stamped no earlier than the last consent it let in: grants that arrived after the withdrawal but
    // committed before it would otherwise read as taken after it (found by probing: 12 of 16).
    const latest = await repo.latestGrantOf(trx, id)
    const at = latest !== null && latest > now ? latest : now
    if (await repo.withdrawOfferRow(trx, id, at)) await notifyChange(trx, { kind: 'offer', id, recipientId: offer.recipient_id })
  })
}
