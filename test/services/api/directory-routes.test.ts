import { describe, expect, it } from 'vitest'
import { parseApiKey, verifyPassword, verifySecret } from '../../../shared/secrets.ts'
import { describeDatabases } from '../../support/database.ts'
import { ADMIN_TOKEN, OPERATOR, bearer, errorOf, useApi } from './api-harness.ts'

describeDatabases('operator directory endpoints', (t) => {
  const api = useApi(t)

  async function createUtility(name = 'Enedis'): Promise<{ id: string; apiKey: string }> {
    const res = await api.asOperator('POST', '/admin/parties', { kind: 'utility', name })
    expect(res.statusCode).toBe(201)
    return res.json()
  }

  async function createHousehold(email = 'dupont@example.org'): Promise<{ id: string; apiKey: string }> {
    const res = await api.asOperator('POST', '/admin/households', { name: 'Dupont', email, password: 'correct horse battery' })
    expect(res.statusCode).toBe(201)
    return res.json()
  }

  describe('POST /admin/parties', () => {
    it('creates a party and shows its API key once, storing only a salted hash', async () => {
      const res = await api.asOperator('POST', '/admin/parties', { kind: 'third_party', name: 'Watt Advice' })
      expect(res.statusCode).toBe(201)
      expect(res.headers['content-type']).toMatch(/^application\/json/)
      const body = res.json() as { id: string; apiKey: string }
      expect(Object.keys(body).sort()).toEqual(['apiKey', 'id'])
      expect(body.id).toMatch(/^pty_[0-9a-z]{16}$/)
      const key = parseApiKey(body.apiKey)
      expect(key?.ownerId).toBe(body.id)

      const row = await t.db.selectFrom('parties').selectAll().where('id', '=', body.id).executeTakeFirstOrThrow()
      expect(row).toMatchObject({ kind: 'third_party', name: 'Watt Advice' })
      expect(row.api_key_hash).toMatch(/^sha256\$/)
      expect(row.api_key_hash).not.toContain(key!.secret)
      expect(verifySecret(key!.secret, row.api_key_hash)).toBe(true)

      const list = await api.asOperator('GET', '/admin/parties')
      expect(list.body).not.toContain(key!.secret)
      expect(list.body).not.toContain('api_key_hash')
    })

    it('refuses a kind it does not know, naming the field', async () => {
      const res = await api.asOperator('POST', '/admin/parties', { kind: 'bank', name: 'X' })
      expect(res.statusCode).toBe(400)
      expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message: 'kind: expected one of utility, third_party' })
    })

    it('refuses a missing, empty or overlong name, naming the field', async () => {
      for (const body of [{ kind: 'utility' }, { kind: 'utility', name: '   ' }, { kind: 'utility', name: 'x'.repeat(201) }, { kind: 'utility', name: 7 }]) {
        const res = await api.asOperator('POST', '/admin/parties', body)
        expect(res.statusCode).toBe(400)
        expect(errorOf(res).code).toBe('INVALID_INPUT')
        expect(errorOf(res).message).toMatch(/^name: /)
      }
    })

    it('refuses a name holding a control character or one that reorders text, naming them; accents and other scripts are names', async () => {
      for (const name of ['line1\nline2', 'a\u0007b', 'tab\there', 'x\u202Eevil', 'y\u2067z', 'c1\u0085', 'p\u2028q', 'r\u200Fs', 'zero\u200Bwidth', 'b\uFEFFom']) {
        const res = await api.asOperator('POST', '/admin/parties', { kind: 'utility', name })
        expect([name, res.statusCode, errorOf(res).message]).toEqual([
          name,
          400,
          'name: must not hold control characters (a line break, a tab), line or paragraph separators, nor invisible ones or ones that reorder text (U+061C, U+200B, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069, U+FEFF)',
        ])
      }
      for (const name of ['Régie d’électricité', 'شركة الكهرباء', '東京電力', 'O\'Brien & Söhne', 'Famille 👨\u200D👩\u200D👧', 'می\u200Cخواهم']) expect((await api.asOperator('POST', '/admin/parties', { kind: 'utility', name })).statusCode).toBe(201)
    })

    it('refuses an unknown field by its name and a body that is not an object', async () => {
      const extra = await api.asOperator('POST', '/admin/parties', { kind: 'utility', name: 'X', apikey: 'mine' })
      expect(extra.statusCode).toBe(400)
      expect(errorOf(extra).message).toBe('apikey: unknown field')
      const array = await api.asOperator('POST', '/admin/parties', [1, 2])
      expect(array.statusCode).toBe(400)
      expect(errorOf(array).message).toBe('body: expected an object')
      const none = await api.inject({ method: 'POST', url: '/admin/parties', headers: OPERATOR })
      expect(none.statusCode).toBe(400)
      expect(errorOf(none).message).toBe('kind: required')
      expect(await t.db.selectFrom('parties').select('id').execute()).toEqual([])
    })

    it('answers 401 without credentials or with a wrong token, and creates nothing', async () => {
      const cases = [
        {},
        bearer('not-the-token'),
        bearer(ADMIN_TOKEN + 'x'),
        bearer(ADMIN_TOKEN.slice(0, -1)),
        { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}` },
        { authorization: 'Bearer' },
      ]
      for (const headers of cases) {
        const res = await api.inject({ method: 'POST', url: '/admin/parties', headers, payload: { kind: 'utility', name: 'X' } })
        expect(res.statusCode).toBe(401)
        expect(errorOf(res).code).toBe('UNAUTHENTICATED')
        // Every 401 challenges; credentials sent that did not hold are an invalid token (RFC 6750).
        expect(res.headers['www-authenticate']).toBe('authorization' in headers ? 'Bearer error="invalid_token"' : 'Bearer')
      }
      expect(await t.db.selectFrom('parties').select('id').execute()).toEqual([])
    })

    it('checks credentials before the body, so strangers learn nothing from validation', async () => {
      const res = await api.inject({ method: 'POST', url: '/admin/parties', payload: { kind: 'bank' } })
      expect(res.statusCode).toBe(401)
      expect(res.headers['www-authenticate']).toBe('Bearer')
    })

    it('answers 403 to a party or a household using its own valid API key', async () => {
      const party = await createUtility()
      const household = await createHousehold()
      for (const key of [party.apiKey, household.apiKey]) {
        const res = await api.inject({ method: 'POST', url: '/admin/parties', headers: bearer(key), payload: { kind: 'utility', name: 'X' } })
        expect(res.statusCode).toBe(403)
        expect(errorOf(res).code).toBe('FORBIDDEN')
      }
      const forged = `${party.id}.${parseApiKey(household.apiKey)!.secret}`
      const res = await api.inject({ method: 'GET', url: '/admin/parties', headers: bearer(forged) })
      expect(res.statusCode).toBe(401)
    })
  })

  describe('POST /admin/households', () => {
    it('creates a household with a hashed password and a hashed API key', async () => {
      const res = await api.asOperator('POST', '/admin/households', { name: 'Martin', email: 'Martin@Example.org', password: 'hunter22hunter22' })
      expect(res.statusCode).toBe(201)
      const body = res.json() as { id: string; apiKey: string }
      expect(body.id).toMatch(/^hh_/)
      const row = await t.db.selectFrom('households').selectAll().where('id', '=', body.id).executeTakeFirstOrThrow()
      expect(row.email).toBe('martin@example.org')
      expect(row.password_hash).toMatch(/^scrypt\$/)
      expect(row.password_hash).not.toContain('hunter22')
      expect(await verifyPassword('hunter22hunter22', row.password_hash)).toBe(true)
      const secret = parseApiKey(body.apiKey)!.secret
      expect(row.api_key_hash).not.toContain(secret)
      expect(verifySecret(secret, row.api_key_hash)).toBe(true)
    })

    it('answers 409 EMAIL_TAKEN for an email in use, whatever its case', async () => {
      await createHousehold('dupont@example.org')
      const res = await api.asOperator('POST', '/admin/households', { name: 'Other', email: 'DUPONT@example.org', password: 'another password' })
      expect(res.statusCode).toBe(409)
      expect(errorOf(res)).toEqual({ code: 'EMAIL_TAKEN', message: 'email: a household with this email exists' })
      expect(await t.db.selectFrom('households').select('id').execute()).toHaveLength(1)
    })

    it('refuses a bad email, a short password and a missing name, naming each field', async () => {
      const cases: [object, string][] = [
        [{ name: 'A', email: 'not-an-email', password: 'long enough pw' }, 'email: expected an email address'],
        [{ name: 'A', email: 'a@example.org', password: 'short' }, 'password: must be at least 8 characters long'],
        [{ name: 'A', email: 'a@example.org', password: 'x'.repeat(257) }, 'password: must be at most 256 characters long'],
        [{ email: 'a@example.org', password: 'long enough pw' }, 'name: required'],
        [{ name: 'A', email: 'a@example.org' }, 'password: required'],
      ]
      for (const [body, message] of cases) {
        const res = await api.asOperator('POST', '/admin/households', body)
        expect(res.statusCode).toBe(400)
        expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message })
      }
      expect(await t.db.selectFrom('households').select('id').execute()).toEqual([])
    })
  })

  describe('POST /admin/meters', () => {
    it('registers a meter under a utility, with a generated id and a secret shown once', async () => {
      const utility = await createUtility()
      const res = await api.asOperator('POST', '/admin/meters', { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 30 })
      expect(res.statusCode).toBe(201)
      const body = res.json() as { id: string; secret: string }
      expect(Object.keys(body).sort()).toEqual(['id', 'secret'])
      expect(body.id).toMatch(/^mtr_/)
      const row = await t.db.selectFrom('meters').selectAll().where('id', '=', body.id).executeTakeFirstOrThrow()
      expect(row).toMatchObject({ operator_id: utility.id, commodity: 'electricity', interval_minutes: 30 })
      expect(row.secret_hash).not.toContain(body.secret)
      expect(verifySecret(body.secret, row.secret_hash)).toBe(true)
      const list = await api.asOperator('GET', '/admin/meters')
      expect(list.body).not.toContain(body.secret)
      expect(list.body).not.toContain('secret')
    })

    it('takes the id given, and answers 409 METER_EXISTS when it is taken', async () => {
      const utility = await createUtility()
      const first = await api.asOperator('POST', '/admin/meters', { operatorId: utility.id, commodity: 'gas', intervalMinutes: 60, id: 'GZ-00042' })
      expect(first.statusCode).toBe(201)
      expect(first.json().id).toBe('GZ-00042')
      const again = await api.asOperator('POST', '/admin/meters', { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 15, id: 'GZ-00042' })
      expect(again.statusCode).toBe(409)
      expect(errorOf(again).code).toBe('METER_EXISTS')
      const row = await t.db.selectFrom('meters').selectAll().where('id', '=', 'GZ-00042').executeTakeFirstOrThrow()
      expect(row.commodity).toBe('gas')
    })

    it('refuses bad fields, naming each one', async () => {
      const utility = await createUtility()
      const thirdParty = (await api.asOperator('POST', '/admin/parties', { kind: 'third_party', name: 'Lab' })).json().id as string
      const ok = { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 15 }
      const cases: [object, string][] = [
        [{ ...ok, intervalMinutes: 20 }, 'intervalMinutes: expected one of 15, 30, 60'],
        [{ ...ok, intervalMinutes: '15' }, 'intervalMinutes: expected one of 15, 30, 60'],
        [{ ...ok, commodity: 'water' }, 'commodity: expected one of electricity, gas'],
        [{ ...ok, id: 'a/b' }, 'id: 1 to 64 characters among A-Z a-z 0-9 . _ : -, starting with a letter or digit'],
        [{ ...ok, id: 'x'.repeat(65) }, 'id: 1 to 64 characters among A-Z a-z 0-9 . _ : -, starting with a letter or digit'],
        [{ ...ok, operatorId: 'pty_nobody' }, 'operatorId: no such party'],
        [{ ...ok, operatorId: thirdParty }, 'operatorId: a meter is operated by a utility'],
        [{ commodity: 'gas', intervalMinutes: 15 }, 'operatorId: required'],
      ]
      for (const [body, message] of cases) {
        const res = await api.asOperator('POST', '/admin/meters', body)
        expect(res.statusCode).toBe(400)
        expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message })
      }
      expect(await t.db.selectFrom('meters').select('id').execute()).toEqual([])
    })

    it('answers 401 without the token and 403 to a utility registering its own meter', async () => {
      const utility = await createUtility()
      const body = { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 15 }
      expect((await api.inject({ method: 'POST', url: '/admin/meters', payload: body })).statusCode).toBe(401)
      expect((await api.inject({ method: 'POST', url: '/admin/meters', payload: body, headers: bearer(utility.apiKey) })).statusCode).toBe(403)
    })
  })

  describe('lists', () => {
    it('pages through parties in creation order with an opaque cursor', async () => {
      const ids: string[] = []
      for (let i = 0; i < 5; i++) ids.push((await createUtility(`Utility ${i}`)).id)
      const seen: string[] = []
      let cursor: string | null = null
      let pages = 0
      do {
        const res = await api.asOperator('GET', `/admin/parties?limit=2${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`)
        expect(res.statusCode).toBe(200)
        const body = res.json() as { items: { id: string; kind: string; name: string; createdAt: string }[]; nextCursor: string | null }
        expect(body.items.length).toBeLessThanOrEqual(2)
        for (const item of body.items) {
          expect(Object.keys(item).sort()).toEqual(['createdAt', 'id', 'kind', 'name'])
          seen.push(item.id)
        }
        cursor = body.nextCursor
        pages++
      } while (cursor !== null)
      expect(pages).toBe(3)
      expect(seen).toEqual(ids)
    })

    it('filters parties by kind and meters by operator', async () => {
      const a = await createUtility('A')
      const b = await createUtility('B')
      await api.asOperator('POST', '/admin/parties', { kind: 'third_party', name: 'Lab' })
      await api.asOperator('POST', '/admin/meters', { operatorId: a.id, commodity: 'electricity', intervalMinutes: 15, id: 'M-A' })
      await api.asOperator('POST', '/admin/meters', { operatorId: b.id, commodity: 'electricity', intervalMinutes: 15, id: 'M-B' })
      const thirdParties = (await api.asOperator('GET', '/admin/parties?kind=third_party')).json()
      expect(thirdParties.items.map((p: { name: string }) => p.name)).toEqual(['Lab'])
      const meters = (await api.asOperator('GET', `/admin/meters?operatorId=${b.id}`)).json()
      expect(meters).toEqual({
        items: [{ id: 'M-B', operatorId: b.id, commodity: 'electricity', intervalMinutes: 15, createdAt: expect.any(String), retiredAt: null }],
        nextCursor: null,
      })
    })

    it('lists households without passwords or keys', async () => {
      const h = await createHousehold('x@example.org')
      const res = await api.asOperator('GET', '/admin/households')
      expect(res.json()).toEqual({ items: [{ id: h.id, name: 'Dupont', email: 'x@example.org', createdAt: expect.any(String) }], nextCursor: null })
    })

    it('refuses a page size over the limit, a tampered cursor and unknown parameters', async () => {
      const cases: [string, string][] = [
        ['/admin/parties?limit=1001', 'limit: must be at most 1000'],
        ['/admin/parties?limit=0', 'limit: must be at least 1'],
        ['/admin/parties?limit=ten', 'limit: expected a whole number'],
        // What Number() would read as a number is no page size either.
        ['/admin/parties?limit=0x10', 'limit: expected a whole number'],
        ['/admin/parties?limit=1e1', 'limit: expected a whole number'],
        ['/admin/parties?limit=%205', 'limit: expected a whole number'],
        ['/admin/parties?limit=9999999999999999999999', 'limit: must be at most 1000'],
        ['/admin/meters?cursor=bm90LWEtY3Vyc29y', 'cursor: not a cursor this API returned for this listing'],
        ['/admin/households?cursor=%7B%7D', 'cursor: not a cursor this API returned for this listing'],
        // Keys whose time the database's cast refuses (year 0, an offset beyond 15:59:59): a 400, not a failing query.
        [`/admin/parties?cursor=${Buffer.from('["parties","0000-01-01 00:00:00+00","x"]').toString('base64url')}`, 'cursor: not a cursor this API returned for this listing'],
        [`/admin/meters?cursor=${Buffer.from('["meters","2026-10-01 00:00:00+99","x"]').toString('base64url')}`, 'cursor: not a cursor this API returned for this listing'],
        ['/admin/households?sort=name', 'sort: unknown field'],
        ['/admin/parties?kind=bank', 'kind: expected one of utility, third_party'],
      ]
      for (const [url, message] of cases) {
        const res = await api.asOperator('GET', url)
        expect(res.statusCode, url).toBe(400)
        expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message })
      }
    })

    it('is for the operator only', async () => {
      const party = await createUtility()
      for (const url of ['/admin/parties', '/admin/households', '/admin/meters']) {
        expect((await api.inject({ method: 'GET', url })).statusCode).toBe(401)
        expect((await api.inject({ method: 'GET', url, headers: bearer(party.apiKey) })).statusCode).toBe(403)
      }
    })
  })
  describe('renewing credentials', () => {
    async function signIn(email: string, password: string): Promise<number> {
      return (await api.inject({ method: 'POST', url: '/portal/session', remoteAddress: '192.0.2.77', payload: { email, password } })).statusCode
    }
    async function sessionsOf(householdId: string): Promise<number> {
      return (await t.db.selectFrom('sessions').select('id').where('household_id', '=', householdId).execute()).length
    }

    it("renews a meter's secret once shown and hashed, refusing an unknown meter", async () => {
      const utility = await createUtility()
      const created = (await api.asOperator('POST', '/admin/meters', { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 15 })).json()
      const res = await api.asOperator('POST', `/admin/meters/${created.id}/secret`)
      expect(res.statusCode, res.body).toBe(200)
      const renewed = res.json() as { id: string; secret: string }
      expect(renewed.id).toBe(created.id)
      const row = await t.db.selectFrom('meters').select('secret_hash').where('id', '=', created.id).executeTakeFirstOrThrow()
      expect([verifySecret(renewed.secret, row.secret_hash), verifySecret(created.secret, row.secret_hash)]).toEqual([true, false])
      // A client that says `Content-Type: application/json` on every request, with no body: no error.
      const generic = await api.inject({ method: 'POST', url: `/admin/meters/${created.id}/secret`, headers: { ...OPERATOR, 'content-type': 'application/json' } })
      expect(generic.statusCode, generic.body).toBe(200)
      // Where a body is expected, an empty one still is.
      const empty = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...OPERATOR, 'content-type': 'application/json' } })
      expect([empty.statusCode, errorOf(empty).code]).toEqual([400, 'INVALID_INPUT'])
      const unknown = await api.asOperator('POST', '/admin/meters/NO-SUCH-METER/secret')
      expect([unknown.statusCode, errorOf(unknown).code]).toEqual([404, 'NOT_FOUND'])
    })

    it('takes a meter out of service: listed with when, its secret not renewed, its id never given again', async () => {
      const utility = await createUtility()
      const created = (await api.asOperator('POST', '/admin/meters', { operatorId: utility.id, commodity: 'gas', intervalMinutes: 60, id: 'GAZPAR-RETIRED' })).json()
      expect((await api.asOperator('DELETE', '/admin/meters/GAZPAR-RETIRED')).statusCode).toBe(204)
      const listed = (await api.asOperator('GET', `/admin/meters?operatorId=${utility.id}`)).json().items
      expect(listed).toEqual([expect.objectContaining({ id: created.id, retiredAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) })])
      expect((await api.asOperator('DELETE', '/admin/meters/GAZPAR-RETIRED')).statusCode).toBe(204)
      expect((await api.asOperator('GET', `/admin/meters?operatorId=${utility.id}`)).json().items[0].retiredAt).toBe(listed[0].retiredAt)
      const renew = await api.asOperator('POST', '/admin/meters/GAZPAR-RETIRED/secret')
      expect([renew.statusCode, errorOf(renew).message]).toEqual([409, expect.stringMatching(/^meter GAZPAR-RETIRED was taken out of service at /)])
      const again = await api.asOperator('POST', '/admin/meters', { operatorId: utility.id, commodity: 'gas', intervalMinutes: 60, id: 'GAZPAR-RETIRED' })
      expect([again.statusCode, errorOf(again).code]).toEqual([409, 'METER_EXISTS'])
      expect((await api.asOperator('DELETE', '/admin/meters/NO-SUCH-METER')).statusCode).toBe(404)
    })

    it("renews a party's and a household's API key: the old one is refused at once, the new one works", async () => {
      const party = await createUtility()
      const household = await createHousehold('renew@example.org')
      const partyRes = await api.asOperator('POST', `/admin/parties/${party.id}/api-key`)
      const homeRes = await api.asOperator('POST', `/admin/households/${household.id}/api-key`)
      expect([partyRes.statusCode, homeRes.statusCode]).toEqual([200, 200])
      const get = async (url: string, key: string) => (await api.inject({ method: 'GET', url, headers: bearer(key) })).statusCode
      expect(await get('/recipient/consents', party.apiKey)).toBe(401)
      expect(await get('/recipient/consents', partyRes.json().apiKey)).toBe(200)
      expect(await get('/me/payouts', household.apiKey)).toBe(401)
      expect(await get('/me/payouts', homeRes.json().apiKey)).toBe(200)

      // The household renews its own.
      const own = await api.inject({ method: 'POST', url: '/me/api-key', headers: bearer(homeRes.json().apiKey) })
      expect(own.statusCode, own.body).toBe(200)
      expect(await get('/me/payouts', homeRes.json().apiKey)).toBe(401)
      expect(await get('/me/payouts', own.json().apiKey)).toBe(200)
      for (const url of [`/admin/parties/pty_0000000000000000/api-key`, `/admin/households/hh_0000000000000000/api-key`]) {
        expect((await api.asOperator('POST', url)).statusCode).toBe(404)
      }
    })

    it('changes a password with the one in use, ending every portal session; the operator resets a forgotten one', async () => {
      const household = await createHousehold('password@example.org')
      expect(await signIn('password@example.org', 'correct horse battery')).toBe(201)
      expect(await sessionsOf(household.id)).toBe(1)
      const change = (body: unknown) => api.inject({ method: 'POST', url: '/me/password', headers: bearer(household.apiKey), payload: body as object })

      const wrong = await change({ currentPassword: 'not it at all', newPassword: 'a new long password' })
      expect([wrong.statusCode, errorOf(wrong)]).toEqual([400, { code: 'INVALID_INPUT', message: 'currentPassword: not the password of this household' }])
      const short = await change({ currentPassword: 'correct horse battery', newPassword: 'short' })
      expect([short.statusCode, errorOf(short).message]).toEqual([400, expect.stringMatching(/^newPassword: /)])
      expect(await sessionsOf(household.id)).toBe(1)

      expect((await change({ currentPassword: 'correct horse battery', newPassword: 'a new long password' })).statusCode).toBe(204)
      expect(await sessionsOf(household.id)).toBe(0)
      expect(await signIn('password@example.org', 'correct horse battery')).toBe(401)
      expect(await signIn('password@example.org', 'a new long password')).toBe(201)

      const reset = await api.asOperator('POST', `/admin/households/${household.id}/password`, { password: 'reset by the operator' })
      expect(reset.statusCode, reset.body).toBe(204)
      expect(await sessionsOf(household.id)).toBe(0)
      expect(await signIn('password@example.org', 'reset by the operator')).toBe(201)
      const row = await t.db.selectFrom('households').select('password_hash').where('id', '=', household.id).executeTakeFirstOrThrow()
      expect(await verifyPassword('reset by the operator', row.password_hash)).toBe(true)
    })

    it('lets one of password changes sent at once through, and refuses the others as a wrong current password: only its password works', async () => {
      const household = await createHousehold('at-once@example.org')
      // An address of its own: the refused changes count as wrong passwords from it.
      const remoteAddress = '192.0.2.8'
      const wanted = ['first new password', 'second new password', 'third new password']
      const answers = await Promise.all(
        wanted.map((newPassword) =>
          api.inject({ method: 'POST', url: '/me/password', remoteAddress, headers: bearer(household.apiKey), payload: { currentPassword: 'correct horse battery', newPassword } }),
        ),
      )
      expect(answers.map((r) => r.statusCode).sort()).toEqual([204, 400, 400])
      for (const refused of answers.filter((r) => r.statusCode === 400)) {
        expect(errorOf(refused)).toEqual({ code: 'INVALID_INPUT', message: 'currentPassword: not the password of this household' })
      }
      const signInFrom = async (password: string) =>
        (await api.inject({ method: 'POST', url: '/portal/session', remoteAddress, payload: { email: 'at-once@example.org', password } })).statusCode
      const kept = wanted[answers.findIndex((r) => r.statusCode === 204)]!
      expect(await signInFrom(kept)).toBe(201)
      for (const other of wanted.filter((p) => p !== kept)) expect(await signInFrom(other)).toBe(401)
    })

    it('renews a key once of renewals sent at once with it, refusing the others with 401: the key answered is the one in force', async () => {
      const household = await createHousehold('keys-at-once@example.org')
      const answers = await Promise.all(Array.from({ length: 3 }, () => api.inject({ method: 'POST', url: '/me/api-key', headers: bearer(household.apiKey) })))
      expect(answers.map((r) => r.statusCode).sort()).toEqual([200, 401, 401])
      for (const refused of answers.filter((r) => r.statusCode === 401)) expect(errorOf(refused).code).toBe('UNAUTHENTICATED')
      const renewed = answers.find((r) => r.statusCode === 200)!.json() as { apiKey: string }
      const get = async (apiKey: string) => (await api.inject({ method: 'GET', url: '/me/payouts', headers: bearer(apiKey) })).statusCode
      expect(await get(renewed.apiKey)).toBe(200)
      expect(await get(household.apiKey)).toBe(401)
      // The operator's renewal needs no key of the household's.
      expect((await api.asOperator('POST', `/admin/households/${household.id}/api-key`)).statusCode).toBe(200)
    })

    it('counts wrong current passwords as failed sign-ins: a stolen key or session cannot guess the password faster', async () => {
      const household = await createHousehold('guessed@example.org')
      // From an address of its own: its failures are that address's, as a sign-in's are.
      const change = (currentPassword: string) =>
        api.inject({ method: 'POST', url: '/me/password', remoteAddress: '192.0.2.7', headers: bearer(household.apiKey), payload: { currentPassword, newPassword: 'a new long password' } })
      const max = api.app.apiContext.deps.config.portal.signInFailuresMax
      // Sent at once, as a guesser would: the limit holds all the same.
      const answers = await Promise.all(Array.from({ length: max + 3 }, (_, i) => change(`guess number ${i}`)))
      expect(answers.map((r) => r.statusCode).sort()).toEqual([...Array(max).fill(400), ...Array(3).fill(429)])
      // Past the checks that could still fail, a guess waits a moment (they are under way, not failed yet).
      const busy = answers.find((r) => r.statusCode === 429)!
      expect([errorOf(busy), busy.headers['retry-after']]).toEqual([{ code: 'TOO_MANY_REQUESTS', message: 'currentPassword: too many checks under way at once: try again in a second' }, '1'])
      // Once they failed, the right one too is refused until the window has passed, and the password is unchanged.
      const throttled = await change('correct horse battery')
      expect(errorOf(throttled)).toEqual({ code: 'TOO_MANY_REQUESTS', message: 'currentPassword: too many wrong passwords: try again later' })
      expect(Number(throttled.headers['retry-after'])).toBeGreaterThan(1)
      expect(await signIn('guessed@example.org', 'correct horse battery')).toBe(201)
    })
  })
})
