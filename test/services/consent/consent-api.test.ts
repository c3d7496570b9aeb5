import { beforeEach, describe, expect, it } from 'vitest'
import { loadConsentFacts, loadOccupancyFacts, occupanciesByMeter } from '../../../services/consent/release-facts-repository.ts'
import { listReleasedReadings } from '../../../services/consent/released-readings-service.ts'
import { datumEndMs, datumInstantMs, releasedTo } from '../../../services/consent/release-rule.ts'
import type { ReleaseChange } from '../../../services/consent/release-view.ts'
import { addDays, datumDayOf } from '../../../shared/calendar.ts'
import type { EgressDatum } from '../../../shared/wire.ts'
import { describeDatabases } from '../../support/database.ts'
import { readingSeries, seedReadings } from '../../support/seed.ts'
import { bearer, errorOf, useApi, type TestApi } from '../api/api-harness.ts'

const TZ = 'Europe/Paris'

interface Party {
  id: string
  apiKey: string
}

/**
 * Through the HTTP API, as outside programs use it: offers, consents, the logs, the
 * recipients' endpoints; with the clock of the API set by each test.
 */
describeDatabases('consent endpoints', (t) => {
  let clock = new Date('2026-01-25T12:00:00Z')
  // What this process's broker was told to apply (in `up`, its release view), each a little after it was asked.
  const applied: ReleaseChange[] = []
  const releaseChanged = async (change: ReleaseChange): Promise<void> => {
    await new Promise((r) => setTimeout(r, 20))
    applied.push(change)
  }
  const api: TestApi = useApi(t, { clock: () => clock, extra: { releaseChanged } })

  let utility: Party
  let app: Party
  let lab: Party
  let h0: Party
  let h1: Party
  let h2: Party
  const A = 'METER-A'
  const B = 'METER-B'
  let occB1: string

  async function post(url: string, who: Party | 'operator', body: unknown) {
    const headers = who === 'operator' ? undefined : bearer(who.apiKey)
    return who === 'operator' ? api.asOperator('POST', url, body) : api.inject({ method: 'POST', url, headers, payload: body as object })
  }

  async function get(url: string, who: Party) {
    return api.inject({ method: 'GET', url, headers: bearer(who.apiKey) })
  }

  async function created(res: Awaited<ReturnType<typeof post>>): Promise<string> {
    expect(res.statusCode, res.body).toBe(201)
    return (res.json() as { id: string }).id
  }

  async function offer(recipient: Party, granularity: 'load_curve' | 'daily' | 'monthly' = 'load_curve', price = '100'): Promise<string> {
    return created(
      await post('/admin/offers', 'operator', {
        recipientId: recipient.id,
        purpose: 'energy advice',
        granularity,
        priceMicrosPerDatum: price,
        split: { householdBps: 6000, operatorBps: 2000, platformBps: 2000 },
      }),
    )
  }

  beforeEach(async () => {
    clock = new Date('2026-01-25T12:00:00Z')
    const party = async (kind: string, name: string) => (await post('/admin/parties', 'operator', { kind, name })).json() as Party
    utility = await party('utility', 'Grid and supply')
    app = await party('third_party', 'Energy advice app')
    lab = await party('third_party', 'Research lab')
    const household = async (i: number) =>
      (await post('/admin/households', 'operator', { name: `H${i}`, email: `h${i}@example.org`, password: `password-${i}-long` })).json() as Party
    h0 = await household(0)
    h1 = await household(1)
    h2 = await household(2)
    for (const id of [A, B]) await created(await post('/admin/meters', 'operator', { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 60, id }))
    await created(await post('/admin/occupancies', 'operator', { meterId: A, householdId: h0.id, from: '2026-01-01T00:00:00Z' }))
    occB1 = await created(await post('/admin/occupancies', 'operator', { meterId: B, householdId: h1.id, from: '2026-01-01T00:00:00Z' }))
    expect(applied.at(-1)).toEqual({ kind: 'occupancy', meterId: B })
  })

  it('withdraws an offer: no new consents and no longer offered, the consents granted keep it, its terms never change', async () => {
    const id = await offer(app)
    const grant = (who: Party) => post('/me/consents', who, { offerId: id, validUntil: '2027-01-01T00:00:00Z' })
    const kept = await created(await grant(h0))
    const withdrawn = await api.asOperator('DELETE', `/admin/offers/${id}`)
    expect(withdrawn.statusCode, withdrawn.body).toBe(204)

    const listed = (await api.asOperator('GET', '/admin/offers')).json().items.find((o: { id: string }) => o.id === id)
    expect(listed.withdrawnAt).toBe('2026-01-25T12:00:00Z')
    expect((await get('/me/offers', h1)).json().items.map((o: { id: string }) => o.id)).not.toContain(id)
    const refused = await grant(h1)
    expect([refused.statusCode, errorOf(refused)]).toEqual([
      409,
      { code: 'OFFER_WITHDRAWN', message: `offerId: offer ${id} was withdrawn at 2026-01-25T12:00:00Z; it takes no new consents` },
    ])
    expect((await get('/me/consents', h0)).json().items.find((c: { id: string }) => c.id === kept).status).toBe('active')

    // Again: nothing changes; an unknown offer is a 404; the database refuses any other change of an offer.
    clock = new Date('2026-01-26T12:00:00Z')
    expect((await api.asOperator('DELETE', `/admin/offers/${id}`)).statusCode).toBe(204)
    expect((await api.asOperator('GET', '/admin/offers')).json().items.find((o: { id: string }) => o.id === id).withdrawnAt).toBe('2026-01-25T12:00:00Z')
    expect((await api.asOperator('DELETE', '/admin/offers/off_0000000000000000')).statusCode).toBe(404)
    await expect(t.db.updateTable('offers').set({ withdrawn_at: new Date() }).where('id', '=', id).execute()).rejects.toThrow(/immutable/)
    await expect(t.db.updateTable('offers').set({ household_bps: 1 } as never).where('id', '=', id).execute()).rejects.toThrow(/immutable/)
  })

  it('says which meters of a consent a move-out has ended, to the household and to the recipient', async () => {
    await created(await post('/admin/meters', 'operator', { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 60, id: 'METER-C' }))
    const occC = await created(await post('/admin/occupancies', 'operator', { meterId: 'METER-C', householdId: h0.id, from: '2026-01-01T00:00:00Z' }))
    const id = await created(await post('/me/consents', h0, { offerId: await offer(app), validUntil: '2027-01-01T00:00:00Z' }))
    const mine = async () => (await get('/me/consents', h0)).json().items.find((c: { id: string }) => c.id === id)
    expect(await mine()).toMatchObject({ meterIds: [A, 'METER-C'], endedMeterIds: [], status: 'active' })
    expect((await api.asOperator('PATCH', `/admin/occupancies/${occC}`, { until: '2026-01-25T12:00:00Z' })).statusCode).toBe(200)
    expect(await mine()).toMatchObject({ meterIds: [A, 'METER-C'], endedMeterIds: ['METER-C'], status: 'active' })
    const theirs = (await get('/recipient/consents', app)).json().items.find((c: { id: string }) => c.id === id)
    expect(theirs).toMatchObject({ endedMeterIds: ['METER-C'] })
  })

  it('lets the operator publish offers, refusing a split that is not exactly 10,000 bps by its field', async () => {
    const bad = await post('/admin/offers', 'operator', {
      recipientId: app.id,
      purpose: 'p',
      granularity: 'daily',
      priceMicrosPerDatum: '10',
      split: { householdBps: 6000, operatorBps: 2000, platformBps: 1000, thirdParties: [{ partyId: lab.id, bps: 500 }] },
    })
    expect(bad.statusCode).toBe(400)
    expect(errorOf(bad)).toEqual({ code: 'INVALID_INPUT', message: 'split: the parts sum to 9500 basis points, not 10000' })
    const negative = await post('/admin/offers', 'operator', {
      recipientId: app.id,
      purpose: 'p',
      granularity: 'daily',
      priceMicrosPerDatum: '-1',
      split: { householdBps: 10000, operatorBps: 0, platformBps: 0 },
    })
    expect(errorOf(negative).message).toMatch(/^priceMicrosPerDatum: /)
    // A field of several accepted forms (a string or a number of micro-euros) left out is named as missing, like any other.
    const priceless = await post('/admin/offers', 'operator', { recipientId: app.id, purpose: 'p', granularity: 'daily', split: { householdBps: 10000, operatorBps: 0, platformBps: 0 } })
    expect(errorOf(priceless)).toEqual({ code: 'INVALID_INPUT', message: 'priceMicrosPerDatum: required' })
    const unknown = await post('/admin/offers', 'operator', {
      recipientId: app.id,
      purpose: 'p',
      granularity: 'daily',
      priceMicrosPerDatum: 5,
      split: { householdBps: 5000, operatorBps: 0, platformBps: 0, thirdParties: [{ partyId: 'pty_nobody', bps: 5000 }] },
    })
    expect(errorOf(unknown).message).toMatch(/^split\.thirdParties\[0\]\.partyId: /)
    expect((await api.asOperator('GET', '/admin/offers')).json()).toEqual({ items: [], nextCursor: null })

    const id = await offer(app, 'daily', '3')
    const listed = (await api.asOperator('GET', '/admin/offers')).json() as { items: unknown[] }
    expect(listed.items).toEqual([
      expect.objectContaining({ id, recipientId: app.id, granularity: 'daily', priceMicrosPerDatum: '3', split: { householdBps: 6000, operatorBps: 2000, platformBps: 2000, thirdParties: [] } }),
    ])
    const mine = (await get('/me/offers', h0)).json() as { items: unknown[] }
    expect(mine.items).toEqual([
      expect.objectContaining({ id, householdBps: 6000, householdMicrosPerDatum: '1', householdMicrosPer10000Datums: '18000' }),
    ])
    expect((await get('/me/offers', app)).statusCode).toBe(403)
    // Paged like every list, and filtered by recipient; a bad limit is refused, not ignored.
    const second = await offer(app, 'monthly', '4')
    const page1 = (await api.asOperator('GET', '/admin/offers?limit=1')).json() as { items: Array<{ id: string }>; nextCursor: string }
    expect(page1.items.map((o) => o.id)).toEqual([id])
    const page2 = (await api.asOperator('GET', `/admin/offers?limit=1&cursor=${encodeURIComponent(page1.nextCursor)}`)).json() as { items: Array<{ id: string }>; nextCursor: null }
    expect(page2).toEqual({ items: [expect.objectContaining({ id: second })], nextCursor: null })
    expect((await api.asOperator('GET', `/admin/offers?recipientId=${h0.id}`)).json()).toEqual({ items: [], nextCursor: null })
    expect((await api.asOperator('GET', '/admin/offers?limit=abc')).statusCode).toBe(400)
    // A household's offers too; an operator's cursor is not one of its listing.
    const mine1 = (await get('/me/offers?limit=1', h0)).json() as { items: Array<{ id: string; householdBps: number }>; nextCursor: string }
    expect(mine1.items.map((o) => [o.id, o.householdBps])).toEqual([[id, 6000]])
    const mine2 = (await get(`/me/offers?limit=1&cursor=${encodeURIComponent(mine1.nextCursor)}`, h0)).json() as { items: Array<{ id: string }>; nextCursor: null }
    expect(mine2).toEqual({ items: [expect.objectContaining({ id: second, householdMicrosPer10000Datums: '24000' })], nextCursor: null })
    expect(errorOf(await get(`/me/offers?cursor=${encodeURIComponent(page1.nextCursor)}`, h0)).message).toBe('cursor: not a cursor this API returned for this listing')
  })

  it('lets a household grant, see, and revoke a consent, each step in its log, and the recipient see it', async () => {
    const offerId = await offer(app)
    const tooLong = await post('/me/consents', h0, { offerId, validUntil: '2029-01-26T00:00:00Z' })
    expect(errorOf(tooLong).message).toMatch(/^validUntil: at most 3 years ahead/)
    const notMine = await post('/me/consents', h0, { offerId, meterIds: [B], validUntil: '2026-06-01T00:00:00Z' })
    expect(errorOf(notMine)).toEqual({ code: 'INVALID_INPUT', message: 'meterIds[0]: not a meter this household occupies now' })
    const noMeters = await post('/me/consents', h0, { offerId, meterIds: [], validUntil: '2026-06-01T00:00:00Z' })
    expect(errorOf(noMeters)).toEqual({ code: 'INVALID_INPUT', message: 'meterIds: must be at least 1 item (leave it out for all its meters)' })

    const id = await created(await post('/me/consents', h0, { offerId, validUntil: '2026-06-01T00:00:00Z', dataFrom: '2026-01-01T00:00:00Z' }))
    expect(applied.at(-1)).toEqual({ kind: 'consent', id })
    // The same offer again while it is in force: the recipient would pay twice for the same data.
    const twice = await post('/me/consents', h0, { offerId, validUntil: '2026-07-01T00:00:00Z' })
    expect(twice.statusCode).toBe(409)
    expect(errorOf(twice)).toEqual({
      code: 'CONSENT_OVERLAP',
      message: `offerId: consent ${id} already gives this recipient the household's load_curve data of all its meters stamped from 2026-01-01T00:00:00Z, in force until 2026-06-01T00:00:00Z; revoke it to grant other terms`,
    })
    const consents = (await get('/me/consents', h0)).json() as { items: Record<string, unknown>[]; nextCursor: null }
    expect(consents).toEqual({
      items: [
        expect.objectContaining({
          id,
          kind: 'offer',
          recipientId: app.id,
          recipientName: 'Energy advice app',
          allMeters: true,
          meterIds: [A],
          validFrom: '2026-01-25T12:00:00Z',
          validUntil: '2026-06-01T00:00:00Z',
          dataFrom: '2026-01-01T00:00:00Z',
          dataUntil: null,
          status: 'active',
          priceMicrosPerDatum: '100',
          householdBps: 6000,
        }),
      ],
      nextCursor: null,
    })
    expect(((await get('/recipient/consents', app)).json() as { items: { id: string }[] }).items.map((c) => c.id)).toEqual([id])
    expect(((await get('/recipient/consents', lab)).json() as { items: unknown[] }).items).toEqual([])
    expect((await get('/recipient/consents', h0)).statusCode).toBe(403)

    expect((await api.inject({ method: 'DELETE', url: `/me/consents/${id}`, headers: bearer(h1.apiKey) })).statusCode).toBe(404)
    clock = new Date('2026-01-26T08:00:00Z')
    const revoked = await api.inject({ method: 'DELETE', url: `/me/consents/${id}`, headers: bearer(h0.apiKey) })
    expect(revoked.statusCode).toBe(204)
    expect(revoked.body).toBe('')
    // Answered once the broker of this process forwards nothing more under it (a recipient got a datum after the 204).
    expect(applied.at(-1)).toEqual({ kind: 'consent', id })
    const log = (await get('/me/consent-log', h0)).json() as { items: Record<string, unknown>[] }
    expect(log.items.map((e) => [e.consentId, e.event, e.actor, e.at])).toEqual([
      [id, 'granted', h0.id, '2026-01-25T12:00:00Z'],
      [id, 'revoked', h0.id, '2026-01-26T08:00:00Z'],
    ])
    expect(((await get('/me/consent-log', h1)).json() as { items: unknown[] }).items).toEqual([])
  })

  it('lets the operator record a supplier’s legal basis, shown to the household, ended only by the operator', async () => {
    const res = await post('/admin/legal-basis-consents', 'operator', { recipientId: utility.id, householdId: h0.id, validUntil: '2027-01-01T00:00:00Z' })
    const id = await created(res)
    const [c] = ((await get('/me/consents', h0)).json() as { items: Record<string, unknown>[] }).items
    expect(c).toMatchObject({ id, kind: 'legal_basis', offerId: null, granularity: 'monthly', priceMicrosPerDatum: '0', householdBps: null })
    // The same supply contract recorded twice is one legal basis: the second is refused while the first is in force.
    const twice = await post('/admin/legal-basis-consents', 'operator', { recipientId: utility.id, householdId: h0.id, validUntil: '2027-06-01T00:00:00Z' })
    expect([twice.statusCode, errorOf(twice).message]).toEqual([409, expect.stringMatching(new RegExp(`^recipientId: consent ${id} already gives this recipient the household's monthly data`))])
    // The OpenAPI document says so too.
    const doc = (await api.inject({ method: 'GET', url: '/docs/openapi.json' })).json() as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> }
    expect(Object.keys(doc.paths['/admin/legal-basis-consents']!.post!.responses)).toContain('409')
    expect(((await get('/me/consents', h0)).json() as { items: unknown[] }).items).toHaveLength(1)
    expect((await api.inject({ method: 'DELETE', url: `/me/consents/${id}`, headers: bearer(h0.apiKey) })).statusCode).toBe(403)
    expect((await api.asOperator('DELETE', `/admin/consents/${id}`)).statusCode).toBe(204)
    // Ended, it may be recorded anew.
    await created(await post('/admin/legal-basis-consents', 'operator', { recipientId: utility.id, householdId: h0.id, validUntil: '2027-06-01T00:00:00Z' }))
    const third = await post('/admin/legal-basis-consents', 'operator', { recipientId: app.id, householdId: h0.id, validUntil: '2027-01-01T00:00:00Z' })
    expect(errorOf(third).message).toMatch(/^recipientId: /)
  })

  describe('GET /data/readings', () => {
    /**
     * Meter A: h0 throughout; h0 lets the app have [Jan 25, Feb 5) and the lab everything.
     * Meter B: h1 until Feb 3, then h2; h1 had consented (ended by the move-out), h2
     * consents reaching back to Jan 1 (so only its own data, from Feb 3).
     */
    async function scene(): Promise<void> {
      const appOffer = await offer(app)
      const labOffer = await offer(lab)
      await created(
        await post('/me/consents', h0, { offerId: appOffer, validUntil: '2026-12-01T00:00:00Z', dataFrom: '2026-01-25T00:00:00Z', dataUntil: '2026-02-05T00:00:00Z' }),
      )
      await created(await post('/me/consents', h0, { offerId: labOffer, validUntil: '2026-12-01T00:00:00Z', dataFrom: '2026-01-01T00:00:00Z' }))
      await created(await post('/me/consents', h1, { offerId: appOffer, validUntil: '2026-12-01T00:00:00Z', dataFrom: '2026-01-01T00:00:00Z' }))
      const moved = await api.asOperator('PATCH', `/admin/occupancies/${occB1}`, { until: '2026-02-03T00:00:00Z' })
      expect(moved.statusCode, moved.body).toBe(200)
      await created(await post('/admin/occupancies', 'operator', { meterId: B, householdId: h2.id, from: '2026-02-03T00:00:00Z' }))
      clock = new Date('2026-02-05T12:00:00Z')
      await created(await post('/me/consents', h2, { offerId: appOffer, validUntil: '2026-12-01T00:00:00Z', dataFrom: '2026-01-01T00:00:00Z' }))
      for (const meterId of [A, B]) await seedReadings(t.db, meterId, readingSeries({ start: '2026-01-20T00:00:00Z', count: 21 * 24 + 12 }), TZ)
      clock = new Date('2026-02-10T12:00:00Z')
    }

    async function pullAll(who: Party, query: string): Promise<EgressDatum[]> {
      const items: EgressDatum[] = []
      let cursor: string | null = null
      for (let pages = 0; pages < 100; pages++) {
        const res = await get(`/data/readings?${query}${cursor === null ? '' : `&cursor=${cursor}`}`, who)
        expect(res.statusCode, res.body).toBe(200)
        const body = res.json() as { items: EgressDatum[]; nextCursor: string | null }
        items.push(...body.items)
        cursor = body.nextCursor
        if (cursor === null) return items
      }
      throw new Error('too many pages')
    }

    /** What the release rule releases to a recipient at `clock`, from everything stored. */
    async function releasedByRule(recipientId: string, granularity: 'load_curve' | 'daily'): Promise<string[]> {
      const consents = await loadConsentFacts(t.db)
      const occupancies = occupanciesByMeter(await loadOccupancyFacts(t.db))
      const out: string[] = []
      if (granularity === 'load_curve') {
        for (const r of await t.db.selectFrom('readings').select(['meter_id', 'ts', 'household_id']).execute()) {
          if (r.household_id === null) continue
          const datum = { meterId: r.meter_id, granularity, atMs: r.ts.getTime(), householdId: r.household_id }
          if (releasedTo(recipientId, datum, consents, occupancies.get(r.meter_id) ?? [], clock.getTime()) !== null) out.push(`${r.meter_id} ${r.ts.toISOString()}`)
        }
      } else {
        for (const r of await t.db.selectFrom('daily_rollups').select(['meter_id', 'day', 'household_id']).execute()) {
          if (r.household_id === null) continue
          const atMs = datumInstantMs({ meterId: r.meter_id, granularity, day: r.day }, TZ)!
          // A day is released once it is over.
          if (datumInstantMs({ meterId: r.meter_id, granularity, day: addDays(r.day, 1) }, TZ)! > clock.getTime()) continue
          const datum = { meterId: r.meter_id, granularity, atMs, householdId: r.household_id, endMs: datumEndMs({ meterId: r.meter_id, granularity, day: r.day }, TZ)! }
          if (releasedTo(recipientId, datum, consents, occupancies.get(r.meter_id) ?? [], clock.getTime()) !== null) out.push(`${r.meter_id} ${r.day}`)
        }
      }
      return out.sort()
    }

    const key = (d: EgressDatum) => `${d.meterId} ${d.granularity === 'load_curve' ? new Date(d.ts).toISOString() : d.granularity === 'daily' ? d.day : d.month}`

    it('returns exactly the released load curve, page by page, and counts it in the access log and the metrics', async () => {
      await scene()
      // A HEAD answer sends no datum: the access log counts none of it.
      const head = await api.inject({ method: 'HEAD', url: '/data/readings?limit=50', headers: bearer(app.apiKey) })
      expect([head.statusCode, head.body]).toEqual([200, ''])
      const items = await pullAll(app, 'limit=50')
      const keys = items.map(key)
      expect(new Set(keys).size).toBe(keys.length)
      expect([...keys].sort()).toEqual(await releasedByRule(app.id, 'load_curve'))
      // A: [Jan 25, Feb 5) = 11 days; B: h2's own, from Feb 3 00:00 to the last reading (Feb 10 11:00).
      expect(keys.filter((k) => k.startsWith(A))).toHaveLength(11 * 24)
      expect(keys.filter((k) => k.startsWith(B))).toHaveLength(7 * 24 + 12)
      expect(keys.filter((k) => k.startsWith(B)).sort()[0]).toBe(`${B} 2026-02-03T00:00:00.000Z`)
      expect(items[0]).toEqual({ meterId: A, ts: expect.any(String), granularity: 'load_curve', values: { '1-0:1.8.0': expect.any(Number) } })

      // Counted per local day the datums belong to.
      const perDay = (meterId: string) => {
        const counts = new Map<string, number>()
        for (const d of items) if (d.meterId === meterId && d.granularity === 'load_curve') counts.set(datumDayOf(Date.parse(d.ts), TZ), (counts.get(datumDayOf(Date.parse(d.ts), TZ)) ?? 0) + 1)
        return [...counts].map(([day, datums]) => ({ day, datums }))
      }
      const log0 = (await get('/me/access-log?limit=100', h0)).json() as { items: { recipientId: string; meterId: string; channel: string; day: string; datums: number }[] }
      expect(log0.items.map(({ day, datums }) => ({ day, datums }))).toEqual(perDay(A))
      expect(log0.items.every((e) => e.recipientId === app.id && e.meterId === A && e.channel === 'http')).toBe(true)
      expect(log0.items.reduce((n, e) => n + e.datums, 0)).toBe(11 * 24)
      // The window runs from 01:00 Paris (00:00Z): each of its 11 days whole, 01:00 to the reading at midnight.
      expect(log0.items[0]).toMatchObject({ day: '2026-01-25', datums: 24, recipientName: 'Energy advice app' })
      expect(log0.items.map((e) => e.datums)).toEqual(Array(11).fill(24))
      const log2 = (await get('/me/access-log?limit=100', h2)).json() as { items: { meterId: string; day: string; datums: number }[] }
      expect(log2.items.map(({ day, datums }) => ({ day, datums }))).toEqual(perDay(B))
      expect(log2.items.reduce((n, e) => n + e.datums, 0)).toBe(7 * 24 + 12)
      expect(((await get('/me/access-log', h1)).json() as { items: unknown[] }).items).toEqual([])
      // Days as RFC 3339 times stand for the local days they fall in: 23:00Z on 25 January is the 26th in Paris.
      const byTime = (await get(`/me/access-log?limit=100&from=${encodeURIComponent('2026-01-25T23:00:00Z')}&to=2026-01-27T12:00:00%2B01:00`, h0)).json() as { items: { day: string }[] }
      expect(byTime.items.map((e) => e.day)).toEqual(['2026-01-26', '2026-01-27'])
      expect(errorOf(await get('/me/access-log?from=yesterday', h0))).toEqual({
        code: 'INVALID_INPUT',
        message: 'from: expected a day, YYYY-MM-DD, or an RFC 3339 time (2026-10-01T00:00:00Z)',
      })
      // A range backwards is refused, as for readings, not answered empty.
      const backwards = await get('/me/access-log?from=2026-01-31&to=2026-01-01', h0)
      expect(backwards.statusCode).toBe(400)
      expect(errorOf(backwards)).toEqual({ code: 'INVALID_INPUT', message: 'to: 2026-01-01 is before from (2026-01-31)' })
      expect(await api.metrics.registry.getSingleMetricAsString('metershare_datums_released_total')).toContain(
        `metershare_datums_released_total{channel="http"} ${items.length}`,
      )
    })

    it('reads a page’s worth of meters at a time: one meter a page gives the same data, in the same order, as a page for all', async () => {
      await scene()
      for (const granularity of ['load_curve', 'daily'] as const) {
        const pull = async (groupsPerPageMax: number | undefined, limit: number): Promise<{ items: EgressDatum[]; pages: number }> => {
          const items: EgressDatum[] = []
          let cursor: string | undefined
          for (let pages = 1; pages < 1_000; pages++) {
            const page = await listReleasedReadings(
              t.db,
              app.id,
              { from: new Date('2026-01-01T00:00:00Z'), to: clock, granularity, cursor, limit },
              { timezone: TZ, now: clock, groupsPerPageMax },
            )
            items.push(...page.items)
            if (page.nextCursor === null) return { items, pages }
            cursor = page.nextCursor
          }
          throw new Error('too many pages')
        }
        const whole = await pull(undefined, 1_000)
        const sliced = await pull(1, 1_000)
        expect(whole.items.map(key).sort()).toEqual(await releasedByRule(app.id, granularity))
        expect(sliced.items).toEqual(whole.items)
        // Two meters: each its own page, and no page more (the last meter's slice ends the listing).
        expect([whole.pages, sliced.pages]).toEqual([1, 2])
        // Pages cut inside a meter as well.
        expect((await pull(1, 7)).items).toEqual(whole.items)
      }
    })

    it('returns exactly the released daily data, a day counting when it lies in the window whole', async () => {
      await scene()
      const items = await pullAll(app, 'granularity=daily&limit=4')
      const keys = items.map(key).sort()
      expect(keys).toEqual(await releasedByRule(app.id, 'daily'))
      expect(keys.filter((k) => k.startsWith(A))).toEqual(
        ['01-26', '01-27', '01-28', '01-29', '01-30', '01-31', '02-01', '02-02', '02-03', '02-04'].map((d) => `${A} 2026-${d}`),
      )
      // The window runs from 01:00 on 25 January to 01:00 on 5 February, Paris time: neither day lies in it whole,
      // and the 5th's total would let out the readings of that day after the window's end.
      expect(keys.filter((k) => k.startsWith(B))[0]).toBe(`${B} 2026-02-03`)
      // The day under way (02-10, with data until noon) comes once it is over.
      expect(keys.filter((k) => k.startsWith(B)).at(-1)).toBe(`${B} 2026-02-09`)
      expect(await t.db.selectFrom('daily_rollups').select('day').where('meter_id', '=', B).where('day', '=', '2026-02-10').execute()).toHaveLength(1)
      expect(items.every((d) => d.granularity === 'daily')).toBe(true)
    })

    it('releases a month once it is over', async () => {
      await scene()
      // h2 has lived at B since 02-03; data from the start of January (Paris), so February's start lies in it.
      await created(await post('/me/consents', h2, { offerId: await offer(lab), validUntil: '2026-12-01T00:00:00Z', dataFrom: '2025-12-31T23:00:00Z' }))
      const pull = async (): Promise<Array<string | null>> =>
        (await pullAll(lab, `meterId=${B}&granularity=monthly&from=2025-12-31T23:00:00Z`)).map((d) => (d.granularity === 'monthly' ? d.month : null))
      expect(await pull()).toEqual([])
      // February is over by the clock, but B has sent nothing stamped after it: it may be catching up.
      clock = new Date('2026-03-01T12:00:00Z')
      expect(await pull()).toEqual([])
      // B sends March's first reading before its backlog: February is complete, but 18 of its days are
      // missing. Its total would grow as they come, and give a monthly recipient each day's energy.
      await seedReadings(t.db, B, readingSeries({ start: '2026-03-01T00:00:00Z', count: 1, firstIndex: 9_600 }), TZ)
      expect(await pull()).toEqual([])
      // The backlog, through the reading at midnight (Paris) that closes February: every day of h2's month is final.
      await seedReadings(t.db, B, readingSeries({ start: '2026-02-10T12:00:00Z', count: 444, firstIndex: 5_160 }), TZ)
      expect(await pull()).toEqual(['2026-02'])
    })

    it('narrows to one meter, and answers the same empty page for a meter without consent as for one that does not exist', async () => {
      await scene()
      const onlyB = await pullAll(app, `meterId=${B}&from=2026-02-04T00:00:00Z&to=2026-02-05T00:00:00Z`)
      expect(onlyB.map(key)).toHaveLength(24)
      expect(onlyB.every((d) => d.meterId === B)).toBe(true)

      // The lab holds no consent for B: B exists, but the lab learns nothing of it.
      const probes = [`meterId=${B}`, 'meterId=NO-SUCH-METER', `meterId=${B}&granularity=daily`, 'meterId=NO-SUCH-METER&granularity=daily']
      const answers = await Promise.all(probes.map((q) => get(`/data/readings?${q}`, lab)))
      for (const res of answers) {
        expect(res.statusCode).toBe(200)
        expect(res.body).toBe('{"items":[],"nextCursor":null}')
      }
      const badTo = await Promise.all([`meterId=${B}`, 'meterId=NO-SUCH-METER'].map((q) => get(`/data/readings?${q}&from=2026-02-05T00:00:00Z&to=2026-02-01T00:00:00Z`, lab)))
      expect(badTo[0]!.statusCode).toBe(400)
      expect(badTo[0]!.body).toBe(badTo[1]!.body)
      expect(((await get('/me/access-log', h1)).json() as { items: unknown[] }).items).toEqual([])
      // A range backwards is refused, as for readings, not answered empty.
      const backwards = await get('/me/access-log?from=2026-01-31&to=2026-01-01', h0)
      expect(backwards.statusCode).toBe(400)
      expect(errorOf(backwards)).toEqual({ code: 'INVALID_INPUT', message: 'to: 2026-01-01 is before from (2026-01-31)' })
    })

    it('stops releasing at once when the household revokes', async () => {
      await scene()
      const [c] = ((await get('/me/consents', h2)).json() as { items: { id: string }[] }).items
      expect((await pullAll(app, `meterId=${B}`)).length).toBeGreaterThan(0)
      expect((await api.inject({ method: 'DELETE', url: `/me/consents/${c!.id}`, headers: bearer(h2.apiKey) })).statusCode).toBe(204)
      expect(await pullAll(app, `meterId=${B}`)).toEqual([])
    })

    it('refuses a cursor of another listing or granularity, naming the field', async () => {
      await scene()
      const first = (await get('/data/readings?limit=5', app)).json() as { nextCursor: string }
      const other = await get(`/data/readings?limit=5&granularity=daily&cursor=${first.nextCursor}`, app)
      expect(errorOf(other).message).toMatch(/^cursor: /)
      expect(errorOf(await get('/data/readings?cursor=nonsense', app)).message).toMatch(/^cursor: /)
      expect((await get('/data/readings', h0)).statusCode).toBe(403)
    })

    it("refuses a cursor of another query, another meter's or another range's, instead of answering an empty last page (found by probing)", async () => {
      await scene()
      const ofA = (await get(`/data/readings?limit=5&meterId=${A}`, app)).json() as { nextCursor: string }
      const refusal = { code: 'INVALID_INPUT', message: 'cursor: made for another query of this listing (other filters, or another caller): start again without it' }
      for (const other of [`meterId=${B}`, '', `meterId=${A}&from=2026-01-21T00:00:00Z`, `meterId=${A}&to=2026-02-01T00:00:00Z`]) {
        const res = await get(`/data/readings?limit=5&${other}&cursor=${ofA.nextCursor}`, app)
        expect([other, res.statusCode, errorOf(res)]).toEqual([other, 400, refusal])
      }
      // The same query goes on, its `to` left out (now, which moves between pages) or not.
      expect((await get(`/data/readings?limit=5&meterId=${A}&cursor=${ofA.nextCursor}`, app)).statusCode).toBe(200)
      clock = new Date(clock.getTime() + 60_000)
      expect((await get(`/data/readings?limit=5&meterId=${A}&cursor=${ofA.nextCursor}`, app)).statusCode).toBe(200)
      // A household's own listing: its cursor is its own, for its query.
      const own = (await get(`/me/readings?limit=5&meterId=${A}`, h0)).json() as { nextCursor: string }
      expect(errorOf(await get(`/me/readings?limit=5&cursor=${own.nextCursor}`, h0))).toEqual(refusal)
      expect((await get(`/me/readings?limit=5&meterId=${A}&cursor=${own.nextCursor}`, h0)).statusCode).toBe(200)
    })
  })
})
