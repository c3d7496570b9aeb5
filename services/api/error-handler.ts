import http from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ZodError } from 'zod'
import { ERROR_CODES, MetershareError, TooManyRequestsError, errorBody, noRouteMessage, type ErrorBody, type ErrorCode } from '../../shared/errors.ts'
import { PORTAL_FORM_BYTES_MAX, fieldName } from './validation.ts'
import { errorDetail } from '../../shared/db/hold-alarm.ts'
import { isDiskFull } from '../../shared/db/storage.ts'
import { DATABASE_UNAVAILABLE_MESSAGE, DATABASE_UNAVAILABLE_RETRY_AFTER_S, isDatabaseUnreachable, logDatabaseFailure } from '../../shared/db/unreachable.ts'

/** Longest route parameter the router reads; ids are far shorter, and their schemas name a longer one (400). */
export const HTTP_PARAM_LENGTH_MAX = 1024

/**
 * Every error leaves as `{"error":{"code","message"}}`: our own MetershareErrors with their
 * status, fastify's request errors (bad JSON, body too large, unsupported media type)
 * translated, unknown routes as 404 NOT_FOUND, and anything else as 500 INTERNAL with a
 * constant message (the details go to the log, never to the client).
 */

export { errorBody, type ErrorBody } from '../../shared/errors.ts'

/** fastify's own request errors, by their FST_ code. */
const FASTIFY_ERRORS: Readonly<Record<string, { code: ErrorCode; message: string }>> = {
  FST_ERR_CTP_INVALID_JSON_BODY: { code: ERROR_CODES.INVALID_INPUT, message: 'body: not valid JSON' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: ERROR_CODES.INVALID_INPUT, message: 'body: empty, but the content type is application/json' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: ERROR_CODES.INVALID_INPUT, message: 'body: size does not match Content-Length' },
  FST_ERR_CTP_BODY_TOO_LARGE: { code: ERROR_CODES.PAYLOAD_TOO_LARGE, message: 'body: too large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: ERROR_CODES.UNSUPPORTED_MEDIA_TYPE, message: 'content-type: expected application/json' },
  FST_ERR_BAD_URL: { code: ERROR_CODES.INVALID_INPUT, message: 'url: not a valid URL' },
  FST_ERR_ASYNC_CONSTRAINT: { code: ERROR_CODES.INVALID_INPUT, message: 'url: not a valid URL' },
  FST_ERR_MAX_PARAM_LENGTH: { code: ERROR_CODES.URI_TOO_LONG, message: `url: a path segment is over ${HTTP_PARAM_LENGTH_MAX} characters` },
}

/** Generic codes for client errors fastify raises that we have no specific wording for. */
const CODE_BY_STATUS: Readonly<Record<number, ErrorCode>> = {
  400: ERROR_CODES.INVALID_INPUT,
  401: ERROR_CODES.UNAUTHENTICATED,
  403: ERROR_CODES.FORBIDDEN,
  404: ERROR_CODES.NOT_FOUND,
  409: ERROR_CODES.CONFLICT,
  413: ERROR_CODES.PAYLOAD_TOO_LARGE,
  415: ERROR_CODES.UNSUPPORTED_MEDIA_TYPE,
}

/** Maps any thrown value to a status and an envelope; 5xx never carry the error's own text. */
export function toErrorAnswer(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof MetershareError && err.statusCode < 500) {
    return { status: err.statusCode, body: errorBody(err.code, err.message) }
  }
  if (err instanceof ZodError) {
    const issue = err.issues[0]
    const message = issue === undefined ? 'invalid input' : `${fieldName(issue.path, 'body')}: ${issue.message}`
    return { status: 400, body: errorBody(ERROR_CODES.INVALID_INPUT, message) }
  }
  const fastifyCode = (err as Partial<FastifyError> | null)?.code
  if (fastifyCode !== undefined && fastifyCode in FASTIFY_ERRORS) {
    const known = FASTIFY_ERRORS[fastifyCode]!
    const status = (err as FastifyError).statusCode ?? 400
    return { status, body: errorBody(known.code, known.message) }
  }
  // Nothing was written (the transaction rolled back): the client may retry once space is freed.
  if (isDiskFull(err)) return { status: 503, body: errorBody(ERROR_CODES.STORAGE_FULL, STORAGE_FULL_MESSAGE) }
  // The server stopped, crashed or restarting: the request may be made again once it is back.
  if (isDatabaseUnreachable(err)) return { status: 503, body: errorBody(ERROR_CODES.DATABASE_UNAVAILABLE, DATABASE_UNAVAILABLE_MESSAGE) }
  const status = (err as Partial<FastifyError> | null)?.statusCode
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { status, body: errorBody(CODE_BY_STATUS[status] ?? ERROR_CODES.INVALID_INPUT, clientMessage(err as Error)) }
  }
  return { status: 500, body: errorBody(ERROR_CODES.INTERNAL, 'internal error') }
}

export const STORAGE_FULL_MESSAGE = "the database's disk is full: nothing was written; try again later"

/** Seconds a client is asked to wait (`Retry-After`) before trying a write again on a full disk. */
export const STORAGE_FULL_RETRY_AFTER_S = 60

/** fastify's messages for 4xx are about the request; keep them but never with a stack. */
function clientMessage(err: Error): string {
  const message = typeof err.message === 'string' && err.message !== '' ? err.message.split('\n')[0]! : 'invalid request'
  return message.length > 300 ? message.slice(0, 300) : message
}

/** A 429's `Retry-After`, in whole seconds: on the JSON envelope and on the portal's pages alike. */
export function setRetryAfter(reply: FastifyReply, err: TooManyRequestsError): void {
  void reply.header('retry-after', String(Math.ceil(err.retryAfterMs / 1000)))
}

/** Answers an error in the envelope; also fastify's `frameworkErrors` (bad URLs, before routing). */
export function sendError(err: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const answer = toErrorAnswer(err)
  if ((err as Partial<FastifyError> | null)?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') answer.body.error.message = `body: over the ${bodyLimitOf(request)} bytes this route takes`
  if (err instanceof TooManyRequestsError) setRetryAfter(reply, err)
  if (answer.body.error.code === ERROR_CODES.STORAGE_FULL) {
    void reply.header('retry-after', String(STORAGE_FULL_RETRY_AFTER_S))
    // One line an operator reads, not the statement and its parameters.
    request.log.warn({ detail: errorDetail(err) }, "request refused: the database's disk is full (no space left on device)")
  } else if (answer.body.error.code === ERROR_CODES.DATABASE_UNAVAILABLE) {
    void reply.header('retry-after', String(DATABASE_UNAVAILABLE_RETRY_AFTER_S))
    // Once a minute, not at every request of every client while the server is away.
    logDatabaseFailure(request.log, 'warn', err, {}, 'request refused: the database cannot be reached')
  } else if (answer.status >= 500) request.log.error({ err }, 'request failed')
  else request.log.debug({ code: answer.body.error.code, status: answer.status }, 'request refused')
  // A browser that opened a page or posted a form gets a page saying so; programs, the envelope.
  const page = request.server.apiContext?.failurePage
  if (answer.status >= 500 && page !== undefined && wantsPage(request)) return page(request, reply, answer.status)
  return reply.code(answer.status).type('application/json; charset=utf-8').send(answer.body)
}

/**
 * The body limit a request was held to, in bytes: its route's (`http.bodyBytesMax`, or
 * `http.publicBodyBytesMax` on a route without credentials), and no more than a portal form's
 * (PORTAL_FORM_BYTES_MAX, its parser's) for a form.
 */
function bodyLimitOf(request: FastifyRequest): number {
  const route = request.routeOptions.bodyLimit ?? Number.POSITIVE_INFINITY
  const form = /^application\/x-www-form-urlencoded/i.test(request.headers['content-type'] ?? '')
  return form ? Math.min(route, PORTAL_FORM_BYTES_MAX) : route
}

/** A browser's navigation (a link followed, a form posted): it asks for HTML; `fetch` and programs do not. */
export function wantsPage(request: FastifyRequest): boolean {
  return (request.method === 'GET' || request.method === 'POST') && (request.headers.accept ?? '').includes('text/html')
}

/**
 * Every 401 challenges (RFC 9110 §11.6.1): `Bearer`, with `error="invalid_token"` when credentials
 * were sent and did not hold (RFC 6750 §3). The portal's sign-in form and its session answer so too.
 */
function challenge(request: FastifyRequest): string {
  return request.headers.authorization === undefined ? 'Bearer' : 'Bearer error="invalid_token"'
}

export function installErrorHandling(app: FastifyInstance): void {
  app.addHook('onSend', async (request, reply) => {
    if (reply.statusCode === 401 && !reply.hasHeader('www-authenticate')) void reply.header('www-authenticate', challenge(request))
  })
  app.setErrorHandler(async (err: unknown, request: FastifyRequest, reply: FastifyReply) => sendError(err, request, reply))
  app.setNotFoundHandler(async (request: FastifyRequest, reply: FastifyReply) => {
    // An address served by other methods: 405 naming them (OPTIONS asks just that).
    const allowed = allowedMethods(app.apiContext.routes, request.url.split('?')[0]!)
    if (allowed.length > 0) {
      const allow = [...allowed, 'OPTIONS'].join(', ')
      if (request.method === 'OPTIONS') return reply.code(204).header('allow', allow).send()
      return reply
        .code(405)
        .header('allow', allow)
        .type('application/json; charset=utf-8')
        .send(errorBody(ERROR_CODES.METHOD_NOT_ALLOWED, `${request.method} is not allowed here; allowed: ${allow}`))
    }
    // A browser following a mistyped address gets a page it can go on from; programs, the envelope.
    const page = app.apiContext.notFoundPage
    if (page !== undefined && request.method === 'GET' && wantsPage(request)) return page(request, reply)
    return reply.code(404).type('application/json; charset=utf-8').send(errorBody(ERROR_CODES.NOT_FOUND, noRouteMessage(request.method, request.url)))
  })
}

const METHOD_ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']

/** The methods the routes serve at a path (`/admin/occupancies/occ_1` matches `/admin/occupancies/:id`); HEAD with GET. */
export function allowedMethods(routes: readonly { method: string; url: string }[], path: string): string[] {
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path
  const methods = new Set<string>()
  for (const route of routes) {
    const pattern = new RegExp(`^${route.url.split('/').map((part) => (part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/')}$`)
    if (!pattern.test(trimmed)) continue
    methods.add(route.method)
    if (route.method === 'GET') methods.add('HEAD')
  }
  return METHOD_ORDER.filter((m) => methods.has(m))
}

/**
 * Answers what Node's HTTP parser refuses before fastify sees a request (fastify's `clientErrorHandler`),
 * in the envelope: headers over Node's limit (16 KiB, 431), a request slower than the request timeout
 * (408), or bytes that are not HTTP (400). The connection is closed after.
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex, requestTimeoutMs: number): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [status, code, message]: [number, ErrorCode, string] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, ERROR_CODES.REQUEST_TIMEOUT, `request: not received whole within ${requestTimeoutMs / 1000} s`]
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, ERROR_CODES.HEADERS_TOO_LARGE, `request: the request line and headers are over ${Math.round(http.maxHeaderSize / 1024)} KiB`]
        : [400, ERROR_CODES.INVALID_INPUT, 'request: not valid HTTP']
  answerRaw(socket, status, code, message)
}

/** An answer in the envelope written straight to a socket Node's HTTP server has let go of, which is closed after. */
function answerRaw(socket: Duplex, status: number, code: ErrorCode, message: string, headers = ''): void {
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const body = JSON.stringify(errorBody(code, message))
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\n${headers}Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  )
}

/**
 * Answers a CONNECT (Node hands it to the server's `connect` event, not to fastify, and closed the
 * connection unanswered): 405, naming in Allow what the address is served by (nothing, for the
 * `host:port` a proxy's client names), as every other method the API does not serve gets.
 */
export function answerConnect(routes: readonly { method: string; url: string }[], request: http.IncomingMessage, socket: Duplex): void {
  const path = (request.url ?? '').split('?')[0]!
  const allowed = path.startsWith('/') ? allowedMethods(routes, path) : []
  const allow = allowed.length > 0 ? [...allowed, 'OPTIONS'].join(', ') : ''
  const message = `CONNECT is not allowed here${allow === '' ? ' (this server is no proxy)' : `; allowed: ${allow}`}`
  answerRaw(socket, 405, ERROR_CODES.METHOD_NOT_ALLOWED, message, `Allow: ${allow}\r\n`)
}
