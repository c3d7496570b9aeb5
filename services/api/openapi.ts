import { z } from 'zod'
import type { PrincipalRole } from '../directory/principal.ts'
import type { RouteEntry } from './app.ts'
import { SESSION_COOKIE_NAME } from './auth.ts'
import type { RouteDoc } from './route.ts'
import { errorBodySchema } from './validation.ts'

/**
 * The OpenAPI 3.1 description, built from the routes as registered: each route's zod
 * schemas (the ones that validate its requests) become its parameters, body and answers.
 */

export type JsonSchema = Record<string, unknown>

export interface OpenApiParameter {
  name: string
  in: 'path' | 'query'
  required: boolean
  description?: string
  schema: JsonSchema
}

export interface OpenApiResponse {
  description: string
  content?: Record<string, { schema: JsonSchema }>
}

export interface OpenApiOperation {
  operationId: string
  summary: string
  description?: string
  tags: string[]
  security: Record<string, string[]>[]
  'x-roles': PrincipalRole[] | 'public'
  parameters: OpenApiParameter[]
  requestBody?: { required: boolean; content: { 'application/json': { schema: JsonSchema } } }
  responses: Record<string, OpenApiResponse>
}

export interface OpenApiDocument {
  openapi: '3.1.0'
  info: { title: string; version: string; description: string }
  tags: { name: string; description: string }[]
  paths: Record<string, Record<string, OpenApiOperation>>
  components: {
    securitySchemes: Record<string, Record<string, unknown>>
    schemas: Record<string, JsonSchema>
  }
}

export const API_TITLE = 'Metershare HTTP API'
export const API_VERSION = '1.0.0'

const API_DESCRIPTION = [
  'JSON over HTTP. Authenticate with `Authorization: Bearer <token>`: the operator token',
  '(`METERSHARE_ADMIN_TOKEN`), or the API key of a party or a household (`<id>.<secret>`, shown once',
  "when it is created). The household portal's session cookie works for household endpoints.",
  '',
  'Errors are `{"error":{"code":"SNAKE_CASE_CODE","message":"…"}}`: 400 invalid input (the message starts',
  'with the field), 401 missing or invalid credentials, 403 credentials of the wrong kind, 404 not found,',
  '405 a method the address is not served by (`Allow` names those it is; OPTIONS answers 204 with it),',
  '409 conflict. Times are RFC 3339 with an offset; money is a string of integer micro-euros',
  '(`"1250000"` = 1.25 EUR); energy is integer Wh.',
].join('\n')

const TAGS: { name: string; description: string }[] = [
  { name: 'operator', description: 'Provisioning and supervision, with the operator token.' },
  { name: 'household', description: 'A household, with its API key or its portal session.' },
  { name: 'recipient', description: 'Utilities and third parties, with their API key.' },
  { name: 'portal', description: 'Sign-in for the household portal.' },
  { name: 'operations', description: 'Health and metrics, without credentials.' },
]

const ERROR_DESCRIPTIONS: Readonly<Record<number, string>> = {
  400: 'Invalid input; the message starts with the field',
  401: 'Missing or invalid credentials',
  403: 'Credentials of the wrong kind for this endpoint',
  404: 'Not found',
  409: 'Conflict with existing data',
  431: 'Request line and headers over 16 KiB',
  413: 'Body too large',
  415: 'Body is not JSON',
  408: 'The request (headers and body) was not received whole within http.requestTimeoutMs (30 s); the connection is then closed',
  414: 'A path segment over 1,024 characters',
  429: 'Too many failed sign-ins; retry after Retry-After seconds',
  500: 'Our fault; the message is always "internal error" (the details go to the server log)',
  503: "Storage full: the database's disk is full, nothing was written (STORAGE_FULL); or the database server cannot be reached (DATABASE_UNAVAILABLE); retry after Retry-After seconds",
}

const DATABASE_UNAVAILABLE_DESCRIPTION = 'The database server cannot be reached (DATABASE_UNAVAILABLE); retry after Retry-After seconds'

const ERROR_REF = { $ref: '#/components/schemas/Error' }

/** `/admin/occupancies/:id` → `/admin/occupancies/{id}`. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')
}

/** `PATCH /admin/occupancies/:id` → `patchAdminOccupanciesById`. */
export function operationId(method: string, url: string): string {
  const words = [method.toLowerCase()]
  for (const segment of url.split('/').filter((s) => s !== '')) {
    if (segment.startsWith(':')) words.push('by', segment.slice(1))
    else words.push(...segment.split(/[^A-Za-z0-9]+/).filter((w) => w !== ''))
  }
  return words.map((w, i) => (i === 0 ? w : w[0]!.toUpperCase() + w.slice(1))).join('')
}

export function buildOpenApiDocument(routes: readonly RouteEntry[]): OpenApiDocument {
  const schemas: Record<string, JsonSchema> = { Error: toJsonSchema(errorBodySchema, 'output', {}) }
  const paths: OpenApiDocument['paths'] = {}
  for (const route of routes) {
    if (route.doc?.hidden === true) continue
    const path = openApiPath(route.url)
    const operation = route.doc === undefined ? undocumentedOperation(route) : documentedOperation(route, route.doc, schemas)
    paths[path] ??= {}
    paths[path][route.method.toLowerCase()] = operation
  }
  return {
    openapi: '3.1.0',
    info: { title: API_TITLE, version: API_VERSION, description: API_DESCRIPTION },
    tags: TAGS,
    paths,
    components: {
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description: 'The operator token, or the API key of a party or a household (`<id>.<secret>`)',
        },
        sessionCookie: {
          type: 'apiKey',
          in: 'cookie',
          name: SESSION_COOKIE_NAME,
          description: "The household portal's session, set when signing in",
        },
      },
      schemas,
    },
  }
}

function documentedOperation(route: RouteEntry, doc: RouteDoc, schemas: Record<string, JsonSchema>): OpenApiOperation {
  const parameters: OpenApiParameter[] = [
    ...parametersOf(doc.params, 'path', schemas),
    ...parametersOf(doc.query, 'query', schemas),
  ]
  const responses: Record<string, OpenApiResponse> = {}
  responses[String(doc.status)] = successResponse(doc, schemas)
  for (const [status, extra] of Object.entries(doc.extraResponses ?? {})) {
    responses[status] = {
      description: extra.description,
      ...(extra.response === undefined ? {} : { content: { 'application/json': { schema: toJsonSchema(extra.response, 'output', schemas) } } }),
    }
  }
  const errors = new Set<number>(doc.errors ?? [])
  // Every operation refuses a query parameter it does not take, a request line and headers over 16 KiB,
  // and a request not received whole in time; it may fail (500); one with a path parameter refuses a
  // segment past what the router reads (414). A method an address is not served by (405) is no
  // operation's answer: docs/http-api.md lists it.
  errors.add(400)
  errors.add(408)
  errors.add(431)
  errors.add(500)
  if (doc.params !== undefined) errors.add(414)
  if (doc.auth !== 'public') {
    errors.add(401)
    errors.add(403)
  }
  if (doc.body !== undefined) {
    errors.add(413)
    errors.add(415)
  }
  // Any request is answered 503 DATABASE_UNAVAILABLE while the database server cannot be reached; a write
  // is refused with 503 STORAGE_FULL while the database's disk is full (reads are answered then).
  errors.add(503)
  for (const status of [...errors].sort((a, b) => a - b)) {
    if (String(status) in responses) continue
    responses[String(status)] = {
      description: status === 503 && route.method === 'GET' ? DATABASE_UNAVAILABLE_DESCRIPTION : (ERROR_DESCRIPTIONS[status] ?? 'Error'),
      content: { 'application/json': { schema: ERROR_REF } },
    }
  }
  const operation: OpenApiOperation = {
    operationId: operationId(route.method, route.url),
    summary: doc.summary,
    tags: [...doc.tags],
    security: securityOf(doc),
    'x-roles': doc.auth === 'public' ? 'public' : [...doc.auth],
    parameters,
    responses,
  }
  if (doc.description !== undefined) operation.description = doc.description
  if (doc.body !== undefined) {
    // A body the route takes without (POST /me/api-key with the API key) is not required.
    operation.requestBody = { required: !doc.body.safeParse(undefined).success, content: { 'application/json': { schema: toJsonSchema(doc.body, 'input', schemas) } } }
  }
  return operation
}

function undocumentedOperation(route: RouteEntry): OpenApiOperation {
  return {
    operationId: operationId(route.method, route.url),
    summary: `${route.method} ${openApiPath(route.url)}`,
    tags: [],
    security: [],
    'x-roles': 'public',
    parameters: [...route.url.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => ({ name: m[1]!, in: 'path' as const, required: true, schema: { type: 'string' } })),
    responses: { default: { description: 'Answer' } },
  }
}

function successResponse(doc: RouteDoc, schemas: Record<string, JsonSchema>): OpenApiResponse {
  // A route may answer JSON and, when asked, another media type (a statement as CSV): both are listed.
  const other = doc.produces === undefined ? {} : { [doc.produces.contentType]: { schema: { type: 'string' } } }
  if (doc.response === undefined && doc.produces !== undefined) return { description: doc.produces.description, content: other }
  const description = doc.status === 201 ? 'Created' : doc.status === 204 ? 'Done, no content' : 'OK'
  if (doc.response === undefined) return { description }
  const answer = doc.produces === undefined ? description : `${description}; ${doc.produces.description}`
  return { description: answer, content: { 'application/json': { schema: toJsonSchema(doc.response, 'output', schemas) }, ...other } }
}

function securityOf(doc: RouteDoc): Record<string, string[]>[] {
  if (doc.auth === 'public') return []
  const schemes: Record<string, string[]>[] = [{ bearerAuth: [] }]
  if (doc.auth.includes('household')) schemes.push({ sessionCookie: [] })
  return schemes
}

function parametersOf(schema: z.ZodType | undefined, location: 'path' | 'query', schemas: Record<string, JsonSchema>): OpenApiParameter[] {
  if (schema === undefined) return []
  const json = toJsonSchema(schema, 'input', schemas)
  const properties = (json.properties ?? {}) as Record<string, JsonSchema>
  const required = new Set((json.required ?? []) as string[])
  return Object.entries(properties).map(([name, property]) => {
    const { description, ...rest } = property
    const parameter: OpenApiParameter = { name, in: location, required: location === 'path' || required.has(name), schema: rest }
    if (typeof description === 'string') parameter.description = description
    return parameter
  })
}

/**
 * zod → JSON Schema 2020-12 (what OpenAPI 3.1 uses). Requests are described by what a client
 * sends (`io: 'input'`), answers by what it receives. Named definitions move to components.
 */
export function toJsonSchema(schema: z.ZodType, io: 'input' | 'output', schemas: Record<string, JsonSchema>): JsonSchema {
  const json = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as JsonSchema
  delete json.$schema
  const defs = json.$defs as Record<string, JsonSchema> | undefined
  delete json.$defs
  if (defs === undefined) return json
  const rewrite = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(rewrite)
    if (value === null || typeof value !== 'object') return value
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) {
      out[k] = k === '$ref' && typeof v === 'string' ? v.replace('#/$defs/', '#/components/schemas/') : rewrite(v)
    }
    return out
  }
  for (const [name, def] of Object.entries(defs)) schemas[name] = rewrite(def) as JsonSchema
  return rewrite(json) as JsonSchema
}
