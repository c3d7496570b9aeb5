import { describe, expect, it } from 'vitest'
import { CREDENTIAL_LENGTH_MAX, CSRF_HEADER_NAME, SESSION_COOKIE_NAME, readCookie, type SessionResolver } from '../../../services/api/auth.ts'
import type { Principal } from '../../../services/directory/principal.ts'
import { describeDatabases } from '../../support/database.ts'
import { ADMIN_TOKEN, bearer, errorOf, provision, useApi } from './api-harness.ts'

/**
 * The portal's sessions plug in through `ApiDeps.sessions`. Here a resolver over a table of
 * tokens stands in for the portal's session store, to check what the API does with its answers.
 */
class TokenTable implements SessionResolver {
  readonly tokens = new Map<string, Principal>()
  readonly csrf = new Map<string, string>()
  readonly asked: { token: string; now: Date }[] = []
  async resolve(token: string, now: Date): Promise<Principal | null> {
    this.asked.push({ token, now })
    return this.tokens.get(token) ?? null
  }
  csrfTokenValid(token: string, candidate: string | undefined): boolean {
    return candidate !== undefined && this.csrf.get(token) === candidate
  }
}

const NOW = new Date('2026-10-15T12:00:00Z')

describe('readCookie', () => {
  it('finds one cookie among several, trimmed, quoted or percent-encoded', () => {
    expect(readCookie('a=1; metershare_session=abc; b=2', SESSION_COOKIE_NAME)).toBe('abc')
    expect(readCookie(' metershare_session = "x y" ', SESSION_COOKIE_NAME)).toBe('x y')
    expect(readCookie('metershare_session=a%2Fb', SESSION_COOKIE_NAME)).toBe('a/b')
    expect(readCookie('metershare_session=%E0%A4%A', SESSION_COOKIE_NAME)).toBe('%E0%A4%A')
  })

  it('does not take a cookie whose name only contains the one asked', () => {
    expect(readCookie('old_metershare_session=abc; metershare_sessionx=1', SESSION_COOKIE_NAME)).toBeUndefined()
    expect(readCookie(undefined, SESSION_COOKIE_NAME)).toBeUndefined()
    expect(readCookie('garbage', SESSION_COOKIE_NAME)).toBeUndefined()
  })
})

describeDatabases('authentication', (t) => {
  const sessions = new TokenTable()
  const api = useApi(t, { clock: () => NOW, extra: { sessions } })

  it('takes the bearer scheme in any case and refuses other schemes', async () => {
    expect((await api.inject({ method: 'GET', url: '/admin/parties', headers: { authorization: `bearer ${ADMIN_TOKEN}` } })).statusCode).toBe(200)
    expect((await api.inject({ method: 'GET', url: '/admin/parties', headers: { authorization: `BEARER  ${ADMIN_TOKEN}` } })).statusCode).toBe(200)
    const basic = await api.inject({ method: 'GET', url: '/admin/parties', headers: { authorization: `Token ${ADMIN_TOKEN}` } })
    expect(basic.statusCode).toBe(401)
    expect(errorOf(basic).message).toBe('authorization: expected "Bearer <token>"')
  })

  it('refuses an overlong token without looking it up', async () => {
    const res = await api.inject({ method: 'GET', url: '/admin/parties', headers: bearer('x'.repeat(CREDENTIAL_LENGTH_MAX + 1)) })
    expect(res.statusCode).toBe(401)
  })

  it('lets a household in with its portal session, asking the resolver with the injected clock', async () => {
    const w = await provision(api, 1)
    sessions.tokens.set('session-of-h0', { role: 'household', householdId: w.households[0]!.id })
    sessions.asked.length = 0
    const res = await api.inject({ method: 'GET', url: '/me/readings', headers: { cookie: `theme=dark; ${SESSION_COOKIE_NAME}=session-of-h0` } })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ items: [], nextCursor: null })
    expect(sessions.asked).toEqual([{ token: 'session-of-h0', now: NOW }])
  })

  it('answers 401 for an unknown or expired session, and 403 for a session on an operator route', async () => {
    const w = await provision(api, 1)
    sessions.tokens.set('session-of-h0', { role: 'household', householdId: w.households[0]!.id })
    const unknown = await api.inject({ method: 'GET', url: '/me/readings', headers: { cookie: `${SESSION_COOKIE_NAME}=expired` } })
    expect(unknown.statusCode).toBe(401)
    expect(errorOf(unknown)).toEqual({ code: 'UNAUTHENTICATED', message: 'session expired or unknown' })
    const admin = await api.inject({ method: 'GET', url: '/admin/parties', headers: { cookie: `${SESSION_COOKIE_NAME}=session-of-h0` } })
    expect(admin.statusCode).toBe(403)
  })

  it('prefers the bearer token when both are sent', async () => {
    const w = await provision(api, 1)
    sessions.tokens.set('session-of-h0', { role: 'household', householdId: w.households[0]!.id })
    sessions.asked.length = 0
    const res = await api.inject({ method: 'GET', url: '/admin/parties', headers: { ...bearer(ADMIN_TOKEN), cookie: `${SESSION_COOKIE_NAME}=session-of-h0` } })
    expect(res.statusCode).toBe(200)
    expect(sessions.asked).toEqual([])
  })

  it("lets a session change data only from its own origin and with the session's CSRF token", async () => {
    sessions.tokens.set('operator-session', { role: 'operator' })
    sessions.csrf.set('operator-session', 'csrf-1')
    const cookie = `${SESSION_COOKIE_NAME}=operator-session`
    const body = { kind: 'utility', name: 'Via session' }
    const own = { cookie, origin: 'http://metershare.local', host: 'metershare.local' }
    const foreign = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...own, origin: 'https://evil.example', [CSRF_HEADER_NAME]: 'csrf-1' }, payload: body })
    expect(foreign.statusCode).toBe(403)
    expect(errorOf(foreign).message).toBe('origin: a session may change data only from the portal itself')
    // The same host by the other scheme is another origin (this request came over plain HTTP).
    const otherScheme = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...own, origin: 'https://metershare.local', [CSRF_HEADER_NAME]: 'csrf-1' }, payload: body })
    expect(otherScheme.statusCode).toBe(403)
    expect(errorOf(otherScheme).message).toBe('origin: a session may change data only from the portal itself')
    for (const csrf of [undefined, 'csrf-2']) {
      const res = await api.inject({ method: 'POST', url: '/admin/parties', headers: csrf === undefined ? own : { ...own, [CSRF_HEADER_NAME]: csrf }, payload: body })
      expect(res.statusCode).toBe(403)
      expect(errorOf(res).message).toMatch(new RegExp(`^${CSRF_HEADER_NAME}: `))
    }
    expect(await t.db.selectFrom('parties').select('id').execute()).toEqual([])

    const allowed = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...own, [CSRF_HEADER_NAME]: 'csrf-1' }, payload: body })
    expect(allowed.statusCode).toBe(201)
    // Reading needs no origin check: a foreign page cannot read the answer.
    const read = await api.inject({ method: 'GET', url: '/admin/parties', headers: { cookie, origin: 'https://evil.example', host: 'metershare.local' } })
    expect(read.statusCode).toBe(200)
  })

  it('does not check bearer requests for their origin (programs send no cookies)', async () => {
    const res = await api.inject({
      method: 'POST',
      url: '/admin/parties',
      headers: { ...bearer(ADMIN_TOKEN), origin: 'https://tooling.example' },
      payload: { kind: 'utility', name: 'Scripted' },
    })
    expect(res.statusCode).toBe(201)
  })
})

describeDatabases('authentication with the sessions stored in the database (the default)', (t) => {
  const api = useApi(t)

  it("lets a signed-in household read its data with the portal's cookie, and refuses an unknown cookie", async () => {
    const w = await provision(api, 1)
    const signIn = await api.inject({ method: 'POST', url: '/portal/session', payload: { email: 'h0@example.org', password: 'password-of-h0' } })
    expect(signIn.statusCode).toBe(201)
    const cookie = [signIn.headers['set-cookie']].flat().find((c) => c?.startsWith(`${SESSION_COOKIE_NAME}=`))!.split(';')[0]!
    const mine = await api.inject({ method: 'GET', url: `/me/readings?meterId=${w.meterId}`, headers: { cookie } })
    // The household never occupied the meter: the session works, and the answer is the household's 404.
    expect(mine.statusCode).toBe(404)
    expect((await api.inject({ method: 'GET', url: '/me/readings', headers: { cookie } })).json()).toEqual({ items: [], nextCursor: null })
    const unknown = await api.inject({ method: 'GET', url: '/me/readings', headers: { cookie: `${SESSION_COOKIE_NAME}=made-up` } })
    expect(unknown.statusCode).toBe(401)
    expect(errorOf(unknown).code).toBe('UNAUTHENTICATED')
  })
})
