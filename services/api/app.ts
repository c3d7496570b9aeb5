import type http from 'node:http'
import type { Duplex } from 'node:stream'
import { fastify, LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Config } from '../../shared/config.ts'
import type { DatabaseHandle } from '../../shared/db/database.ts'
import { ERROR_CODES, InvalidInputError, MetershareError, UnsupportedMediaTypeError } from '../../shared/errors.ts'
import { jsonTextProblem } from '../../shared/json-text.ts'
import { log } from '../../shared/logger.ts'
import { shownName } from '../../shared/text.ts'
import { TrustedProxies } from '../../shared/trusted-proxies.ts'
import type { Metrics } from '../../shared/metrics.ts'
import type { AuthContext, SessionResolver } from './auth.ts'
import type { ReleaseChange } from '../consent/release-view.ts'
import { sessionResolver } from '../directory/session-service.ts'
import { SignInThrottle } from '../directory/session-throttle.ts'
import { HTTP_PARAM_LENGTH_MAX, answerClientError, answerConnect, installErrorHandling, sendError } from './error-handler.ts'
import { takesNoBodyError, type RouteDoc, type RouteMethod } from './route.ts'
import { headerCount } from './validation.ts'
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
  /** A broker: false while its ingest is held because the database's disk is full (absent without a broker). */
  storage?: boolean
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
  /**
   * Resolves once this process's broker forwards by a change just committed (`metershare up`), so
   * that once a revocation is answered no datum leaves for it. Absent when the brokers are other
   * processes: they hear the change by NOTIFY, within milliseconds.
   */
  releaseChanged?: (change: ReleaseChange) => Promise<void>
  /**
   * Whether writes are refused (503 STORAGE_FULL) before they reach the database: `up` on PGlite while
   * its ingest is held below the free-space reserve (storage.ts), so that what is left stays for the
   * write-ahead log, which PGlite cannot run out of without hanging. Reads are still answered.
   */
  writesRefused?: () => boolean
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
  /** Failed password checks (portal sign-ins, current passwords of password changes), for this process. */
  passwordThrottle: SignInThrottle
  /** The portal's page for an address no route serves, asked for by a browser (set by the portal's routes). */
  notFoundPage?: (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply>
  /**
   * The portal's page for a request of a browser's that failed on our side (500, or 503 while the
   * database is away or its disk full), rendered without the database (set by the portal's routes).
   */
  failurePage?: (request: FastifyRequest, reply: FastifyReply, status: number) => FastifyReply
}

declare module 'fastify' {
  interface FastifyInstance {
    apiContext: ApiContext
  }
  interface FastifyRequest {
    /** A problem of the body's text said only if the route's schema finds none first (see bodyTextProblem). */
    bodyProblemAfterSchema: InvalidInputError | null
  }
}

/**
 * How often Node looks for requests past `http.requestTimeoutMs`: a 408 comes at most this late.
 * Node's default, 30 s, answered a request that stopped halfway 60 to 84 s after it began, not 30.
 */
export const HTTP_TIMEOUT_CHECK_INTERVAL_MS = 1_000

/** How often, at most, connections refused for the bound are logged (each refusal would be a line otherwise). */
const DROPPED_CONNECTIONS_LOG_INTERVAL_MS = 60_000

/** A server's log of the connections it refused for the bound, one line a DROPPED_CONNECTIONS_LOG_INTERVAL_MS at most. */
function droppedConnectionsLog(connectionsMax: number): (address: string | undefined) => void {
  let refused = 0
  let loggedAt = Number.NEGATIVE_INFINITY
  return (address) => {
    refused++
    const now = Date.now()
    if (now - loggedAt < DROPPED_CONNECTIONS_LOG_INTERVAL_MS) return
    log.api.warn({ refused, lastAddress: address, connectionsMax }, 'HTTP connections refused: the port holds connectionsMax already')
    loggedAt = now
    refused = 0
  }
}

/**
 * How long a browser that got an answer over HTTPS keeps to HTTPS for this host (Strict-Transport-Security):
 * a year, the figure browsers' preload lists ask for. Subdomains are not named: they are the operator's, not ours.
 */
export const HSTS_MAX_AGE_S = 31_536_000

const DOCUMENTED_METHODS = new Set<string>(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'])
const QUIET_ROUTES = new Set<string>(['/healthz', '/metrics'])

/** Methods that may write (refused while `writesRefused`). */
const WRITE_METHODS = new Set<string>(['POST', 'PUT', 'PATCH', 'DELETE'])

/** Digits a JSON integer may have: every integer of up to 15 digits is exactly a double. */
export const JSON_INTEGER_DIGITS_MAX = 15

/**
 * Levels of arrays and objects a JSON body may nest: ours nest three at most. Deeper input is
 * refused before it is parsed, so that no walk over it can run out of stack.
 */
export const JSON_NESTING_MAX = 32

/** Characters of a number literal an error message repeats (the body may hold one of thousands of digits). */
const SHOWN_LITERAL_CHARS_MAX = 24

/**
 * What makes a request body unfit, read from its text before it is parsed, with the field it is in
 * (`body` for the whole), or null. A number JSON would round is `afterSchema`: said only when the
 * route's schema finds nothing else, since a fraction where a string or no field at all belongs is
 * better named as that (`name: expected a string`, `x: unknown field`).
 */
function bodyTextProblem(text: string): { field: string; message: string; afterSchema: boolean } | null {
  const problem = jsonTextProblem(text, { nestingMax: JSON_NESTING_MAX, digitsMax: JSON_INTEGER_DIGITS_MAX }, 'body')
  if (problem === null) return null
  const field = shownName(problem.field)
  if (problem.kind === 'nesting') return { field, message: `arrays and objects nested deeper than ${JSON_NESTING_MAX} levels`, afterSchema: false }
  // JSON.parse keeps the last: what the first said would be dropped without a word.
  if (problem.kind === 'duplicate') return { field, message: 'written twice in one object: send each field once', afterSchema: false }
  // Amounts (…Micros) are strings in this API; other integers are numbers written out.
  const advice = /Micros[^.\[]*$/.test(problem.field) ? '; send amounts as strings' : ''
  return {
    field,
    message: `${shownName(problem.literal, SHOWN_LITERAL_CHARS_MAX)} is not a whole number written out (no fraction, no exponent, at most ${JSON_INTEGER_DIGITS_MAX} digits: JSON would round it)${advice}`,
    afterSchema: true,
  }
}

/** The charsets a JSON body may declare: JSON is UTF-8 (RFC 8259 §8.1), and a body is read as such. */
const JSON_CHARSETS = new Set(['utf-8', 'utf8'])

/** The charset a Content-Type names (`application/json; charset=UTF-16` → `utf-16`), lowercased; undefined when none. */
function charsetOf(contentType: string | undefined): string | undefined {
  const m = /;\s*charset\s*=\s*"?([^";\s]*)"?/i.exec(contentType ?? '')
  return m === null ? undefined : m[1]!.toLowerCase()
}

/** A key that fastify's JSON parser refuses (prototype poisoning). */
const PROTOTYPE_KEY_RE = /"(__proto__|constructor)"\s*:/

/** Methods whose requests carry no body. */
const BODYLESS_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS'])

/** A documented route that declares no body (a POST that renews a key, say). */
function takesNoBody(request: FastifyRequest): boolean {
  const doc = (request.routeOptions.config as { doc?: RouteDoc } | undefined)?.doc
  return doc !== undefined && doc.body === undefined
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const clock = deps.clock ?? (() => new Date())
  // Behind a trusted load balancer, request.ip is the client's (X-Forwarded-For): sign-in throttles count by it;
  // request.protocol is the scheme it was reached by (X-Forwarded-Proto): the session cookie is Secure over HTTPS.
  const proxies = new TrustedProxies(deps.config.trustedProxies)
  const app = fastify({
    trustProxy: proxies.none ? false : (address: string) => proxies.trusts(address),
    loggerInstance: log.api as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.config.http.bodyBytesMax,
    // Given to the server as it is created: Node's checks read the timeout of that moment (set after, as
    // fastify's own option does, it was not applied before a 60 s bound), and their interval is fixed then.
    http: { requestTimeout: deps.config.http.requestTimeoutMs, connectionsCheckingInterval: HTTP_TIMEOUT_CHECK_INTERVAL_MS },
    requestTimeout: deps.config.http.requestTimeoutMs,
    requestIdHeader: false,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: HTTP_PARAM_LENGTH_MAX },
    frameworkErrors: (err, request, reply) => {
      sendError(err, request, reply)
    },
    clientErrorHandler: (err, socket) => answerClientError(err, socket, deps.config.http.requestTimeoutMs),
  })

  // Every connection holds a file descriptor until it is closed (an idle one 60 s, one upgraded to MQTT
  // over WebSocket as long as its client stays): past the bound, Node closes a new one as it accepts it.
  app.server.maxConnections = deps.config.http.connectionsMax
  const dropped = droppedConnectionsLog(deps.config.http.connectionsMax)
  app.server.on('drop', (data?: { remoteAddress?: string }) => dropped(data?.remoteAddress))
  app.server.on('connect', (request: http.IncomingMessage, socket: Duplex) => answerConnect(context.routes, request, socket))

  // A request that carries no body (DELETE, GET, a POST that takes none: renewing a key) may still say
  // `Content-Type: application/json`, as many generic clients do on every request: that is no error.
  // An empty JSON body where one is expected still is.
  const json = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const charset = charsetOf(request.headers['content-type'])
    if (charset !== undefined && !JSON_CHARSETS.has(charset)) {
      return done(new UnsupportedMediaTypeError(`content-type: charset ${shownName(charset)} is not taken; send the JSON in UTF-8`), undefined)
    }
    if (body === '' && (BODYLESS_METHODS.has(request.method) || takesNoBody(request))) return done(null, undefined)
    // A body where the route takes none is refused whatever it holds, rather than read and ignored.
    if (takesNoBody(request)) return done(takesNoBodyError(request.method, request.routeOptions.url ?? request.url), undefined)
    const problem = bodyTextProblem(body as string)
    if (problem !== null && !problem.afterSchema) return done(new InvalidInputError(`${problem.field}: ${problem.message}`, problem.field), undefined)
    json(request, body as string, (err, parsed) => {
      // fastify's parser refuses the keys that could reach an object's prototype; say which, not "not valid JSON".
      if (err !== null && PROTOTYPE_KEY_RE.test(body as string)) {
        return done(new InvalidInputError('body: the keys __proto__ and constructor.prototype are not taken', 'body'), undefined)
      }
      if (err === null && problem !== null) request.bodyProblemAfterSchema = new InvalidInputError(`${problem.field}: ${problem.message}`, problem.field)
      done(err, parsed)
    })
  })

  const context: ApiContext = {
    deps,
    auth: { db: deps.db.db, adminToken: deps.config.adminToken, sessions: deps.sessions ?? sessionResolver(deps.db.db), clock },
    now: clock,
    routes: [],
    passwordThrottle: new SignInThrottle(deps.config.portal),
  }
  app.decorate('apiContext', context)
  app.decorateRequest('auth', null)
  app.decorateRequest('bodyProblemAfterSchema', null)

  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    for (const method of methods) {
      if (!DOCUMENTED_METHODS.has(method)) continue
      context.routes.push({ method: method as RouteMethod, url: route.url, doc: route.config?.doc })
    }
  })

  // Answers name households, readings, money and keys: kept out of every cache (a browser's, a proxy's)
  // unless a route says otherwise (the portal's static assets), and never sniffed as another type.
  app.addHook('onSend', async (request, reply, payload) => {
    if (!reply.hasHeader('cache-control')) void reply.header('cache-control', 'no-store')
    if (!reply.hasHeader('x-content-type-options')) void reply.header('x-content-type-options', 'nosniff')
    // Over HTTPS (here, or at a trusted balancer that says so in X-Forwarded-Proto), a browser is told
    // never to come back over plain HTTP, where a session cookie or a password could be read on the way.
    if (request.protocol === 'https' && !reply.hasHeader('strict-transport-security')) {
      void reply.header('strict-transport-security', `max-age=${HSTS_MAX_AGE_S}`)
    }
    return payload
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

  // A request naming two hosts is refused (RFC 9112 §3.2); Node keeps the first without a word.
  app.addHook('onRequest', async (request) => {
    const hosts = headerCount(request.raw.rawHeaders, 'host')
    if (hosts > 1) throw new InvalidInputError(`host: given ${hosts} times; give it once`, 'host')
  })

  const writesRefused = deps.writesRefused
  if (writesRefused !== undefined) {
    app.addHook('onRequest', async (request) => {
      if (WRITE_METHODS.has(request.method) && writesRefused()) {
        throw new MetershareError(ERROR_CODES.STORAGE_FULL, 503, 'writes refused: the embedded database is below its free-space reserve')
      }
    })
  }

  // JSON only: anything else is answered 415 rather than handed to a route as a string.
  app.removeContentTypeParser(['text/plain'])
  installErrorHandling(app)
  for (const plugin of ROUTE_PLUGINS) await app.register(plugin, { deps })
  await app.ready()
  return app
}
