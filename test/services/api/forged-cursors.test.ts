import { expect, it } from 'vitest'
import { describeDatabases } from '../../support/database.ts'
import { OPERATOR, bearer, errorOf, provision, useApi } from './api-harness.ts'

const cursorOf = (key: unknown[]): string => Buffer.from(JSON.stringify(key)).toString('base64url')

describeDatabases('forged cursors', (t) => {
  const api = useApi(t, { clock: () => new Date('2026-11-15T00:00:00Z') })

  it('are answered 400 when their key is of the right shape but no time, day or id the database can read', async () => {
    const w = await provision(api)
    const household = w.households[0]!
    await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: household.id, from: '2026-01-01T00:00:00Z' })
    const me = bearer(household.apiKey)
    const cases: [string, unknown[], Record<string, string>][] = [
      ['/admin/quarantine', ['quarantine', '2026-13-45T99:99:99.000000Z', '1'], OPERATOR],
      ['/admin/quarantine', ['quarantine', '0000-01-01T00:00:00.000000Z', '1'], OPERATOR],
      ['/admin/quarantine', ['quarantine', '2026-10-01T00:00:00.000000Z', '9999999999999999999'], OPERATOR],
      [`/me/readings?meterId=${w.meterId}&granularity=load_curve`, ['readings.load_curve', w.meterId, '2026-10-01T24:00:00.000000Z'], me],
      [`/me/readings?meterId=${w.meterId}&granularity=load_curve`, ['readings.load_curve', w.meterId, '0000-01-01T00:00:00.000000Z'], me],
      [`/me/readings?meterId=${w.meterId}&granularity=daily`, ['readings.daily', w.meterId, '0000-01-01', household.id], me],
      ['/me/access-log', ['access_log', '0000-01-01', w.utility.id, w.meterId, 'readings'], me],
    ]
    for (const [url, key, headers] of cases) {
      const res = await api.inject({ method: 'GET', url: `${url}${url.includes('?') ? '&' : '?'}cursor=${cursorOf(key)}`, headers })
      expect(res.statusCode, `${url} ${JSON.stringify(key)}`).toBe(400)
      expect(errorOf(res).message).toMatch(/^cursor: /)
    }
  })
})
