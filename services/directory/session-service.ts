import { createHmac } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { PortalLimits } from '../../shared/config.ts'
import type { Database } from '../../shared/db/schema.ts'
import { InvalidInputError, UnauthenticatedError } from '../../shared/errors.ts'
import { newId } from '../../shared/ids.ts'
import { generateSecret, hashSecret, safeEqual, verifySecret } from '../../shared/secrets.ts'
import { authenticatePassword, householdPasswordIs, setHouseholdPassword, WRONG_CURRENT_PASSWORD } from './directory-service.ts'
import type { Principal } from './principal.ts'
import * as repo from './session-repository.ts'
import type { SignInThrottle } from './session-throttle.ts'

/**
 * The household portal's sessions. Signing in with email and password opens a session whose
 * token, `<sessionId>.<secret>` (the secret is 256 random bits), goes to the browser in a
 * cookie; the database keeps only the secret's salted hash and the expiry. Each session also
 * has a CSRF token, derived from its token by HMAC so that nothing more is stored: a page
 * carries it, and every change made with the cookie must send it back.
 */

export const EMAIL_LENGTH_MAX = 254

/** What the browser holds: a session id, a dot, then 43 base64url characters (256 bits). */
const SESSION_TOKEN_RE = /^(ses_[0-9a-z]{16})\.([A-Za-z0-9_-]{43})$/
const CSRF_CONTEXT = 'metershare portal csrf v1'

export type SessionLimits = Pick<PortalLimits, 'sessionTtlMs' | 'sessionsPerHouseholdMax'>

export interface OpenedSession {
  /** The cookie's value; shown once, never stored. */
  token: string
  csrfToken: string
  householdId: string
  expiresAt: Date
}

export interface ResolvedSession {
  sessionId: string
  householdId: string
  expiresAt: Date
}

/** The id of the session a cookie's token names (its part before the dot); undefined when it is no token. */
export function sessionIdOf(token: string): string | undefined {
  return parseToken(token)?.id
}

function parseToken(token: string): { id: string; secret: string } | null {
  const match = SESSION_TOKEN_RE.exec(token)
  return match === null ? null : { id: match[1]!, secret: match[2]! }
}

/** The CSRF token of a session: HMAC-SHA256 keyed by the session token, so only its holder can compute it. */
export function csrfTokenOf(sessionToken: string): string {
  return createHmac('sha256', sessionToken).update(CSRF_CONTEXT).digest('base64url')
}

export function csrfTokenValid(sessionToken: string, candidate: string | undefined): boolean {
  if (candidate === undefined || candidate === '') return false
  return safeEqual(candidate, csrfTokenOf(sessionToken))
}

const SIGN_IN_REFUSAL = 'email or password: no household with this email and password'

/**
 * Opens a session for a household that has proved who it is with its password; ends expired and
 * surplus sessions. Opened only while the password is still the one verified (`passwordHash`): a
 * change made between the check and now ended every session, and this one would outlive it; the
 * sign-in is then refused as a wrong password is.
 */
export async function openSession(
  db: Kysely<Database>,
  proof: { householdId: string; passwordHash: string },
  now: Date,
  limits: SessionLimits,
): Promise<OpenedSession> {
  const { householdId } = proof
  const id = newId('session')
  const secret = generateSecret()
  const expiresAt = new Date(now.getTime() + limits.sessionTtlMs)
  await db.transaction().execute(async (trx) => {
    if (!(await repo.holdPasswordHash(trx, householdId, proof.passwordHash))) throw new UnauthenticatedError(SIGN_IN_REFUSAL)
    await repo.deleteExpiredSessions(trx, now)
    await repo.insertSession(trx, { id, household_id: householdId, token_hash: hashSecret(secret), created_at: now, expires_at: expiresAt })
    await repo.deleteSessionsBeyond(trx, householdId, limits.sessionsPerHouseholdMax)
  })
  const token = `${id}.${secret}`
  return { token, csrfToken: csrfTokenOf(token), householdId, expiresAt }
}

/** The live session a token belongs to; null when it is malformed, unknown, forged or expired. */
export async function resolveSession(db: Kysely<Database>, token: string, now: Date): Promise<ResolvedSession | null> {
  const parsed = parseToken(token)
  if (parsed === null) return null
  const row = await repo.findSession(db, parsed.id)
  if (row === undefined || !verifySecret(parsed.secret, row.token_hash)) return null
  if (row.expires_at.getTime() <= now.getTime()) return null
  return { sessionId: row.id, householdId: row.household_id, expiresAt: row.expires_at }
}

/** Ends the session of a token (signing out); a token that does not hold ends nothing. */
export async function closeSession(db: Kysely<Database>, token: string): Promise<boolean> {
  const parsed = parseToken(token)
  if (parsed === null) return false
  const row = await repo.findSession(db, parsed.id)
  if (row === undefined || !verifySecret(parsed.secret, row.token_hash)) return false
  await repo.deleteSession(db, row.id)
  return true
}

export interface SignInInput {
  email: string
  password: string
  /** The caller's network address, throttled like the email. */
  address: string
}

/**
 * Email and password to a new session. Failures are counted per email and address, per address
 * and per email (SignInThrottle.keysOf); past a limit the attempt is refused before the password
 * is even checked (429), so that guessing stays slow and costs us no scrypt work. A wrong email
 * and a wrong password fail alike.
 */
export async function signIn(
  db: Kysely<Database>,
  input: SignInInput,
  now: Date,
  limits: SessionLimits,
  throttle: SignInThrottle,
): Promise<OpenedSession> {
  const keys = throttle.keysOf(input.email, input.address)
  const session = await throttle.guard(
    keys,
    now.getTime(),
    SIGN_IN_THROTTLED,
    async () => {
      const found = await authenticatePassword(db, input.email.trim(), input.password)
      if (found === null) throw new UnauthenticatedError(SIGN_IN_REFUSAL)
      return openSession(db, found, now, limits)
    },
    // A wrong password, or one changed since the check (the wrong password it now is); nothing else.
    (err) => err instanceof UnauthenticatedError,
  )
  // The right password from this address clears what this address got wrong for this email.
  throttle.forget(keys[0]!)
  return session
}

const SIGN_IN_THROTTLED = {
  failures: 'too many failed sign-ins: try again later',
  busy: 'too many sign-ins under way at once from this address or for this email: try again in a second',
}
const CURRENT_PASSWORD_THROTTLED = {
  failures: 'currentPassword: too many wrong passwords: try again later',
  busy: 'currentPassword: too many checks under way at once: try again in a second',
}

/**
 * Changes a household's password given the one in use, under the sign-in's limits (`/me/password`
 * and the portal's account form): a wrong current password counts as a failed sign-in, per household
 * from this address, per address and per household, and past them the change is refused
 * (TooManyRequestsError) before any check. Every session of the household ends.
 */
export async function changePassword(
  db: Kysely<Database>,
  input: { householdId: string; address: string; currentPassword: string; newPassword: string },
  now: Date,
  throttle: SignInThrottle,
): Promise<void> {
  const keys = throttle.currentPasswordKeysOf(input.householdId, input.address)
  await throttle.guard(keys, now.getTime(), CURRENT_PASSWORD_THROTTLED, () => setHouseholdPassword(db, input.householdId, input.newPassword, input.currentPassword), wrongCurrentPassword)
}

/**
 * Checks a household's password in use under the sign-in's limits, as changePassword does (a wrong one
 * counts as a failed sign-in; past the limits, TooManyRequestsError before any check): InvalidInputError
 * on `currentPassword` when it is not the password.
 */
export async function checkCurrentPassword(
  db: Kysely<Database>,
  input: { householdId: string; address: string; currentPassword: string },
  now: Date,
  throttle: SignInThrottle,
): Promise<void> {
  const keys = throttle.currentPasswordKeysOf(input.householdId, input.address)
  const check = async (): Promise<void> => {
    if (!(await householdPasswordIs(db, input.householdId, input.currentPassword))) throw new InvalidInputError(WRONG_CURRENT_PASSWORD, 'currentPassword')
  }
  await throttle.guard(keys, now.getTime(), CURRENT_PASSWORD_THROTTLED, check, wrongCurrentPassword)
}

/** Only a wrong current password counts as a failure. */
function wrongCurrentPassword(err: unknown): boolean {
  return err instanceof InvalidInputError && err.field === 'currentPassword'
}

/** The API's view of sessions (`ApiDeps.sessions`): the household behind a cookie, and its CSRF check. */
export interface SessionLookup {
  resolve(token: string, now: Date): Promise<Principal | null>
  csrfTokenValid(token: string, candidate: string | undefined): boolean
}

export function sessionResolver(db: Kysely<Database>): SessionLookup {
  return {
    async resolve(token, now) {
      const session = await resolveSession(db, token, now)
      return session === null ? null : { role: 'household', householdId: session.householdId }
    },
    csrfTokenValid,
  }
}
