import type { FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { formatTimestamp, isMonth } from '../../../shared/calendar.ts'
import { ConflictError, ERROR_CODES, ForbiddenError, InvalidInputError, MetershareError, NotFoundError, TooManyRequestsError } from '../../../shared/errors.ts'
import { PASSWORD_LENGTH_MAX, PASSWORD_LENGTH_MIN, householdEmail } from '../../directory/directory-service.ts'
import { EMAIL_LENGTH_MAX, changePassword, closeSession, csrfTokenOf, csrfTokenValid, resolveSession, signIn } from '../../directory/session-service.ts'
import { CREDENTIAL_LENGTH_MAX, CSRF_HEADER_NAME, SESSION_COOKIE_NAME, readCookie, sameOrigin } from '../auth.ts'
import { Formats, LANGUAGE_COOKIE_MAX_AGE_S, LANGUAGE_COOKIE_NAME, MESSAGES, chooseLanguage, fill, isLanguage } from '../portal/i18n.ts'
import { ASSET_MAX_AGE_S, PORTAL_ASSETS_PATH, loadPortalAssets } from '../portal/portal-assets.ts'
import { loadAccessLog, loadConsents, loadConsumption, loadOverview, loadStatement } from '../portal/portal-models.ts'
import {
  accessLogPage,
  accountPage,
  consentsPage,
  revokePage,
  consumptionPage,
  problemPage,
  overviewPage,
  signInPage,
  statementPage,
  type GrantRefusal,
  type PageContext,
  type PasswordField,
} from '../portal/portal-pages.ts'
import { getHouseholdConsent, grantConsent, grantInForce, revokeConsent } from '../../consent/consent-service.ts'
import { householdMeters } from '../../directory/household-meter-service.ts'
import { householdGrantBody } from './consent-routes.ts'
import { setRetryAfter } from '../error-handler.ts'
import { defineRoute } from '../route.ts'
import { PORTAL_FORM_BYTES_MAX, parseInput, timeOutput } from '../validation.ts'
import type { RoutePlugin } from './route-plugin.ts'
import { hasUnstorableText } from '../../../shared/text.ts'

/**
 * The household portal: sign-in and sign-out (`/portal/session`), the pages (`/`,
 * `/statements/{month}`, `/consents`, `/access-log`, `/consumption`, `/account`) rendered on the
 * server from the same services as the household's JSON endpoints, and their static assets.
 * Signing in, signing out, changing the password, granting (`POST /consents`) and revoking
 * (`/consents/{id}/revoke`, which asks first) are plain forms, which work without script; with it,
 * the page's script sends grants and revocations to the JSON endpoints instead. Every change made
 * with the session cookie carries its CSRF token.
 */

/** Longest query parameter a page looks at. */
const PAGE_PARAM_LENGTH_MAX = 512

const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ')

interface PageSession {
  householdId: string
  /** The cookie's value. */
  token: string
  csrfToken: string
}

function isSecure(request: FastifyRequest): boolean {
  return request.protocol === 'https'
}

function cookieAttributes(request: FastifyRequest, sameSite: 'Strict' | 'Lax'): string {
  return `Path=/; SameSite=${sameSite}${isSecure(request) ? '; Secure' : ''}`
}

export function sessionCookie(request: FastifyRequest, token: string, maxAgeS: number): string {
  return `${SESSION_COOKIE_NAME}=${token}; Max-Age=${maxAgeS}; HttpOnly; ${cookieAttributes(request, 'Strict')}`
}

function clearedSessionCookie(request: FastifyRequest): string {
  return `${SESSION_COOKIE_NAME}=; Max-Age=0; HttpOnly; ${cookieAttributes(request, 'Strict')}`
}

function queryParam(request: FastifyRequest, name: string): string | undefined {
  const value = (request.query as Record<string, unknown> | undefined)?.[name]
  return typeof value === 'string' && value.length <= PAGE_PARAM_LENGTH_MAX && !hasUnstorableText(value) ? value : undefined
}

function isForm(request: FastifyRequest): boolean {
  return (request.headers['content-type'] ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded')
}

function sendPage(reply: FastifyReply, status: number, body: string): FastifyReply {
  return reply
    .code(status)
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('content-security-policy', PAGE_CSP)
    // For browsers that predate CSP's frame-ancestors.
    .header('x-frame-options', 'DENY')
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'same-origin')
    .header('vary', 'Cookie, Accept-Language')
    .send(body)
}

/**
 * Where a sign-in returns to: a portal page the household was sent away from while signed out
 * (`/consents`, `/statements/2026-10`, …, with its query), never another site or an API address.
 */
const RETURN_PATH_RE = /^\/(?:consents|access-log|consumption|account|statements\/\d{4}-\d{2})(?:\?[A-Za-z0-9_.~%=&+-]*)?$/

export function returnPathOf(next: unknown): string | undefined {
  return typeof next === 'string' && next.length <= PAGE_PARAM_LENGTH_MAX && RETURN_PATH_RE.test(next) ? next : undefined
}

/** A page's words for a 429: how many minutes until the next try, or a moment while others are checked. */
function throttledText(ctx: PageContext, err: TooManyRequestsError): string {
  if (err.busy) return ctx.t.signIn.busy
  return fill(ctx.t.signIn.throttled, { minutes: String(Math.ceil(err.retryAfterMs / 60_000)) })
}

export const portalRoutes: RoutePlugin = async (app, { deps }) => {
  const db = deps.db.db
  const config = deps.config
  const now = () => app.apiContext.now()
  const throttle = app.apiContext.passwordThrottle
  const assets = loadPortalAssets()

  // Only the portal's forms (sign-in, sign-out, the password, a grant, a revocation) post URL-encoded; every other
  // route keeps answering 415 to it. A field sent more than once (a grant's ticked meters) is a list.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: PORTAL_FORM_BYTES_MAX }, (_request, body, done) => {
    const fields: Record<string, string | string[]> = {}
    for (const [key, value] of new URLSearchParams(body as string)) {
      const before = fields[key]
      fields[key] = before === undefined ? value : Array.isArray(before) ? [...before, value] : [before, value]
    }
    done(null, fields)
  })

  /** The session of a page request; a cookie that no longer holds is cleared. */
  async function pageSession(request: FastifyRequest, reply: FastifyReply): Promise<PageSession | null> {
    const token = readCookie(request.headers.cookie, SESSION_COOKIE_NAME)
    if (token === undefined) return null
    const session = token.length > CREDENTIAL_LENGTH_MAX ? null : await resolveSession(db, token, now())
    if (session === null) {
      void reply.header('set-cookie', clearedSessionCookie(request))
      return null
    }
    return { householdId: session.householdId, token, csrfToken: csrfTokenOf(token) }
  }

  /** Whether a form posted with a session comes from the portal: from its origin, with the session's CSRF token among its fields. */
  function formFromPortal(request: FastifyRequest, session: PageSession, csrfToken: string | undefined): boolean {
    return sameOrigin(request) && csrfTokenValid(session.token, csrfToken)
  }

  function pageContext(request: FastifyRequest, reply: FastifyReply, session: PageSession | null): PageContext {
    const asked = queryParam(request, 'lang')
    const language = chooseLanguage({
      query: asked,
      cookie: readCookie(request.headers.cookie, LANGUAGE_COOKIE_NAME),
      acceptLanguage: request.headers['accept-language'],
    })
    if (isLanguage(asked)) {
      void reply.header('set-cookie', `${LANGUAGE_COOKIE_NAME}=${asked}; Max-Age=${LANGUAGE_COOKIE_MAX_AGE_S}; ${cookieAttributes(request, 'Lax')}`)
    }
    const query: Record<string, string> = {}
    for (const [key, value] of Object.entries((request.query as Record<string, unknown> | undefined) ?? {})) {
      if (key === 'lang' || key === 'done' || typeof value !== 'string' || value.length > PAGE_PARAM_LENGTH_MAX) continue
      query[key] = value
    }
    return {
      language,
      t: MESSAGES[language],
      f: new Formats(language),
      timezone: config.timezone,
      // One leading slash: `//host/…` or `/\host/…` in a link is another site's address to a browser.
      path: request.url.split('?')[0]!.replace(/^[/\\]+/, '/'),
      query,
      csrfToken: session?.csrfToken ?? null,
      assets: assets.urls,
    }
  }

  app.apiContext.notFoundPage = async (request, reply) => {
    const ctx = pageContext(request, reply, await pageSession(request, reply))
    return sendPage(reply, 404, problemPage(ctx, ctx.t.notFound))
  }

  // Rendered without a session: reading it needs the database, which may be what failed.
  app.apiContext.failurePage = (request, reply, status) => {
    const ctx = pageContext(request, reply, null)
    const words = status === 503 ? ctx.t.unavailable : ctx.t.failed
    return sendPage(reply, status, problemPage(ctx, words.heading, words.detail))
  }

  /** The sign-in form's page answering its POST, as at `/`: its links (the language switch) lead there, not to the POST's address. */
  function signInFormContext(request: FastifyRequest, reply: FastifyReply): PageContext {
    return { ...pageContext(request, reply, null), path: '/' }
  }

  /** A page for a signed-in household; signed out, `/` shows the sign-in form and the others send there. */
  function page(url: string, render: (ctx: PageContext, session: PageSession, request: FastifyRequest) => Promise<string | { status: number; body: string }>): void {
    defineRoute(app, {
      method: 'GET',
      url,
      summary: `Portal page ${url}`,
      tags: ['portal'],
      auth: 'public',
      hidden: true,
      async handler({ request, reply }) {
        const session = await pageSession(request, reply)
        const ctx = pageContext(request, reply, session)
        if (session === null) {
          if (url === '/') {
            // After a password change every session has ended: the form says why.
            const notice = queryParam(request, 'done') === 'password' ? ctx.t.signIn.passwordChanged : undefined
            return sendPage(reply, 200, signInPage(ctx, { ...(notice === undefined ? {} : { notice }), next: returnPathOf(queryParam(request, 'next')) }))
          }
          // Back here once signed in.
          const back = returnPathOf(request.url.replace(/^[/\\]+/, '/'))
          return reply.redirect(back === undefined ? '/' : `/?${new URLSearchParams({ next: back }).toString()}`, 303)
        }
        try {
          const result = await render(ctx, session, request)
          return typeof result === 'string' ? sendPage(reply, 200, result) : sendPage(reply, result.status, result.body)
        } catch (err) {
          if (err instanceof NotFoundError) return sendPage(reply, 404, problemPage(ctx, ctx.t.notFound))
          // The API's detail is in English: given on the English page only.
          if (err instanceof InvalidInputError) return sendPage(reply, 400, problemPage(ctx, ctx.t.badLink, ctx.language === 'en' ? err.message : undefined))
          throw err
        }
      },
    })
  }

  defineRoute(app, {
    method: 'POST',
    url: '/portal/session',
    summary: 'Sign in to the household portal',
    description: `Email and password, as JSON or from the sign-in form (URL-encoded, answered by a redirect to \`/\`). Sets the cookie \`${SESSION_COOKIE_NAME}\` (HttpOnly, SameSite=Strict, Secure over HTTPS) holding a random 256-bit token, of which only a salted hash is stored; the session ends ${config.portal.sessionTtlMs / 3_600_000} h after sign-in. Send the answer's \`csrfToken\` as \`${CSRF_HEADER_NAME}\` with every POST, PATCH or DELETE made with the cookie. After ${config.portal.signInFailuresMax} failures within ${config.portal.signInFailureWindowMs / 60_000} min for one email from one address, or from one address whatever the emails, and after ${config.portal.signInFailuresPerEmailMax} for one email from all addresses together, sign-ins are refused with 429 and Retry-After. The form (\`application/x-www-form-urlencoded\`, the same two fields, and \`next\`: the portal page a signed-out visit was sent away from) is answered 303 to that page, or to \`/\`, on success, and with the form page again (HTML, 400, 401, 403 or 429) on failure.`,
    tags: ['portal'],
    auth: 'public',
    body: z.strictObject({
      email: z.string().min(3).max(EMAIL_LENGTH_MAX),
      password: z.string().min(1).max(PASSWORD_LENGTH_MAX),
      next: z.string().max(PAGE_PARAM_LENGTH_MAX).optional().meta({ description: 'the form only: the portal page to return to once signed in' }),
    }),
    status: 201,
    response: z.object({
      householdId: z.string(),
      csrfToken: z.string().meta({ description: `send it as ${CSRF_HEADER_NAME} with every change made with the session cookie` }),
      expiresAt: timeOutput,
    }),
    errors: [401, 403, 429],
    extraResponses: { 303: { description: 'Signed in from the sign-in form: to `/`, with the session cookie set' } },
    // The form posted with a field missing (the browser's own checks bypassed): the form again, saying so.
    onInvalidInput(_err, request, reply) {
      if (!isForm(request)) return undefined
      const ctx = signInFormContext(request, reply)
      const email = (request.body as Record<string, unknown> | undefined)?.email
      const next = returnPathOf((request.body as Record<string, unknown> | undefined)?.next)
      return sendPage(reply, 400, signInPage(ctx, { email: typeof email === 'string' && !hasUnstorableText(email) ? email.slice(0, EMAIL_LENGTH_MAX) : '', error: ctx.t.signIn.invalid, next }))
    },
    async handler({ body, request, reply }) {
      const form = isForm(request)
      try {
        if (!sameOrigin(request)) throw new ForbiddenError('origin: sign in from the portal itself')
        const at = now()
        const session = await signIn(db, { email: body.email, password: body.password, address: request.ip }, at, config.portal, throttle)
        request.log.info({ householdId: session.householdId }, 'portal sign-in')
        const maxAgeS = Math.ceil((session.expiresAt.getTime() - at.getTime()) / 1000)
        void reply.header('set-cookie', sessionCookie(request, session.token, maxAgeS))
        if (form) return reply.redirect(returnPathOf(body.next) ?? '/', 303)
        return { householdId: session.householdId, csrfToken: session.csrfToken, expiresAt: formatTimestamp(session.expiresAt) }
      } catch (err) {
        if (err instanceof TooManyRequestsError) {
          request.log.warn({ address: request.ip }, 'portal sign-in throttled')
          setRetryAfter(reply, err)
        }
        if (!form || !(err instanceof MetershareError) || err.statusCode >= 500) throw err
        const ctx = signInFormContext(request, reply)
        const message =
          err instanceof TooManyRequestsError
            ? throttledText(ctx, err)
            : err instanceof InvalidInputError
              ? ctx.t.signIn.invalid
              : err instanceof ForbiddenError
                ? ctx.t.formOrigin
                : ctx.t.signIn.failed
        return sendPage(reply, err.statusCode, signInPage(ctx, { email: body.email, error: message, next: returnPathOf(body.next) }))
      }
    },
  })

  defineRoute(app, {
    method: 'DELETE',
    url: '/portal/session',
    summary: 'Sign out of the household portal',
    description: `Ends the session of the cookie and clears it. Made with a live session, it needs the session's CSRF token as \`${CSRF_HEADER_NAME}\` (403 otherwise); without one it only clears the cookie.`,
    tags: ['portal'],
    auth: 'public',
    status: 204,
    errors: [403],
    async handler({ request, reply }) {
      const token = readCookie(request.headers.cookie, SESSION_COOKIE_NAME)
      if (token !== undefined && token.length <= CREDENTIAL_LENGTH_MAX && (await resolveSession(db, token, now())) !== null) {
        if (!sameOrigin(request)) throw new ForbiddenError('origin: sign out from the portal itself')
        const csrf = request.headers[CSRF_HEADER_NAME]
        if (!csrfTokenValid(token, typeof csrf === 'string' ? csrf : undefined)) {
          throw new ForbiddenError(`${CSRF_HEADER_NAME}: signing out needs the session's CSRF token`)
        }
        await closeSession(db, token)
      }
      void reply.header('set-cookie', clearedSessionCookie(request))
    },
  })

  /** What the account page shows of the household: its email, and the bounds of a password. */
  async function accountOf(session: PageSession): Promise<{ email: string; passwordMin: number; passwordMax: number }> {
    return { email: await householdEmail(db, session.householdId), passwordMin: PASSWORD_LENGTH_MIN, passwordMax: PASSWORD_LENGTH_MAX }
  }

  /** The fields of a form posted with a session: its CSRF token, and the form's own. */
  const formField = z.string().max(PORTAL_FORM_BYTES_MAX).optional()

  interface SessionForm<F> {
    body: F & { csrfToken?: string | undefined }
    session: PageSession
    ctx: PageContext
    request: FastifyRequest
    reply: FastifyReply
  }

  /**
   * A form posted from a signed-in portal page (hidden from the API's description): signed out, it is
   * sent to `signedOut` (the sign-in page); not from the portal (another origin, or without the
   * session's CSRF token), refused with 403 in words. `page`: the page that answers a refusal, whose
   * links (the language switch) lead there rather than to the form's address.
   */
  function sessionForm<const S extends z.ZodRawShape>(
    spec: { url: string; summary: string; fields: S; signedOut: string; page?: string },
    handle: (form: SessionForm<z.output<z.ZodObject<S>>>) => Promise<unknown>,
  ): void {
    defineRoute(app, {
      method: 'POST',
      url: spec.url,
      summary: spec.summary,
      tags: ['portal'],
      auth: 'public',
      hidden: true,
      body: z.object({ csrfToken: formField, ...spec.fields }),
      async handler({ body, request, reply }) {
        const session = await pageSession(request, reply)
        const own = pageContext(request, reply, session)
        const ctx = spec.page === undefined ? own : { ...own, path: spec.page }
        if (session === null) return reply.redirect(spec.signedOut, 303)
        // The generic object's output type is beyond TypeScript here; the schema above makes it so.
        const form = body as SessionForm<z.output<z.ZodObject<S>>>['body']
        if (!formFromPortal(request, session, form.csrfToken)) return sendPage(reply, 403, problemPage(ctx, ctx.t.formOrigin))
        return handle({ body: form, session, ctx, request, reply })
      },
    })
  }

  defineRoute(app, {
    method: 'POST',
    url: '/portal/sign-out',
    summary: "Sign out from the portal's pages (a form)",
    tags: ['portal'],
    auth: 'public',
    hidden: true,
    body: z.object({ csrfToken: formField }),
    async handler({ body, request, reply }) {
      const session = await pageSession(request, reply)
      if (session !== null) {
        if (!formFromPortal(request, session, body.csrfToken)) {
          const ctx = pageContext(request, reply, session)
          return sendPage(reply, 403, problemPage(ctx, ctx.t.formOrigin))
        }
        await closeSession(db, session.token)
      }
      void reply.header('set-cookie', clearedSessionCookie(request))
      return reply.redirect('/', 303)
    },
  })

  sessionForm(
    {
      url: '/account/password',
      summary: "Change the password from the portal's account page (a form)",
      fields: { currentPassword: formField, newPassword: formField, confirmPassword: formField },
      signedOut: '/',
      page: '/account',
    },
    async ({ body, session, ctx, request, reply }) => {
      const refuse = async (status: number, field: PasswordField | null, message: string) =>
        sendPage(reply, status, accountPage(ctx, await accountOf(session), { field, message }))
      const newPassword = body.newPassword ?? ''
      if (newPassword !== (body.confirmPassword ?? '')) return refuse(400, 'confirmPassword', ctx.t.account.mismatch)
      try {
        await changePassword(db, { householdId: session.householdId, address: request.ip, currentPassword: body.currentPassword ?? '', newPassword }, now(), throttle)
      } catch (err) {
        if (err instanceof TooManyRequestsError) {
          request.log.warn({ householdId: session.householdId, address: request.ip }, 'password change throttled')
          setRetryAfter(reply, err)
          return refuse(429, null, throttledText(ctx, err))
        }
        if (err instanceof InvalidInputError && err.field === 'currentPassword') return refuse(400, 'currentPassword', ctx.t.account.wrongCurrent)
        if (err instanceof InvalidInputError && err.field === 'newPassword') {
          return refuse(400, 'newPassword', fill(ctx.t.account.length, { min: String(PASSWORD_LENGTH_MIN), max: String(PASSWORD_LENGTH_MAX) }))
        }
        throw err
      }
      request.log.info({ householdId: session.householdId }, 'portal password changed')
      // Every session has ended, this one too: to the sign-in form, which says why.
      void reply.header('set-cookie', clearedSessionCookie(request))
      return reply.redirect('/?done=password', 303)
    },
  )

  /**
   * A refusal of a grant or a revocation, in the page's words: the ones a household can act on said in
   * its language; any other the API's message on the English page, a general refusal on the others.
   */
  function refusalText(ctx: PageContext, err: MetershareError): string {
    switch (err.code) {
      case 'CONSENT_OVERLAP':
        return ctx.t.consents.alreadyShared
      case 'OFFER_WITHDRAWN':
        return ctx.t.consents.withdrawn
      case 'CONFLICT':
        return ctx.t.consents.alreadyEnded
      default:
        return err instanceof ForbiddenError ? ctx.t.consents.legalBasisNotRevocable : ctx.language === 'en' ? err.message : ctx.t.consents.refused
    }
  }

  /** Signed out, a consent's form leads to the sign-in page, which returns to the consents page. */
  const CONSENTS_SIGNED_OUT = `/?${new URLSearchParams({ next: '/consents' }).toString()}`

  sessionForm(
    {
      url: '/consents',
      summary: "Accept an offer from the portal's consents page (a form, without script)",
      fields: {
        offerId: formField,
        meterId: z.union([formField, z.array(z.string().max(PORTAL_FORM_BYTES_MAX))]),
        validUntil: formField,
        dataFrom: formField,
      },
      signedOut: CONSENTS_SIGNED_OUT,
      page: '/consents',
    },
    async ({ body, session, ctx, request, reply }) => {
      const chosen = body.meterId === undefined ? [] : typeof body.meterId === 'string' ? [body.meterId] : body.meterId
      const sent: Omit<GrantRefusal, 'message' | 'noMeter'> = { offerId: body.offerId ?? '', meterIds: chosen, validUntil: body.validUntil ?? '', dataFrom: body.dataFrom ?? '' }
      const refuse = async (status: number, message: string, noMeter = false) =>
        sendPage(reply, status, consentsPage(ctx, await loadConsents(db, session.householdId, undefined, now(), config), null, { ...sent, message, noMeter }))
      if (chosen.length === 0) return refuse(400, ctx.t.consents.noMeterChosen, true)
      try {
        // As the script sends it: every meter the household occupies ticked means all of them (those it will occupy too).
        const occupied = (await householdMeters(db, session.householdId, now())).filter((m) => m.occupiedNow).map((m) => m.meterId)
        const all = occupied.length > 0 && occupied.every((m) => chosen.includes(m)) && chosen.every((m) => occupied.includes(m))
        const input = parseInput(
          householdGrantBody,
          { offerId: sent.offerId, ...(all ? {} : { meterIds: chosen }), validUntil: sent.validUntil, ...(sent.dataFrom === '' ? {} : { dataFrom: sent.dataFrom }) },
          'body',
        )
        try {
          const granted = await grantConsent(db, session.householdId, input, now())
          await deps.releaseChanged?.({ kind: 'consent', id: granted.id })
          request.log.info({ householdId: session.householdId, consentId: granted.id }, 'portal consent granted')
        } catch (err) {
          // The same form posted again (its first answer lost, or a double click): it is done already.
          if (!(err instanceof ConflictError && err.code === ERROR_CODES.CONSENT_OVERLAP) || (await grantInForce(db, session.householdId, input)) === null) throw err
        }
        return reply.redirect('/consents?done=granted', 303)
      } catch (err) {
        if (!(err instanceof MetershareError) || err.statusCode >= 500) throw err
        return refuse(err.statusCode, refusalText(ctx, err))
      }
    },
  )

  /** A consent of this household to revoke; answers 404 (the not-found page) for any other. */
  async function consentToRevoke(session: PageSession, request: FastifyRequest) {
    const id = (request.params as { id?: unknown }).id
    if (typeof id !== 'string' || id.length > PAGE_PARAM_LENGTH_MAX) throw new NotFoundError('consent not found')
    return getHouseholdConsent(db, session.householdId, id)
  }

  /** What stops a consent from being revoked (it has ended, or is a legal basis), as a sentence in the page's words; null when nothing does. */
  function notRevocable(ctx: PageContext, consent: { status: string; kind: string }): string | null {
    if (consent.kind === 'legal_basis') return ctx.t.consents.legalBasisNotRevocable
    if (consent.status === 'active') return null
    const text = ctx.t.consents.alreadyEnded
    return text.charAt(0).toLocaleUpperCase(ctx.language) + text.slice(1)
  }

  page('/consents/:id/revoke', async (ctx, session, request) => {
    const consent = await consentToRevoke(session, request)
    const blocked = notRevocable(ctx, consent)
    return revokePage(ctx, consent, blocked)
  })

  sessionForm(
    {
      url: '/consents/:id/revoke',
      summary: "Revoke a consent from the portal's page that asks first (a form, without script)",
      fields: {},
      signedOut: CONSENTS_SIGNED_OUT,
    },
    async ({ session, ctx, request, reply }) => {
      let consentId: string | undefined
      try {
        consentId = (await consentToRevoke(session, request)).id
        await revokeConsent(db, consentId, { role: 'household', householdId: session.householdId }, now())
      } catch (err) {
        if (err instanceof NotFoundError) return sendPage(reply, 404, problemPage(ctx, ctx.t.notFound))
        if (!(err instanceof MetershareError) || err.statusCode >= 500 || consentId === undefined) throw err
        // Refused (it has ended meanwhile, or is a legal basis): the page that asked, as the consent is now, saying why.
        const refused = fill(ctx.t.consents.failed, { message: refusalText(ctx, err) })
        return sendPage(reply, err.statusCode, revokePage(ctx, await getHouseholdConsent(db, session.householdId, consentId), refused))
      }
      // Answered once this process's broker forwards nothing more under it, as the API does.
      await deps.releaseChanged?.({ kind: 'consent', id: consentId })
      request.log.info({ householdId: session.householdId, consentId }, 'portal consent revoked')
      return reply.redirect('/consents?done=revoked', 303)
    },
  )

  defineRoute(app, {
    method: 'GET',
    url: `${PORTAL_ASSETS_PATH}/:name`,
    summary: 'Portal asset',
    tags: ['portal'],
    auth: 'public',
    hidden: true,
    async handler({ request, reply }) {
      const name = (request.params as { name?: unknown }).name
      const asset = typeof name === 'string' ? assets.byName.get(name) : undefined
      if (asset === undefined) throw new NotFoundError(`no portal asset ${String(name).slice(0, 100)}`)
      return reply
        .type(asset.contentType)
        .header('cache-control', `public, max-age=${ASSET_MAX_AGE_S}, immutable`)
        .header('x-content-type-options', 'nosniff')
        .send(asset.body)
    },
  })

  page('/', async (ctx, session) => overviewPage(ctx, await loadOverview(db, session.householdId, config)))

  page('/statements/:month', async (ctx, session, request) => {
    const month = (request.params as { month?: unknown }).month
    if (typeof month !== 'string' || !isMonth(month)) throw new NotFoundError('month: expected YYYY-MM')
    const model = await loadStatement(db, session.householdId, month, now())
    return { status: model.statement === null ? 404 : 200, body: statementPage(ctx, model) }
  })

  page('/consents', async (ctx, session, request) => {
    const done = queryParam(request, 'done')
    const flash = done === 'granted' || done === 'revoked' ? done : null
    const model = await loadConsents(db, session.householdId, queryParam(request, 'cursor'), now(), config)
    return consentsPage(ctx, model, flash)
  })

  page('/account', async (ctx, session) => accountPage(ctx, await accountOf(session)))

  page('/access-log', async (ctx, session, request) => {
    const model = await loadAccessLog(
      db,
      session.householdId,
      { from: queryParam(request, 'from'), to: queryParam(request, 'to'), cursor: queryParam(request, 'cursor') },
      now(),
      config,
    )
    return accessLogPage(ctx, model)
  })

  page('/consumption', async (ctx, session, request) => {
    const model = await loadConsumption(
      db,
      session.householdId,
      { meterId: queryParam(request, 'meterId'), view: queryParam(request, 'view'), day: queryParam(request, 'day'), month: queryParam(request, 'month') },
      now(),
      config,
    )
    return consumptionPage(ctx, model)
  })
}
