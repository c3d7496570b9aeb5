import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import type { Kysely } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import { ForbiddenError, InvalidInputError, UnauthenticatedError } from '../../shared/errors.ts'
import { safeEqual } from '../../shared/secrets.ts'
import { authenticateApiKey } from '../directory/directory-service.ts'
import type { Principal, PrincipalRole } from '../directory/principal.ts'
import { headerCount } from './validation.ts'

/**
 * Who is calling over HTTP. `Authorization: Bearer <token>` carries the operator token
 * (compared in constant time) or a party's or household's API key; without that header
 * the portal's session cookie is tried through the `SessionResolver` the composition root
 * passes in. Public routes do not look at credentials at all.
 */

/** The portal's session cookie. */
export const SESSION_COOKIE_NAME = 'metershare_session'

/** Longest bearer token or session cookie value we look at; longer ones are refused unread. */
export const CREDENTIAL_LENGTH_MAX = 512

/** Header that carries the session's CSRF token on every change made with the session cookie. */
export const CSRF_HEADER_NAME = 'x-csrf-token'

/** Turns a session cookie's value into the household it belongs to (null: expired or unknown). */
export interface SessionResolver {
  resolve(token: string, now: Date): Promise<Principal | null>
  /** Whether `candidate` (a request's CSRF header) is the CSRF token of the session `token`. */
  csrfTokenValid(token: string, candidate: string | undefined): boolean
}

export interface AuthContext {
  db: Kysely<Database>
  adminToken: string | null
  sessions: SessionResolver | undefined
  clock: () => Date
}

export type AuthVia = 'bearer' | 'session'

export interface Authenticated {
  principal: Principal
  via: AuthVia
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the route's authentication hook; null on public routes without credentials. */
    auth: Authenticated | null
  }
}

const BEARER_RE = /^Bearer +([^\s]+) *$/i
const UNSAFE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/** Reads the credentials of a request; null when it carries none, 401 when they do not hold. */
export async function authenticateRequest(request: FastifyRequest, ctx: AuthContext): Promise<Authenticated | null> {
  const header = request.headers.authorization
  if (header !== undefined) {
    const match = BEARER_RE.exec(header)
    if (match === null) throw new UnauthenticatedError('authorization: expected "Bearer <token>"')
    const token = match[1]!
    if (token.length > CREDENTIAL_LENGTH_MAX) throw new UnauthenticatedError('invalid bearer token')
    if (ctx.adminToken !== null && safeEqual(token, ctx.adminToken)) return { principal: { role: 'operator' }, via: 'bearer' }
    const principal = await authenticateApiKey(ctx.db, token)
    if (principal === null) throw new UnauthenticatedError('invalid bearer token')
    return { principal, via: 'bearer' }
  }
  const session = readCookie(request.headers.cookie, SESSION_COOKIE_NAME)
  if (session === undefined || ctx.sessions === undefined) return null
  if (session.length > CREDENTIAL_LENGTH_MAX) throw new UnauthenticatedError('session expired or unknown')
  const principal = await ctx.sessions.resolve(session, ctx.clock())
  if (principal === null) throw new UnauthenticatedError('session expired or unknown')
  // A cookie rides along with requests that other sites make; changes need our own origin
  // and the session's CSRF token, which only the portal's own pages hold.
  if (UNSAFE_METHODS.has(request.method)) {
    if (!sameOrigin(request)) throw new ForbiddenError('origin: a session may change data only from the portal itself')
    const csrf = request.headers[CSRF_HEADER_NAME]
    if (!ctx.sessions.csrfTokenValid(session, typeof csrf === 'string' ? csrf : undefined)) {
      throw new ForbiddenError(`${CSRF_HEADER_NAME}: a change made with the portal's session needs the session's CSRF token`)
    }
  }
  return { principal, via: 'session' }
}

/**
 * The API key an authenticated request was let in with (its bearer token); undefined when it came with
 * the operator's token or a session. A change of that key compares against it when it is written.
 */
export function presentedApiKeyOf(request: FastifyRequest): string | undefined {
  if (request.auth?.via !== 'bearer' || request.auth.principal.role === 'operator') return undefined
  const match = BEARER_RE.exec(request.headers.authorization ?? '')
  return match === null ? undefined : match[1]
}

/** The portal session token an authenticated request was let in with; undefined when it came with a bearer token. */
export function presentedSessionOf(request: FastifyRequest): string | undefined {
  if (request.auth?.via !== 'session') return undefined
  return readCookie(request.headers.cookie, SESSION_COOKIE_NAME)
}

/** Who may call a route: nobody in particular, or one of these roles. */
export type AuthRequirement = 'public' | readonly PrincipalRole[]

/** onRequest hook: authenticates, then 401 without credentials and 403 with the wrong role. */
export function authHook(requirement: AuthRequirement, ctx: AuthContext): onRequestAsyncHookHandler {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (requirement === 'public') return
    // Node keeps the first of two Authorization headers: credentials that say two things are refused, not picked by order.
    const given = headerCount(request.raw.rawHeaders, 'authorization')
    if (given > 1) throw new InvalidInputError(`authorization: given ${given} times; give it once`, 'authorization')
    request.auth = await authenticateRequest(request, ctx)
    if (request.auth === null) {
      void reply.header('www-authenticate', 'Bearer')
      throw new UnauthenticatedError()
    }
    if (!requirement.includes(request.auth.principal.role)) {
      throw new ForbiddenError(`this endpoint is for ${requirement.join(' or ')} credentials`)
    }
  }
}

/** The principal of an authenticated request, narrowed to the roles its route admits. */
export function principalOf<R extends PrincipalRole>(request: FastifyRequest, roles: readonly R[]): Extract<Principal, { role: R }> {
  const auth = request.auth
  if (auth === null || !(roles as readonly PrincipalRole[]).includes(auth.principal.role)) throw new UnauthenticatedError()
  return auth.principal as Extract<Principal, { role: R }>
}

/** The value of one cookie of a Cookie header (RFC 6265 syntax), undefined when absent. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() !== name) continue
    let value = part.slice(eq + 1).trim()
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    try {
      return decodeURIComponent(value)
    } catch {
      return value
    }
  }
  return undefined
}

/**
 * An unsafe request a browser sent from our own origin (or a program that sent no Origin). An origin
 * is scheme and host: a page served over plain HTTP on our host name (which anyone on the path can
 * write) is not the portal served over HTTPS. The scheme is the one the request came by, which a
 * trusted load balancer states in `X-Forwarded-Proto` (`request.protocol`).
 */
export function sameOrigin(request: FastifyRequest): boolean {
  const origin = request.headers.origin
  // Browsers send Origin on every cross-site unsafe request; programs without it are not browsers.
  if (origin === undefined) return true
  try {
    const url = new URL(origin)
    return url.protocol === `${request.protocol}:` && url.host === request.headers.host
  } catch {
    return false
  }
}
