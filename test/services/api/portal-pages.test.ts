import type { LightMyRequestResponse } from 'fastify'
import { beforeEach, expect, it } from 'vitest'
import type { SessionResolver } from '../../../services/api/auth.ts'
import { createHousehold } from '../../../services/directory/directory-service.ts'
import { csrfTokenValid, sessionResolver } from '../../../services/directory/session-service.ts'
import { settleMonth } from '../../../services/settlement/settlement-service.ts'
import { householdPayouts, householdStatement } from '../../../services/settlement/statement-service.ts'
import { householdMonthTotals } from '../../../services/settlement/statement-totals-service.ts'
import { Formats } from '../../../services/api/portal/i18n.ts'
import { formatEurLocale } from '../../../shared/money.ts'
import { describeDatabases } from '../../support/database.ts'
import { consent, ctxAt, hourEnds, ingest, meter, occupy, offer, paris, party } from '../settlement/settlement-fixtures.ts'
import { useApi } from './api-harness.ts'

/**
 * The portal's pages, rendered by the real API on a test database: a household with two
 * settled months (one with an adjustment for the other), a consent, an access log and a
 * load curve. Figures on the pages are checked against the services and against amounts
 * written out here.
 */

/** 8,054 µ€ a datum, half to the household: 4,027 µ€ of household share per reading. */
const PRICE = 8_054n
const SHARE = 4_027n
const EMAIL = 'martin@example.org'
const PASSWORD = 'correct horse battery staple'
/** A recipient name that must come out as text, never as markup. */
const RECIPIENT_NAME = 'Watt & <Co>'

describeDatabases('portal pages', (t) => {
  let clock = paris('2026-12-02', 12)
  const sessions: SessionResolver = { resolve: (token, now) => sessionResolver(t.db).resolve(token, now), csrfTokenValid }
  const api = useApi(t, { clock: () => clock, config: {}, extra: { sessions } })
  let householdId: string
  let recipientId: string
  let meterId: string
  let cookie: string

  beforeEach(async () => {
    clock = paris('2026-12-02', 12)
    const db = t.db
    const operator = await party(db, 'utility', 'Grid')
    recipientId = await party(db, 'third_party', RECIPIENT_NAME)
    householdId = (await createHousehold(db, { name: 'Martin', email: EMAIL, password: PASSWORD })).id
    meterId = await meter(db, operator)
    await occupy(db, meterId, householdId, paris('2026-09-01'))
    const offerId = await offer(db, { recipientId, granularity: 'load_curve', priceMicrosPerDatum: PRICE, householdBps: 5_000, operatorBps: 5_000, platformBps: 0 })
    await consent(db, { householdId, recipientId, offerId, granularity: 'load_curve', meterIds: [meterId], validFrom: paris('2026-09-01') })
    // The supplier's legal basis: monthly data, free, of a second meter too, whose October is whole.
    const wholeMonthMeter = await meter(db, operator, 'gas')
    await occupy(db, wholeMonthMeter, householdId, paris('2026-09-01'))
    await consent(db, {
      householdId,
      recipientId: operator,
      offerId: null,
      granularity: 'monthly',
      meterIds: [meterId, wholeMonthMeter],
      validFrom: paris('2026-09-01'),
      dataUntil: paris('2027-09-01'),
    })
    await ingest(db, t.dialect, wholeMonthMeter, 'gas', [paris('2026-10-01'), ...hourEnds(paris('2026-10-01'), paris('2026-11-01'))])

    // Each reading ends its hour. October: the 1st to the 3rd, 23:00 (71 readings), and the midnight index of
    // 1 November, which closes October (completing it for the monthly legal basis) before the month is closed: 72,
    // settled; then late readings of the 10th (24), settled in November as an adjustment; November: the 1st and 2nd (48).
    await ingest(db, t.dialect, meterId, 'electricity', [...hourEnds(paris('2026-10-01'), paris('2026-10-03', 23)), paris('2026-11-01')])
    await settleMonth(db, '2026-10', ctxAt(paris('2026-11-01', 2)))
    await ingest(db, t.dialect, meterId, 'electricity', hourEnds(paris('2026-10-10'), paris('2026-10-11')))
    await settleMonth(db, '2026-10', ctxAt(paris('2026-11-15')))
    await ingest(db, t.dialect, meterId, 'electricity', hourEnds(paris('2026-11-01'), paris('2026-11-03')))
    await settleMonth(db, '2026-11', ctxAt(paris('2026-12-01', 2)))

    const res = await api.inject({ method: 'POST', url: '/portal/session', payload: { email: EMAIL, password: PASSWORD } })
    expect(res.statusCode, res.body).toBe(201)
    const set = String(res.headers['set-cookie'])
    cookie = set.slice(0, set.indexOf(';'))
  })

  async function page(url: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    return api.inject({ method: 'GET', url, headers: { cookie, 'accept-language': 'en-GB,en;q=0.8', ...headers } })
  }

  const eur = (micros: bigint) => formatEurLocale(micros, 'en-GB')
  const exact = (micros: bigint) => new Formats('en').exactMoney(micros, 6)

  it('sums each month in one query to the totals of its statement', async () => {
    const totals = await householdMonthTotals(t.db, householdId, 12)
    expect(totals.map((m) => m.month)).toEqual(['2026-10', '2026-11'])
    for (const m of totals) {
      const statement = await householdStatement(t.db, householdId, m.month)
      expect({ month: m.month, adjustments: m.adjustmentsMicros, total: m.totalMicros }).toEqual({
        month: m.month,
        adjustments: statement.adjustmentsMicros,
        total: statement.totalMicros,
      })
    }
    // Written out: October 72 readings; November 48 readings and the 24 late ones of October.
    expect(totals.map((m) => [m.sharesMicros, m.adjustmentsMicros])).toEqual([
      [72n * SHARE, 0n],
      [48n * SHARE, 24n * SHARE],
    ])
    expect(await householdMonthTotals(t.db, householdId, 1)).toEqual([totals[1]])
  })

  it('shows the last settled month’s total, the balance, and the chart and table of every month', async () => {
    const res = await page('/')
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(res.headers['cache-control']).toBe('no-store')
    expect(res.headers['content-security-policy']).toContain("script-src 'self'")
    const html = res.body
    expect(html).toContain('<html lang="en">')
    const november = 72n * SHARE
    const october = 72n * SHARE
    // To the micro-euro, as the statement shows it (found by probing: a balance of 4,999,999 µ€ read €5.00 beside "paid out once it reaches €5.00").
    expect(html).toContain(`id="month-total" data-month="2026-11" data-micros="${november}"><span>November 2026</span> <strong>${exact(november)}</strong>`)
    expect(exact(november)).toBe('€0.289944')
    // October's and November's make 0.579888, under the 5 EUR minimum: carried forward.
    expect(html).toContain(`id="balance" data-micros="${october + november}"><strong>€0.579888</strong>`)
    expect(html).toContain('Paid out when a month is settled, once it reaches €5.00; what is booked in a month not yet settled waits for that month.')
    const bars = [...html.matchAll(/<rect class="bar" data-key="([^"]+)" data-value="(\d+)"[^>]*height="([\d.]+)"><title>([^<]+)<\/title>/g)]
    expect(bars.map((b) => [b[1], b[2], b[4]])).toEqual([
      ['2026-10', String(october), `October 2026: ${exact(october)}`],
      ['2026-11', String(november), `November 2026: ${exact(november)}`],
    ])
    expect(html).toContain('role="img" aria-labelledby="earnings-chart-title earnings-chart-desc"')
    const rows = [...html.matchAll(/<tr data-month="([^"]+)"><th scope="row"><a href="\/statements\/[^"]+">([^<]+)<\/a><\/th>\s*<td class="num">([^<]+)<\/td><td class="num">([^<]+)<\/td>/g)]
    expect(rows.map((r) => r.slice(1))).toEqual([
      ['2026-11', 'November 2026', exact(november), 'not yet'],
      ['2026-10', 'October 2026', exact(october), 'not yet'],
    ])
  })

  it('tells a household without earnings whether any month has been settled yet (found by probing: "no month has been settled yet" after three were)', async () => {
    await createHousehold(t.db, { name: 'Nobody', email: 'nobody@metershare.test', password: PASSWORD })
    const signedIn = await api.inject({ method: 'POST', url: '/portal/session', payload: { email: 'nobody@metershare.test', password: PASSWORD } })
    const other = String(signedIn.headers['set-cookie']).split(';')[0]!
    const home = (await page('/', { cookie: other })).body
    expect(home).toContain('No earnings yet: the months settled so far hold none of your data that a recipient paid for.')
    expect(home).not.toContain('No month has been settled yet')
  })

  it('says when what a household earned is booked only in a month in progress (found by probing: "no earnings yet" beside them)', async () => {
    // September settled after October and November: closed empty, its data booked in December, still open.
    const late = (await createHousehold(t.db, { name: 'Late', email: 'late@metershare.test', password: PASSWORD })).id
    const lateMeter = await meter(t.db, await party(t.db, 'utility', 'Grid 2'))
    await occupy(t.db, lateMeter, late, paris('2026-09-01'))
    const offerId = await offer(t.db, { recipientId, granularity: 'load_curve', priceMicrosPerDatum: PRICE, householdBps: 5_000, operatorBps: 5_000, platformBps: 0 })
    await consent(t.db, { householdId: late, recipientId, offerId, granularity: 'load_curve', meterIds: [lateMeter], validFrom: paris('2026-09-01') })
    await ingest(t.db, t.dialect, lateMeter, 'electricity', hourEnds(paris('2026-09-10'), paris('2026-09-11')), paris('2026-12-02'))
    await settleMonth(t.db, '2026-09', ctxAt(paris('2026-12-02', 3)))
    const signedIn = await api.inject({ method: 'POST', url: '/portal/session', payload: { email: 'late@metershare.test', password: PASSWORD } })
    const home = (await page('/', { cookie: String(signedIn.headers['set-cookie']).split(';')[0]! })).body
    expect(home).toContain('None of your months is settled yet: what is booked for you so far is in a month still in progress, in the table below.')
    expect(home).toMatch(/<tr data-month="2026-12"><th scope="row"><a href="\/statements\/2026-12">December 2026<\/a> <span class="muted">\(in progress\)<\/span><\/th>/)
  })

  it('shows a month in progress that holds adjustments as in progress, not as the last settled one', async () => {
    // Late readings of 20 November, settled on 5 December: an adjustment booked in December, which is still open.
    await ingest(t.db, t.dialect, meterId, 'electricity', hourEnds(paris('2026-11-20'), paris('2026-11-21')), paris('2026-12-05'))
    await settleMonth(t.db, '2026-11', ctxAt(paris('2026-12-05')))
    const home = (await page('/')).body
    expect(home).toMatch(/id="month-total" data-month="2026-11" data-micros="\d+"><span>November 2026<\/span>/)
    expect(home).toMatch(/<tr data-month="2026-12"><th scope="row"><a href="\/statements\/2026-12">December 2026<\/a> <span class="muted">\(in progress\)<\/span><\/th>/)
    const december = (await page('/statements/2026-12')).body
    expect(december).toContain('December 2026 is not settled yet: its lines come when it closes.')
    expect(december).toContain(`id="statement-adjustments">${exact(24n * SHARE)}</td>`)
  })

  it('says which payout paid a month that had none of its own', async () => {
    // December closes with a minimum of 1 µ€: its payout pays the whole balance, October's and November's earnings.
    await settleMonth(t.db, '2026-12', ctxAt(paris('2027-01-01', 2), 1n))
    const html = (await page('/')).body
    const rows = [...html.matchAll(/<tr data-month="([^"]+)"><th scope="row"><a href="\/statements\/[^"]+">[^<]+<\/a><\/th>\s*<td class="num">[^<]+<\/td><td class="num">([^<]+)<\/td>/g)]
    expect(rows.map((r) => [r[1], r[2]])).toEqual([
      ['2026-11', 'in the payout of December 2026'],
      ['2026-10', 'in the payout of December 2026'],
    ])
    // Paid in whole cents: what is left is under one.
    const { balanceMicros } = await householdPayouts(t.db, householdId)
    expect(balanceMicros >= 0n && balanceMicros < 10_000n).toBe(true)
    expect(html).toContain(`id="balance" data-micros="${balanceMicros}">`)
  })

  it('shows a month’s statement line by line, with its adjustments, total and CSV link', async () => {
    const res = await page('/statements/2026-11')
    expect(res.statusCode).toBe(200)
    const html = res.body
    expect(html).toContain('<h1>Statement for November 2026</h1>')
    // 48 readings at 8,054 µ€ = 386,592 µ€ gross, half of it the household's.
    expect(html).toMatch(
      new RegExp(
        `<td>Watt &amp; &lt;Co&gt;</td>\\s*<td>settlement test</td>\\s*<td>Load curve \\(every reading\\)</td>\\s*<td class="num">48</td>\\s*<td class="num">${escape(exact(48n * PRICE))}</td>\\s*<td class="num">${escape(exact(48n * SHARE))}</td>`,
      ),
    )
    expect(html).not.toContain('<Co>')
    // The legal basis is named by its recipient, free of charge: in October, whole for the second meter from its
    // index of 1 October to that of 1 November (the first meter's October, with gaps, is not final: no datum),
    // not in November, which no reading has completed yet.
    const legalBasis = new RegExp(`<td>Grid</td>\\s*<td>Legal basis \\(free\\)</td>\\s*<td>Monthly totals</td>\\s*<td class="num">1</td>\\s*<td class="num">${escape(eur(0n))}</td>`)
    expect(html).not.toMatch(legalBasis)
    expect((await page('/statements/2026-10')).body).toMatch(legalBasis)
    // To the micro-euro, as settled: €0.193296 + €0.096648 = €0.289944 (to the cent, 0.19 + 0.10 ≠ 0.29).
    expect(exact(72n * SHARE)).toBe('€0.289944')
    expect(html).toContain(`id="statement-adjustments">${exact(24n * SHARE)}</td>`)
    expect(html).toContain(`id="statement-total" data-micros="${72n * SHARE}">${exact(72n * SHARE)}</td>`)
    expect(html).toContain('href="/me/statements/2026-11?format=csv"')
    expect(html).toContain('href="/statements/2026-10" rel="prev"')
    const csv = await page('/me/statements/2026-11?format=csv')
    expect(csv.statusCode).toBe(200)
    expect(csv.body).toContain(`2026-11,total,,,,,,${72n * SHARE}`)
  })

  it('says a month is not settled yet, and that a malformed one does not exist', async () => {
    const december = await page('/statements/2026-12')
    expect(december.statusCode).toBe(404)
    expect(december.body).toContain('December 2026 has not been settled yet.')
    expect((await page('/statements/2026-13')).statusCode).toBe(404)
  })

  it('lists consents and offers with the price and the household’s share before any grant', async () => {
    // The household's consent already shares the meter under the first offer; this one it has not accepted.
    const other = await party(t.db, 'third_party', 'Other app')
    const fresh = await offer(t.db, { recipientId: other, granularity: 'load_curve', priceMicrosPerDatum: PRICE, householdBps: 5_000, operatorBps: 5_000, platformBps: 0 })
    const res = await page('/consents')
    expect(res.statusCode).toBe(200)
    const html = res.body
    expect(html).toMatch(/<tr data-consent="cns_[0-9a-z]+" data-status="active">/)
    expect(html).toContain(`data-recipient="Watt &amp; &lt;Co&gt;" aria-label="Revoke the consent for Watt &amp; &lt;Co&gt;: settlement test">Revoke</button>`)
    expect(html).toContain('<dd class="price">€0.008054 per datum · €8.05 per 1,000 datums</dd>')
    expect(html).toContain('<dd class="share">50% of the price: €0.004027 per datum</dd>')
    // Who else is paid, before any grant; a part of 0 left out.
    expect(html).toContain('<dt>Price shared</dt><dd class="split">you 50% · the meter’s operator 50%</dd>')
    // 30 days of hourly readings of each of the two meters: 2 × 720 × 4,027 µ€ = 5.79888 EUR.
    expect(html).toContain(`data-share-per-10000="${PRICE * 5_000n}"`)
    const card = (offerId: string): string => new RegExp(`<article class="offer card" data-offer="${offerId}"[\\s\\S]*?</article>`).exec(html)![0]
    const accepted = /<article class="offer card" data-offer="(off_[0-9a-z]+)"/.exec(html.replace(card(fresh), ''))![1]!
    expect(card(fresh)).toContain('about €5.80 a month for the meters chosen')
    expect(card(fresh)).toContain(`<input type="checkbox" name="meterId" value="${meterId}" checked data-datums="720">`)
    expect(card(fresh)).not.toContain('You have an active consent for this offer.')
    // Under the accepted offer the meter it shares starts unticked (sharing it twice would be refused), and the
    // estimate is the other meter's alone.
    expect(card(accepted)).toContain('You have an active consent for this offer.')
    expect(card(accepted)).toContain(`<input type="checkbox" name="meterId" value="${meterId}" data-datums="720">`)
    expect(card(accepted)).toContain('about €2.90 a month for the meters chosen')
    expect(html).toContain('<dialog id="revoke-dialog"')
    // Validity, shortest first, a year preselected, in words that agree with their number.
    const validity = /<select id="valid-[^"]+" name="validUntil">([\s\S]*?)<\/select>/.exec(html)![1]!
    const options = [...validity.matchAll(/<option value="[^"]+"( selected)?>([^(<]+) \(/g)].map((m) => [m[2]!.trim(), m[1] === ' selected'])
    expect(options).toEqual([
      ['1 month', false],
      ['6 months', false],
      ['1 year', true],
      ['3 years', false],
    ])
    // The supplier's legal basis is listed, free, and only the operator ends it.
    const legal = /<tr data-consent="cns_[0-9a-z]+" data-status="active">\s*<td>Grid <span class="tag">Legal basis<\/span><\/td>[\s\S]*?<\/tr>/.exec(html)
    expect(legal).not.toBeNull()
    expect(legal![0]).toContain('<td>free</td>')
    // The data window: open-ended, or with its end.
    expect(html).toContain('<th scope="col">Data</th>')
    expect(html).toMatch(/<td>from 1 Sept 2026, 00:00<\/td>/)
    expect(legal![0]).toContain('<td>1 Sept 2026, 00:00 to 1 Sept 2027, 00:00</td>')
    // Its status says since when.
    expect(legal![0]).toMatch(/<span class="status status-active">Active<\/span><br><span class="muted status-at">granted \d{1,2} \w+ 2026, \d\d:\d\d<\/span>/)
    // French writes the first of a month "1er".
    const fr = (await page('/consents', { 'accept-language': 'fr' })).body
    expect(fr).toContain('<td>du 1er sept. 2026, 00:00 au 1er sept. 2027, 00:00</td>')
    expect(fr).toContain('<td>depuis le 1er sept. 2026, 00:00</td>')
    // French typography: a no-break space before ? : ; ! keeps them off the start of a line.
    expect(fr).toContain('Révoquer ce consentement\u00a0?')
    expect(fr).not.toMatch(/ [?:;!]/)
    // The supplier's legal basis gives its purpose in the page's language.
    expect(fr).toContain('<td>facturation de la fourniture d’énergie</td>')
    expect(fr).not.toMatch(/[^0-9]1 sept\./)
    expect(legal![0]).not.toContain('<button')
    expect(legal![0]).toContain('<span class="muted">Your supplier needs this data by law to bill you: it ends with your supply contract, not here.</span>')
    expect(html.match(/data-revoke=/g)).toHaveLength(1)
    expect(html).toMatch(/<meta name="csrf-token" content="[A-Za-z0-9_-]{43}">/)
  })

  it('shows who received how much, per day, recipient, meter and channel', async () => {
    await t.db
      .insertInto('access_log')
      .values([
        { recipient_id: recipientId, household_id: householdId, meter_id: meterId, day: '2026-11-30', channel: 'mqtt', datums: 24n },
        { recipient_id: recipientId, household_id: householdId, meter_id: meterId, day: '2026-12-01', channel: 'http', datums: 1234n },
      ])
      .execute()
    const res = await page('/access-log')
    // What it counts, and how that differs from a statement's data.
    expect(res.body).toContain('each delivery, live or pulled. Your statements count something else: the data your consents made available to a recipient')
    expect(res.statusCode).toBe(200)
    const rows = [...res.body.matchAll(/<tr><td>([^<]+)<\/td><td>([^<]+)<\/td><td>([^<]+)<\/td><td>([^<]+)<\/td><td class="num">([^<]+)<\/td><\/tr>/g)]
    expect(rows.map((r) => r.slice(1))).toEqual([
      ['30 November 2026', 'Watt &amp; &lt;Co&gt;', meterId, 'live (MQTT)', '24'],
      ['1 December 2026', 'Watt &amp; &lt;Co&gt;', meterId, 'pulled (HTTP)', '1,234'],
    ])
    const narrowed = await page('/access-log?from=2026-12-01&to=2026-12-01')
    expect(narrowed.body).not.toContain('live (MQTT)')
    expect(narrowed.body).toContain('pulled (HTTP)')
  })

  it('draws the consumption of a day interval by interval, and of a month day by day', async () => {
    // Each hourly reading's index grows by 10 Wh.
    const day = await page(`/consumption?meterId=${meterId}&view=day&day=2026-10-02`)
    expect(day.statusCode).toBe(200)
    const bars = [...day.body.matchAll(/<rect class="bar" data-key="([^"]+)" data-value="(\d+)"/g)]
    expect(bars).toHaveLength(24)
    expect(new Set(bars.map((b) => b[2]))).toEqual(new Set(['10']))
    // The day's first interval ends at 01:00; its last, at midnight.
    expect(bars[0]![1]).toBe(paris('2026-10-02', 1).toISOString().replace('.000Z', 'Z'))
    expect(bars.at(-1)![1]).toBe(paris('2026-10-03').toISOString().replace('.000Z', 'Z'))
    expect(day.body).toContain('<figcaption id="consumption-total">Total: 0.240 kWh</figcaption>')

    const month = await page(`/consumption?meterId=${meterId}&view=month&month=2026-10`)
    const days = new Map([...month.body.matchAll(/<rect class="bar" data-key="([^"]+)" data-value="(\d+)"/g)].map((b) => [b[1], b[2]]))
    expect(days.size).toBe(31)
    // The 1st has no earlier reading: 23 differences; the 2nd 24; the 3rd 23 (to 23:00); the 4th has no data.
    expect([days.get('2026-10-01'), days.get('2026-10-02'), days.get('2026-10-03'), days.get('2026-10-04')]).toEqual(['230', '240', '230', '0'])
    expect(month.body).toContain('<th scope="row">4 October 2026</th><td class="num">—</td>')
  })

  it('opens the consumption where the household’s data ends when no period is asked for, not on an empty today', async () => {
    // Today is 2 December; the data ends with the reading at midnight that closes 2 November.
    const month = await page('/consumption')
    expect(month.body).toContain('Energy per day in November 2026')
    const days = new Map([...month.body.matchAll(/<rect class="bar" data-key="([^"]+)" data-value="(\d+)"/g)].map((b) => [b[1], b[2]]))
    // (The 1st also carries the energy since the last October reading, on the 11th.)
    expect([days.get('2026-11-02'), days.get('2026-11-03')]).toEqual(['240', '0'])
    const day = await page('/consumption?view=day')
    expect(day.body).toContain('Energy per interval on 2 November 2026')
    expect([...day.body.matchAll(/<rect class="bar" data-key="[^"]+" data-value="10"/g)]).toHaveLength(24)
    // A period asked for is shown as asked, even when it holds nothing; the day field follows the month shown.
    const december = await page('/consumption?month=2026-12')
    expect(december.body).toContain('Energy per day in December 2026')
    expect(december.body).toContain('<input type="date" id="day" name="day" value="2026-12-01">')
    // Today is 2 December: the pager goes back, not into months or days that have not begun.
    // Each link names the month or day it leads to; its arrow is hidden from screen readers.
    expect(december.body).toContain('rel="prev"><span aria-hidden="true">←</span> Previous (November 2026)</a>')
    expect(december.body).not.toContain('rel="next"')
    expect((await page('/consumption?month=2026-11')).body).toContain('rel="next">Next (December 2026) <span aria-hidden="true">→</span></a>')
    expect((await page('/consumption?view=day&day=2026-12-02')).body).not.toContain('rel="next"')
    expect((await page('/consumption?view=day&day=2026-12-01')).body).toContain('rel="next">Next (2 December 2026) <span aria-hidden="true">→</span></a>')
  })

  it('tells apart the hour the clocks go back, and ticks the day by the clock', async () => {
    await ingest(t.db, t.dialect, meterId, 'electricity', hourEnds(paris('2026-10-24'), paris('2026-10-26')))
    const body = (await page(`/consumption?meterId=${meterId}&view=day&day=2026-10-25`)).body
    const rows = [...body.matchAll(/<tr><th scope="row">([^<]+)<\/th>/g)].map((m) => m[1])
    // Each row is an interval's end: from 01:00 to the next midnight, 25 of them.
    expect(rows).toHaveLength(25)
    expect(rows.slice(0, 4)).toEqual(['01:00', '02:00 (GMT+2)', '02:00 (GMT+1)', '03:00'])
    const ticks = [...body.matchAll(/<text class="tick"[^>]*>([^<]+)<\/text>/g)].map((m) => m[1])
    expect(ticks).toEqual(['03:00', '06:00', '09:00', '12:00', '15:00', '18:00', '21:00', '24:00'])
    expect(rows.at(-1)).toBe('24:00')
  })

  it('marks a time the day has twice even where the list shows it once (found by probing: a meter off the hour where the clocks go back half an hour)', async () => {
    // The reading of 02:00 in winter time (01:00Z) never came: the list has one 02:00, still ambiguous.
    const ends = hourEnds(paris('2026-10-24'), paris('2026-10-26')).filter((d) => d.toISOString() !== '2026-10-25T01:00:00.000Z')
    await ingest(t.db, t.dialect, meterId, 'electricity', ends)
    const body = (await page(`/consumption?meterId=${meterId}&view=day&day=2026-10-25`)).body
    const rows = [...body.matchAll(/<tr><th scope="row">([^<]+)<\/th>/g)].map((m) => m[1])
    expect(rows.slice(0, 3)).toEqual(['01:00', '02:00 (GMT+2)', '03:00'])
    expect(rows.filter((r) => r!.includes('GMT'))).toHaveLength(1)
  })

  it('speaks of gas volume, in m³, for a gas meter', async () => {
    const gasMeter = await meter(t.db, await party(t.db, 'utility', 'Gas grid'), 'gas')
    await occupy(t.db, gasMeter, householdId, paris('2026-09-01'))
    await ingest(t.db, t.dialect, gasMeter, 'gas', hourEnds(paris('2026-11-01'), paris('2026-11-03')))
    const month = (await page(`/consumption?meterId=${gasMeter}&view=month&month=2026-11`)).body
    expect(month).toContain('<h2 id="curve-heading">Gas volume per day in November 2026</h2>')
    expect(month).toMatch(/<th scope="col" class="num">Volume<\/th>/)
    expect(month).toContain('m³')
    const day = (await page(`/consumption?meterId=${gasMeter}&view=day&day=2026-11-02`)).body
    expect(day).toContain('Gas volume per interval on 2 November 2026')
    // Electricity stays energy.
    expect((await page(`/consumption?meterId=${meterId}&view=month&month=2026-11`)).body).toContain('Energy per day in November 2026')
  })

  it("answers 404 for a meter that is not the household's, rather than show its own under that id", async () => {
    const neighbours = await meter(t.db, await party(t.db, 'utility', 'Neighbour grid'), 'electricity')
    for (const id of [neighbours, 'no-such-meter']) {
      const r = await page(`/consumption?meterId=${id}&view=month&month=2026-11`)
      expect(r.statusCode).toBe(404)
      expect(r.body).toContain('This page does not exist.')
      expect(r.body).not.toContain('Energy per day')
    }
    expect((await page('/consumption?view=month&month=2026-11')).statusCode).toBe(200)
  })

  it('links only within the portal from a page at an address that begins with two slashes', async () => {
    for (const url of ['//evil.example/path', '/\\evil.example/path', '///evil.example/path']) {
      const r = await page(url, { accept: 'text/html' })
      expect(r.statusCode).toBe(404)
      const hrefs = [...r.body.matchAll(/href="([^"]*)"/g)].map((m) => m[1]!)
      expect(hrefs.filter((h) => h.endsWith('?lang=fr'))).toEqual([url === '//evil.example/path' ? '/evil.example/path?lang=fr' : expect.stringMatching(/^\/[^/\\]/)])
      // A browser reads `//host` and `/\host` as another site.
      expect(hrefs.filter((h) => /^[/\\]{2}/.test(h) || /^[a-z]+:/i.test(h))).toEqual([])
    }
  })

  it('speaks French when the browser asks for it, and remembers a language chosen', async () => {
    const fr = await page('/', { 'accept-language': 'fr-FR,fr;q=0.9,en;q=0.5' })
    expect(fr.body).toContain('<html lang="fr">')
    expect(fr.body).toContain('<h1>Vos gains</h1>')
    expect(fr.body).toContain(`${new Formats('fr').exactMoney(72n * SHARE, 6)}</strong>`)
    expect(fr.body).toContain('novembre 2026')
    // "de" elided before a vowel.
    expect((await page('/statements/2026-10', { 'accept-language': 'fr' })).body).toContain('<h1>Relevé d’octobre 2026</h1>')
    expect((await page('/statements/2026-11', { 'accept-language': 'fr' })).body).toContain('<h1>Relevé de novembre 2026</h1>')
    const chosen = await page('/consents?lang=en', { 'accept-language': 'fr' })
    expect(chosen.body).toContain('<html lang="en">')
    const set = String(chosen.headers['set-cookie'])
    expect(set).toContain('metershare_lang=en')
    const remembered = await page('/', { 'accept-language': 'fr', cookie: `${cookie}; metershare_lang=en` })
    expect(remembered.body).toContain('<html lang="en">')
  })

  it('shows the sign-in form signed out, and sends other pages there, to come back once signed in', async () => {
    const signIn = await api.inject({ method: 'GET', url: '/', headers: { 'accept-language': 'en' } })
    expect(signIn.statusCode).toBe(200)
    expect(signIn.body).toContain('<form method="post" action="/portal/session" class="sign-in">')
    expect(signIn.body).toContain('<label for="email">Email</label>')
    expect(signIn.body).not.toContain('csrf-token')
    expect(signIn.body).not.toContain('name="next"')
    for (const url of ['/consents', '/statements/2026-10', '/access-log?from=2026-10-01', '/consumption?view=day&day=2026-10-25']) {
      const res = await api.inject({ method: 'GET', url })
      expect(res.statusCode, url).toBe(303)
      expect(res.headers.location, url).toBe(`/?next=${encodeURIComponent(url)}`)
      const form = await api.inject({ method: 'GET', url: res.headers.location as string })
      expect(form.body, url).toContain(`<input type="hidden" name="next" value="${url.replaceAll('&', '&amp;')}">`)
    }
    // Only a portal page is a place to come back to: not another site, nor an API address.
    for (const next of ['//evil.example/consents', '/\\evil.example', 'https://evil.example/', '/me/payouts', '/consents#x']) {
      const form = await api.inject({ method: 'GET', url: `/?next=${encodeURIComponent(next)}` })
      expect(form.body, next).not.toContain('name="next"')
    }
    const signInTo = async (next: string) => {
      const payload = new URLSearchParams({ email: EMAIL, password: PASSWORD, next }).toString()
      const res = await api.inject({ method: 'POST', url: '/portal/session', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload })
      return [res.statusCode, res.headers.location]
    }
    expect(await signInTo('/consumption?view=day&day=2026-10-25')).toEqual([303, '/consumption?view=day&day=2026-10-25'])
    expect(await signInTo('//evil.example/consents')).toEqual([303, '/'])
  })

  it('serves its stylesheet and script under content-hashed names, cached for good', async () => {
    const html = (await page('/')).body
    const css = /<link rel="stylesheet" href="(\/portal\/assets\/portal-[^"]+\.css)">/.exec(html)![1]!
    const js = /<script src="(\/portal\/assets\/portal-[^"]+\.js)" defer><\/script>/.exec(html)![1]!
    for (const [url, type] of [[css, 'text/css'], [js, 'text/javascript']] as const) {
      const res = await api.inject({ method: 'GET', url })
      expect(res.statusCode).toBe(200)
      expect(res.headers['content-type']).toContain(type)
      expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable')
    }
    expect((await api.inject({ method: 'GET', url: '/portal/assets/portal-old.js' })).statusCode).toBe(404)
    expect(html).not.toMatch(/https?:\/\//)
  })

  it('answers a tampered page link with a page that says so', async () => {
    const res = await page('/access-log?cursor=not-a-cursor')
    expect(res.statusCode).toBe(400)
    expect(res.headers['content-type']).toContain('text/html')
    expect(res.body).toContain('cursor: not a cursor this API returned')
    // In French the page says so in French, without the API's English detail.
    const fr = await page('/access-log?cursor=not-a-cursor', { 'accept-language': 'fr' })
    expect(fr.statusCode).toBe(400)
    expect(fr.body).toContain('Ce lien n’est pas valable.')
    expect(fr.body).not.toContain('not a cursor')
  })

  it('says so when the access log is asked for a day that is none, or a range that runs backwards', async () => {
    for (const [url, detail] of [
      ['/access-log?from=2026-10-10&to=2026-09-05', 'from: 2026-10-10 is after to (2026-09-05)'],
      ['/access-log?from=yesterday', 'from: expected a day as YYYY-MM-DD'],
      ['/access-log?to=2026-02-30', 'to: expected a day as YYYY-MM-DD'],
    ]) {
      const res = await page(url!)
      expect(res.statusCode, url).toBe(400)
      expect(res.body, url).toContain(detail)
    }
    // Empty fields, as the form sends them, take the defaults.
    expect((await page('/access-log?from=&to=')).statusCode).toBe(200)
  })

  it('says so when the consumption is asked for a day or month that is none, or out of range, rather than show another', async () => {
    for (const [url, detail] of [
      ['/consumption?view=day&day=2026-02-30', 'day: expected a day as YYYY-MM-DD'],
      ['/consumption?view=day&day=9999-12-31', 'day: expected a day from 1970-01-01 to 2999-12-31'],
      ['/consumption?view=day&day=0001-01-01', 'day: expected a day from 1970-01-01 to 2999-12-31'],
      ['/consumption?view=month&month=9999-12', 'month: expected a month from 1970-01 to 2999-12'],
      ['/consumption?view=month&month=2026-13', 'month: expected a month as YYYY-MM'],
    ]) {
      const res = await page(url!)
      expect(res.statusCode, url).toBe(400)
      expect(res.headers['content-type'], url).toMatch(/^text\/html/)
      expect(res.body, url).toContain(detail)
    }
    // The other view's field, as the form sends it along, is not looked at; the last days of the range are shown.
    expect((await page('/consumption?view=day&day=2026-11-02&month=')).statusCode).toBe(200)
    expect((await page('/consumption?view=month&month=2026-11&day=not-a-day')).statusCode).toBe(200)
    expect((await page('/consumption?view=month&month=2999-12')).statusCode).toBe(200)
  })

  it('keeps private answers out of caches, pages and JSON alike, and pages out of frames', async () => {
    const json = await api.inject({ method: 'GET', url: '/me/payouts', headers: { cookie } })
    expect([json.statusCode, json.headers['cache-control'], json.headers['x-content-type-options']]).toEqual([200, 'no-store', 'nosniff'])
    const csv = await api.inject({ method: 'GET', url: '/me/statements/2026-10?format=csv', headers: { cookie } })
    expect([csv.statusCode, csv.headers['cache-control']]).toEqual([200, 'no-store'])
    const html = await page('/')
    expect([html.headers['cache-control'], html.headers['x-frame-options']]).toEqual(['no-store', 'DENY'])
    const docs = await api.inject({ method: 'GET', url: '/docs' })
    expect(docs.headers['content-security-policy']).toContain("frame-ancestors 'none'")
  })
})

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

