import type { LightMyRequestResponse } from 'fastify'
import { beforeEach, describe, expect, it } from 'vitest'
import type { SessionResolver } from '../../../services/api/auth.ts'
import { csrfTokenOf, csrfTokenValid, sessionResolver } from '../../../services/directory/session-service.ts'
import { SignInThrottle } from '../../../services/directory/session-throttle.ts'
import { HSTS_MAX_AGE_S } from '../../../services/api/app.ts'
import { verifySecret } from '../../../shared/secrets.ts'
import { describeDatabases } from '../../support/database.ts'
import { bearer, errorOf, useApi } from './api-harness.ts'

/**
 * Signing in to the portal, the session cookie, its CSRF token on every change, signing out
 * and expiry, through the real API (`app.inject`) on a test database, with the API's clock
 * set by each test.
 */

const TTL_MS = 60 * 60_000
const WINDOW_MS = 10 * 60_000
const FAILURES_MAX = 3
const FAILURES_PER_EMAIL_MAX = 6
const SESSIONS_MAX = 3
const PASSWORD = 'correct horse battery staple'

interface Party {
  id: string
  apiKey: string
}

/** The Set-Cookie answers of a response, by cookie name. */
function setCookies(res: LightMyRequestResponse): Map<string, string> {
  const header = res.headers['set-cookie']
  const list = header === undefined ? [] : Array.isArray(header) ? header : [header]
  return new Map(list.map((c) => [c.slice(0, c.indexOf('=')), c]))
}

function cookieValue(setCookie: string): string {
  return setCookie.slice(setCookie.indexOf('=') + 1, setCookie.indexOf(';'))
}

describeDatabases('portal sign-in and sessions', (t) => {
  let clock = new Date('2026-10-10T10:00:00Z')
  // The database exists only once the suite runs: the resolver looks it up per call.
  const sessions: SessionResolver = { resolve: (token, now) => sessionResolver(t.db).resolve(token, now), csrfTokenValid }
  const api = useApi(t, {
    clock: () => clock,
    config: {
      portal: { sessionTtlMs: TTL_MS, signInFailuresMax: FAILURES_MAX, signInFailuresPerEmailMax: FAILURES_PER_EMAIL_MAX, signInFailureWindowMs: WINDOW_MS, sessionsPerHouseholdMax: SESSIONS_MAX },
    },
    extra: { sessions },
  })
  let household: Party
  let email: string
  let offerId: string
  let emailCounter = 0
  let address = ''

  beforeEach(async () => {
    clock = new Date('2026-10-10T10:00:00Z')
    // A fresh email per test: the API's sign-in throttle lives as long as the API.
    email = `portal-${++emailCounter}@example.org`
    address = `192.0.2.${emailCounter}`
    household = (await api.asOperator('POST', '/admin/households', { name: 'Martin', email, password: PASSWORD })).json()
    const utility: Party = (await api.asOperator('POST', '/admin/parties', { kind: 'utility', name: 'Grid' })).json()
    const app: Party = (await api.asOperator('POST', '/admin/parties', { kind: 'third_party', name: 'Advice app' })).json()
    const meter = await api.asOperator('POST', '/admin/meters', { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 30, id: `M-${emailCounter}` })
    expect(meter.statusCode).toBe(201)
    await api.asOperator('POST', '/admin/occupancies', { meterId: `M-${emailCounter}`, householdId: household.id, from: '2026-01-01T00:00:00Z' })
    const offer = await api.asOperator('POST', '/admin/offers', {
      recipientId: app.id,
      purpose: 'energy advice',
      granularity: 'daily',
      priceMicrosPerDatum: '2000',
      split: { householdBps: 7000, operatorBps: 1000, platformBps: 2000 },
    })
    offerId = offer.json().id
  })

  async function signIn(password = PASSWORD, who = email, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    return api.inject({ method: 'POST', url: '/portal/session', remoteAddress: address, headers, payload: { email: who, password } })
  }

  async function session(): Promise<{ cookie: string; token: string; csrf: string }> {
    const res = await signIn()
    expect(res.statusCode, res.body).toBe(201)
    const token = cookieValue(setCookies(res).get('metershare_session')!)
    return { cookie: `metershare_session=${token}`, token, csrf: res.json().csrfToken }
  }

  function grantBody() {
    return { offerId, validUntil: '2027-10-01T00:00:00Z' }
  }

  it('signs a household in: an HttpOnly, SameSite=Strict cookie of a 256-bit token, of which only a salted hash is stored', async () => {
    const res = await signIn()
    expect(res.statusCode, res.body).toBe(201)
    const body = res.json()
    expect(body).toEqual({ householdId: household.id, csrfToken: expect.any(String), expiresAt: '2026-10-10T11:00:00Z' })
    const cookie = setCookies(res).get('metershare_session')!
    const attributes = cookie.split(';').map((a) => a.trim())
    expect(attributes).toEqual(expect.arrayContaining(['HttpOnly', 'SameSite=Strict', 'Path=/', `Max-Age=${TTL_MS / 1000}`]))
    // Plain HTTP here: a Secure cookie would never come back.
    expect(attributes).not.toContain('Secure')
    const token = cookieValue(cookie)
    const [id, secret] = token.split('.') as [string, string]
    expect(Buffer.from(secret, 'base64url')).toHaveLength(32)
    const rows = await t.db.selectFrom('sessions').selectAll().execute()
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ id, household_id: household.id })
    expect(rows[0]!.expires_at.getTime()).toBe(clock.getTime() + TTL_MS)
    expect(rows[0]!.token_hash).not.toContain(secret)
    expect(verifySecret(secret, rows[0]!.token_hash)).toBe(true)
    expect(body.csrfToken).toBe(csrfTokenOf(token))
    expect(body.csrfToken).not.toContain(secret)
  })

  it('refuses a wrong password and an unknown email alike, with 401 and no cookie', async () => {
    const wrong = await signIn('not the password')
    const unknown = await signIn(PASSWORD, 'nobody@example.org')
    for (const res of [wrong, unknown]) {
      expect(res.statusCode).toBe(401)
      expect(errorOf(res)).toEqual({ code: 'UNAUTHENTICATED', message: 'email or password: no household with this email and password' })
      expect(res.headers['set-cookie']).toBeUndefined()
    }
    expect(await t.db.selectFrom('sessions').selectAll().execute()).toEqual([])
  })

  it('names the field of a malformed sign-in', async () => {
    const res = await api.inject({ method: 'POST', url: '/portal/session', remoteAddress: address, payload: { email } })
    expect(res.statusCode).toBe(400)
    expect(errorOf(res).message).toMatch(/^password: /)
  })

  it('refuses an email after too many failures, even with the right password, until the window has passed', async () => {
    for (let i = 0; i < FAILURES_MAX; i++) expect((await signIn('wrong password')).statusCode).toBe(401)
    clock = new Date(clock.getTime() + 1_000)
    const refused = await signIn()
    expect(refused.statusCode).toBe(429)
    expect(errorOf(refused).code).toBe('TOO_MANY_REQUESTS')
    expect(Number(refused.headers['retry-after'])).toBe((WINDOW_MS - 1_000) / 1000)
    expect(await t.db.selectFrom('sessions').selectAll().execute()).toEqual([])
    clock = new Date(clock.getTime() + WINDOW_MS)
    expect((await signIn()).statusCode).toBe(201)
  })

  it('holds guesses sent all at once to the limit, as one after another: the right password among them is refused too', async () => {
    const guesses = Array.from({ length: 4 * FAILURES_MAX }, (_, i) => (i === 3 * FAILURES_MAX ? PASSWORD : `wrong password ${i}`))
    const answers = await Promise.all(guesses.map((password) => signIn(password)))
    const codes = answers.map((r) => r.statusCode)
    expect(codes.filter((c) => c === 401)).toHaveLength(FAILURES_MAX)
    expect(codes.filter((c) => c === 429)).toHaveLength(3 * FAILURES_MAX)
    expect(await t.db.selectFrom('sessions').selectAll().execute()).toEqual([])
    // A right password alone, in time, counts as no failure.
    clock = new Date(clock.getTime() + WINDOW_MS + 1)
    expect((await signIn()).statusCode).toBe(201)
    expect((await signIn('wrong password')).statusCode).toBe(401)
    for (let i = 0; i < FAILURES_MAX - 1; i++) expect((await signIn()).statusCode).toBe(201)
  })

  it('lets households sharing an address sign in at once: past the checks that may still fail, a moment\'s wait, not a failure', async () => {
    const others = await Promise.all(
      Array.from({ length: FAILURES_MAX + 2 }, async (_, i) => {
        const other = `office-${emailCounter}-${i}@example.org`
        expect((await api.asOperator('POST', '/admin/households', { name: `Office ${i}`, email: other, password: PASSWORD })).statusCode).toBe(201)
        return other
      }),
    )
    const answers = await Promise.all(others.map((other) => signIn(PASSWORD, other)))
    expect(answers.map((r) => r.statusCode).sort()).toEqual([...Array(FAILURES_MAX).fill(201), 429, 429])
    const busy = answers.find((r) => r.statusCode === 429)!
    expect([errorOf(busy).message, busy.headers['retry-after']]).toEqual([
      'too many sign-ins under way at once from this address or for this email: try again in a second',
      '1',
    ])
    // Nothing failed: the two refused sign in at once, and the address may still fail FAILURES_MAX times.
    for (const [i, r] of answers.entries()) if (r.statusCode === 429) expect((await signIn(PASSWORD, others[i])).statusCode).toBe(201)
    for (let i = 0; i < FAILURES_MAX; i++) expect((await signIn('wrong password')).statusCode).toBe(401)
    expect((await signIn()).statusCode).toBe(429)
  })

  it('keeps an address\'s failures while other sign-ins from it are checked at once', async () => {
    const other = `colleague-${emailCounter}@example.org`
    expect((await api.asOperator('POST', '/admin/households', { name: 'Colleague', email: other, password: PASSWORD })).statusCode).toBe(201)
    for (let i = 0; i < FAILURES_MAX - 1; i++) expect((await signIn('wrong password', `nobody-${i}@example.org`)).statusCode).toBe(401)
    // One check may still fail from this address: of two at once, one is checked, the other waits a moment.
    expect((await Promise.all([signIn(PASSWORD, other), signIn(PASSWORD, other)])).map((r) => r.statusCode).sort()).toEqual([201, 429])
    expect((await signIn('wrong password', 'nobody-else@example.org')).statusCode).toBe(401)
    expect((await signIn(PASSWORD, other)).statusCode).toBe(429)
  })

  it('does not let wrong passwords from one address lock the household out from its own, until guesses come from many', async () => {
    const from = (remoteAddress: string, password: string) => api.inject({ method: 'POST', url: '/portal/session', remoteAddress, payload: { email, password } })
    for (let i = 0; i < FAILURES_MAX; i++) expect((await from('203.0.113.1', 'wrong password')).statusCode).toBe(401)
    expect((await from('203.0.113.1', PASSWORD)).statusCode).toBe(429)
    expect((await from(address, PASSWORD)).statusCode).toBe(201)
    // Spread over addresses, the email's own limit (FAILURES_PER_EMAIL_MAX in all) holds it for everyone.
    for (let i = FAILURES_MAX; i < FAILURES_PER_EMAIL_MAX; i++) expect((await from(`203.0.113.${10 + i}`, 'wrong password')).statusCode).toBe(401)
    expect((await from(address, PASSWORD)).statusCode).toBe(429)
  })

  it('counts the addresses of one IPv6 /64 as one address', async () => {
    const from = (remoteAddress: string, password: string) => api.inject({ method: 'POST', url: '/portal/session', remoteAddress, payload: { email, password } })
    // A fresh address of the same /64 for every guess.
    for (let i = 0; i < FAILURES_MAX; i++) expect((await from(`2001:db8:1:2::${i + 1}`, 'wrong password')).statusCode).toBe(401)
    expect((await from('2001:db8:1:2::ffff', PASSWORD)).statusCode).toBe(429)
    expect((await from('2001:db8:1:3::1', PASSWORD)).statusCode).toBe(201)
  })

  it('counts failures per address too, across emails', async () => {
    for (let i = 0; i < FAILURES_MAX; i++) expect((await signIn('wrong password', `other-${i}@example.org`)).statusCode).toBe(401)
    expect((await signIn()).statusCode).toBe(429)
    expect((await api.inject({ method: 'POST', url: '/portal/session', remoteAddress: '198.51.100.1', payload: { email, password: PASSWORD } })).statusCode).toBe(201)
  })

  it('renews the API key from a session only with the password in use: a session would otherwise make a key that outlives a password change', async () => {
    const s = await session()
    const renew = (payload?: object) =>
      api.inject({ method: 'POST', url: '/me/api-key', headers: { cookie: s.cookie, 'x-csrf-token': s.csrf }, ...(payload === undefined ? {} : { payload }), remoteAddress: address })
    const missing = await renew()
    expect([missing.statusCode, errorOf(missing).message]).toEqual([400, 'currentPassword: required to renew the API key from a portal session'])
    const wrong = await renew({ currentPassword: 'not it' })
    expect([wrong.statusCode, errorOf(wrong).message]).toEqual([400, 'currentPassword: not the password of this household'])
    const renewed = await renew({ currentPassword: PASSWORD })
    expect(renewed.statusCode, renewed.body).toBe(200)
    const { apiKey } = renewed.json() as { apiKey: string }
    expect((await api.inject({ method: 'GET', url: '/me/payouts', headers: { authorization: `Bearer ${apiKey}` } })).statusCode).toBe(200)
    // With the key itself, as before: the key proves enough.
    const byKey = (key: string, payload?: object) => api.inject({ method: 'POST', url: '/me/api-key', headers: { authorization: `Bearer ${key}` }, ...(payload === undefined ? {} : { payload }), remoteAddress: address })
    const withKey = await byKey(apiKey)
    expect(withKey.statusCode).toBe(200)
    // A password sent with the key is checked all the same, and a wrong one renews nothing.
    const keyNow = (withKey.json() as { apiKey: string }).apiKey
    const wrongWithKey = await byKey(keyNow, { currentPassword: 'not it' })
    expect([wrongWithKey.statusCode, errorOf(wrongWithKey).message]).toEqual([400, 'currentPassword: not the password of this household'])
    expect((await api.inject({ method: 'GET', url: '/me/payouts', headers: { authorization: `Bearer ${keyNow}` } })).statusCode).toBe(200)
    expect((await byKey(keyNow, { currentPassword: PASSWORD })).statusCode).toBe(200)
  })

  it('lets the session cookie read the household endpoints', async () => {
    const s = await session()
    const res = await api.inject({ method: 'GET', url: '/me/payouts', headers: { cookie: s.cookie } })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toEqual({ payouts: [], balanceMicros: '0' })
  })

  it('refuses a change made with the cookie without the session’s CSRF token, with 403, and accepts it with the token', async () => {
    const s = await session()
    const missing = await api.inject({ method: 'POST', url: '/me/consents', headers: { cookie: s.cookie }, payload: grantBody() })
    expect(missing.statusCode).toBe(403)
    expect(errorOf(missing)).toMatchObject({ code: 'FORBIDDEN', message: expect.stringMatching(/^x-csrf-token: /) })
    const other = await session()
    const wrong = await api.inject({ method: 'POST', url: '/me/consents', headers: { cookie: s.cookie, 'x-csrf-token': other.csrf }, payload: grantBody() })
    expect(wrong.statusCode).toBe(403)
    expect(await t.db.selectFrom('consents').selectAll().execute()).toEqual([])

    const granted = await api.inject({ method: 'POST', url: '/me/consents', headers: { cookie: s.cookie, 'x-csrf-token': s.csrf }, payload: grantBody() })
    expect(granted.statusCode, granted.body).toBe(201)
    const id = granted.json().id
    const revokeBare = await api.inject({ method: 'DELETE', url: `/me/consents/${id}`, headers: { cookie: s.cookie } })
    expect(revokeBare.statusCode).toBe(403)
    const revoked = await api.inject({ method: 'DELETE', url: `/me/consents/${id}`, headers: { cookie: s.cookie, 'x-csrf-token': s.csrf } })
    expect(revoked.statusCode).toBe(204)
  })

  it('refuses a change from another origin even with the token', async () => {
    const s = await session()
    const res = await api.inject({
      method: 'POST',
      url: '/me/consents',
      headers: { cookie: s.cookie, 'x-csrf-token': s.csrf, origin: 'https://elsewhere.example' },
      payload: grantBody(),
    })
    expect(res.statusCode).toBe(403)
    expect(errorOf(res).message).toMatch(/^origin: /)
  })

  it('asks no CSRF token of a request made with an API key', async () => {
    const res = await api.inject({ method: 'POST', url: '/me/consents', headers: bearer(household.apiKey), payload: grantBody() })
    expect(res.statusCode, res.body).toBe(201)
  })

  it('refuses a sign-in posted from another origin', async () => {
    const res = await signIn(PASSWORD, email, { origin: 'https://elsewhere.example' })
    expect(res.statusCode).toBe(403)
    expect(res.headers['set-cookie']).toBeUndefined()
  })

  it('signs out with the CSRF token: the session ends and the cookie is cleared', async () => {
    const s = await session()
    const bare = await api.inject({ method: 'DELETE', url: '/portal/session', headers: { cookie: s.cookie } })
    expect(bare.statusCode).toBe(403)
    expect((await api.inject({ method: 'GET', url: '/me/payouts', headers: { cookie: s.cookie } })).statusCode).toBe(200)

    const out = await api.inject({ method: 'DELETE', url: '/portal/session', headers: { cookie: s.cookie, 'x-csrf-token': s.csrf } })
    expect(out.statusCode).toBe(204)
    const cleared = setCookies(out).get('metershare_session')!
    expect(cookieValue(cleared)).toBe('')
    expect(cleared).toContain('Max-Age=0')
    expect(await t.db.selectFrom('sessions').selectAll().execute()).toEqual([])
    const after = await api.inject({ method: 'GET', url: '/me/payouts', headers: { cookie: s.cookie } })
    expect(after.statusCode).toBe(401)
    // Signing out again, or without a session, only clears the cookie.
    expect((await api.inject({ method: 'DELETE', url: '/portal/session', headers: { cookie: s.cookie } })).statusCode).toBe(204)
  })

  it('ends a session when its lifetime is over', async () => {
    const s = await session()
    clock = new Date(clock.getTime() + TTL_MS - 1)
    expect((await api.inject({ method: 'GET', url: '/me/payouts', headers: { cookie: s.cookie } })).statusCode).toBe(200)
    clock = new Date(clock.getTime() + 1)
    const expired = await api.inject({ method: 'GET', url: '/me/payouts', headers: { cookie: s.cookie } })
    expect(expired.statusCode).toBe(401)
    expect(errorOf(expired).message).toBe('session expired or unknown')
    // The portal shows the sign-in form again and clears the stale cookie.
    const page = await api.inject({ method: 'GET', url: '/', headers: { cookie: s.cookie } })
    expect(page.statusCode).toBe(200)
    expect(page.body).toContain('action="/portal/session"')
    expect(cookieValue(setCookies(page).get('metershare_session')!)).toBe('')
    // The next sign-in sweeps expired sessions away.
    await session()
    expect(await t.db.selectFrom('sessions').select('expires_at').execute()).toEqual([{ expires_at: new Date(clock.getTime() + TTL_MS) }])
  })

  it('refuses a forged or tampered cookie', async () => {
    const s = await session()
    const [id] = s.token.split('.') as [string]
    const forged = `${id}.${'A'.repeat(43)}`
    for (const cookie of [`metershare_session=${forged}`, 'metershare_session=garbage', `metershare_session=${'x'.repeat(600)}`]) {
      const res = await api.inject({ method: 'GET', url: '/me/payouts', headers: { cookie } })
      expect(res.statusCode, cookie.slice(0, 40)).toBe(401)
    }
  })

  it(`keeps at most ${SESSIONS_MAX} sessions of a household, ending the oldest`, async () => {
    const first = await session()
    for (let i = 0; i < SESSIONS_MAX; i++) {
      clock = new Date(clock.getTime() + 1_000)
      await session()
    }
    expect(await t.db.selectFrom('sessions').selectAll().execute()).toHaveLength(SESSIONS_MAX)
    expect((await api.inject({ method: 'GET', url: '/me/payouts', headers: { cookie: first.cookie } })).statusCode).toBe(401)
  })

  describe('the sign-in form', () => {
    it('answers a good sign-in with the cookie and a redirect to the portal', async () => {
      const res = await api.inject({
        method: 'POST',
        url: '/portal/session',
        remoteAddress: address,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ email, password: PASSWORD }).toString(),
      })
      expect(res.statusCode).toBe(303)
      expect(res.headers.location).toBe('/')
      expect(setCookies(res).get('metershare_session')).toContain('HttpOnly')
    })

    it('answers a bad one with the form again, its error, and the email kept', async () => {
      const res = await api.inject({
        method: 'POST',
        url: '/portal/session',
        remoteAddress: address,
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'accept-language': 'fr-FR,fr;q=0.9' },
        payload: new URLSearchParams({ email, password: 'wrong password' }).toString(),
      })
      expect(res.statusCode).toBe(401)
      expect(res.headers['content-type']).toMatch(/^text\/html/)
      expect(res.body).toContain('<html lang="fr">')
      expect(res.body).toContain('role="alert"')
      // Both fields marked and described by the error; the cursor back in the password.
      expect(res.body).toMatch(/<input id="email"[^>]* aria-invalid="true" aria-describedby="sign-in-error">/)
      expect(res.body).toMatch(/<input id="password"[^>]* aria-invalid="true" aria-describedby="sign-in-error" autofocus>/)
      expect(res.body).toContain('Cette adresse et ce mot de passe ne correspondent à aucun foyer.')
      expect(res.body).toContain(`value="${email}"`)
      expect(res.headers['set-cookie']).toBeUndefined()
      // Its language switch leads to the sign-in page, not to this POST's address (where a GET finds nothing).
      expect(res.body).toContain('href="/?lang=en"')
      expect(res.body).not.toContain('/portal/session?')
    })

    it('answers the form posted with a field missing or empty with the form again, saying so, not JSON', async () => {
      for (const fields of [{ email: '', password: '' }, { email }, { email: 'ab', password: 'x' }] as Record<string, string>[]) {
        const res = await api.inject({
          method: 'POST',
          url: '/portal/session',
          remoteAddress: address,
          headers: { 'content-type': 'application/x-www-form-urlencoded', 'accept-language': 'en' },
          payload: new URLSearchParams(fields).toString(),
        })
        expect(res.statusCode).toBe(400)
        expect(res.headers['content-type']).toMatch(/^text\/html/)
        expect(res.body).toContain('Enter your email and your password.')
        expect(res.body).toContain(`value="${fields.email}"`)
      }
      // As JSON the envelope names the field, as before.
      const json = await api.inject({ method: 'POST', url: '/portal/session', remoteAddress: address, payload: { email: '' } })
      expect(errorOf(json)).toEqual({ code: 'INVALID_INPUT', message: expect.stringMatching(/^email: /) })
    })

    it('refuses a sign-in form posted from another origin in the page’s language', async () => {
      const res = await api.inject({
        method: 'POST',
        url: '/portal/session',
        remoteAddress: address,
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'accept-language': 'fr', origin: 'https://elsewhere.example' },
        payload: new URLSearchParams({ email, password: PASSWORD }).toString(),
      })
      expect(res.statusCode).toBe(403)
      expect(res.body).toContain('Ce formulaire n’a pas été envoyé depuis votre page du portail')
      expect(res.headers['set-cookie']).toBeUndefined()
    })

    it('is the only route outside the pages’ forms that takes URL-encoded bodies', async () => {
      const res = await api.inject({
        method: 'POST',
        url: '/admin/households',
        headers: { authorization: 'Bearer test-operator-token-0123456789abcdef', 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'name=x&email=x@example.org&password=xxxxxxxxxx',
      })
      expect(res.statusCode).toBe(415)
    })
  })
  describe('the forms of the pages, which work without script', () => {
    const FORM = { 'content-type': 'application/x-www-form-urlencoded', 'accept-language': 'en' }
    const post = (url: string, cookie: string, fields: Record<string, string>, headers: Record<string, string> = {}) =>
      api.inject({ method: 'POST', url, remoteAddress: address, headers: { ...FORM, cookie, ...headers }, payload: new URLSearchParams(fields).toString() })
    const stillIn = async (cookie: string) => (await api.inject({ method: 'GET', url: '/me/payouts', headers: { cookie } })).statusCode === 200

    it('signs out with the session’s CSRF token from the portal: the session ends, the cookie is cleared, back to the sign-in page', async () => {
      const s = await session()
      for (const refused of [
        await post('/portal/sign-out', s.cookie, {}),
        await post('/portal/sign-out', s.cookie, { csrfToken: (await session()).csrf }),
        await post('/portal/sign-out', s.cookie, { csrfToken: s.csrf }, { origin: 'https://elsewhere.example' }),
      ]) {
        expect(refused.statusCode).toBe(403)
        expect(refused.headers['content-type']).toMatch(/^text\/html/)
        expect(refused.body).toContain('This form was not sent from your portal page')
      }
      expect(await stillIn(s.cookie)).toBe(true)
      const out = await post('/portal/sign-out', s.cookie, { csrfToken: s.csrf })
      expect([out.statusCode, out.headers.location]).toEqual([303, '/'])
      expect(cookieValue(setCookies(out).get('metershare_session')!)).toBe('')
      expect(await stillIn(s.cookie)).toBe(false)
      // Signed out already: nothing to refuse, back to the sign-in page.
      expect((await post('/portal/sign-out', s.cookie, {})).statusCode).toBe(303)
    })

    it('changes the password: each refusal on the account page, tied to its field; then every session ends and the new one signs in', async () => {
      const s = await session()
      const other = await session()
      const change = (currentPassword: string, newPassword: string, confirmPassword: string, csrfToken = s.csrf) =>
        post('/account/password', s.cookie, { csrfToken, currentPassword, newPassword, confirmPassword })

      const mismatch = await change(PASSWORD, 'second password two', 'second password tw0')
      expect(mismatch.statusCode).toBe(400)
      expect(mismatch.body).toContain('<p class="error" id="password-error" role="alert">The two new passwords differ.</p>')
      expect(mismatch.body).toMatch(/<input id="confirm-password"[^>]* aria-describedby="password-error" aria-invalid="true" autofocus>/)
      // The language switch of the refusal leads to the account page, not to the form's address (no page there).
      expect(mismatch.body).toContain('<a href="/account?lang=fr" lang="fr" hreflang="fr">')
      // Whose password it is, for a password manager: the email, hidden and never sent.
      expect(mismatch.body).toMatch(/<input type="email" autocomplete="username" value="[^"]+@[^"]+" hidden readonly>/)
      const short = await change(PASSWORD, 'short', 'short')
      expect([short.statusCode, short.body.includes('The new password needs 8 to 256 characters.')]).toEqual([400, true])
      expect(short.body).toMatch(/<input id="new-password"[^>]* aria-describedby="password-error password-rules" aria-invalid="true" autofocus>/)
      const wrong = await change('not the password', 'second password two', 'second password two')
      expect([wrong.statusCode, wrong.body.includes('This is not your current password.')]).toEqual([400, true])
      expect((await change(PASSWORD, 'second password two', 'second password two', other.csrf)).statusCode).toBe(403)
      expect(await stillIn(s.cookie)).toBe(true)

      const done = await change(PASSWORD, 'second password two', 'second password two')
      expect([done.statusCode, done.headers.location]).toEqual([303, '/?done=password'])
      expect(cookieValue(setCookies(done).get('metershare_session')!)).toBe('')
      expect([await stillIn(s.cookie), await stillIn(other.cookie)]).toEqual([false, false])
      expect((await signIn(PASSWORD)).statusCode).toBe(401)
      expect((await signIn('second password two')).statusCode).toBe(201)
    })

    it('counts wrong current passwords as failed sign-ins: past the limit 429 with Retry-After, the right one refused too', async () => {
      const s = await session()
      const change = (currentPassword: string) =>
        post('/account/password', s.cookie, { csrfToken: s.csrf, currentPassword, newPassword: 'second password two', confirmPassword: 'second password two' })
      for (let i = 0; i < FAILURES_MAX; i++) expect((await change('not the password')).statusCode).toBe(400)
      const held = await change(PASSWORD)
      expect(held.statusCode).toBe(429)
      expect(Number(held.headers['retry-after'])).toBeGreaterThan(0)
      expect(held.body).toContain('Too many failed attempts.')
      expect(await stillIn(s.cookie)).toBe(true)
    })

    it('sends a signed-out form to the sign-in page', async () => {
      const res = await post('/account/password', 'metershare_session=ses_0000000000000000.x', { currentPassword: PASSWORD })
      expect([res.statusCode, res.headers.location]).toEqual([303, '/'])
      const grant = await post('/consents', 'metershare_session=ses_0000000000000000.x', { offerId })
      expect([grant.statusCode, grant.headers.location]).toEqual([303, '/?next=%2Fconsents'])
    })

    /** A grant's form as the consents page sends it without script; `meterId` once per ticked box. */
    const grantForm = (s: { cookie: string; csrf: string }, meterIds: string[], extra: Record<string, string> = {}, headers: Record<string, string> = {}) => {
      const fields = new URLSearchParams({ csrfToken: s.csrf, offerId, validUntil: '2027-10-01T00:00:00Z', dataFrom: '', ...extra })
      for (const m of meterIds) fields.append('meterId', m)
      return api.inject({ method: 'POST', url: '/consents', remoteAddress: address, headers: { ...FORM, cookie: s.cookie, ...headers }, payload: fields.toString() })
    }
    const consentsOf = async (cookie: string) => (await api.inject({ method: 'GET', url: '/me/consents', headers: { cookie } })).json().items as { id: string; status: string; allMeters: boolean; meterIds: string[] }[]

    it('grants an offer from the consents page’s form, as the script would: every meter ticked is all of them, some are those', async () => {
      const s = await session()
      const page = await api.inject({ method: 'GET', url: '/consents', headers: { cookie: s.cookie, 'accept-language': 'en' } })
      expect(page.statusCode).toBe(200)
      // The form is sent to the server as it is, with the session's token, and its button works without script.
      expect(page.body).toContain(`<form class="grant" data-grant="${offerId}" method="post" action="/consents">`)
      expect(page.body).toContain(`<input type="hidden" name="csrfToken" value="${s.csrf}"><input type="hidden" name="offerId" value="${offerId}">`)
      expect(page.body).toContain('<p><button type="submit">Accept this offer</button></p>')
      expect(page.body).not.toMatch(/<button[^>]* disabled/)
      expect(page.body).not.toContain('<noscript>')

      for (const refused of [
        await grantForm({ ...s, csrf: (await session()).csrf }, [`M-${emailCounter}`]),
        await grantForm(s, [`M-${emailCounter}`], {}, { origin: 'https://elsewhere.example' }),
      ]) {
        expect(refused.statusCode).toBe(403)
        expect(refused.body).toContain('This form was not sent from your portal page')
      }
      expect(await consentsOf(s.cookie)).toEqual([])

      const done = await grantForm(s, [`M-${emailCounter}`])
      expect([done.statusCode, done.headers.location]).toEqual([303, '/consents?done=granted'])
      expect((await consentsOf(s.cookie)).map((c) => [c.status, c.allMeters, c.meterIds])).toEqual([['active', true, [`M-${emailCounter}`]]])

      // With a second meter, only one ticked: that one, not all.
      await api.asOperator('POST', '/admin/meters', { operatorId: (await api.asOperator('POST', '/admin/parties', { kind: 'utility', name: 'Gas grid' })).json().id, commodity: 'gas', intervalMinutes: 60, id: `G-${emailCounter}` })
      await api.asOperator('POST', '/admin/occupancies', { meterId: `G-${emailCounter}`, householdId: household.id, from: '2026-01-01T00:00:00Z' })
      const other = (await api.asOperator('POST', '/admin/offers', { recipientId: (await api.asOperator('POST', '/admin/parties', { kind: 'third_party', name: 'Lab' })).json().id, purpose: 'research', granularity: 'monthly', priceMicrosPerDatum: '1000', split: { householdBps: 9000, operatorBps: 1000, platformBps: 0 } })).json().id
      const one = await grantForm(s, [`G-${emailCounter}`], { offerId: other })
      expect([one.statusCode, one.headers.location]).toEqual([303, '/consents?done=granted'])
      expect((await consentsOf(s.cookie)).filter((c) => c.meterIds.includes(`G-${emailCounter}`)).map((c) => [c.allMeters, c.meterIds])).toEqual([[false, [`G-${emailCounter}`]]])
      // Posted again, as it was: done already (those meters, not all of them).
      const resent = await grantForm(s, [`G-${emailCounter}`], { offerId: other })
      expect([resent.statusCode, resent.headers.location]).toEqual([303, '/consents?done=granted'])
      expect((await consentsOf(s.cookie)).length).toBe(2)
      // All meters now, under that offer: overlaps the consent for one of them, and is not it.
      const all = await grantForm(s, [`M-${emailCounter}`, `G-${emailCounter}`], { offerId: other })
      expect(all.statusCode).toBe(409)
      expect((await consentsOf(s.cookie)).length).toBe(2)
    })

    it('refuses a grant on the consents page, in its language, with the form as it was sent', async () => {
      const s = await session()
      const none = await grantForm(s, [], { validUntil: '2027-04-10T10:00:00Z' })
      expect(none.statusCode).toBe(400)
      expect(none.body).toContain(`<p class="error" role="alert" id="grant-error-${offerId}" data-error>Not saved: choose at least one meter.</p>`)
      expect(none.body).toContain(`<fieldset aria-describedby="grant-error-${offerId}">`)
      expect(none.body).toMatch(new RegExp(`<input type="checkbox" name="meterId" value="M-${emailCounter}" aria-invalid="true"`))
      // The language switch leads to the consents page, not to the form's address.
      expect(none.body).toContain('<a href="/consents?lang=fr" lang="fr" hreflang="fr">')

      expect((await grantForm(s, [`M-${emailCounter}`])).statusCode).toBe(303)
      // The same form posted again (a double click, its first answer lost): done already, granted once.
      const again = await grantForm(s, [`M-${emailCounter}`])
      expect([again.statusCode, again.headers.location]).toEqual([303, '/consents?done=granted'])
      expect((await consentsOf(s.cookie)).length).toBe(1)
      // Other terms for the same data: refused, saying why.
      const twice = await grantForm(s, [`M-${emailCounter}`], { validUntil: '2027-09-01T00:00:00Z' }, { 'accept-language': 'fr' })
      expect(twice.statusCode).toBe(409)
      expect(twice.body).toMatch(/Non enregistré\s:\svous donnez déjà ces données/)
      // The box stays ticked as sent (a first visit would leave a shared meter unticked).
      expect(twice.body).toMatch(new RegExp(`<input type="checkbox" name="meterId" value="M-${emailCounter}" checked`))

      // Input the page never offers: the API's words on the English page, a general refusal on the French one.
      const en = await grantForm(s, [`M-${emailCounter}`], { validUntil: 'soon' })
      expect(en.statusCode).toBe(400)
      expect(en.body).toMatch(/Not saved: validUntil: [^<]+/)
      const fr = await grantForm(s, [`M-${emailCounter}`], { validUntil: 'soon' }, { 'accept-language': 'fr' })
      expect(fr.statusCode).toBe(400)
      expect(fr.body).toMatch(/Non enregistré\s:\sla modification a été refusée\. Rechargez la page et réessayez\./)
      expect((await consentsOf(s.cookie)).length).toBe(1)
    })

    it('revokes from the page that asks first, with the session’s CSRF token; an ended consent, another household’s or none cannot be', async () => {
      const s = await session()
      expect((await grantForm(s, [`M-${emailCounter}`])).statusCode).toBe(303)
      const [consent] = await consentsOf(s.cookie)
      const page = await api.inject({ method: 'GET', url: '/consents', headers: { cookie: s.cookie, 'accept-language': 'en' } })
      // Without script, Revoke leads to the page that asks; the script opens a dialog instead.
      expect(page.body).toContain(`<form method="get" action="/consents/${consent!.id}/revoke" class="revoke"><button type="submit" class="danger" data-revoke="${consent!.id}"`)

      const ask = await api.inject({ method: 'GET', url: `/consents/${consent!.id}/revoke`, headers: { cookie: s.cookie, 'accept-language': 'en' } })
      expect(ask.statusCode).toBe(200)
      expect(ask.body).toContain('<h1 id="revoke-title">Revoke this consent?</h1>')
      expect(ask.body).toContain('Advice app will receive nothing more under it, from now on.')
      expect(ask.body).toContain(`<form method="post" action="/consents/${consent!.id}/revoke" aria-labelledby="revoke-title">`)
      expect(ask.body).toContain('<a href="/consents" class="button quiet">Cancel</a>')

      const revoke = (csrfToken: string, headers: Record<string, string> = {}) => post(`/consents/${consent!.id}/revoke`, s.cookie, { csrfToken }, headers)
      expect((await revoke((await session()).csrf)).statusCode).toBe(403)
      expect((await revoke(s.csrf, { origin: 'https://elsewhere.example' })).statusCode).toBe(403)
      expect((await consentsOf(s.cookie))[0]!.status).toBe('active')

      const done = await revoke(s.csrf)
      expect([done.statusCode, done.headers.location]).toEqual([303, '/consents?done=revoked'])
      expect((await consentsOf(s.cookie))[0]!.status).toBe('revoked')
      const ended = await api.inject({ method: 'GET', url: `/consents/${consent!.id}/revoke`, headers: { cookie: s.cookie, 'accept-language': 'fr' } })
      expect(ended.statusCode).toBe(200)
      expect(ended.body).toContain('<p class="error" role="alert" id="revoke-error">Ce consentement a déjà pris fin.</p>')
      expect(ended.body).not.toContain(`<form method="post" action="/consents/${consent!.id}/revoke"`)
      // Revoking twice is harmless, as in the API.
      expect((await revoke(s.csrf)).statusCode).toBe(303)

      // Another household's consent is no page of this one, nor is a consent that does not exist.
      email = `portal-${++emailCounter}@example.org`
      expect((await api.asOperator('POST', '/admin/households', { name: 'Bernard', email, password: PASSWORD })).statusCode).toBe(201)
      const stranger = await session()
      for (const id of [consent!.id, 'con_nothing']) {
        expect((await api.inject({ method: 'GET', url: `/consents/${id}/revoke`, headers: { cookie: stranger.cookie } })).statusCode).toBe(404)
        expect((await post(`/consents/${id}/revoke`, stranger.cookie, { csrfToken: stranger.csrf })).statusCode).toBe(404)
      }
      expect((await consentsOf(s.cookie))[0]!.status).toBe('revoked')
    })
  })
})

describeDatabases('portal sign-in behind a trusted load balancer (METERSHARE_TRUSTED_PROXIES)', (t) => {
  const BALANCER = '10.0.0.5'
  const api = useApi(t, { env: { trustedProxies: `${BALANCER}, 10.1.0.0/16` }, config: { portal: { signInFailuresMax: FAILURES_MAX } } })
  let n = 0
  let email: string

  beforeEach(async () => {
    email = `behind-lb-${++n}@example.org`
    expect((await api.asOperator('POST', '/admin/households', { name: 'Durand', email, password: PASSWORD })).statusCode).toBe(201)
  })

  function signIn(from: string, forwardedFor: string | null, password: string, who = email): Promise<LightMyRequestResponse> {
    return api.inject({
      method: 'POST',
      url: '/portal/session',
      remoteAddress: from,
      headers: forwardedFor === null ? {} : { 'x-forwarded-for': forwardedFor },
      payload: { email: who, password },
    })
  }

  it('counts failures by the client address the balancer forwards, so one client cannot lock out the others', async () => {
    const client = `203.0.113.${n}`
    for (let i = 0; i < FAILURES_MAX; i++) expect((await signIn(BALANCER, client, 'wrong', `nobody-${n}-${i}@example.org`)).statusCode).toBe(401)
    expect((await signIn(BALANCER, client, PASSWORD)).statusCode).toBe(429)
    // Another household behind the same balancer signs in.
    expect((await signIn(BALANCER, `198.51.100.${n}`, PASSWORD)).statusCode).toBe(201)
  })

  it('walks past every trusted proxy in X-Forwarded-For to the client', async () => {
    const client = `203.0.114.${n}`
    for (let i = 0; i < FAILURES_MAX; i++) expect((await signIn(BALANCER, `${client}, 10.1.2.3`, 'wrong', `nobody-${n}-${i}@example.org`)).statusCode).toBe(401)
    expect((await signIn(BALANCER, client, PASSWORD)).statusCode).toBe(429)
    expect((await signIn(BALANCER, `198.51.101.${n}, 10.1.2.3`, PASSWORD)).statusCode).toBe(201)
  })

  /** A sign-in, as the portal's own page posts it on https://portal.example.org, reaching the API from `from`. */
  function signInOverHttps(from: string, forwardedProto: string | null, origin = 'https://portal.example.org'): Promise<LightMyRequestResponse> {
    return api.inject({
      method: 'POST',
      url: '/portal/session',
      remoteAddress: from,
      headers: { host: 'portal.example.org', origin, 'x-forwarded-for': `203.0.116.${n}`, ...(forwardedProto === null ? {} : { 'x-forwarded-proto': forwardedProto }) },
      payload: { email, password: PASSWORD },
    })
  }

  it('knows from the balancer that the client came over HTTPS: the cookie is Secure, and the answer asks the browser to keep to HTTPS', async () => {
    const res = await signInOverHttps(BALANCER, 'https')
    // The page's https origin is the portal's own.
    expect(res.statusCode, res.body).toBe(201)
    const cookie = res.headers['set-cookie'] as string
    expect(cookie.split('; ')).toEqual(expect.arrayContaining(['Secure', 'HttpOnly', 'SameSite=Strict']))
    expect(res.headers['strict-transport-security']).toBe(`max-age=${HSTS_MAX_AGE_S}`)
    // Signing out clears the cookie with the same attributes, or a browser would keep the Secure one.
    const out = await api.inject({
      method: 'DELETE',
      url: '/portal/session',
      remoteAddress: BALANCER,
      headers: { host: 'portal.example.org', origin: 'https://portal.example.org', 'x-forwarded-proto': 'https', 'x-csrf-token': res.json().csrfToken, cookie: cookie.slice(0, cookie.indexOf(';')) },
    })
    expect(out.statusCode, out.body).toBe(204)
    expect((out.headers['set-cookie'] as string).split('; ')).toEqual(expect.arrayContaining(['Max-Age=0', 'Secure']))
  })

  it('takes plain HTTP for what it is, and X-Forwarded-Proto only from the balancer', async () => {
    const cameByHttp: [string, string | null][] = [[BALANCER, 'http'], [BALANCER, null], ['192.0.2.200', 'https']]
    for (const [from, proto] of cameByHttp) {
      const res = await signInOverHttps(from, proto, 'http://portal.example.org')
      expect(res.statusCode, res.body).toBe(201)
      expect(res.headers['set-cookie']).not.toContain('Secure')
      expect(res.headers['strict-transport-security']).toBeUndefined()
      // A page served over HTTPS is another origin than the plain HTTP this request came by.
      const crossScheme = await signInOverHttps(from, proto)
      expect(crossScheme.statusCode, crossScheme.body).toBe(403)
      expect(crossScheme.headers['set-cookie']).toBeUndefined()
    }
  })

  it('ignores X-Forwarded-For from anyone else: a client cannot escape its count by claiming other addresses', async () => {
    const direct = `192.0.2.${n}`
    for (let i = 0; i < FAILURES_MAX; i++) expect((await signIn(direct, `203.0.115.${i}`, 'wrong', `nobody-${n}-${i}@example.org`)).statusCode).toBe(401)
    expect((await signIn(direct, '203.0.115.99', PASSWORD)).statusCode).toBe(429)
  })
})

describe('sign-in throttle', () => {
  const limits = { signInFailuresMax: 2, signInFailuresPerEmailMax: 3, signInFailureWindowMs: 1_000, signInKeysTrackedMax: 3 }
  const k = (key: string, max = 2) => ({ key, max })

  it('makes a key wait until its oldest failure in the window has left it', () => {
    const throttle = new SignInThrottle(limits)
    throttle.recordFailure([k('email:a'), k('address:1')], 0)
    expect(throttle.retryAfterMs([k('email:b'), k('address:1')], 50)).toBe(0)
    throttle.recordFailure([k('email:b'), k('address:1')], 100)
    expect(throttle.retryAfterMs([k('email:c'), k('address:1')], 200)).toBe(800)
    expect(throttle.retryAfterMs([k('email:c'), k('address:2')], 200)).toBe(0)
    expect(throttle.retryAfterMs([k('email:c'), k('address:1')], 999)).toBe(1)
    expect(throttle.retryAfterMs([k('email:c'), k('address:1')], 1_000)).toBe(0)
  })

  it('holds each key to its own limit', () => {
    const throttle = new SignInThrottle(limits)
    throttle.recordFailure([k('a', 1), k('b', 3)], 0)
    throttle.recordFailure([k('b', 3)], 10)
    expect(throttle.retryAfterMs([k('a', 1)], 20)).toBe(980)
    expect(throttle.retryAfterMs([k('b', 3)], 20)).toBe(0)
    throttle.recordFailure([k('b', 3)], 30)
    expect(throttle.retryAfterMs([k('b', 3)], 40)).toBe(960)
  })

  it('locks an email from the address that guesses it, and from everywhere only past the per-email limit', () => {
    const throttle = new SignInThrottle(limits)
    const guesser = throttle.keysOf('Someone@Example.org ', '203.0.113.1')
    throttle.recordFailure(guesser, 0)
    throttle.recordFailure(guesser, 10)
    expect(throttle.retryAfterMs(throttle.keysOf('someone@example.org', '203.0.113.1'), 20)).toBe(980)
    // The household, from its own address, is not locked out by that.
    expect(throttle.retryAfterMs(throttle.keysOf('someone@example.org', '198.51.100.1'), 20)).toBe(0)
    // A third failure from another address reaches the per-email limit (3): now everywhere waits.
    throttle.recordFailure(throttle.keysOf('someone@example.org', '203.0.113.2'), 30)
    expect(throttle.retryAfterMs(throttle.keysOf('someone@example.org', '198.51.100.1'), 40)).toBe(960)
  })

  it('forgets the least recently failed keys first beyond its limit', () => {
    const throttle = new SignInThrottle(limits)
    throttle.recordFailure([k('email:x')], 0)
    throttle.recordFailure([k('email:x')], 1)
    expect(throttle.retryAfterMs([k('email:x')], 2)).toBe(998)
    throttle.recordFailure([k('email:d'), k('email:e'), k('email:f')], 3)
    expect(throttle.size).toBe(3)
    expect(throttle.retryAfterMs([k('email:x')], 4)).toBe(0)
  })
})
