import type { Kysely, Transaction } from 'kysely'
import { formatTimestamp } from '../../shared/calendar.ts'
import { CURSOR_NOT_RETURNED, cursorListing, isBigintText, isTimestampText, type CursorListing } from '../../shared/cursor.ts'
import type { Database } from '../../shared/db/schema.ts'
import type { ConsentEvent } from '../../shared/db/tables/consent-log.ts'
import type { ConsentKind, ConsentStatus } from '../../shared/db/tables/consents.ts'
import { ConflictError, ERROR_CODES, ForbiddenError, InvalidInputError, NotFoundError } from '../../shared/errors.ts'
import { newId } from '../../shared/ids.ts'
import type { Granularity } from '../../shared/wire.ts'
import { notifyChange } from './change-notice-repository.ts'
import { OPERATOR_ACTOR, settleConsent, sweepConsents } from './consent-lifecycle.ts'
import * as repo from './consent-repository.ts'
import { findOffer, findOffers, findParties } from './offer-repository.ts'

/**
 * Consents: a household accepts an offer for some or all of the meters it occupies now, for
 * at most three years, releasing data stamped in a window that may reach back in history;
 * it sees and revokes its consents. A supplier's regulated access is a consent of kind
 * `legal_basis` (monthly data, free), created by the operator, shown like any other.
 * Every change is logged and announced on the change channel in its own transaction.
 *
 * "All meters" is resolved when the consent is granted: the consent names the meters the
 * household occupies then (and remembers that the household chose all of them). A meter
 * stops being covered, for good, when the household moves out of it.
 */

export const CONSENT_VALIDITY_YEARS_MAX = 3
export const CONSENT_METERS_MAX = 100
export const LEGAL_BASIS_PURPOSE = 'billing of the energy supply (legal basis)'

/** `date` plus whole years in UTC, the day clamped to the month's end (as PostgreSQL's interval arithmetic does). */
export function addYearsUtc(date: Date, years: number): Date {
  const d = new Date(date.getTime())
  const month = d.getUTCMonth()
  d.setUTCDate(1)
  d.setUTCFullYear(d.getUTCFullYear() + years)
  const daysInMonth = new Date(Date.UTC(d.getUTCFullYear(), month + 1, 0)).getUTCDate()
  d.setUTCDate(Math.min(date.getUTCDate(), daysInMonth))
  return d
}

/** The latest valid_until a consent granted at `from` may have. */
export function validityLimit(from: Date): Date {
  return addYearsUtc(from, CONSENT_VALIDITY_YEARS_MAX)
}

export interface GrantInput {
  offerId: string
  /** Absent: every meter the household occupies now. */
  meterIds?: readonly string[] | undefined
  validUntil: Date
  /** Absent: now (no history). */
  dataFrom?: Date | undefined
  /** Absent: open. */
  dataUntil?: Date | undefined
}

export interface LegalBasisInput {
  recipientId: string
  householdId: string
  meterIds?: readonly string[] | undefined
  validUntil: Date
  dataFrom?: Date | undefined
  dataUntil?: Date | undefined
  purpose?: string | undefined
}

export interface Consent {
  id: string
  kind: ConsentKind
  householdId: string
  recipientId: string
  recipientName: string
  offerId: string | null
  purpose: string
  granularity: Granularity
  allMeters: boolean
  meterIds: string[]
  /** Of `meterIds`, those it covers no more: the household moved out (as recorded in the consent log). */
  endedMeterIds: string[]
  validFrom: Date
  validUntil: Date
  dataFrom: Date
  dataUntil: Date | null
  status: ConsentStatus
  statusChangedAt: Date
  revokedAt: Date | null
  /** 0 for a legal basis (free). */
  priceMicrosPerDatum: bigint
  /** The household's part of the price; null for a legal basis (nothing to split). */
  householdBps: number | null
}

export interface ConsentLogEntry {
  id: string
  consentId: string
  event: ConsentEvent
  meterId: string | null
  /** The household's id, 'operator' or 'system'. */
  actor: string
  at: Date
}

export interface Page<T> {
  items: T[]
  next: string | null
}

function isValidDate(d: unknown): d is Date {
  return d instanceof Date && !Number.isNaN(d.getTime())
}

interface Terms {
  validUntil: Date
  dataFrom: Date
  dataUntil: Date | null
}

/** Validity and data window, checked before anything is read or written. */
function validateTerms(input: { validUntil: Date; dataFrom?: Date | undefined; dataUntil?: Date | undefined }, now: Date): Terms {
  if (!isValidDate(input.validUntil)) throw new InvalidInputError('validUntil: expected an RFC 3339 time', 'validUntil')
  if (input.validUntil.getTime() <= now.getTime()) throw new InvalidInputError('validUntil: must be in the future', 'validUntil')
  const limit = validityLimit(now)
  if (input.validUntil.getTime() > limit.getTime()) {
    throw new InvalidInputError(
      `validUntil: at most ${CONSENT_VALIDITY_YEARS_MAX} years ahead (${formatTimestamp(limit)})`,
      'validUntil',
    )
  }
  if (input.dataFrom !== undefined && !isValidDate(input.dataFrom)) throw new InvalidInputError('dataFrom: expected an RFC 3339 time', 'dataFrom')
  if (input.dataUntil !== undefined && !isValidDate(input.dataUntil)) throw new InvalidInputError('dataUntil: expected an RFC 3339 time', 'dataUntil')
  const dataFrom = input.dataFrom ?? now
  const dataUntil = input.dataUntil ?? null
  if (dataUntil !== null && dataUntil.getTime() <= dataFrom.getTime()) {
    throw new InvalidInputError(`dataUntil: must be after dataFrom (${formatTimestamp(dataFrom)})`, 'dataUntil')
  }
  return { validUntil: input.validUntil, dataFrom, dataUntil }
}

function validateMeterList(meterIds: readonly string[] | undefined): string[] | undefined {
  if (meterIds === undefined) return undefined
  if (!Array.isArray(meterIds) || meterIds.length === 0) throw new InvalidInputError('meterIds: at least one meter, or leave it out for all', 'meterIds')
  if (meterIds.length > CONSENT_METERS_MAX) throw new InvalidInputError(`meterIds: at most ${CONSENT_METERS_MAX} meters`, 'meterIds')
  const seen = new Set<string>()
  meterIds.forEach((m, i) => {
    if (typeof m !== 'string' || m === '') throw new InvalidInputError(`meterIds[${i}]: must be a meter id`, `meterIds[${i}]`)
    if (seen.has(m)) throw new InvalidInputError(`meterIds[${i}]: listed twice`, `meterIds[${i}]`)
    seen.add(m)
  })
  return [...meterIds]
}

/** The meters a consent will name: the ones asked for, each occupied by the household now; or all of those. */
async function resolveMeters(trx: Transaction<Database>, householdId: string, asked: string[] | undefined, now: Date): Promise<string[]> {
  const occupied = await repo.metersOccupiedAt(trx, householdId, now)
  if (asked === undefined) {
    if (occupied.length === 0) throw new InvalidInputError('meterIds: the household occupies no meter now', 'meterIds')
    return occupied
  }
  const set = new Set(occupied)
  asked.forEach((m, i) => {
    // The same words whether the meter exists or not: a household learns nothing of others' meters.
    if (!set.has(m)) throw new InvalidInputError(`meterIds[${i}]: not a meter this household occupies now`, `meterIds[${i}]`)
  })
  return [...asked].sort()
}

interface NewConsent {
  kind: ConsentKind
  householdId: string
  recipientId: string
  offerId: string | null
  purpose: string
  granularity: Granularity
  allMeters: boolean
  meterIds: string[]
  terms: Terms
  actor: string
  now: Date
}

async function insertGranted(trx: Transaction<Database>, c: NewConsent): Promise<string> {
  const id = newId('consent')
  await repo.insertConsent(
    trx,
    {
      id,
      household_id: c.householdId,
      recipient_id: c.recipientId,
      offer_id: c.offerId,
      kind: c.kind,
      purpose: c.purpose,
      granularity: c.granularity,
      all_meters: c.allMeters,
      valid_from: c.now,
      valid_until: c.terms.validUntil,
      data_from: c.terms.dataFrom,
      data_until: c.terms.dataUntil,
      status: 'active',
      status_changed_at: c.now,
      revoked_at: null,
    },
    c.meterIds,
  )
  await repo.appendConsentLog(trx, { consentId: id, householdId: c.householdId, event: 'granted', meterId: null, actor: c.actor, at: c.now })
  await notifyChange(trx, { kind: 'consent', id, householdId: c.householdId, recipientId: c.recipientId, event: 'granted' })
  return id
}

/**
 * A datum released to a recipient is paid for once: a household cannot give the same recipient the
 * same granularity of the same meter's data under two consents in force at once (each would bill it).
 * To change the terms, the household revokes the consent in force, then grants anew. A legal basis
 * in force counts here too (its recipient has the data already); the operator's grant of one is not
 * checked, as it bills nothing.
 */
async function refuseOverlap(
  trx: Transaction<Database>,
  wanted: { householdId: string; recipientId: string; granularity: Granularity; allMeters: boolean; meterIds: readonly string[]; terms: Terms },
  now: Date,
  /** The field the refusal names: the offer a household accepts, or the recipient of a legal basis. */
  field: 'offerId' | 'recipientId' = 'offerId',
): Promise<void> {
  const inForce = await repo.consentsInForce(trx, wanted.householdId, wanted.recipientId, wanted.granularity, now)
  if (inForce.length === 0) return
  const metersOf = await repo.meterIdsOfConsents(trx, inForce.map((c) => c.id))
  for (const listed of inForce) {
    // What has happened to it may not be recorded yet (the sweep runs every few seconds): a move-out
    // that ended it, or ended it for a meter, is taken into account now, as the release rule does.
    const c = await repo.lockConsent(trx, listed.id)
    if (c === undefined || (await settleConsent(trx, c, now)).status !== 'active') continue
    const ended = await repo.loggedMeterEnds(trx, c.id)
    const meters = (metersOf.get(c.id) ?? []).filter((m) => !ended.has(m))
    const sharedMeter = meters.some((m) => wanted.meterIds.includes(m))
    const sharedData = windowsOverlap(wanted.terms.dataFrom, wanted.terms.dataUntil, c.data_from, c.data_until)
    if (sharedMeter && sharedData) {
      throw new ConflictError(
        `${field}: consent ${c.id} already gives this recipient the household's ${wanted.granularity} data of ${c.all_meters ? 'all its meters' : meters.join(', ')} ` +
          `stamped from ${formatTimestamp(c.data_from)}${c.data_until === null ? '' : ` until ${formatTimestamp(c.data_until)}`}, in force until ${formatTimestamp(c.valid_until)}; revoke it to grant other terms`,
        ERROR_CODES.CONSENT_OVERLAP,
      )
    }
  }
}

/** Whether two data windows `[from, until)` (until null: open) share an instant. */
function windowsOverlap(aFrom: Date, aUntil: Date | null, bFrom: Date, bUntil: Date | null): boolean {
  return (aUntil === null || bFrom < aUntil) && (bUntil === null || aFrom < bUntil)
}

/** A household accepts an offer (`POST /me/consents`). */
export async function grantConsent(db: Kysely<Database>, householdId: string, input: GrantInput, now: Date): Promise<{ id: string }> {
  if (typeof input.offerId !== 'string' || input.offerId === '') throw new InvalidInputError('offerId: required', 'offerId')
  const asked = validateMeterList(input.meterIds)
  const terms = validateTerms(input, now)
  const id = await db.transaction().execute(async (trx) => {
    // Locked: a withdrawal committing meanwhile waits for this grant, or this grant reads it withdrawn (found by probing: grants taken on PostgreSQL after the withdrawal).
    const offer = await findOffer(trx, input.offerId, { forShare: true })
    if (offer === undefined) throw new InvalidInputError('offerId: no such offer', 'offerId')
    if (offer.withdrawn_at !== null) throw new ConflictError(`offerId: offer ${offer.id} was withdrawn at ${formatTimestamp(offer.withdrawn_at)}; it takes no new consents`, ERROR_CODES.OFFER_WITHDRAWN)
    await repo.lockHousehold(trx, householdId)
    const meterIds = await resolveMeters(trx, householdId, asked, now)
    await refuseOverlap(trx, { householdId, recipientId: offer.recipient_id, granularity: offer.granularity, allMeters: asked === undefined, meterIds, terms }, now)
    return insertGranted(trx, {
      kind: 'offer',
      householdId,
      recipientId: offer.recipient_id,
      offerId: offer.id,
      purpose: offer.purpose,
      granularity: offer.granularity,
      allMeters: asked === undefined,
      meterIds,
      terms,
      actor: householdId,
      now,
    })
  })
  return { id }
}

/**
 * A supplier's regulated access to a household's monthly billing data, free of charge,
 * created by the operator with the supply contract (`POST /admin/legal-basis-consents`).
 */
export async function createLegalBasisConsent(db: Kysely<Database>, input: LegalBasisInput, now: Date): Promise<{ id: string }> {
  if (typeof input.recipientId !== 'string' || input.recipientId === '') throw new InvalidInputError('recipientId: required', 'recipientId')
  if (typeof input.householdId !== 'string' || input.householdId === '') throw new InvalidInputError('householdId: required', 'householdId')
  const purpose = (input.purpose ?? LEGAL_BASIS_PURPOSE).trim()
  if (purpose.length === 0 || purpose.length > 500) throw new InvalidInputError('purpose: 1 to 500 characters', 'purpose')
  const asked = validateMeterList(input.meterIds)
  const terms = validateTerms(input, now)
  const id = await db.transaction().execute(async (trx) => {
    const [party] = await findParties(trx, [input.recipientId])
    if (party === undefined) throw new InvalidInputError('recipientId: no such party', 'recipientId')
    if (party.kind !== 'utility') throw new InvalidInputError('recipientId: a legal basis is for a utility (the supplier)', 'recipientId')
    if (!(await repo.householdExists(trx, input.householdId))) throw new InvalidInputError('householdId: no such household', 'householdId')
    await repo.lockHousehold(trx, input.householdId)
    const meterIds = await resolveMeters(trx, input.householdId, asked, now)
    // The same data twice to one supplier is one legal basis, not two (a second would list and count as another).
    await refuseOverlap(trx, { householdId: input.householdId, recipientId: input.recipientId, granularity: 'monthly', allMeters: asked === undefined, meterIds, terms }, now, 'recipientId')
    return insertGranted(trx, {
      kind: 'legal_basis',
      householdId: input.householdId,
      recipientId: input.recipientId,
      offerId: null,
      purpose,
      granularity: 'monthly',
      allMeters: asked === undefined,
      meterIds,
      terms,
      actor: OPERATOR_ACTOR,
      now,
    })
  })
  return { id }
}

export type RevokingActor = { role: 'household'; householdId: string } | { role: 'operator' }

/**
 * Revokes at once (`DELETE /me/consents/{id}`). A household may revoke its own consents
 * of kind `offer`; a legal basis ends with the supply contract, through the operator.
 * Revoking a revoked consent again changes nothing; an expired or ended one is a conflict.
 */
export async function revokeConsent(db: Kysely<Database>, consentId: string, actor: RevokingActor, now: Date): Promise<void> {
  const ended = await db.transaction().execute(async (trx): Promise<ConsentStatus | null> => {
    const row = await repo.lockConsent(trx, consentId)
    // Another household's consent is answered like a missing one.
    if (row === undefined || (actor.role === 'household' && row.household_id !== actor.householdId)) {
      throw new NotFoundError(`consent ${consentId} not found`)
    }
    if (actor.role === 'household' && row.kind === 'legal_basis') {
      throw new ForbiddenError('a legal-basis consent ends with the supply contract: ask the operator')
    }
    if (row.status === 'revoked') return null
    // Steps already due (a move-out, the expiry) come first and are kept, so the log keeps the true order.
    const settled = await settleConsent(trx, row, now)
    if (settled.status !== 'active') return settled.status
    await repo.setConsentStatus(trx, row.id, { status: 'revoked', at: now, revokedAt: now })
    await repo.appendConsentLog(trx, {
      consentId: row.id,
      householdId: row.household_id,
      event: 'revoked',
      meterId: null,
      actor: actor.role === 'household' ? actor.householdId : OPERATOR_ACTOR,
      at: now,
    })
    await notifyChange(trx, { kind: 'consent', id: row.id, householdId: row.household_id, recipientId: row.recipient_id, event: 'revoked' })
    return null
  })
  if (ended !== null) throw new ConflictError(`consent ${consentId} is ${ended.replaceAll('_', ' ')}, not active`)
}

const GRANT_KEY_CHARS_MAX = 64

/** Keyed by (valid_from as text, id); a household's and a recipient's listings are two. */
function grantOrderCursor(listing: string): CursorListing<readonly ['string', 'string']> {
  return cursorListing(listing, ['string', 'string'], {
    refusal: CURSOR_NOT_RETURNED,
    accepts: ([validFrom, id]) => validFrom.length <= GRANT_KEY_CHARS_MAX && id.length <= GRANT_KEY_CHARS_MAX && isTimestampText(validFrom),
  })
}

const HOUSEHOLD_CONSENTS_CURSOR = grantOrderCursor('consents.household')
const RECIPIENT_CONSENTS_CURSOR = grantOrderCursor('consents.recipient')
/** Keyed by the log entry's id, a bigint as decimal text. */
const CONSENT_LOG_CURSOR = cursorListing('consent_log', ['string'], { refusal: CURSOR_NOT_RETURNED, accepts: ([id]) => isBigintText(id) })

async function toConsents(db: Kysely<Database>, rows: repo.ConsentRow[]): Promise<Consent[]> {
  const meters = await repo.meterIdsOfConsents(
    db,
    rows.map((r) => r.id),
  )
  const ended = await repo.loggedMeterEndsOf(
    db,
    rows.map((r) => r.id),
  )
  const names = new Map((await findParties(db, [...new Set(rows.map((r) => r.recipient_id))])).map((p) => [p.id, p.name]))
  const offerIds = new Set(rows.flatMap((r) => (r.offer_id === null ? [] : [r.offer_id])))
  const offers = new Map((await findOffers(db, [...offerIds])).map((o) => [o.id, { price: o.price_micros_per_datum, householdBps: o.household_bps }]))
  return rows.map((r) => {
    const offer = r.offer_id === null ? undefined : offers.get(r.offer_id)
    return {
      id: r.id,
      kind: r.kind,
      householdId: r.household_id,
      recipientId: r.recipient_id,
      recipientName: names.get(r.recipient_id) ?? '',
      offerId: r.offer_id,
      purpose: r.purpose,
      granularity: r.granularity,
      allMeters: r.all_meters,
      meterIds: meters.get(r.id) ?? [],
      endedMeterIds: (meters.get(r.id) ?? []).filter((m) => ended.get(r.id)?.has(m) === true),
      validFrom: r.valid_from,
      validUntil: r.valid_until,
      dataFrom: r.data_from,
      dataUntil: r.data_until,
      status: r.status,
      statusChangedAt: r.status_changed_at,
      revokedAt: r.revoked_at,
      priceMicrosPerDatum: offer?.price ?? 0n,
      householdBps: offer?.householdBps ?? null,
    }
  })
}

async function pageConsents(
  db: Kysely<Database>,
  filter: repo.ConsentListFilter,
  cursor: CursorListing<readonly ['string', 'string']>,
  page: { cursor?: string | undefined; limit: number },
): Promise<Page<Consent>> {
  let after: repo.GrantKey | null = null
  if (page.cursor !== undefined) {
    const [validFrom, id] = cursor.decode(page.cursor)
    after = { validFrom, id }
  }
  const rows = await repo.pageConsentRows(db, filter, after, page.limit + 1)
  const items = rows.slice(0, page.limit)
  const last = items[items.length - 1]
  return {
    items: await toConsents(db, items),
    next: rows.length > page.limit && last !== undefined ? cursor.encode([last.grant_key, last.id]) : null,
  }
}

/**
 * The household's consent in force that these very terms granted already, if any: the same offer,
 * meters (or "all"), end of validity and data window, where "from now on" (no `dataFrom`) matches
 * whatever moment the first grant took. A form posted twice (a double click, a resubmission after
 * a lost answer) finds the consent its first post made; its `validUntil` comes from the page that
 * rendered the form, to the millisecond, so another form's terms do not match by chance.
 */
export async function grantInForce(db: Kysely<Database>, householdId: string, input: GrantInput): Promise<string | null> {
  let candidates = db
    .selectFrom('consents')
    .select(['id', 'all_meters'])
    .where('household_id', '=', householdId)
    .where('offer_id', '=', input.offerId)
    .where('status', '=', 'active')
    .where('valid_until', '=', input.validUntil)
  candidates = input.dataFrom === undefined ? candidates : candidates.where('data_from', '=', input.dataFrom)
  candidates = input.dataUntil === undefined ? candidates.where('data_until', 'is', null) : candidates.where('data_until', '=', input.dataUntil)
  const rows = await candidates.execute()
  const asked = input.meterIds === undefined ? null : [...new Set(input.meterIds)].sort()
  const metersOf = asked === null ? new Map<string, string[]>() : await repo.meterIdsOfConsents(db, rows.map((r) => r.id))
  for (const row of rows) {
    if (asked === null ? row.all_meters : !row.all_meters && (metersOf.get(row.id) ?? []).join('\n') === asked.join('\n')) return row.id
  }
  return null
}

/** A household's consents in grant order, with steps due at `now` taken first. */
export async function listHouseholdConsents(
  db: Kysely<Database>,
  householdId: string,
  page: { cursor?: string | undefined; limit: number },
  now: Date,
): Promise<Page<Consent>> {
  await sweepConsents(db, now, { householdId })
  return pageConsents(db, { householdId }, HOUSEHOLD_CONSENTS_CURSOR, page)
}

/** Consents that name a recipient, in grant order. */
export async function listRecipientConsents(
  db: Kysely<Database>,
  recipientId: string,
  page: { cursor?: string | undefined; limit: number },
): Promise<Page<Consent>> {
  return pageConsents(db, { recipientId }, RECIPIENT_CONSENTS_CURSOR, page)
}

/** One consent as its household sees it; another household's is not found. */
export async function getHouseholdConsent(db: Kysely<Database>, householdId: string, consentId: string): Promise<Consent> {
  const row = await repo.findConsent(db, consentId)
  if (row === undefined || row.household_id !== householdId) throw new NotFoundError(`consent ${consentId} not found`)
  return (await toConsents(db, [row]))[0]!
}

/** A household's consent log, oldest first, with steps due at `now` taken first. */
export async function listConsentLog(
  db: Kysely<Database>,
  householdId: string,
  page: { cursor?: string | undefined; limit: number },
  now: Date,
): Promise<Page<ConsentLogEntry>> {
  await sweepConsents(db, now, { householdId })
  const after = page.cursor === undefined ? null : BigInt(CONSENT_LOG_CURSOR.decode(page.cursor)[0])
  const rows = await repo.pageConsentLogRows(db, householdId, after, page.limit + 1)
  const items = rows.slice(0, page.limit)
  const last = items[items.length - 1]
  return {
    items: items.map((r) => ({
      id: String(r.id),
      consentId: r.consent_id,
      event: r.event,
      meterId: r.meter_id,
      actor: r.actor,
      at: r.at,
    })),
    next: rows.length > page.limit && last !== undefined ? CONSENT_LOG_CURSOR.encode([String(last.id)]) : null,
  }
}
