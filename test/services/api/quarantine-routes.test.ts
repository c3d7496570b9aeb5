import { beforeEach, expect, it } from 'vitest'
import { describeDatabases } from '../../support/database.ts'
import { bearer, errorOf, provision, useApi, type TestWorld } from './api-harness.ts'
import { ingest } from './ingest-fixture.ts'

describeDatabases('GET /admin/quarantine', (t) => {
  const api = useApi(t)
  let w: TestWorld
  let otherMeter: string

  beforeEach(async () => {
    w = await provision(api, 1)
    otherMeter = (await api.asOperator('POST', '/admin/meters', { operatorId: w.utility.id, commodity: 'electricity', intervalMinutes: 15, id: 'LINKY-2' })).json().id
    await ingest(t, w.meterId, '{"ts": "2026-10-01T00:00:00Z", "values": ', new Date('2026-10-01T00:01:00Z'))
    await ingest(t, w.meterId, { ts: '2026-10-01T00:15:00Z', values: { '9-9:9.9.9': 1 } }, new Date('2026-10-01T00:16:00Z'))
    await ingest(t, otherMeter, { ts: '2026-10-01T00:30:00Z', temperature: 21 }, new Date('2026-10-01T00:31:00Z'))
  })

  it('lists quarantined input in reception order, with reason and excerpt', async () => {
    const res = await api.asOperator('GET', '/admin/quarantine')
    expect(res.statusCode).toBe(200)
    const body = res.json() as { items: { meterId: string; receivedAt: string; reason: string; ts?: string; payloadExcerpt: string }[]; nextCursor: string | null }
    expect(body.nextCursor).toBeNull()
    expect(body.items.map((i) => [i.meterId, i.receivedAt, i.reason])).toEqual([
      [w.meterId, '2026-10-01T00:01:00Z', 'malformed_json'],
      [w.meterId, '2026-10-01T00:16:00Z', 'unknown_obis'],
      [otherMeter, '2026-10-01T00:31:00Z', 'invalid_schema'],
    ])
    expect(body.items[0]!.payloadExcerpt).toBe('{"ts": "2026-10-01T00:00:00Z", "values": ')
    expect(body.items[0]!.ts).toBeUndefined()
    expect(body.items[1]!.payloadExcerpt).toContain('9-9:9.9.9')
    // The contract's item, nothing more, unless the detail is asked for.
    expect(Object.keys(body.items[1]!).sort()).toEqual(['meterId', 'payloadExcerpt', 'reason', 'receivedAt', 'ts'])
  })

  it("gives each item's detail when asked (include=detail), naming what was wrong as the status topic said it", async () => {
    const res = await api.asOperator('GET', '/admin/quarantine?include=detail')
    const details = (res.json() as { items: { detail?: string }[] }).items.map((i) => i.detail)
    expect(details).toHaveLength(3)
    expect(details[0]).toMatch(/^not JSON: /)
    expect(details[1]).toMatch(/9-9:9\.9\.9/)
    expect(details[2]).toMatch(/temperature|values/)
    const bad = await api.asOperator('GET', '/admin/quarantine?include=everything')
    expect(bad.statusCode).toBe(400)
    expect(errorOf(bad).message).toMatch(/^include: /)
  })

  it('filters by meter and by reception time, and pages with a cursor', async () => {
    const byMeter = (await api.asOperator('GET', `/admin/quarantine?meterId=${otherMeter}`)).json()
    expect(byMeter.items.map((i: { reason: string }) => i.reason)).toEqual(['invalid_schema'])
    const window = (await api.asOperator('GET', '/admin/quarantine?from=2026-10-01T00:10:00Z&to=2026-10-01T02:30:00%2B02:00')).json()
    expect(window.items.map((i: { reason: string }) => i.reason)).toEqual(['unknown_obis'])
    const first = (await api.asOperator('GET', '/admin/quarantine?limit=2')).json()
    expect(first.items).toHaveLength(2)
    expect(first.nextCursor).toEqual(expect.any(String))
    const second = (await api.asOperator('GET', `/admin/quarantine?limit=2&cursor=${first.nextCursor}`)).json()
    expect(second.items.map((i: { meterId: string }) => i.meterId)).toEqual([otherMeter])
    expect(second.nextCursor).toBeNull()
  })

  it('refuses bad parameters, naming each one', async () => {
    const cases: [string, string][] = [
      ['from=today', 'from: expected an RFC 3339 time with an offset, e.g. 2026-10-01T00:00:00Z'],
      ['from=2026-10-02T00:00:00Z&to=2026-10-01T00:00:00Z', 'to: must not be before from'],
      ['limit=-1', 'limit: expected a whole number'],
      ['limit=0', 'limit: must be at least 1'],
      ['reason=conflict', 'reason: unknown field'],
    ]
    for (const [query, message] of cases) {
      const res = await api.asOperator('GET', `/admin/quarantine?${query}`)
      expect(res.statusCode, query).toBe(400)
      expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message })
    }
  })

  it('is for the operator only', async () => {
    expect((await api.inject({ method: 'GET', url: '/admin/quarantine' })).statusCode).toBe(401)
    expect((await api.inject({ method: 'GET', url: '/admin/quarantine', headers: bearer(w.utility.apiKey) })).statusCode).toBe(403)
    expect((await api.inject({ method: 'GET', url: '/admin/quarantine', headers: bearer(w.households[0]!.apiKey) })).statusCode).toBe(403)
  })
})
