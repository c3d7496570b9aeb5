import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify'
import type { z } from 'zod'
import type { Principal, PrincipalRole } from '../directory/principal.ts'
import { authHook, type AuthRequirement } from './auth.ts'
import { fieldName, parseInput } from './validation.ts'
import { InvalidInputError } from '../../shared/errors.ts'

/**
 * One way to declare a route: its zod schemas validate the request (before the handler
 * runs, so before any side effect) and the same schemas describe it in the OpenAPI
 * document, which is built from every registered route. A route added with `defineRoute`
 * is documented without anything else to do.
 */

export type RouteMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

/** What the OpenAPI document says about a route; carried in the route's fastify config. */
export interface RouteDoc {
  summary: string
  description?: string | undefined
  /** Groups in the document (`operator`, `household`, `recipient`, `operations`, `docs`). */
  tags: readonly string[]
  auth: AuthRequirement
  params?: z.ZodType | undefined
  query?: z.ZodType | undefined
  body?: z.ZodType | undefined
  /** The success status (201 for creations, 204 for empty answers). */
  status: number
  /** Schema of the success body (JSON), or a non-JSON media type with a description. */
  response?: z.ZodType | undefined
  produces?: { contentType: string; description: string } | undefined
  /** Error statuses this route may answer besides the ones its auth and input imply. */
  errors?: readonly number[] | undefined
  /** Other answers with a body of their own (503 of /healthz). */
  extraResponses?: Readonly<Record<number, { description: string; response?: z.ZodType }>> | undefined
  /** Left out of the document (the docs pages themselves). */
  hidden?: boolean | undefined
}

declare module 'fastify' {
  interface FastifyContextConfig {
    doc?: RouteDoc
  }
}

type Out<S> = S extends z.ZodType ? z.output<S> : undefined

export type PrincipalFor<A extends AuthRequirement> = A extends readonly (infer R extends PrincipalRole)[]
  ? Extract<Principal, { role: R }>
  : null

export interface RouteInput<P, Q, B, A extends AuthRequirement> {
  params: Out<P>
  query: Out<Q>
  body: Out<B>
  principal: PrincipalFor<A>
  request: FastifyRequest
  reply: FastifyReply
}

export interface RouteSpec<
  P extends z.ZodType | undefined,
  Q extends z.ZodType | undefined,
  B extends z.ZodType | undefined,
  A extends AuthRequirement,
> extends Omit<RouteDoc, 'params' | 'query' | 'body' | 'auth' | 'status'> {
  method: RouteMethod
  /** fastify syntax: `/admin/occupancies/:id`. */
  url: string
  auth: A
  params?: P
  query?: Q
  body?: B
  /** Default 200. */
  status?: number
  /** Returns the success body; `undefined` sends an empty answer. */
  handler(input: RouteInput<P, Q, B, A>): Promise<unknown>
  /**
   * Answers input its schemas refuse, instead of the error envelope, when it returns a reply (the
   * portal's sign-in form answers with the form again); `undefined` leaves it to the envelope.
   */
  onInvalidInput?(err: InvalidInputError, request: FastifyRequest, reply: FastifyReply): FastifyReply | undefined
}

/** The refusal of a body sent to a route that takes none. */
export function takesNoBodyError(method: string, url: string): InvalidInputError {
  return new InvalidInputError(`body: ${method} ${url} takes no body`, 'body')
}

/** Whether a request's headers announce a body (a length over 0, or chunks). */
function carriesBody(headers: FastifyRequest['headers']): boolean {
  return headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0')
}

/** A documented route that takes no query parameters refuses any, by name, as the others refuse an unknown one. */
function refuseAny(query: unknown, location: 'query'): undefined {
  const keys = typeof query === 'object' && query !== null ? Object.keys(query) : []
  if (keys.length > 0) throw new InvalidInputError(`${fieldName([keys[0]!], location)}: unknown field`, keys[0])
  return undefined
}

export function defineRoute<
  const A extends AuthRequirement,
  P extends z.ZodType | undefined = undefined,
  Q extends z.ZodType | undefined = undefined,
  B extends z.ZodType | undefined = undefined,
>(app: FastifyInstance, spec: RouteSpec<P, Q, B, A>): void {
  const status = spec.status ?? 200
  const doc: RouteDoc = {
    summary: spec.summary,
    description: spec.description,
    tags: spec.tags,
    auth: spec.auth,
    params: spec.params,
    query: spec.query,
    body: spec.body,
    status,
    response: spec.response,
    produces: spec.produces,
    errors: spec.errors,
    extraResponses: spec.extraResponses,
    hidden: spec.hidden,
  }
  app.route({
    method: spec.method as HTTPMethods,
    url: spec.url,
    config: { doc },
    // A body sent without credentials is read and parsed before anyone is known: kept small.
    ...(spec.auth === 'public' ? { bodyLimit: app.apiContext.deps.config.http.publicBodyBytesMax } : {}),
    onRequest: authHook(spec.auth, app.apiContext.auth),
    handler: async (request, reply) => {
      let input: RouteInput<P, Q, B, A>
      try {
        // fastify reads no body of a GET: one that comes is refused as the parser refuses it on other methods.
        if (spec.body === undefined && request.body === undefined && carriesBody(request.headers)) throw takesNoBodyError(request.method, spec.url)
        input = {
          params: (spec.params === undefined ? undefined : parseInput(spec.params, request.params, 'params')) as Out<P>,
          query: (spec.query === undefined ? (spec.hidden === true ? undefined : refuseAny(request.query, 'query')) : parseInput(spec.query, request.query, 'query')) as Out<Q>,
          // No body at all is an empty object (each required field is named); a JSON `null` is no object.
          body: (spec.body === undefined ? undefined : parseInput(spec.body, request.body === undefined ? {} : request.body, 'body')) as Out<B>,
          principal: (spec.auth === 'public' ? null : request.auth!.principal) as PrincipalFor<A>,
          request,
          reply,
        }
        if (request.bodyProblemAfterSchema !== null) throw request.bodyProblemAfterSchema
      } catch (caught) {
        // A number JSON would round is named as that where the schema finds fault with the same field's value
        // (its rounded value out of range, say), and not where the field takes no number or is no field at all.
        const rounded = request.bodyProblemAfterSchema
        const err = rounded !== null && caught instanceof InvalidInputError && caught.field === rounded.field && !caught.misplaced ? rounded : caught
        const answered = err instanceof InvalidInputError ? spec.onInvalidInput?.(err, request, reply) : undefined
        if (answered !== undefined) return answered
        throw err
      }
      const result = await spec.handler(input)
      if (reply.sent) return reply
      void reply.code(status)
      return result === undefined ? reply.send() : result
    },
  })
}
