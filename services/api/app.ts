import { fastify, LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Config } from '../../shared/config.ts'
import type { DatabaseHandle } from '../../shared/db/database.ts'
import { InvalidInputError } from '../../shared/errors.ts'
import { log } from '../../shared/logger.ts'
import { TrustedProxies } from '../../shared/trusted-proxies.ts'
import type { Metrics } from '../../shared/metrics.ts'
import type { AuthContext, SessionResolver } from './auth.ts'
import { sessionResolver } from '../directory/session-service.ts'
import { installErrorHandling, sendError } from './error-handler.ts'
import type { RouteDoc, RouteMethod } from './route.ts'
import { ROUTE_PLUGINS } from './routes/index.ts'

/**
 * The HTTP API as a fastify instance that does not listen yet: the composition root calls
 * `listen` and attaches the MQTT-over-WebSocket upgrade at `/mqtt` on `app.server`.
 */

export interface HealthReport {
  /** Whether this process's broker runs (absent in the API alone: each broker answers for itself). */
  broker?: boolean
  database: boolean
  /** A broker coupled to others through Redis: whether Redis answers (absent when not coupled). */
  redis?: boolean
}

/**
 * Everything the routes use. Services that come later (consents, settlement, the portal's
 * sessions) add a field here, and the composition root passes it in.
 */
export interface ApiDeps {
  config: Readonly<Config>
  db: DatabaseHandle
  metrics: Metrics
  health: () => Promise<HealthReport>
  /** Injected in tests; the wall clock otherwise. */
  clock?: () => Date
  /** The portal's session cookie (`SESSION_COOKIE_NAME`); by default the sessions stored in `db`. */
  sessions?: SessionResolver
}

/** A registered route, as the OpenAPI document sees it. */
export interface RouteEntry {
  method: RouteMethod
  url: string
  doc: RouteDoc | undefined
}

/** Shared by every route plugin (a decoration of the root instance). */
export interface ApiContext {
  deps: ApiDeps
  auth: AuthContext
  now: () => Date
  /** Every route registered, in registration order (filled by an onRoute hook). */
  routes: RouteEntry[]
  /** The portal's page for an address no route serves, asked for by a browser (set by the portal's routes). */
  notFoundPage?: (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply>
}

declare module 'fastify' {
  interface FastifyInstance {
    apiContext: ApiContext
  }
}

/** Longest time to receive a whole request (headers and body), against slow senders. */
export const HTTP_REQUEST_TIMEOUT_MS = 30_000
/** Longest route parameter (meter ids are at most 64 characters). */
export const HTTP_PARAM_LENGTH_MAX = 128

const DOCUMENTED_METHODS = new Set<string>(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'])
const QUIET_ROUTES = new Set<string>(['/healthz', '/metrics'])

/** Digits a JSON integer may have: every integer of up to 15 digits is exactly a double. */
export const JSON_INTEGER_DIGITS_MAX = 15

/**
 * The first number literal of a JSON text that parsing could round, and the key it is the value of
 * (null for an array element or a bare value): every number this API takes is a whole one, and
 * `999999999.99999999` or `1e3` would reach it as 1000000000 and 1000, or a 17-digit integer as its
 * nearest double. Strings are skipped; null when there is none.
 */
export function inexactNumber(text: string): { literal: string; key: string | null } | null {
  const number = /-?\d+(\.\d+)?([eE][+-]?\d+)?/y
  let lastString: string | null = null
  let key: string | null = null
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) {
      // Skip a string, escapes and all; remember it, in case a colon makes it a key.
      const start = i + 1
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++
      lastString = text.slice(start, i)
      continue
    }
    if (c === 0x3a) {
      key = lastString
      continue
    }
    if (c === 0x2c || c === 0x5b || c === 0x7b) key = null
    if (c !== 0x2d && (c < 0x30 || c > 0x39)) continue
    number.lastIndex = i
    const m = number.exec(text)
    if (m === null) continue
    const literal = m[0]
    if (m[1] !== undefined || m[2] !== undefined || literal.replace('-', '').length > JSON_INTEGER_DIGITS_MAX) return { literal, key }
    i += literal.length - 1
  }
  return null
}

/** Methods whose requests carry no body. */
const BODYLESS_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS'])

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const clock = deps.clock ?? (() => new Date())
  // Behind a trusted load balancer, request.ip is the client's (X-Forwarded-For): sign-in throttles count by it.
  const proxies = new TrustedProxies(deps.config.trustedProxies)
  const app = fastify({
    trustProxy: proxies.none ? false : (address: string) => proxies.trusts(address),
    loggerInstance: log.api as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.config.http.bodyBytesMax,
    requestTimeout: HTTP_REQUEST_TIMEOUT_MS,
    requestIdHeader: false,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: HTTP_PARAM_LENGTH_MAX },
    frameworkErrors: (err, request, reply) => {
      sendError(err, request, reply)
    },
  })

  // A request that carries no body (DELETE, GET) may still say `Content-Type: application/json`, as many
  // generic clients do on every request: that is no error. A POST or PATCH with an empty JSON body still is.
  const json = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '' && BODYLESS_METHODS.has(request.method)) return done(null, undefined)
    const inexact = inexactNumber(body as string)
    if (inexact !== null) {
      const field = inexact.key ?? 'body'
      return done(
        new InvalidInputError(
          `${field}: ${inexact.literal} is not a whole number written out (no fraction, no exponent, at most ${JSON_INTEGER_DIGITS_MAX} digits: JSON would round it); send amounts as strings`,
          field,
        ),
        undefined,
      )
    }
    json(request, body as string, done)
  })

  const context: ApiContext = {
    deps,
    auth: { db: deps.db.db, adminToken: deps.config.adminToken, sessions: deps.sessions ?? sessionResolver(deps.db.db), clock },
    now: clock,
    routes: [],
  }
  app.decorate('apiContext', context)
  app.decorateRequest('auth', null)

  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    for (const method of methods) {
      if (!DOCUMENTED_METHODS.has(method)) continue
      context.routes.push({ method: method as RouteMethod, url: route.url, doc: route.config?.doc })
    }
  })

  app.addHook('onResponse', async (request, reply) => {
    const route = request.is404 ? 'unmatched' : (request.routeOptions.url ?? 'unmatched')
    const status = reply.statusCode
    const seconds = reply.elapsedTime / 1000
    deps.metrics.httpRequestSeconds.labels(request.method, route, String(status)).observe(seconds)
    const fields = { method: request.method, route, status, ms: Math.round(reply.elapsedTime * 10) / 10 }
    // Probes and scrapes come every few seconds; they would drown the requests people make.
    if (QUIET_ROUTES.has(route)) request.log.debug(fields, 'request served')
    else request.log.info(fields, 'request served')
  })

  // JSON only: anything else is answered 415 rather than handed to a route as a string.
  app.removeContentTypeParser(['text/plain'])
  installErrorHandling(app)
  for (const plugin of ROUTE_PLUGINS) await app.register(plugin, { deps })
  await app.ready()
  return app
}
