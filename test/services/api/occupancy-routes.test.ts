import { describe, expect, it } from 'vitest'
import { describeDatabases } from '../../support/database.ts'
import { bearer, errorOf, provision, useApi } from './api-harness.ts'

describeDatabases('occupancy endpoints', (t) => {
  const api = useApi(t)

  describe('POST /admin/occupancies', () => {
    it('registers an open move-in and answers its id', async () => {
      const w = await provision(api, 1)
      const res = await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: w.households[0]!.id, from: '2026-10-01T00:00:00+02:00' })
      expect(res.statusCode).toBe(201)
      const { id } = res.json() as { id: string }
      expect(id).toMatch(/^occ_/)
      const row = await t.db.selectFrom('occupancies').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
      expect(row.valid_from.toISOString()).toBe('2026-09-30T22:00:00.000Z')
      expect(row.valid_until).toBeNull()
    })

    it('registers a move-in that already ended', async () => {
      const w = await provision(api, 1)
      const res = await api.asOperator('POST', '/admin/occupancies', {
        meterId: w.meterId,
        householdId: w.households[0]!.id,
        from: '2026-01-01T00:00:00Z',
        until: '2026-06-01T00:00:00Z',
      })
      expect(res.statusCode).toBe(201)
      const row = await t.db.selectFrom('occupancies').selectAll().executeTakeFirstOrThrow()
      expect(row.valid_until?.toISOString()).toBe('2026-06-01T00:00:00.000Z')
    })

    it('answers 409 OCCUPANCY_OVERLAP when two households would share an instant, and accepts back-to-back periods', async () => {
      const w = await provision(api, 2)
      const [a, b] = w.households
      expect((await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: a!.id, from: '2026-01-01T00:00:00Z', until: '2026-06-01T00:00:00Z' })).statusCode).toBe(201)
      const clash = await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: b!.id, from: '2026-05-31T23:00:00Z' })
      expect(clash.statusCode).toBe(409)
      expect(errorOf(clash).code).toBe('OCCUPANCY_OVERLAP')
      const next = await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: b!.id, from: '2026-06-01T00:00:00Z' })
      expect(next.statusCode).toBe(201)
      expect(await t.db.selectFrom('occupancies').select('id').execute()).toHaveLength(2)
    })

    it('answers 409 OCCUPANCY_SAME_DAY_RETURN when a household would come back to the meter the local day it left it', async () => {
      const w = await provision(api, 1)
      const a = w.households[0]!
      expect((await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: a.id, from: '2026-01-01T00:00:00Z', until: '2026-06-01T08:00:00Z' })).statusCode).toBe(201)
      const back = await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: a.id, from: '2026-06-01T15:00:00Z' })
      expect(back.statusCode).toBe(409)
      expect(errorOf(back).code).toBe('OCCUPANCY_SAME_DAY_RETURN')
      expect(errorOf(back).message).toMatch(/^from: .* the same day \(2026-06-01\)/)
      expect(await t.db.selectFrom('occupancies').select('id').execute()).toHaveLength(1)
      expect((await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: a.id, from: '2026-06-01T08:00:00Z' })).statusCode).toBe(201)
    })

    it('refuses bad input, naming the field, and stores nothing', async () => {
      const w = await provision(api, 1)
      const ok = { meterId: w.meterId, householdId: w.households[0]!.id, from: '2026-01-01T00:00:00Z' }
      const rfc = 'expected an RFC 3339 time with an offset, e.g. 2026-10-01T00:00:00Z'
      const cases: [object, string][] = [
        [{ ...ok, from: '2026-01-01T00:00:00' }, `from: ${rfc}`],
        [{ ...ok, from: '2026-01-01' }, `from: ${rfc}`],
        [{ ...ok, from: '2026-13-01T00:00:00Z' }, `from: ${rfc}`],
        [{ ...ok, from: 1767225600000 }, 'from: expected a string'],
        [{ ...ok, until: 'tomorrow' }, `until: ${rfc}`],
        [{ ...ok, until: '2025-12-31T00:00:00Z' }, 'until: must be after from'],
        [{ ...ok, until: '2026-01-01T00:00:00Z' }, 'until: must be after from'],
        [{ householdId: ok.householdId, from: ok.from }, 'meterId: required'],
        [{ ...ok, meterId: 'NOPE' }, 'meterId: no such meter'],
        [{ ...ok, householdId: 'hh_nobody' }, 'householdId: no such household'],
        [{ ...ok, to: '2026-02-01T00:00:00Z' }, 'to: unknown field'],
        // Year 1's local first day reaches into year 0, which PostgreSQL has not (500); none of that era names a reading.
        [{ ...ok, from: '0001-01-01T00:00:00Z' }, 'from: expected a time from 1970-01-01T00:00:00Z to 2999-12-31T23:59:59Z'],
        [{ ...ok, from: '1969-12-31T23:59:59Z' }, 'from: expected a time from 1970-01-01T00:00:00Z to 2999-12-31T23:59:59Z'],
        [{ ...ok, until: '9999-12-31T23:59:59+23:00' }, 'until: expected a time from 1970-01-01T00:00:00Z to 2999-12-31T23:59:59Z'],
        // Found by probing: cut to the millisecond, a move-out moved without a word.
        [{ ...ok, until: '2026-10-01T00:00:00.123456789Z' }, 'until: finer than a millisecond: times are kept to the millisecond'],
        [{ ...ok, from: '2026-01-01T00:00:00.0001+01:00' }, 'from: finer than a millisecond: times are kept to the millisecond'],
      ]
      for (const [body, message] of cases) {
        const res = await api.asOperator('POST', '/admin/occupancies', body)
        expect(res.statusCode, JSON.stringify(body)).toBe(400)
        expect(errorOf(res)).toEqual({ code: 'INVALID_INPUT', message })
      }
      expect(await t.db.selectFrom('occupancies').select('id').execute()).toEqual([])
      // The ends of the range are taken.
      expect((await api.asOperator('POST', '/admin/occupancies', { ...ok, from: '1970-01-01T00:00:00Z', until: '2999-12-31T23:59:59Z' })).statusCode).toBe(201)
      // Zeros past the millisecond change nothing, and are taken.
      const zeros = await api.asOperator('GET', `/admin/quarantine?from=${encodeURIComponent('2026-10-01T00:00:00.123000Z')}`)
      expect(zeros.statusCode, zeros.body).toBe(200)
      const log = await api.inject({ method: 'GET', url: '/me/access-log?from=0000-01-01', headers: bearer(w.households[0]!.apiKey) })
      expect(errorOf(log)).toEqual({ code: 'INVALID_INPUT', message: 'from: expected a day from 1970-01-01 to 2999-12-31' })
    })

    it('is for the operator only', async () => {
      const w = await provision(api, 1)
      const body = { meterId: w.meterId, householdId: w.households[0]!.id, from: '2026-01-01T00:00:00Z' }
      expect((await api.inject({ method: 'POST', url: '/admin/occupancies', payload: body })).statusCode).toBe(401)
      expect((await api.inject({ method: 'POST', url: '/admin/occupancies', payload: body, headers: bearer(w.households[0]!.apiKey) })).statusCode).toBe(403)
      expect((await api.inject({ method: 'POST', url: '/admin/occupancies', payload: body, headers: bearer(w.utility.apiKey) })).statusCode).toBe(403)
      expect(await t.db.selectFrom('occupancies').select('id').execute()).toEqual([])
    })
  })

  describe('PATCH /admin/occupancies/{id}', () => {
    it('registers a move-out and answers the occupancy', async () => {
      const w = await provision(api, 1)
      const { id } = (await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: w.households[0]!.id, from: '2026-01-01T00:00:00Z' })).json()
      const res = await api.asOperator('PATCH', `/admin/occupancies/${id}`, { until: '2026-03-15T12:00:00+01:00' })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toEqual({ id, meterId: w.meterId, householdId: w.households[0]!.id, from: '2026-01-01T00:00:00Z', until: '2026-03-15T11:00:00Z' })
      const row = await t.db.selectFrom('occupancies').selectAll().executeTakeFirstOrThrow()
      expect(row.valid_until?.toISOString()).toBe('2026-03-15T11:00:00.000Z')
    })

    it('answers 404 for an unknown occupancy, 400 for a move-out before the move-in, 409 for a move-out into the next household', async () => {
      const w = await provision(api, 2)
      const [a, b] = w.households
      const first = (await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: a!.id, from: '2026-01-01T00:00:00Z', until: '2026-02-01T00:00:00Z' })).json()
      await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: b!.id, from: '2026-02-01T00:00:00Z' })

      // A misspelt field is named as the unknown field it is (the docs' own example), not as the required one it misses.
      const typo = await api.asOperator('PATCH', '/admin/occupancies/occ_nope', { untill: '2026-03-01T00:00:00Z' })
      expect(typo.statusCode).toBe(400)
      expect(errorOf(typo).message).toBe('untill: unknown field')
      const missing = await api.asOperator('PATCH', '/admin/occupancies/occ_nope', { until: '2026-03-01T00:00:00Z' })
      expect(missing.statusCode).toBe(404)
      expect(errorOf(missing).code).toBe('NOT_FOUND')

      const early = await api.asOperator('PATCH', `/admin/occupancies/${first.id}`, { until: '2025-12-01T00:00:00Z' })
      expect(early.statusCode).toBe(400)
      expect(errorOf(early).message).toMatch(/^until: must be after/)

      const late = await api.asOperator('PATCH', `/admin/occupancies/${first.id}`, { until: '2026-02-10T00:00:00Z' })
      expect(late.statusCode).toBe(409)
      expect(errorOf(late).code).toBe('OCCUPANCY_OVERLAP')

      const none = await api.asOperator('PATCH', `/admin/occupancies/${first.id}`, {})
      expect(none.statusCode).toBe(400)
      expect(errorOf(none).message).toBe('until: required')

      // A move-out that has happened is not undone: it ended the household's consents.
      const reopen = await api.asOperator('PATCH', `/admin/occupancies/${first.id}`, { until: null })
      expect(reopen.statusCode).toBe(409)
      expect(errorOf(reopen)).toEqual({
        code: 'CONFLICT',
        message: `until: the move-out at 2026-02-01T00:00:00Z has happened and ended the household's consents for meter ${w.meterId}; it may be moved to another past instant, and if the household stayed, register a new occupancy from 2026-02-01T00:00:00Z`,
      })
      // Moved into the future, it would be undone all the same.
      const later = await api.asOperator('PATCH', `/admin/occupancies/${first.id}`, { until: '2099-01-01T00:00:00Z' })
      expect(later.statusCode).toBe(409)
      expect(errorOf(later).code).toBe('CONFLICT')

      const row = await t.db.selectFrom('occupancies').selectAll().where('id', '=', first.id).executeTakeFirstOrThrow()
      expect(row.valid_until?.toISOString()).toBe('2026-02-01T00:00:00.000Z')
    })

    it('cancels a move-out still to come with "until": null, unless another household moves in after it', async () => {
      const w = await provision(api, 2)
      const [a, b] = w.households
      const { id } = (await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: a!.id, from: '2026-01-01T00:00:00Z' })).json()
      expect((await api.asOperator('PATCH', `/admin/occupancies/${id}`, { until: '2099-01-01T00:00:00Z' })).statusCode).toBe(200)
      const cancelled = await api.asOperator('PATCH', `/admin/occupancies/${id}`, { until: null })
      expect(cancelled.statusCode).toBe(200)
      expect(cancelled.json().until).toBeNull()
      // With the next household registered from the move-out, the move-out stands.
      await api.asOperator('PATCH', `/admin/occupancies/${id}`, { until: '2099-01-01T00:00:00Z' })
      expect((await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: b!.id, from: '2099-01-01T00:00:00Z' })).statusCode).toBe(201)
      const overlap = await api.asOperator('PATCH', `/admin/occupancies/${id}`, { until: null })
      expect(overlap.statusCode).toBe(409)
      expect(errorOf(overlap).code).toBe('OCCUPANCY_OVERLAP')
    })

    it('is for the operator only', async () => {
      const w = await provision(api, 1)
      const { id } = (await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: w.households[0]!.id, from: '2026-01-01T00:00:00Z' })).json()
      const body = { until: '2026-02-01T00:00:00Z' }
      expect((await api.inject({ method: 'PATCH', url: `/admin/occupancies/${id}`, payload: body })).statusCode).toBe(401)
      expect((await api.inject({ method: 'PATCH', url: `/admin/occupancies/${id}`, payload: body, headers: bearer(w.households[0]!.apiKey) })).statusCode).toBe(403)
    })
  })

  describe('GET /admin/occupancies', () => {
    it("lists a meter's occupancies, a household's, or all of them", async () => {
      const w = await provision(api, 2)
      await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: w.households[0]!.id, from: '2026-01-01T00:00:00Z', until: '2026-02-01T00:00:00Z' })
      await api.asOperator('POST', '/admin/occupancies', { meterId: w.meterId, householdId: w.households[1]!.id, from: '2026-02-01T00:00:00Z' })
      const res = await api.asOperator('GET', `/admin/occupancies?meterId=${w.meterId}`)
      expect(res.statusCode).toBe(200)
      expect(res.json().items.map((o: { householdId: string; until: string | null }) => [o.householdId, o.until])).toEqual([
        [w.households[0]!.id, '2026-02-01T00:00:00Z'],
        [w.households[1]!.id, null],
      ])
      expect(res.json().nextCursor).toBeNull()
      // Paged like every list.
      const first = (await api.asOperator('GET', `/admin/occupancies?meterId=${w.meterId}&limit=1`)).json() as { items: Array<{ householdId: string }>; nextCursor: string }
      expect(first.items.map((o) => o.householdId)).toEqual([w.households[0]!.id])
      const second = (await api.asOperator('GET', `/admin/occupancies?meterId=${w.meterId}&limit=1&cursor=${encodeURIComponent(first.nextCursor)}`)).json()
      expect(second).toEqual({ items: [expect.objectContaining({ householdId: w.households[1]!.id })], nextCursor: null })
      const forged = Buffer.from(JSON.stringify(['occupancies', w.meterId, 'yesterday', 'occ_x'])).toString('base64url')
      expect(errorOf(await api.asOperator('GET', `/admin/occupancies?meterId=${w.meterId}&cursor=${forged}`)).message).toBe('cursor: not a cursor this API returned for this listing')
      const byHousehold = await api.asOperator('GET', `/admin/occupancies?householdId=${w.households[1]!.id}`)
      expect(byHousehold.json().items).toHaveLength(1)
      // Unfiltered: every occupancy, by meter and move-in, page by page.
      const all: Array<{ meterId: string; householdId: string }> = []
      let cursor: string | null = null
      do {
        const page = (await api.asOperator('GET', `/admin/occupancies?limit=1${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`)).json() as {
          items: Array<{ meterId: string; householdId: string }>
          nextCursor: string | null
        }
        all.push(...page.items)
        cursor = page.nextCursor
      } while (cursor !== null)
      expect(all.map((o) => o.householdId)).toEqual([w.households[0]!.id, w.households[1]!.id])
    })
  })
})
