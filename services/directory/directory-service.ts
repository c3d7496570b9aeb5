import type { Kysely } from 'kysely'
import { formatTimestamp } from '../../shared/calendar.ts'
import { ConflictError, ERROR_CODES, InvalidInputError, NotFoundError, UnauthenticatedError } from '../../shared/errors.ts'
import { ID_PREFIXES, METER_ID_RE, newId } from '../../shared/ids.ts'
import type { Commodity } from '../../shared/obis.ts'
import type { Database } from '../../shared/db/schema.ts'
import type { PartyKind } from '../../shared/db/tables/parties.ts'
import {
  formatApiKey,
  generateSecret,
  hashPassword,
  hashSecret,
  parseApiKey,
  verifyPassword,
  verifySecret,
} from '../../shared/secrets.ts'
import * as repo from './directory-repository.ts'
import { deleteHouseholdSessions, findSession } from './session-repository.ts'
import { ownerKey, type Principal } from './principal.ts'

const RESERVED_ID_RE = new RegExp(`^(${ID_PREFIXES.party}|${ID_PREFIXES.household})_`)

/**
 * Parties, households and meters, and their credentials. Keys and secrets are returned
 * once, at creation, and stored only as salted hashes.
 */

export const PASSWORD_LENGTH_MIN = 8
export const PASSWORD_LENGTH_MAX = 256

const UNIQUE_VIOLATION = '23505'
const FOREIGN_KEY_VIOLATION = '23503'

function pgCode(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code
}

export async function createParty(db: Kysely<Database>, input: { kind: PartyKind; name: string }): Promise<{ id: string; apiKey: string }> {
  const id = newId('party')
  const secret = generateSecret()
  await repo.insertParty(db, { id, kind: input.kind, name: input.name, api_key_hash: hashSecret(secret) })
  return { id, apiKey: formatApiKey(id, secret) }
}

export async function createHousehold(
  db: Kysely<Database>,
  input: { name: string; email: string; password: string },
): Promise<{ id: string; apiKey: string }> {
  checkPasswordLength(input.password, 'password')
  const id = newId('household')
  const secret = generateSecret()
  try {
    await repo.insertHousehold(db, {
      id,
      name: input.name,
      email: input.email.toLowerCase(),
      password_hash: await hashPassword(input.password),
      api_key_hash: hashSecret(secret),
    })
  } catch (err) {
    if (pgCode(err) === UNIQUE_VIOLATION) throw new ConflictError('email: a household with this email exists', ERROR_CODES.EMAIL_TAKEN)
    throw err
  }
  return { id, apiKey: formatApiKey(id, secret) }
}

export async function createMeter(
  db: Kysely<Database>,
  input: { operatorId: string; commodity: Commodity; intervalMinutes: 15 | 30 | 60; id?: string | undefined },
): Promise<{ id: string; secret: string }> {
  if (input.id !== undefined && !METER_ID_RE.test(input.id)) {
    throw new InvalidInputError('id: 1 to 64 characters among A-Z a-z 0-9 . _ : -, starting with a letter or digit', 'id')
  }
  // MQTT usernames name meters, parties and households alike: a meter may not take a party's or household's id.
  if (input.id !== undefined && RESERVED_ID_RE.test(input.id)) {
    throw new InvalidInputError(`id: the prefixes ${ID_PREFIXES.party}_ and ${ID_PREFIXES.household}_ are reserved for parties and households`, 'id')
  }
  const operator = await repo.findParty(db, input.operatorId)
  if (operator === undefined) throw new InvalidInputError('operatorId: no such party', 'operatorId')
  if (operator.kind !== 'utility') throw new InvalidInputError('operatorId: a meter is operated by a utility', 'operatorId')
  const id = input.id ?? newId('meter')
  const secret = generateSecret()
  try {
    await repo.insertMeter(db, {
      id,
      operator_id: input.operatorId,
      commodity: input.commodity,
      interval_minutes: input.intervalMinutes,
      secret_hash: hashSecret(secret),
    })
  } catch (err) {
    if (pgCode(err) === UNIQUE_VIOLATION) throw new ConflictError('id: a meter with this id exists', ERROR_CODES.METER_EXISTS)
    if (pgCode(err) === FOREIGN_KEY_VIOLATION) throw new InvalidInputError('operatorId: no such party', 'operatorId')
    throw err
  }
  return { id, secret }
}

/**
 * Credentials are renewed when they leaked or a device changed hands: the old ones are refused from
 * the commit on, and every broker closes the MQTT connections they opened (CREDENTIALS_CHANNEL).
 */
export async function renewMeterSecret(db: Kysely<Database>, meterId: string): Promise<{ id: string; secret: string }> {
  const secret = generateSecret()
  await db.transaction().execute(async (trx) => {
    const meter = await repo.findMeter(trx, meterId)
    if (meter === undefined) throw new NotFoundError(`meter ${meterId} not found`)
    if (meter.retired_at !== null) throw new ConflictError(`meter ${meterId} was taken out of service at ${formatTimestamp(meter.retired_at)}`)
    if (!(await repo.setCredentialHash(trx, { table: 'meters', column: 'secret_hash' }, meterId, hashSecret(secret), meter.secret_hash))) throw new ConflictError(RENEWED_MEANWHILE)
    await repo.notifyCredentialsChanged(trx, ownerKey('meter', meterId))
  })
  return { id: meterId, secret }
}

/** A new API key for a party or a household (its bearer token and MQTT password); the old one stops working. */
/** The names of these parties, by id (an id that is no party is left out). */
export async function partyNamesOf(db: Kysely<Database>, ids: readonly string[]): Promise<Map<string, string>> {
  return repo.partyNames(db, ids)
}

/**
 * With `presented`, the owner renews the key it called with (`POST /me/api-key` with a bearer key):
 * renewed only if that key is still the one in force when the new one is written. Of renewals made at
 * once with one key, one answers the new key and the others are refused (UnauthenticatedError) as any
 * key that no longer holds is, rather than each answering a key that a later one ended at once.
 */
export async function renewApiKey(
  db: Kysely<Database>,
  kind: 'party' | 'household',
  ownerId: string,
  presented?: string,
  viaSession?: { sessionId: string; now: Date },
): Promise<{ id: string; apiKey: string }> {
  const secret = generateSecret()
  await db.transaction().execute(async (trx) => {
    const where = kind === 'party' ? ({ table: 'parties', column: 'api_key_hash' } as const) : ({ table: 'households', column: 'api_key_hash' } as const)
    if (viaSession !== undefined) {
      // A household's renewal from a portal session: the session must still be open when the key is written.
      // A password change locks the household, then ends its sessions; locking the household first here, a
      // renewal after such a change finds its session ended, rather than making a key that outlives it (found
      // by probing: keys written 200 ms after the change, from a session it had ended), and no deadlock.
      await trx.selectFrom('households').select('id').where('id', '=', ownerId).forUpdate().execute()
      const session = await findSession(trx, viaSession.sessionId)
      if (session === undefined || session.household_id !== ownerId || session.expires_at <= viaSession.now) throw new UnauthenticatedError(SESSION_ENDED)
    }
    const owner = kind === 'party' ? await repo.findParty(trx, ownerId) : await repo.findHousehold(trx, ownerId)
    if (presented !== undefined) {
      const key = parseApiKey(presented)
      if (key === null || key.ownerId !== ownerId || owner === undefined || !verifySecret(key.secret, owner.api_key_hash)) throw new UnauthenticatedError(STALE_KEY)
    }
    if (owner === undefined) throw new NotFoundError(`${kind} ${ownerId} not found`)
    // Replaces only the key it read: of renewals at once, one answers a key and the others learn it was renewed
    // meanwhile, rather than each answering a key the next one ended (found by probing: 8 answered, 1 worked).
    if (!(await repo.setCredentialHash(trx, where, ownerId, hashSecret(secret), owner.api_key_hash))) {
      if (presented !== undefined) throw new UnauthenticatedError(STALE_KEY)
      throw new ConflictError(RENEWED_MEANWHILE)
    }
    await repo.notifyCredentialsChanged(trx, ownerKey(kind, ownerId))
  })
  return { id: ownerId, apiKey: formatApiKey(ownerId, secret) }
}

const STALE_KEY = 'invalid bearer token: the key was renewed meanwhile'
const SESSION_ENDED = 'session expired or unknown: it ended meanwhile (a password change ends every session)'
const RENEWED_MEANWHILE = 'renewed meanwhile by another request, whose answer holds the credential in force: renew again to replace it'

export const WRONG_CURRENT_PASSWORD = 'currentPassword: not the password of this household'

function checkPasswordLength(password: string, field: string): void {
  if (password.length < PASSWORD_LENGTH_MIN || password.length > PASSWORD_LENGTH_MAX) {
    throw new InvalidInputError(`${field}: must be ${PASSWORD_LENGTH_MIN} to ${PASSWORD_LENGTH_MAX} characters`, field)
  }
}

/** A household's sign-in email (the portal's account page names the account to password managers). */
export async function householdEmail(db: Kysely<Database>, householdId: string): Promise<string> {
  const household = await repo.findHousehold(db, householdId)
  if (household === undefined) throw new NotFoundError(`household ${householdId} not found`)
  return household.email
}

/**
 * Sets a household's portal password and ends all its portal sessions (whoever held one signs in
 * again). With `current`, the household's own change: refused unless it is its password now. The
 * operator's reset (a forgotten password) gives none.
 */
export async function setHouseholdPassword(db: Kysely<Database>, householdId: string, password: string, current?: string): Promise<void> {
  checkPasswordLength(password, current === undefined ? 'password' : 'newPassword')
  const household = await repo.findHousehold(db, householdId)
  if (household === undefined) throw new NotFoundError(`household ${householdId} not found`)
  if (current !== undefined && !(await verifyPassword(current, household.password_hash))) {
    throw new InvalidInputError(WRONG_CURRENT_PASSWORD, 'currentPassword')
  }
  const hash = await hashPassword(password)
  await db.transaction().execute(async (trx) => {
    // The household's own change replaces only the password it proved it knew: of changes made at once
    // with it, one goes through and the others find it is no longer the password.
    const proved = current === undefined ? undefined : household.password_hash
    if (!(await repo.setCredentialHash(trx, { table: 'households', column: 'password_hash' }, householdId, hash, proved))) {
      if (proved === undefined) throw new NotFoundError(`household ${householdId} not found`)
      throw new InvalidInputError(WRONG_CURRENT_PASSWORD, 'currentPassword')
    }
    await deleteHouseholdSessions(trx, householdId)
  })
}

/**
 * Takes a meter out of service (replaced, removed): it may not connect from now on, and every broker
 * closes its connection. Its id is never given to another meter; its data, occupancies and consents
 * stay. Retiring it again changes nothing.
 */
export async function retireMeter(db: Kysely<Database>, meterId: string, now: Date): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const meter = await repo.findMeter(trx, meterId)
    if (meter === undefined) throw new NotFoundError(`meter ${meterId} not found`)
    if (await repo.setMeterRetired(trx, meterId, now)) await repo.notifyCredentialsChanged(trx, ownerKey('meter', meterId), 'retired')
  })
}

export async function requireMeter(db: Kysely<Database>, id: string) {
  const meter = await repo.findMeter(db, id)
  if (meter === undefined) throw new NotFoundError(`meter ${id} not found`)
  return meter
}

/**
 * MQTT credentials: a meter connects with its id as username and its secret; a recipient with
 * its party id and API key; a household with its id and API key. Null when the credentials are
 * not valid (the caller answers CONNACK 4). The client id is the caller's to check: a meter's must
 * be its id (CONNACK 2 otherwise, as for any identifier refused).
 */
export async function authenticateMqtt(db: Kysely<Database>, input: { username: string | undefined; password: Buffer | undefined }): Promise<Principal | null> {
  const { username, password } = input
  if (username === undefined || password === undefined || username === '') return null
  const secret = password.toString('utf8')
  const meter = await repo.findMeter(db, username)
  if (meter !== undefined) {
    if (!verifySecret(secret, meter.secret_hash) || meter.retired_at !== null) return null
    return {
      role: 'meter',
      meterId: meter.id,
      commodity: meter.commodity,
      intervalMinutes: meter.interval_minutes,
      operatorId: meter.operator_id,
    }
  }
  const key = parseApiKey(secret)
  if (key === null || key.ownerId !== username) return null
  return principalForKey(db, key.ownerId, key.secret)
}

/** HTTP bearer API keys of parties and households (`<ownerId>.<secret>`). */
export async function authenticateApiKey(db: Kysely<Database>, apiKey: string): Promise<Principal | null> {
  const key = parseApiKey(apiKey)
  if (key === null) return null
  return principalForKey(db, key.ownerId, key.secret)
}

async function principalForKey(db: Kysely<Database>, ownerId: string, secret: string): Promise<Principal | null> {
  const party = await repo.findParty(db, ownerId)
  if (party !== undefined) {
    return verifySecret(secret, party.api_key_hash) ? { role: 'recipient', partyId: party.id, partyKind: party.kind } : null
  }
  const household = await repo.findHousehold(db, ownerId)
  if (household !== undefined) {
    return verifySecret(secret, household.api_key_hash) ? { role: 'household', householdId: household.id } : null
  }
  return null
}

/**
 * Portal sign-in. Null on any mismatch, without telling which part was wrong; else the household and
 * the hash the password was verified against (a session opens only while it is still the one).
 */
/** Whether `password` is the household's password in use (false for a household that does not exist). */
export async function householdPasswordIs(db: Kysely<Database>, householdId: string, password: string): Promise<boolean> {
  const household = await repo.findHousehold(db, householdId)
  return household !== undefined && (await verifyPassword(password, household.password_hash))
}

export async function authenticatePassword(db: Kysely<Database>, email: string, password: string): Promise<{ householdId: string; passwordHash: string } | null> {
  const household = await repo.findHouseholdByEmail(db, email)
  if (household === undefined) {
    // Spend the same time as a real check so that timing does not reveal which emails exist.
    await verifyPassword(password, DUMMY_PASSWORD_HASH)
    return null
  }
  return (await verifyPassword(password, household.password_hash)) ? { householdId: household.id, passwordHash: household.password_hash } : null
}

const DUMMY_PASSWORD_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'

/** One page of a list in creation order; `next` is null on the last page. */
export interface DirectoryPage<T> {
  items: T[]
  next: repo.CreationKey | null
}

export interface PartySummary {
  id: string
  kind: PartyKind
  name: string
  createdAt: Date
}

export interface HouseholdSummary {
  id: string
  name: string
  email: string
  createdAt: Date
}

export interface MeterSummary {
  id: string
  operatorId: string
  commodity: Commodity
  intervalMinutes: 15 | 30 | 60
  createdAt: Date
  retiredAt: Date | null
}

function toPage<R extends { id: string; created_key: string }, T>(rows: R[], limit: number, map: (row: R) => T): DirectoryPage<T> {
  const more = rows.length > limit
  const kept = more ? rows.slice(0, limit) : rows
  const last = kept[kept.length - 1]
  return { items: kept.map(map), next: more && last !== undefined ? { createdAt: last.created_key, id: last.id } : null }
}

export async function listPartiesPage(
  db: Kysely<Database>,
  options: { after: repo.CreationKey | null; limit: number; kind?: PartyKind | undefined },
): Promise<DirectoryPage<PartySummary>> {
  const rows = await repo.pageParties(db, { ...options, limit: options.limit + 1 })
  return toPage(rows, options.limit, (r) => ({ id: r.id, kind: r.kind, name: r.name, createdAt: r.created_at }))
}

export async function listHouseholdsPage(
  db: Kysely<Database>,
  options: { after: repo.CreationKey | null; limit: number },
): Promise<DirectoryPage<HouseholdSummary>> {
  const rows = await repo.pageHouseholds(db, { ...options, limit: options.limit + 1 })
  return toPage(rows, options.limit, (r) => ({ id: r.id, name: r.name, email: r.email, createdAt: r.created_at }))
}

export async function listMetersPage(
  db: Kysely<Database>,
  options: { after: repo.CreationKey | null; limit: number; operatorId?: string | undefined },
): Promise<DirectoryPage<MeterSummary>> {
  const rows = await repo.pageMeters(db, { ...options, limit: options.limit + 1 })
  return toPage(rows, options.limit, (r) => ({
    id: r.id,
    operatorId: r.operator_id,
    commodity: r.commodity,
    intervalMinutes: r.interval_minutes,
    createdAt: r.created_at,
    retiredAt: r.retired_at,
  }))
}
