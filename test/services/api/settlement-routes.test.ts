import { describe, expect, it } from 'vitest'
import { wantsCsv } from '../../../services/api/routes/settlement-routes.ts'
import { addDays, daysOfMonth, startOfDayMs } from '../../../shared/calendar.ts'
import { describeDatabases } from '../../support/database.ts'
import { TZ, hourly, ingest, paris } from '../settlement/settlement-fixtures.ts'
import { bearer, errorOf, useApi } from './api-harness.ts'

/**
 * Settlement over HTTP, from a world built through the API itself: a household grants and
 * revokes consents, its meter's readings go through the real ingest path, the operator
 * settles October, and the statement is checked line by line against a computation
 * written out here from those readings, consents and offers.
 */
describeDatabases('settlement endpoints', (t) => {
  let clock = paris('2026-09-01')
  const api = useApi(t, { clock: () => clock })

  async function created(method: 'POST', url: string, body: unknown, headers?: Record<string, string>): Promise<{ id: string; apiKey?: string }> {
    const res = headers === undefined ? await api.asOperator(method, url, body) : await api.inject({ method, url, headers, payload: body as object })
    expect(res.statusCode, res.body).toBe(201)
    return res.json()
  }

  async function october() {
    clock = paris('2026-09-01')
    const utility = await created('POST', '/admin/parties', { kind: 'utility', name: 'Grid' })
    const advice = (await created('POST', '/admin/parties', { kind: 'third_party', name: 'Advice App' })) as { id: string; apiKey: string }
    const supplier = (await created('POST', '/admin/parties', { kind: 'utility', name: 'Supplier' })) as { id: string; apiKey: string }
    const charity = await created('POST', '/admin/parties', { kind: 'third_party', name: 'Charity' })
    const alice = (await created('POST', '/admin/households', { name: 'Alice', email: 'alice@example.org', password: 'alice-password' })) as {
      id: string
      apiKey: string
    }
    const bob = (await created('POST', '/admin/households', { name: 'Bob', email: 'bob@example.org', password: 'bob-password' })) as {
      id: string
      apiKey: string
    }
    const meter = (await api.asOperator('POST', '/admin/meters', { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 60 })).json() as { id: string }
    const bobsMeter = (await api.asOperator('POST', '/admin/meters', { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 60 })).json() as {
      id: string
    }
    await created('POST', '/admin/occupancies', { meterId: meter.id, householdId: alice.id, from: paris('2026-09-01').toISOString() })
    await created('POST', '/admin/occupancies', { meterId: bobsMeter.id, householdId: bob.id, from: paris('2026-09-01').toISOString() })
    const offerA = await created('POST', '/admin/offers', {
      recipientId: advice.id,
      purpose: 'energy advice',
      granularity: 'load_curve',
      priceMicrosPerDatum: '1000',
      split: { householdBps: 5_000, operatorBps: 2_000, platformBps: 2_000, thirdParties: [{ partyId: charity.id, bps: 1_000 }] },
    })
    const offerB = await created('POST', '/admin/offers', {
      recipientId: supplier.id,
      purpose: 'daily totals',
      granularity: 'daily',
      priceMicrosPerDatum: '7',
      split: { householdBps: 3_333, operatorBps: 3_333, platformBps: 3_334, thirdParties: [] },
    })
    const validUntil = paris('2027-09-01').toISOString()

    clock = paris('2026-10-01')
    const legal = await created('POST', '/admin/legal-basis-consents', { recipientId: supplier.id, householdId: alice.id, validUntil })
    clock = paris('2026-10-10', 12, 30)
    const consentA = await created('POST', '/me/consents', { offerId: offerA.id, validUntil }, bearer(alice.apiKey))
    clock = paris('2026-10-15')
    const consentB = await created('POST', '/me/consents', { offerId: offerB.id, validUntil, dataFrom: paris('2026-09-01').toISOString() }, bearer(alice.apiKey))
    clock = paris('2026-10-20', 9)
    expect((await api.inject({ method: 'DELETE', url: `/me/consents/${consentB.id}`, headers: bearer(alice.apiKey) })).statusCode).toBe(204)
    // Bob consents too: his lines must not show in Alice's statement.
    await created('POST', '/me/consents', { offerId: offerA.id, validUntil }, bearer(bob.apiKey))

    // Readings up to October 30th now; the 31st arrives late.
    const times = hourly(paris('2026-09-30'), paris('2026-10-31'))
    const lateTimes = hourly(paris('2026-10-31'), paris('2026-11-01'))
    await ingest(t.db, t.dialect, meter.id, 'electricity', times)
    await ingest(t.db, t.dialect, bobsMeter.id, 'electricity', hourly(paris('2026-10-21'), paris('2026-10-22')))
    return { utility, advice, supplier, charity, alice, bob, meter, offerA, offerB, legal, consentA, consentB, times, lateTimes }
  }

  it('answers a statement whose every line matches the computation written out from readings, consents and offers', async () => {
    const w = await october()
    clock = paris('2026-11-02')
    const settled = await api.asOperator('POST', '/admin/settlements', { month: '2026-10' })
    expect(settled.statusCode, settled.body).toBe(200)

    // Written out. Load curve: every reading from the grant (10th, 12:30) to the end of what was stored.
    const grantA = paris('2026-10-10', 12, 30).getTime()
    const nA = w.times.filter((ts) => ts.getTime() >= grantA).length
    // Daily: days starting inside the data window (from September 1st) that were complete, or the consent begun,
    // before the revocation on the 20th at 09:00.
    const nB = daysOfMonth('2026-10').filter((d) => {
      const releasedAt = Math.max(startOfDayMs(addDays(d, 1), TZ), paris('2026-10-15').getTime())
      return startOfDayMs(d, TZ) >= paris('2026-09-01').getTime() && releasedAt < paris('2026-10-20', 9).getTime()
    }).length
    expect([nA, nB]).toEqual([11 + 20 * 24 + 1, 19]) // 10th 13:00 … 30th 23:00, with the 25-hour 25th
    const grossA = nA * 1_000
    // 19 × 7 = 133 → 3333/3333/3334 bps: 44.3289 + 44.3289 + 44.3422; the one unit left goes to the largest remainder.
    const grossB = 133
    const shareB = 44
    const expectedLines = [
      { recipientId: w.advice.id, offerId: w.offerA.id, granularity: 'load_curve', data: nA, grossMicros: String(grossA), shareMicros: String(grossA / 2) },
      { recipientId: w.supplier.id, offerId: w.offerB.id, granularity: 'daily', data: nB, grossMicros: String(grossB), shareMicros: String(shareB) },
      // No line for the supplier's legal basis (monthly): October is not complete until the meter sends data stamped
      // at its end, and it has sent nothing after the 30th yet.
    ].sort((a, b) => (a.recipientId < b.recipientId ? -1 : a.recipientId > b.recipientId ? 1 : a.offerId === null ? 1 : b.offerId === null ? -1 : 0))
    const totalMicros = String(grossA / 2 + shareB)

    expect(settled.json()).toEqual({ runId: expect.stringMatching(/^run_/), month: '2026-10', journals: 1, grossMicros: String(grossA + grossB + 24_000) })

    const statement = await api.inject({ method: 'GET', url: '/me/statements/2026-10', headers: bearer(w.alice.apiKey) })
    expect(statement.statusCode).toBe(200)
    expect(statement.json()).toEqual({ month: '2026-10', lines: expectedLines, adjustmentsMicros: '0', adjustments: [], totalMicros })

    const csv = await api.inject({ method: 'GET', url: '/me/statements/2026-10?format=csv', headers: bearer(w.alice.apiKey) })
    expect(csv.statusCode).toBe(200)
    expect(csv.headers['content-type']).toBe('text/csv; charset=utf-8')
    expect(csv.headers['content-disposition']).toBe('attachment; filename="statement-2026-10.csv"')
    expect(csv.body).toBe(
      [
        'month,kind,recipientId,offerId,granularity,data,grossMicros,shareMicros',
        ...expectedLines.map((l) => `2026-10,line,${l.recipientId},${l.offerId ?? ''},${l.granularity},${l.data},${l.grossMicros},${l.shareMicros}`),
        '2026-10,adjustments,,,,,,0',
        `2026-10,total,,,,,,${totalMicros}`,
        '',
      ].join('\r\n'),
    )
    const byAccept = await api.inject({ method: 'GET', url: '/me/statements/2026-10', headers: { ...bearer(w.alice.apiKey), accept: 'text/csv' } })
    expect(byAccept.body).toBe(csv.body)

    expect((await api.inject({ method: 'GET', url: '/me/payouts', headers: bearer(w.alice.apiKey) })).json()).toEqual({ payouts: [], balanceMicros: totalMicros })

    const invoiceA = await api.inject({ method: 'GET', url: '/recipient/invoices/2026-10', headers: bearer(w.advice.apiKey) })
    expect(invoiceA.statusCode).toBe(200)
    const bobLine = { offerId: w.offerA.id, granularity: 'load_curve', data: 24, grossMicros: '24000' }
    expect(invoiceA.json()).toEqual({
      month: '2026-10',
      lines: expect.arrayContaining([{ consentId: w.consentA.id, offerId: w.offerA.id, granularity: 'load_curve', data: nA, grossMicros: String(grossA) }, expect.objectContaining(bobLine)]),
      adjustmentsMicros: '0',
      adjustments: [],
      totalMicros: String(grossA + 24_000),
    })
    const invoiceB = (await api.inject({ method: 'GET', url: '/recipient/invoices/2026-10', headers: bearer(w.supplier.apiKey) })).json()
    expect(invoiceB.totalMicros).toBe('133')
    // The legal basis's October is not complete yet (above).
    expect(invoiceB.lines.map((l: { consentId: string; data: number }) => [l.consentId, l.data])).toEqual([[w.consentB.id, 19]])
  })

  it('shows late data of a closed month as adjustments in the month they were booked in', async () => {
    const w = await october()
    clock = paris('2026-11-02')
    const first = (await api.asOperator('POST', '/admin/settlements', { month: '2026-10' })).json()
    const again = (await api.asOperator('POST', '/admin/settlements', { month: '2026-10' })).json()
    expect(again).toEqual({ ...first, journals: 0 })

    // The late day arrives in two halves, each settled: two runs booked in November for one consent's line.
    clock = paris('2026-11-04')
    await ingest(t.db, t.dialect, w.meter.id, 'electricity', w.lateTimes.slice(0, 12))
    expect((await api.asOperator('POST', '/admin/settlements', { month: '2026-10' })).json().journals).toBe(1)
    clock = paris('2026-11-05')
    await ingest(t.db, t.dialect, w.meter.id, 'electricity', w.lateTimes.slice(12))
    const adjusted = (await api.asOperator('POST', '/admin/settlements', { month: '2026-10' })).json()
    expect(adjusted.journals).toBe(1)
    expect(adjusted.runId).not.toBe(first.runId)

    // October's statement is as it was closed. November, still open, shows what was booked in it so far (the balance
    // counts it already); a month with nothing booked has no statement.
    const closedOctober = (await api.inject({ method: 'GET', url: '/me/statements/2026-10', headers: bearer(w.alice.apiKey) })).json()
    expect(closedOctober.adjustmentsMicros).toBe('0')
    const late = String(w.lateTimes.length * 500)
    const owed = String(w.lateTimes.length * 1_000)
    const statementOf = async (month: string) => api.inject({ method: 'GET', url: `/me/statements/${month}`, headers: bearer(w.alice.apiKey) })
    const invoiceOf = async (month: string) => api.inject({ method: 'GET', url: `/recipient/invoices/${month}`, headers: bearer(w.advice.apiKey) })
    // Line by line too, as recipients and households reconcile them: October's line of the consent, grown by the late datums
    // (one line for both runs).
    const n = w.lateTimes.length
    const adjustment = { forMonth: '2026-10', offerId: w.offerA.id, granularity: 'load_curve', data: n, grossMicros: owed }
    expect((await statementOf('2026-11')).json()).toEqual({
      month: '2026-11',
      lines: [],
      adjustmentsMicros: late,
      adjustments: [{ ...adjustment, recipientId: w.advice.id, shareMicros: late }],
      totalMicros: late,
    })
    expect((await invoiceOf('2026-11')).json()).toEqual({
      month: '2026-11',
      lines: [],
      adjustmentsMicros: owed,
      adjustments: [{ ...adjustment, consentId: w.consentA.id }],
      totalMicros: owed,
    })
    const csv = await api.inject({ method: 'GET', url: '/me/statements/2026-11?format=csv', headers: bearer(w.alice.apiKey) })
    expect(csv.body).toBe(
      [
        'month,kind,recipientId,offerId,granularity,data,grossMicros,shareMicros',
        `2026-10,adjustment,${w.advice.id},${w.offerA.id},load_curve,${n},${owed},${late}`,
        `2026-11,adjustments,,,,,,${late}`,
        `2026-11,total,,,,,,${late}`,
        '',
      ].join('\r\n'),
    )
    const balance = (await api.inject({ method: 'GET', url: '/me/payouts', headers: bearer(w.alice.apiKey) })).json()
    expect(BigInt(balance.balanceMicros)).toBe(BigInt(closedOctober.totalMicros) + BigInt(late))
    const notYet = await statementOf('2026-12')
    expect(notYet.statusCode).toBe(404)
    expect(errorOf(notYet)).toEqual({ code: 'NOT_FOUND', message: 'month: 2026-12 has not been settled yet' })
    expect((await invoiceOf('2026-12')).statusCode).toBe(404)

    // Closed, November keeps them, with its own lines (none here).
    clock = paris('2026-12-02')
    expect((await api.asOperator('POST', '/admin/settlements', { month: '2026-11' })).statusCode).toBe(200)
    expect((await statementOf('2026-11')).json()).toEqual(expect.objectContaining({ month: '2026-11', lines: [], adjustmentsMicros: late, totalMicros: late }))
    // A month never settled before a later one was is closed: the 404 says so, not "not settled yet" (found by verifying).
    expect(errorOf(await statementOf('2026-09'))).toEqual({
      code: 'NOT_FOUND',
      message: 'month: 2026-09 was not settled before 2026-11 was, which closed the books up to it; what it held is booked as adjustments in the months it was settled in',
    })
    expect((await invoiceOf('2026-11')).json()).toEqual(expect.objectContaining({ month: '2026-11', lines: [], adjustmentsMicros: owed, totalMicros: owed }))
  })

  it('refuses malformed months, months not over, and callers of the wrong kind', async () => {
    const w = await october()
    clock = paris('2026-10-31', 23)
    const early = await api.asOperator('POST', '/admin/settlements', { month: '2026-10' })
    expect(early.statusCode).toBe(400)
    expect(errorOf(early).message).toMatch(/^month: 2026-10 is not over yet/)
    const malformed = await api.asOperator('POST', '/admin/settlements', { month: '2026-13' })
    expect(malformed.statusCode).toBe(400)
    expect(errorOf(malformed).message).toBe('month: expected a month as YYYY-MM')
    // Months whose bounds the database or the calendar cannot hold (year 0, the month after 9999-12): a 400, not a 500.
    for (const m of ['0000-01', '0001-01', '1969-12', '9999-12']) {
      const outside = await api.asOperator('POST', '/admin/settlements', { month: m })
      expect(outside.statusCode, m).toBe(400)
      expect(errorOf(outside).message).toBe('month: expected a month from 1970-01 to 2999-12')
      // A statement or an invoice of such a month is refused alike, not "not settled yet" (404).
      for (const [url, key] of [
        [`/me/statements/${m}`, w.alice.apiKey],
        [`/recipient/invoices/${m}`, w.advice.apiKey],
      ] as const) {
        const read = await api.inject({ method: 'GET', url, headers: bearer(key) })
        expect([url, read.statusCode, errorOf(read).message]).toEqual([url, 400, 'month: expected a month from 1970-01 to 2999-12'])
      }
    }
    expect((await api.asOperator('POST', '/admin/settlements', {})).statusCode).toBe(400)
    expect((await api.inject({ method: 'GET', url: '/me/statements/october', headers: bearer(w.alice.apiKey) })).statusCode).toBe(400)
    expect((await api.inject({ method: 'GET', url: '/me/statements/2026-10?format=pdf', headers: bearer(w.alice.apiKey) })).statusCode).toBe(400)

    expect((await api.inject({ method: 'POST', url: '/admin/settlements', payload: { month: '2026-10' } })).statusCode).toBe(401)
    expect((await api.inject({ method: 'POST', url: '/admin/settlements', headers: bearer(w.alice.apiKey), payload: { month: '2026-10' } })).statusCode).toBe(403)
    expect((await api.inject({ method: 'GET', url: '/me/payouts', headers: bearer(w.advice.apiKey) })).statusCode).toBe(403)
    expect((await api.inject({ method: 'GET', url: '/recipient/invoices/2026-10', headers: bearer(w.alice.apiKey) })).statusCode).toBe(403)
    expect((await api.inject({ method: 'GET', url: '/me/statements/2026-10' })).statusCode).toBe(401)
  })

  it('documents its routes in the OpenAPI description', async () => {
    const doc = (await api.inject({ method: 'GET', url: '/docs/openapi.json' })).json() as { paths: Record<string, Record<string, unknown>> }
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/admin/settlements', '/me/statements/{month}', '/me/payouts', '/recipient/invoices/{month}']),
    )
  })
})

describe('statement format negotiation', () => {
  it('answers CSV when asked by the query or by an Accept header that prefers it', () => {
    expect(wantsCsv(undefined, undefined)).toBe(false)
    expect(wantsCsv('text/csv', undefined)).toBe(true)
    expect(wantsCsv('text/csv', 'json')).toBe(false)
    expect(wantsCsv(undefined, 'csv')).toBe(true)
    expect(wantsCsv('application/json, text/csv', undefined)).toBe(false)
    expect(wantsCsv('text/csv, application/json', undefined)).toBe(true)
    expect(wantsCsv('application/json;q=0.5, text/csv', undefined)).toBe(true)
    expect(wantsCsv('text/csv;q=0.2, */*', undefined)).toBe(false)
    expect(wantsCsv('text/html,application/xhtml+xml,*/*;q=0.8', undefined)).toBe(false)
    expect(wantsCsv('text/csv;q=0', undefined)).toBe(false)
  })
})
