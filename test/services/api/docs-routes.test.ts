import { spawnSync } from 'node:child_process'
import type { AddressInfo } from 'node:net'
import { chromium } from 'playwright-core'
import { describe, expect, it } from 'vitest'
import type { OpenApiDocument, OpenApiOperation } from '../../../services/api/openapi.ts'
import { describeDatabases } from '../../support/database.ts'
import { hasCommand } from '../../support/tools.ts'
import { OPERATOR, provision, useApi } from './api-harness.ts'

/** Every HTTP route of CONTRACT.md (fastify syntax). */
const CONTRACT_ROUTES = [
  'POST /admin/parties',
  'POST /admin/households',
  'POST /admin/meters',
  'POST /admin/occupancies',
  'PATCH /admin/occupancies/:id',
  'POST /admin/offers',
  'GET /admin/quarantine',
  'POST /admin/settlements',
  'GET /me/readings',
  'GET /me/offers',
  'POST /me/consents',
  'DELETE /me/consents/:id',
  'GET /me/consents',
  'GET /me/consent-log',
  'GET /me/access-log',
  'GET /me/statements/:month',
  'GET /me/payouts',
  'GET /data/readings',
  'GET /recipient/consents',
  'GET /recipient/invoices/:month',
  'GET /healthz',
  'GET /metrics',
]

/** The ones this part of the API serves itself (others are added by their own route modules). */
const FOUNDATION_ROUTES = [
  'POST /admin/parties',
  'POST /admin/households',
  'POST /admin/meters',
  'POST /admin/occupancies',
  'PATCH /admin/occupancies/:id',
  'GET /admin/quarantine',
  'GET /me/readings',
  'GET /healthz',
  'GET /metrics',
  'GET /admin/parties',
  'GET /admin/households',
  'GET /admin/meters',
  'GET /admin/occupancies',
]

const toOpenApi = (route: string): [string, string] => {
  const [method, url] = route.split(' ') as [string, string]
  return [method.toLowerCase(), url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')]
}

function operations(doc: OpenApiDocument): { method: string; path: string; op: OpenApiOperation }[] {
  return Object.entries(doc.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ method, path, op })))
}

/** Chromium as CI installs it (a system package), as an absolute path for Playwright. */
function chromiumPath(): string | null {
  for (const command of ['chromium', 'chromium-browser', 'google-chrome']) {
    if (!hasCommand(command)) continue
    const found = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).stdout.trim()
    if (found !== '') return found
  }
  return null
}
const BROWSER = chromiumPath()

describeDatabases('GET /docs/openapi.json and GET /docs', (t) => {
  const api = useApi(t)

  async function openApi(): Promise<OpenApiDocument> {
    const res = await api.inject({ method: 'GET', url: '/docs/openapi.json' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^application\/json/)
    return res.json()
  }

  it('describes every registered route, with the routes of this foundation among them', async () => {
    const doc = await openApi()
    expect(doc.openapi).toBe('3.1.0')
    const registered = api.app.apiContext.routes.filter((r) => r.doc?.hidden !== true)
    expect(registered.length).toBeGreaterThanOrEqual(FOUNDATION_ROUTES.length)
    for (const r of registered) {
      const [method, path] = toOpenApi(`${r.method} ${r.url}`)
      expect(doc.paths[path]?.[method], `${method} ${path}`).toBeDefined()
    }
    for (const route of FOUNDATION_ROUTES) {
      const [method, path] = toOpenApi(route)
      expect(doc.paths[path]?.[method], route).toBeDefined()
    }
    // Every CONTRACT route that some module serves is in the document.
    const served = new Set(api.app.apiContext.routes.map((r) => `${r.method} ${r.url}`))
    for (const route of CONTRACT_ROUTES.filter((r) => served.has(r))) {
      const [method, path] = toOpenApi(route)
      expect(doc.paths[path]?.[method], route).toBeDefined()
    }
    expect(operations(doc)).toHaveLength(registered.length)
  })

  it('is internally consistent: unique operation ids, declared path parameters, resolvable references', async () => {
    const doc = await openApi()
    const ids = operations(doc).map((o) => o.op.operationId)
    expect(new Set(ids).size).toBe(ids.length)
    for (const { method, path, op } of operations(doc)) {
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort()
      const declared = op.parameters.filter((p) => p.in === 'path').map((p) => p.name).sort()
      expect(declared, `${method} ${path}`).toEqual(templated)
      expect(Object.keys(op.responses).some((s) => s.startsWith('2')), `${method} ${path}`).toBe(true)
      for (const requirement of op.security) for (const scheme of Object.keys(requirement)) expect(doc.components.securitySchemes[scheme]).toBeDefined()
    }
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"([^"]+)"/g)].map((m) => m[1]!)
    expect(refs.length).toBeGreaterThan(0)
    for (const ref of refs) {
      expect(ref).toMatch(/^#\/components\/schemas\//)
      expect(doc.components.schemas[ref.slice('#/components/schemas/'.length)], ref).toBeDefined()
    }
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' })
    expect(doc.components.securitySchemes.sessionCookie).toMatchObject({ type: 'apiKey', in: 'cookie' })
  })

  it('declares the errors any operation may answer, and a too long path segment where a path has a parameter, as the server sends them', async () => {
    const doc = await openApi()
    for (const { method, path, op } of operations(doc)) {
      if (op['x-roles'] === 'public' && Object.keys(op.responses).join() === 'default') continue
      for (const status of ['400', '408', '431', '500']) expect(op.responses[status], `${method} ${path} ${status}`).toBeDefined()
      expect(op.responses['414'] !== undefined, `${method} ${path} 414`).toBe(path.includes('{'))
    }
    const res = await api.asOperator('PATCH', `/admin/occupancies/${'x'.repeat(1_100)}`, { until: '2026-12-01T00:00:00Z' })
    expect(res.statusCode).toBe(414)
    expect(doc.paths['/admin/occupancies/{id}']?.patch?.responses['414']).toBeDefined()
  })

  it('takes its schemas from the validation itself', async () => {
    const doc = await openApi()
    const createParty = doc.paths['/admin/parties']!.post!
    const body = createParty.requestBody!.content['application/json'].schema as { properties: Record<string, { enum?: string[] }>; required: string[] }
    expect(body.properties.kind!.enum).toEqual(['utility', 'third_party'])
    expect(body.required.sort()).toEqual(['kind', 'name'])
    expect(createParty.requestBody!.required).toBe(true)
    // A body the route takes without (the household's key renewal with its API key) is not required.
    expect(doc.paths['/me/api-key']!.post!.requestBody!.required).toBe(false)
    // 503 STORAGE_FULL: any write, when the database's disk is full; 503 DATABASE_UNAVAILABLE: any request,
    // while the database server cannot be reached (docs/http-api.md, Errors).
    expect(Object.keys(createParty.responses).sort()).toEqual(['201', '400', '401', '403', '408', '413', '415', '431', '500', '503'])
    expect(createParty.responses['503']!.description).toMatch(/^Storage full.*DATABASE_UNAVAILABLE/)
    expect(doc.paths['/admin/parties']!.get!.responses['503']!.description).toMatch(/^The database server cannot be reached \(DATABASE_UNAVAILABLE\)/)
    expect(doc.paths['/portal/session']!.post!.responses['429']!.description).toMatch(/^Too many failed sign-ins/)
    expect(createParty.responses['400']!.content!['application/json']!.schema).toEqual({ $ref: '#/components/schemas/Error' })
    expect(createParty.security).toEqual([{ bearerAuth: [] }])

    const readings = doc.paths['/me/readings']!.get!
    expect(readings.parameters.map((p) => p.name).sort()).toEqual(['cursor', 'from', 'granularity', 'limit', 'meterId', 'to'])
    expect(readings.parameters.find((p) => p.name === 'granularity')!.schema).toMatchObject({ enum: ['load_curve', 'daily', 'monthly'] })
    expect(readings.security).toEqual([{ bearerAuth: [] }, { sessionCookie: [] }])

    const health = doc.paths['/healthz']!.get!
    expect(health.security).toEqual([])
    expect(Object.keys(health.responses).sort()).toEqual(['200', '400', '408', '431', '500', '503'])
  })

  it('documents answers that match what the routes really send', async () => {
    const w = await provision(api, 1)
    const answers = [
      { method: 'POST', url: '/admin/parties', res: await api.asOperator('POST', '/admin/parties', { kind: 'third_party', name: 'Lab' }) },
      { method: 'GET', url: '/admin/parties', res: await api.asOperator('GET', '/admin/parties?limit=1') },
      { method: 'GET', url: '/admin/meters', res: await api.asOperator('GET', '/admin/meters') },
      { method: 'GET', url: '/admin/households', res: await api.asOperator('GET', '/admin/households') },
      {
        method: 'POST',
        url: '/admin/occupancies',
        res: await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: w.households[0]!.id, from: '2026-01-01T00:00:00Z' }),
      },
      { method: 'GET', url: '/healthz', res: await api.inject({ method: 'GET', url: '/healthz' }) },
    ]
    for (const { method, url, res } of answers) {
      const route = api.app.apiContext.routes.find((r) => r.method === method && r.url === url)
      const schema = route?.doc?.response
      expect(schema, `${method} ${url}`).toBeDefined()
      const body = res.json()
      // Parsing drops undocumented fields: equality means every field sent is documented.
      expect(schema!.parse(body), `${method} ${url}`).toEqual(body)
    }
  })

  it('lists every media type a route answers: a statement as JSON, or CSV when asked', async () => {
    const doc = await openApi()
    const statement = doc.paths['/me/statements/{month}']!.get!
    expect(Object.keys(statement.responses['200']!.content!)).toEqual(['application/json', 'text/csv'])
    const metrics = doc.paths['/metrics']!.get!
    expect(Object.keys(metrics.responses['200']!.content!)).toEqual([expect.stringMatching(/^text\/plain/)])
  })

  it('serves a self-contained HTML page rendered from the document', async () => {
    const doc = await openApi()
    const res = await api.inject({ method: 'GET', url: '/docs' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(res.headers['content-security-policy']).toContain("default-src 'none'")
    const html = res.body
    expect(html).toMatch(/^<!doctype html>/)
    for (const { method, path } of operations(doc)) {
      expect(html, `${method} ${path}`).toContain(`<span class="m m-${method}">${method.toUpperCase()}</span> <code>${path.replace(/&/g, '&amp;')}</code>`)
    }
    expect(html).toContain('kind: expected one of utility, third_party')
    expect(html).toContain('<code>&quot;utility&quot;</code> | <code>&quot;third_party&quot;</code>')
    expect(html).not.toMatch(/<script|<img|<iframe|\bsrc=|url\(/i)
    for (const link of html.match(/<link[^>]*>/g) ?? []) expect(link).toMatch(/href="data:/)
    expect(html).not.toMatch(/https?:\/\//)
  })

  it('keeps the operator routes visible to anyone reading the docs, without needing credentials', async () => {
    const res = await api.inject({ method: 'GET', url: '/docs', headers: OPERATOR })
    expect(res.statusCode).toBe(200)
    expect((await api.inject({ method: 'GET', url: '/docs/openapi.json' })).statusCode).toBe(200)
  })

  describe.skipIf(BROWSER === null)(`in a browser${BROWSER === null ? ' (skipped: chromium not found; apt-get install chromium)' : ''}`, () => {
    it('renders the page with its sections and no failed or outside request', async () => {
      await api.app.listen({ port: 0, host: '127.0.0.1' })
      const { port } = api.app.server.address() as AddressInfo
      const browser = await chromium.launch({ executablePath: BROWSER!, args: ['--no-sandbox'] })
      try {
        const page = await browser.newPage()
        const requests: string[] = []
        page.on('request', (r) => requests.push(r.url()))
        const errors: string[] = []
        page.on('console', (m) => {
          if (m.type() === 'error') errors.push(m.text())
        })
        const response = await page.goto(`http://127.0.0.1:${port}/docs`)
        expect(response?.status()).toBe(200)
        expect(await page.title()).toBe('Metershare HTTP API')
        expect(await page.locator('article.op').count()).toBe(api.app.apiContext.routes.filter((r) => r.doc?.hidden !== true).length)
        expect(await page.locator('#errors').isVisible()).toBe(true)
        expect(await page.locator('article#postAdminParties h3').innerText()).toContain('/admin/parties')
        expect(requests).toEqual([`http://127.0.0.1:${port}/docs`])
        expect(errors).toEqual([])
      } finally {
        await browser.close()
      }
    })
  })
})
