import { beforeEach, expect, it } from 'vitest'
import { describeDatabases } from '../../support/database.ts'
import { OPERATOR, bearer, errorOf, provision, useApi, type TestWorld } from './api-harness.ts'
import { ingest } from './ingest-fixture.ts'

/**
 * Household A lives at the meter on 1 October 2026 (Paris), household B from 2 October on.
 * Hourly readings cover both days; each household sees only its own.
 */
const NOW = new Date('2026-10-10T00:00:00Z')
const A_FROM = '2026-10-01T00:00:00+02:00'
const MOVE = '2026-10-02T00:00:00+02:00'

function hourly(fromIso: string, hours: number, startIndex: number): { ts: string; values: Record<string, number> }[] {
  const start = Date.parse(fromIso)
  return Array.from({ length: hours }, (_, i) => ({
    ts: new Date(start + i * 3_600_000).toISOString(),
    values: { '1-0:1.8.0': startIndex + i * 500 },
  }))
}

describeDatabases('GET /me/readings', (t) => {
  const api = useApi(t, { clock: () => NOW })
  let w: TestWorld
  let a: { id: string; apiKey: string }
  let b: { id: string; apiKey: string }
  let stranger: { id: string; apiKey: string }

  beforeEach(async () => {
    w = await provision(api, 3)
    ;[a, b, stranger] = w.households as [typeof a, typeof b, typeof stranger]
    expect((await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: a.id, from: A_FROM, until: MOVE })).statusCode).toBe(201)
    expect((await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: b.id, from: MOVE })).statusCode).toBe(201)
    // Readings end an interval: the one stamped 01:00 measures 00:00–01:00. 48 hours from 1 Oct 01:00 Paris.
    await ingest(t, w.meterId, { readings: hourly('2026-09-30T23:00:00Z', 48, 10_000) }, NOW)
  })

  async function all(apiKey: string, query: string): Promise<unknown[]> {
    const items: unknown[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const res = await api.inject({ method: 'GET', url: `/me/readings?${query}${cursor === null ? '' : `&cursor=${cursor}`}`, headers: bearer(apiKey) })
      expect(res.statusCode, res.body).toBe(200)
      const body = res.json() as { items: unknown[]; nextCursor: string | null }
      items.push(...body.items)
      cursor = body.nextCursor
      expect(++pages).toBeLessThan(100)
    } while (cursor !== null)
    return items
  }

  it('answers the household its own load curve, shaped as the egress payloads', async () => {
    const res = await api.inject({
      method: 'GET',
      url: `/me/readings?meterId=${w.meterId}&from=2026-10-01T00:00:00%2B02:00&to=2026-10-01T03:00:00%2B02:00&granularity=load_curve`,
      headers: bearer(a.apiKey),
    })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({
      items: [
        { meterId: w.meterId, ts: '2026-09-30T23:00:00Z', granularity: 'load_curve', values: { '1-0:1.8.0': 10_000 } },
        { meterId: w.meterId, ts: '2026-10-01T00:00:00Z', granularity: 'load_curve', values: { '1-0:1.8.0': 10_500 } },
      ],
      nextCursor: null,
    })
  })

  it('pages through everything each household owns, and nothing it does not', async () => {
    const mine = (await all(a.apiKey, `meterId=${w.meterId}&limit=5`)) as { ts: string; meterId: string }[]
    expect(mine).toHaveLength(23)
    expect(mine.every((d) => d.meterId === w.meterId && Date.parse(d.ts) < Date.parse(MOVE))).toBe(true)
    expect(new Set(mine.map((d) => d.ts)).size).toBe(23)
    const theirs = (await all(b.apiKey, `meterId=${w.meterId}&limit=7`)) as { ts: string }[]
    expect(theirs).toHaveLength(25)
    expect(theirs.every((d) => Date.parse(d.ts) >= Date.parse(MOVE))).toBe(true)
    // Without meterId: every meter the household occupied, here the same one.
    expect(await all(a.apiKey, 'limit=1000')).toEqual(mine)
  })

  it('answers daily and monthly energy of its own days and months', async () => {
    const daily = await all(a.apiKey, `meterId=${w.meterId}&granularity=daily`)
    expect(daily).toEqual([{ meterId: w.meterId, day: '2026-10-01', granularity: 'daily', values: { '1-0:1.8.0': 11_000 } }])
    // B's first reading, stamped at its move-in, ends A's last interval: it closes 1 October, B's alone, with no index
    // of B's before it: it measures nothing, and 1 October is no day of B's. B's 2 October counts from it, through midnight.
    const theirDays = (await all(b.apiKey, `meterId=${w.meterId}&granularity=daily`)) as { day: string; values: Record<string, number> }[]
    expect(theirDays.map((d) => [d.day, d.values['1-0:1.8.0']])).toEqual([['2026-10-02', 12_000]])
    const theirMonths = (await all(b.apiKey, `meterId=${w.meterId}&granularity=monthly`)) as { month: string }[]
    expect(theirMonths.map((m) => m.month)).toEqual(['2026-10'])
    const monthly = await all(a.apiKey, `meterId=${w.meterId}&granularity=monthly`)
    expect(monthly).toEqual([{ meterId: w.meterId, month: '2026-10', granularity: 'monthly', values: { '1-0:1.8.0': 11_000 } }])
  })

  it('answers 404 for a meter the household never occupied, exactly as for a meter that does not exist', async () => {
    const foreign = await api.inject({ method: 'GET', url: `/me/readings?meterId=${w.meterId}`, headers: bearer(stranger.apiKey) })
    const missing = await api.inject({ method: 'GET', url: '/me/readings?meterId=NO-SUCH-METER', headers: bearer(stranger.apiKey) })
    expect(foreign.statusCode).toBe(404)
    expect(missing.statusCode).toBe(404)
    expect(errorOf(foreign)).toEqual({ code: 'NOT_FOUND', message: `meter ${w.meterId} not found` })
    expect(errorOf(missing)).toEqual({ code: 'NOT_FOUND', message: 'meter NO-SUCH-METER not found' })
    const nothing = await api.inject({ method: 'GET', url: '/me/readings', headers: bearer(stranger.apiKey) })
    expect(nothing.json()).toEqual({ items: [], nextCursor: null })
  })

  it('takes an offset whose + arrived as a space', async () => {
    const res = await api.inject({
      method: 'GET',
      url: `/me/readings?meterId=${w.meterId}&from=2026-10-01T00:00:00+02:00&to=2026-10-01T03:00:00+02:00`,
      headers: bearer(a.apiKey),
    })
    expect(res.statusCode).toBe(200)
    expect(res.json().items).toHaveLength(2)
  })

  it('answers 401 without a valid key and 403 to the operator and to parties', async () => {
    const url = `/me/readings?meterId=${w.meterId}`
    expect((await api.inject({ method: 'GET', url })).statusCode).toBe(401)
    expect((await api.inject({ method: 'GET', url, headers: bearer(`${a.id}.wrong`) })).statusCode).toBe(401)
    expect((await api.inject({ method: 'GET', url, headers: OPERATOR })).statusCode).toBe(403)
    expect((await api.inject({ method: 'GET', url, headers: bearer(w.utility.apiKey) })).statusCode).toBe(403)
  })

  it('answers an empty range with an empty page, and never a 400 naming a bound it was not sent', async () => {
    for (const query of [
      'from=2026-10-01T12:00:00Z&to=2026-10-01T12:00:00Z',
      'to=2000-01-01T00:00:00Z',
      'to=1990-06-01T00:00:00Z',
      'from=2027-01-01T00:00:00Z',
    ]) {
      for (const granularity of ['load_curve', 'daily', 'monthly']) {
        const res = await api.inject({ method: 'GET', url: `/me/readings?meterId=${w.meterId}&granularity=${granularity}&${query}`, headers: bearer(a.apiKey) })
        expect([res.statusCode, res.json()], `${granularity} ${query}`).toEqual([200, { items: [], nextCursor: null }])
      }
    }
    // The range just before is not empty.
    expect((await all(a.apiKey, `meterId=${w.meterId}&from=2026-10-01T12:00:00Z&to=2026-10-01T12:00:00.001Z`)).length).toBe(1)
  })

  it('refuses bad parameters, naming each one', async () => {
    const rfc = 'expected an RFC 3339 time with an offset, e.g. 2026-10-01T00:00:00Z'
    const cases: [string, string][] = [
      ['from=yesterday', `from: ${rfc}`],
      ['to=2026-10-02', `to: ${rfc}`],
      ['granularity=hourly', 'granularity: expected one of load_curve, daily, monthly'],
      ['from=2026-10-02T00:00:00Z&to=2026-10-01T00:00:00Z', 'to: must not be before from'],
      ['limit=1001', 'limit: must be at most 1000'],
      ['cursor=garbage', 'cursor: not a cursor of this listing'],
      ['meterIds=x', 'meterIds: unknown field'],
    ]
    for (const [query, message] of cases) {
      const res = await api.inject({ method: 'GET', url: `/me/readings?meterId=${w.meterId}&${query}`, headers: bearer(a.apiKey) })
      expect(res.statusCode, query).toBe(400)
      expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message })
    }
  })
})
