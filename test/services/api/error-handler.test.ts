import net, { type AddressInfo } from 'node:net'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { JSON_NESTING_MAX, buildApi } from '../../../services/api/app.ts'
import { HTTP_PARAM_LENGTH_MAX, toErrorAnswer } from '../../../services/api/error-handler.ts'
import { envToConfig } from '../../../shared/config.ts'
import { openDatabase, type DatabaseHandle } from '../../../shared/db/database.ts'
import { ConflictError, ERROR_CODES, NotFoundError } from '../../../shared/errors.ts'
import { configureLogging } from '../../../shared/logger.ts'
import { SHOWN_NAME_CHARS_MAX } from '../../../shared/text.ts'
import { createMetrics } from '../../../shared/metrics.ts'
import { describeDatabases } from '../../support/database.ts'
import { ADMIN_TOKEN, OPERATOR, UNREACHABLE_DATABASE_URL, errorOf, useApi } from './api-harness.ts'

describeDatabases('the error envelope', (t) => {
  const api = useApi(t, { config: { http: { bodyBytesMax: 1024 } } })

  it("answers a write on a full disk (SQLSTATE 53100) with 503 STORAGE_FULL and Retry-After, not 500", async () => {
    // What PostgreSQL raises when a table cannot grow: "could not extend file …: No space left on device".
    await sql.raw(`CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'could not extend file "base/5/1234": No space left on device' USING ERRCODE = 'disk_full'; END $$`).execute(t.db)
    await sql`CREATE TRIGGER test_disk_full BEFORE INSERT ON parties FOR EACH ROW EXECUTE FUNCTION test_disk_full()`.execute(t.db)
    try {
      const res = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload: { kind: 'utility', name: 'U' } })
      expect(res.statusCode).toBe(503)
      expect(res.headers['retry-after']).toBe('60')
      expect(res.json()).toEqual({ error: { code: 'STORAGE_FULL', message: "the database's disk is full: nothing was written; try again later" } })
    } finally {
      await sql`DROP TRIGGER test_disk_full ON parties`.execute(t.db)
      await sql`DROP FUNCTION test_disk_full()`.execute(t.db)
    }
  })

  it('answers malformed JSON with 400 INVALID_INPUT naming the body', async () => {
    for (const payload of ['{"kind": "utility",', '{bad json}', 'null x']) {
      const res = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload })
      expect(res.statusCode).toBe(400)
      expect(res.headers['content-type']).toMatch(/^application\/json/)
      expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message: 'body: not valid JSON' })
    }
  })

  it('refuses a prototype-poisoning body, saying which keys it does not take', async () => {
    for (const payload of ['{"kind":"utility","name":"X","__proto__":{"admin":true}}', '{"kind":"utility","name":"X","constructor":{"prototype":{"admin":true}}}']) {
      const res = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload })
      expect(res.statusCode).toBe(400)
      expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message: 'body: the keys __proto__ and constructor.prototype are not taken' })
    }
    expect(await t.db.selectFrom('parties').select('id').execute()).toEqual([])
  })

  it('refuses arrays and objects nested deeper than JSON_NESTING_MAX before any walk over them (a deep one overflowed the stack: 500)', async () => {
    const json = { ...OPERATOR, 'content-type': 'application/json' }
    // Within this harness's bodyBytesMax (1 KiB); 10,000 levels in 20 KB used to overflow the stack.
    for (const payload of ['['.repeat(500) + ']'.repeat(500), '{"a":'.repeat(150) + '1' + '}'.repeat(150)]) {
      for (const url of ['/admin/parties', '/portal/session']) {
        const res = await api.inject({ method: 'POST', url, headers: url === '/portal/session' ? { 'content-type': 'application/json' } : json, payload })
        expect(res.statusCode, url).toBe(400)
        expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message: `body: arrays and objects nested deeper than ${JSON_NESTING_MAX} levels` })
      }
    }
    // At the limit, the body is read, and its schema speaks.
    const atLimit = '{"kind":"utility","name":"X","x":' + '['.repeat(JSON_NESTING_MAX - 1) + ']'.repeat(JSON_NESTING_MAX - 1) + '}'
    const res = await api.inject({ method: 'POST', url: '/admin/parties', headers: json, payload: atLimit })
    expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message: 'x: unknown field' })
    // Brackets inside strings are text.
    const text = await api.inject({ method: 'POST', url: '/admin/parties', headers: json, payload: JSON.stringify({ kind: 'utility', name: '['.repeat(100) }) })
    expect(text.statusCode).toBe(201)
  })

  it('names a JSON null body as the body, not its first field', async () => {
    const res = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload: 'null' })
    expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message: 'body: expected an object' })
  })

  it('refuses query parameters on a route that takes none, by name', async () => {
    for (const url of ['/metrics?foo=bar', '/healthz?x=1', '/admin/settlements?month=2026-10']) {
      const method = url.startsWith('/admin') ? 'POST' : 'GET'
      const res = await api.inject({ method, url, headers: { ...OPERATOR, 'content-type': 'application/json' }, payload: method === 'POST' ? '{"month":"2026-10"}' : undefined })
      expect(res.statusCode, url).toBe(400)
      expect(errorOf(res).message, url).toBe(`${new URL(url, 'http://x').searchParams.keys().next().value}: unknown field`)
    }
  })

  it('says a query parameter was given more than once, rather than that it is not a string', async () => {
    for (const [url, message] of [
      ['/admin/parties?limit=1&limit=2', 'limit: given 2 times; give it once'],
      ['/admin/parties?kind=utility&kind=third_party&kind=utility', 'kind: given 3 times; give it once'],
      ['/admin/quarantine?meterId=a&meterId=a', 'meterId: given 2 times; give it once'],
    ] as const) {
      const res = await api.inject({ method: 'GET', url, headers: OPERATOR })
      expect(res.statusCode, url).toBe(400)
      expect(errorOf(res), url).toEqual({ code: 'INVALID_INPUT', message })
    }
  })

  it('refuses a number JSON parsing could round, which no field takes: a fraction, an exponent, over 15 digits', async () => {
    const offer = (price: string) =>
      `{"recipientId":"pty_x","purpose":"p","granularity":"daily","priceMicrosPerDatum":${price},"split":{"householdBps":10000,"operatorBps":0,"platformBps":0,"thirdParties":[]}}`
    for (const literal of ['999999999.99999999', '1e3', '1000.0', '-2.5E-3', '1234567890123456']) {
      const res = await api.inject({ method: 'POST', url: '/admin/offers', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload: offer(literal) })
      expect(res.statusCode, literal).toBe(400)
      expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message: expect.stringContaining(`priceMicrosPerDatum: ${literal} is not a whole number written out`) })
    }
    // Named by its whole path wherever it is; a bare value by the body.
    const nested = await api.inject({ method: 'POST', url: '/admin/offers', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload: offer('1').replace('"householdBps":10000', '"householdBps":1e4') })
    expect(errorOf(nested).message).toMatch(/^split\.householdBps: 1e4 is not a whole number written out/)
    // Only amounts are strings: a count of basis points is not told to be one.
    expect(errorOf(nested).message).not.toMatch(/strings/)
    expect(errorOf(await api.inject({ method: 'POST', url: '/admin/offers', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload: offer('1.0') })).message).toMatch(/; send amounts as strings$/)
    const inArray = offer('1').replace('"thirdParties":[]', '"thirdParties":[{"partyId":"pty_a","bps":1},{"partyId":"pty_b","bps":500.0}]')
    const deep = await api.inject({ method: 'POST', url: '/admin/offers', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload: inArray })
    expect(errorOf(deep).message).toMatch(/^split\.thirdParties\[1\]\.bps: 500\.0 is not a whole number written out/)
    // Where the field takes no number, or is no field at all, that is what is said (found by probing:
    // `name: 1.5 is not a whole number` for a name, `x.y: …` for an unknown field x).
    const json = { ...OPERATOR, 'content-type': 'application/json' }
    const misplaced: [string, string, string][] = [
      ['/admin/offers', offer('1').replace('"thirdParties":[]', '"thirdParties":[7, 1.5]'), 'split.thirdParties[0]: expected an object'],
      ['/admin/offers', '[1.5]', 'body: expected an object'],
      ['/admin/parties', '{"kind":"utility","name":1.5}', 'name: expected a string'],
      ['/admin/parties', '{"kind":123456789012345678901234567890,"name":"n"}', 'kind: expected one of utility, third_party'],
      ['/admin/parties', '{"kind":"utility","name":"n","x":{"y":1.5}}', 'x: unknown field'],
    ]
    for (const [url, payload, message] of misplaced) expect(errorOf(await api.inject({ method: 'POST', url, headers: json, payload })), payload).toEqual({ code: 'INVALID_INPUT', message })
    // A literal of thousands of digits is not repeated whole.
    const long = await api.inject({ method: 'POST', url: '/admin/offers', headers: json, payload: offer('1'.repeat(600)) })
    expect(errorOf(long).message).toMatch(/^priceMicrosPerDatum: 1{24}… is not a whole number written out/)
    // Numbers inside strings are text, and whole numbers pass on to the route (which finds no such recipient).
    const text = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload: '{"kind":"utility","name":"Grid 1.5e3 \\" 2.5"}' })
    expect(text.statusCode).toBe(201)
    const whole = await api.inject({ method: 'POST', url: '/admin/offers', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload: offer('1250') })
    expect(errorOf(whole)).toEqual({ code: 'INVALID_INPUT', message: 'recipientId: no such party' })
  })

  it('refuses a body with a key written twice in one object, which JSON parsing would keep the last of, naming it', async () => {
    const json = { ...OPERATOR, 'content-type': 'application/json' }
    const party = await api.inject({ method: 'POST', url: '/admin/parties', headers: json, payload: '{"kind":"utility","name":"x","kind":"third_party"}' })
    expect([party.statusCode, errorOf(party)]).toEqual([400, { code: 'INVALID_INPUT', message: 'kind: written twice in one object: send each field once' }])
    const nested = await api.inject({
      method: 'POST',
      url: '/admin/offers',
      headers: json,
      payload: '{"recipientId":"pty_x","purpose":"p","granularity":"daily","priceMicrosPerDatum":"1","split":{"householdBps":10000,"operatorBps":0,"householdBps":0,"platformBps":0,"thirdParties":[]}}',
    })
    expect(errorOf(nested)).toEqual({ code: 'INVALID_INPUT', message: 'split.householdBps: written twice in one object: send each field once' })
    expect(await t.db.selectFrom('parties').select('id').where('name', '=', 'x').execute()).toEqual([])
  })

  it('answers 400 naming the field for U+0000 or a lone surrogate anywhere in a request, which no field may hold', async () => {
    const json = { ...OPERATOR, 'content-type': 'application/json' }
    const cases: [string, string, string | undefined, string][] = [
      ['POST', '/admin/parties', '{"kind":"utility","name":"a\\u0000b"}', 'name'],
      ['POST', '/admin/parties', '{"kind":"utility","name":"a\\ud800b"}', 'name'],
      ['POST', '/portal/session', '{"email":"a\\u0000b@x.test","password":"x"}', 'email'],
      ['GET', '/admin/quarantine?meterId=m%00A', undefined, 'meterId'],
      ['PATCH', '/admin/occupancies/occ_%00x', '{"until":null}', 'id'],
    ]
    for (const [method, url, payload, field] of cases) {
      const res = await api.inject({ method: method as 'GET', url, headers: payload === undefined ? OPERATOR : json, payload })
      expect(res.statusCode, url).toBe(400)
      expect(errorOf(res), url).toEqual({ code: 'INVALID_INPUT', message: `${field}: must not contain U+0000 or a lone UTF-16 surrogate` })
    }
    // A key holding one is named by the object it is a key of.
    for (const [payload, field] of [['{"kind":"utility","\\u0000":1}', 'body'], ['{"kind":"utility","name":"n","split":{"a\\ud800":1}}', 'split']]) {
      const res = await api.inject({ method: 'POST', url: '/admin/parties', headers: json, payload })
      expect(errorOf(res), payload).toEqual({ code: 'INVALID_INPUT', message: `${field}: a key of it must not contain U+0000 or a lone UTF-16 surrogate` })
    }
    expect(await t.db.selectFrom('parties').select('id').execute()).toEqual([])
  })

  it('answers an empty JSON body with 400', async () => {
    const res = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload: '' })
    expect(res.statusCode).toBe(400)
    expect(errorOf(res).code).toBe('INVALID_INPUT')
  })

  it('takes a request without a body that says Content-Type: application/json, as generic clients send', async () => {
    const headers = { ...OPERATOR, 'content-type': 'application/json' }
    const gone = await api.inject({ method: 'DELETE', url: '/admin/consents/cns_unknown', headers, payload: '' })
    expect(errorOf(gone)).toEqual({ code: 'NOT_FOUND', message: expect.stringMatching(/cns_unknown/) })
    expect((await api.inject({ method: 'GET', url: '/admin/parties', headers, payload: '' })).statusCode).toBe(200)
    // A body sent where none is read is refused, whatever it holds (found by probing: JSON was read and
    // ignored, and anything else refused as not JSON).
    for (const [method, url, payload] of [
      ['DELETE', '/admin/consents/cns_unknown', '{bad'],
      ['DELETE', '/admin/consents/cns_unknown', '{}'],
      ['GET', '/admin/parties', '{"x":1}'],
      ['POST', '/admin/parties/pty_1/api-key', '{"x":1.5}'],
    ] as const) {
      const res = await api.inject({ method, url, headers, payload })
      expect([res.statusCode, errorOf(res)], `${method} ${url} ${payload}`).toEqual([400, { code: 'INVALID_INPUT', message: `body: ${method} ${url.replace(/(cns|pty)_[a-z0-9]+/, ':id')} takes no body` }])
    }
  })

  it('answers a JSON body in another charset than UTF-8 with 415, and takes UTF-8 named either way', async () => {
    const post = (type: string) => api.inject({ method: 'POST', url: '/admin/parties', headers: { ...OPERATOR, 'content-type': type }, payload: '{"kind":"utility","name":"Été"}' })
    for (const [type, charset] of [['application/json; charset=utf-16', 'utf-16'], ['application/json;charset="ISO-8859-1"', 'iso-8859-1']] as const) {
      const res = await post(type)
      expect([res.statusCode, errorOf(res)], type).toEqual([415, { code: 'UNSUPPORTED_MEDIA_TYPE', message: `content-type: charset ${charset} is not taken; send the JSON in UTF-8` }])
    }
    expect(await t.db.selectFrom('parties').select('id').execute()).toEqual([])
    for (const type of ['application/json; charset=UTF-8', 'application/json; charset=utf8']) expect((await post(type)).statusCode, type).toBe(201)
  })

  it('repeats names a client sent cut to SHOWN_NAME_CHARS_MAX, with characters that reorder or break text written out, and lists a few unknown fields', async () => {
    const json = { ...OPERATOR, 'content-type': 'application/json' }
    const long = await api.inject({ method: 'POST', url: '/admin/parties', headers: json, payload: JSON.stringify({ kind: 'utility', name: 'n', ['k'.repeat(900)]: 1 }) })
    expect(errorOf(long).message).toBe(`${'k'.repeat(SHOWN_NAME_CHARS_MAX)}…: unknown field`)
    const bidi = await api.inject({ method: 'POST', url: '/admin/parties', headers: json, payload: '{"kind":"utility","name":"n","a\\u202eb\\nc":1}' })
    expect(errorOf(bidi).message).toBe('a\\u202eb\\u000ac: unknown field')
    const many = await api.inject({ method: 'POST', url: '/admin/parties', headers: json, payload: JSON.stringify({ kind: 'utility', name: 'n', ...Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`f${i}`, 1])) }) })
    expect(errorOf(many).message).toBe('body: unknown fields f0, f1, f2, f3, f4 and 35 more')
    const query = await api.inject({ method: 'GET', url: `/admin/parties?${'q'.repeat(200)}=1&${'q'.repeat(200)}=2`, headers: OPERATOR })
    expect(errorOf(query).message).toBe(`${'q'.repeat(SHOWN_NAME_CHARS_MAX)}…: given 2 times; give it once`)
  })


  it('answers a body over bodyBytesMax with 413 in the same envelope, storing nothing', async () => {
    const payload = JSON.stringify({ kind: 'utility', name: 'x'.repeat(2000) })
    const res = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload })
    expect(res.statusCode).toBe(413)
    expect(errorOf(res)).toEqual({ code: 'PAYLOAD_TOO_LARGE', message: 'body: over the 1024 bytes this route takes' })
    expect(await t.db.selectFrom('parties').select('id').execute()).toEqual([])
  })

  it('answers a body that is not JSON with 415', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
      const res = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...OPERATOR, 'content-type': type }, payload: 'kind=utility&name=X' })
      expect(res.statusCode, type).toBe(415)
      expect(errorOf(res)).toEqual({ code: 'UNSUPPORTED_MEDIA_TYPE', message: 'content-type: expected application/json' })
    }
  })

  it('answers a method an address is not served by with 405 and Allow, and OPTIONS with the methods it is', async () => {
    for (const [method, url, allow] of [
      ['DELETE', '/admin/parties', 'GET, HEAD, POST, OPTIONS'],
      ['POST', '/healthz', 'GET, HEAD, OPTIONS'],
      ['PUT', '/admin/occupancies/occ_1?x=1', 'PATCH, OPTIONS'],
      ['POST', '/me/consents/cns_1/', 'DELETE, OPTIONS'],
      ['DELETE', '/statements/2026-10', 'GET, HEAD, OPTIONS'],
    ] as const) {
      const res = await api.inject({ method, url, headers: OPERATOR })
      expect(res.statusCode, `${method} ${url}`).toBe(405)
      expect(res.headers.allow).toBe(allow)
      expect(errorOf(res)).toEqual({ code: 'METHOD_NOT_ALLOWED', message: `${method} is not allowed here; allowed: ${allow}` })
    }
    const options = await api.inject({ method: 'OPTIONS', url: '/me/consents' })
    expect(options.statusCode).toBe(204)
    expect(options.headers.allow).toBe('GET, HEAD, POST, OPTIONS')
  })

  it('answers unknown routes with 404 NOT_FOUND', async () => {
    for (const [method, url] of [
      ['GET', '/nope'],
      ['GET', '/admin'],
      ['DELETE', '/nope'],
      ['OPTIONS', '/nope'],
      ['GET', '/admin/parties/x/y?z=1'],
    ] as const) {
      const res = await api.inject({ method, url, headers: OPERATOR })
      expect(res.statusCode, `${method} ${url}`).toBe(404)
      expect(errorOf(res).code).toBe('NOT_FOUND')
      expect(errorOf(res).message).toBe(`no route ${method} ${url.split('?')[0]}`)
    }
    // A browser following a mistyped address gets the portal's page, in its language; a program asking for JSON, the envelope.
    const browser = { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'accept-language': 'fr' }
    const page = await api.inject({ method: 'GET', url: '/nope', headers: browser })
    expect(page.statusCode).toBe(404)
    expect(page.headers['content-type']).toMatch(/^text\/html/)
    expect(page.body).toContain('Cette page n’existe pas.')
    expect(page.body).toContain('<a href="/">')
    const posted = await api.inject({ method: 'POST', url: '/nope', headers: browser })
    expect(errorOf(posted).code).toBe('NOT_FOUND')
  })

  it('answers a bad URL with 400 in the envelope', async () => {
    const res = await api.inject({ method: 'GET', url: '/admin/%E0%A4%A', headers: OPERATOR })
    expect(res.statusCode).toBe(400)
    expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message: 'url: not a valid URL' })
  })

  it('names a path parameter longer than its field takes, and answers 414 in the envelope past what the router reads', async () => {
    const long = await api.inject({ method: 'PATCH', url: `/admin/occupancies/${'o'.repeat(129)}`, headers: { ...OPERATOR, 'content-type': 'application/json' }, payload: '{"until":null}' })
    expect(long.statusCode).toBe(400)
    expect(errorOf(long).message).toMatch(/^id: must be at most 128 characters long/)
    const huge = await api.inject({ method: 'PATCH', url: `/admin/occupancies/${'o'.repeat(HTTP_PARAM_LENGTH_MAX + 1)}`, headers: OPERATOR })
    expect(huge.statusCode).toBe(414)
    expect(errorOf(huge)).toEqual({ code: 'URI_TOO_LONG', message: `url: a path segment is over ${HTTP_PARAM_LENGTH_MAX} characters` })
  })

  it('answers in the envelope too what the HTTP parser refuses (headers over its limit: 431; bytes that are not HTTP: 400), CONNECT (405), two Authorization or Host headers (400)', async () => {
    await api.app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = api.app.server.address() as AddressInfo
    const raw = (request: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', () => socket.write(request))
        let answer = ''
        socket.on('data', (chunk) => (answer += chunk.toString()))
        socket.on('end', () => resolve(answer))
        socket.on('error', reject)
      })
    const big = await raw(`GET /admin/parties?x=${'a'.repeat(17_000)} HTTP/1.1\r\nHost: x\r\n\r\n`)
    expect(big).toMatch(/^HTTP\/1\.1 431 /)
    expect(JSON.parse(big.slice(big.indexOf('\r\n\r\n') + 4))).toEqual({ error: { code: 'HEADERS_TOO_LARGE', message: 'request: the request line and headers are over 16 KiB' } })
    const junk = await raw('HELLO\r\n\r\n')
    expect(junk).toMatch(/^HTTP\/1\.1 400 /)
    expect(junk).toContain('application/json; charset=utf-8')
    expect(JSON.parse(junk.slice(junk.indexOf('\r\n\r\n') + 4))).toEqual({ error: { code: 'INVALID_INPUT', message: 'request: not valid HTTP' } })
    // CONNECT, which Node gives no route and closed unanswered (found by probing), gets the 405 of other methods.
    for (const [target, allow, message] of [
      ['example.org:443', '', 'CONNECT is not allowed here (this server is no proxy)'],
      ['/admin/parties', 'GET, HEAD, POST, OPTIONS', 'CONNECT is not allowed here; allowed: GET, HEAD, POST, OPTIONS'],
    ] as const) {
      const answer = await raw(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`)
      expect(answer, target).toMatch(/^HTTP\/1\.1 405 /)
      expect(answer).toContain(`\r\nAllow: ${allow}\r\n`)
      expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toEqual({ error: { code: 'METHOD_NOT_ALLOWED', message } })
    }
    // Two Authorization headers, of which Node keeps the first: refused, not decided by their order (found by probing).
    for (const [first, second] of [[`Bearer ${ADMIN_TOKEN}`, 'Bearer hh_x.y'], ['Bearer hh_x.y', `Bearer ${ADMIN_TOKEN}`]]) {
      const twice = await raw(`GET /admin/parties HTTP/1.1\r\nHost: x\r\nAuthorization: ${first}\r\nAuthorization: ${second}\r\nConnection: close\r\n\r\n`)
      expect(twice).toMatch(/^HTTP\/1\.1 400 /)
      expect(JSON.parse(twice.slice(twice.indexOf('\r\n\r\n') + 4))).toEqual({ error: { code: 'INVALID_INPUT', message: 'authorization: given 2 times; give it once' } })
    }
    // Two Host headers: refused, as RFC 9112 §3.2 asks.
    const hosts = await raw(`GET /healthz HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n`)
    expect(hosts).toMatch(/^HTTP\/1\.1 400 /)
    expect(JSON.parse(hosts.slice(hosts.indexOf('\r\n\r\n') + 4))).toEqual({ error: { code: 'INVALID_INPUT', message: 'host: given 2 times; give it once' } })
  })
})

/** An API over a database every query of which fails (`databaseUrl`: a server; null: PGlite without the schema), its log lines kept. */
function useFailingApi(databaseUrl: string | null): { lines: string[]; app: () => Awaited<ReturnType<typeof buildApi>> } {
  let handle: DatabaseHandle
  const lines: string[] = []
  let app: Awaited<ReturnType<typeof buildApi>>

  beforeAll(async () => {
    handle = await openDatabase({ databaseUrl, pgliteDir: null, pgliteFsync: false, poolSize: 1 })
    configureLogging({ level: 'info', target: { write: (line: string) => lines.push(line) } })
    app = await buildApi({
      config: envToConfig({ adminToken: ADMIN_TOKEN }),
      db: handle,
      metrics: createMetrics({ defaultMetrics: false }),
      health: async () => ({ broker: true, database: false }),
    })
  })

  afterAll(async () => {
    await app.close()
    await handle.close()
    configureLogging({ level: 'silent', target: process.stdout })
  })
  return { lines, app: () => app }
}

describe('internal failures', () => {
  // A database that answers, without the schema: every query fails with an error of ours to fix.
  const { lines, app } = useFailingApi(null)

  it('answers 500 INTERNAL with a constant message, logs the error, and never shows a stack', async () => {
    const res = await app().inject({ method: 'POST', url: '/admin/parties', headers: OPERATOR, payload: { kind: 'utility', name: 'X' } })
    expect(res.statusCode).toBe(500)
    expect(errorOf(res)).toEqual({ code: 'INTERNAL', message: 'internal error' })
    expect(res.body).not.toMatch(/at .*\.ts|stack|Error:/)
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; component: string; err?: { stack?: string } })
    const failure = logged.find((l) => l.msg === 'request failed')
    expect(failure?.component).toBe('api')
    expect(failure?.err?.stack).toBeTypeOf('string')
  })

  it('keeps the operator token and API keys out of the log', async () => {
    lines.length = 0
    await app().inject({ method: 'GET', url: '/admin/parties', headers: { ...OPERATOR, cookie: 'metershare_session=s3cr3t-session' } })
    await app().inject({ method: 'GET', url: '/admin/parties', headers: { authorization: 'Bearer pty_x.some-api-key-secret' } })
    const served = lines.map((l) => JSON.parse(l) as { msg: string; route?: string; status?: number })
    expect(served.filter((l) => l.msg === 'request served').map((l) => l.route)).toEqual(['/admin/parties', '/admin/parties'])
    const text = lines.join('\n')
    expect(text).not.toContain(ADMIN_TOKEN)
    expect(text).not.toContain('some-api-key-secret')
    expect(text).not.toContain('s3cr3t-session')
  })
})

describe('a database server that cannot be reached', () => {
  // Nothing listens there: every connection is refused, as while the server is stopped.
  const { lines, app } = useFailingApi(UNREACHABLE_DATABASE_URL)

  it('answers reads and writes 503 DATABASE_UNAVAILABLE with Retry-After, and logs it once, not per request', async () => {
    for (const [method, url] of [
      ['POST', '/admin/parties'],
      ['GET', '/admin/quarantine'],
      ['POST', '/admin/parties'],
    ] as const) {
      const res = await app().inject({ method, url, headers: OPERATOR, ...(method === 'POST' ? { payload: { kind: 'utility', name: 'X' } } : {}) })
      expect(res.statusCode).toBe(503)
      expect(res.headers['retry-after']).toBe('5')
      expect(errorOf(res)).toEqual({ code: 'DATABASE_UNAVAILABLE', message: 'the database cannot be reached now: try again later' })
    }
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; level: number; databaseUnreachable?: boolean })
    expect(logged.filter((l) => l.msg === 'request refused: the database cannot be reached')).toEqual([
      expect.objectContaining({ level: 40, databaseUnreachable: true }),
    ])
    expect(logged.filter((l) => l.msg === 'request failed')).toEqual([])
  })
})

describeDatabases('writes while the embedded database is below its free-space reserve', (t) => {
  let refused = true
  const api = useApi(t, { extra: { writesRefused: () => refused } })

  it('refuses writes with 503 STORAGE_FULL before they reach the database, and still answers reads', async () => {
    const res = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload: { kind: 'utility', name: 'U' } })
    expect(res.statusCode).toBe(503)
    expect(res.headers['retry-after']).toBe('60')
    expect(res.json().error.code).toBe('STORAGE_FULL')
    expect(await t.db.selectFrom('parties').select('id').execute()).toEqual([])
    expect((await api.inject({ method: 'GET', url: '/admin/parties', headers: OPERATOR })).statusCode).toBe(200)
    refused = false
    expect((await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload: { kind: 'utility', name: 'U' } })).statusCode).toBe(201)
  })
})

describe('toErrorAnswer', () => {
  it('keeps the code and status of our own errors', () => {
    expect(toErrorAnswer(new ConflictError('meterId: overlaps', ERROR_CODES.OCCUPANCY_OVERLAP))).toEqual({
      status: 409,
      body: { error: { code: 'OCCUPANCY_OVERLAP', message: 'meterId: overlaps' } },
    })
    expect(toErrorAnswer(new NotFoundError('meter m not found')).status).toBe(404)
  })

  it('hides the text of anything unexpected', () => {
    const answer = toErrorAnswer(new TypeError('cannot read x of undefined at /srv/secret/path.ts:12'))
    expect(answer).toEqual({ status: 500, body: { error: { code: 'INTERNAL', message: 'internal error' } } })
    expect(toErrorAnswer('a string').status).toBe(500)
    expect(toErrorAnswer(null).status).toBe(500)
  })
})
