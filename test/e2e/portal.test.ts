import type { FastifyInstance } from 'fastify'
import type { MqttClient } from 'mqtt'
import type { Browser, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Formats } from '../../services/api/portal/i18n.ts'
import { grantConsent } from '../../services/consent/consent-service.ts'
import { createOffer } from '../../services/consent/offer-service.ts'
import { openReleaseView, type ReleaseView } from '../../services/consent/release-view.ts'
import { createHousehold, createMeter, createParty } from '../../services/directory/directory-service.ts'
import { createOccupancy } from '../../services/metering/occupancy-service.ts'
import { settleMonth, settlementContext } from '../../services/settlement/settlement-service.ts'
import { householdStatement } from '../../services/settlement/statement-service.ts'
import { addMonths, formatTimestamp, monthBounds, monthOf } from '../../shared/calendar.ts'
import { envToConfig } from '../../shared/config.ts'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { connectClient, connectMeter, endClient, publishAcked, startTestBroker, subscribeCollect, waitFor, type TestBroker } from '../support/broker.ts'
import { describeDatabases } from '../support/database.ts'
import { readingSeries, seedReadings } from '../support/seed.ts'
import { BROWSER_PATH, BROWSER_SKIP, launchChromium, startPortalApi } from '../support/browser.ts'

/**
 * The household portal in headless Chromium, against the real API (listening on a port) and
 * the real broker with the consent view as its release policy: sign in, read the earnings
 * chart and the month's total against the statement, grant a consent after reading its price
 * and share, see a recipient subscribed over MQTT receive the meter's datums, revoke the
 * consent, and see delivery stop. The wall clock runs: live readings are stamped now.
 */

const TZ = 'Europe/Paris'
const ADMIN_TOKEN = 'e2e-portal-admin-token-0123456789'
const EMAIL = 'famille.martin@example.org'
const PASSWORD = 'correct horse battery staple'
/** Settled offer: 1,500 µ€ a load-curve datum, 60 % to the household (900 µ€). */
const SETTLED_PRICE = 1_500n
const SETTLED_SHARE = 900n
/** Granted in the browser: 2,000 µ€ a datum, 70 % to the household (1,400 µ€). */
const LIVE_PRICE = 2_000n
/** Three days of half-hourly readings in the settled month. */
const SETTLED_READINGS = 3 * 48

describe.skipIf(BROWSER_PATH === null)(`the household portal in a browser${BROWSER_SKIP}`, () => {
  let browser: Browser

  beforeAll(async () => {
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
  })

  describeDatabases('sign in, earnings, grant and revoke', (t) => {
    let view: ReleaseView
    let tb: TestBroker
    let api: FastifyInstance
    let base: string
    const clients: MqttClient[] = []

    beforeAll(async () => {
      view = await openReleaseView(t.handle, { timeZone: TZ })
      tb = await startTestBroker(t.handle, { policy: view, timezone: TZ })
      ;({ api, base } = await startPortalApi(t.handle, envToConfig({ adminToken: ADMIN_TOKEN, timezone: TZ })))
    })
    afterAll(async () => {
      await api?.close()
      await tb?.close()
      await view?.close()
    })
    afterEach(async () => {
      for (const c of clients.splice(0)) await endClient(c)
    })

    it('shows the month’s earnings as the statement has them, grants with price and share shown first, and stops delivery on revocation', async () => {
      const db = t.db
      const now = new Date()
      const month = addMonths(monthOf(now, TZ), -1)
      const { start: monthStart, end: monthEnd } = monthBounds(month, TZ)

      // The world: a grid operator, an advice app, a household living at a half-hourly meter.
      const grid = await createParty(db, { kind: 'utility', name: 'Grid Utility' })
      const advice = await createParty(db, { kind: 'third_party', name: 'Watt Advice' })
      const household = await createHousehold(db, { name: 'Famille Martin', email: EMAIL, password: PASSWORD })
      const meter = await createMeter(db, { operatorId: grid.id, commodity: 'electricity', intervalMinutes: 30 })
      // Through the service, whose change notice reaches the broker's view as a move-in would.
      await createOccupancy(db, { meterId: meter.id, householdId: household.id, from: new Date(monthStart.getTime() - 7 * 86_400_000), until: null }, { timezone: TZ })
      // Each reading ends its half hour: the month's first is stamped 00:30 on the 1st.
      await seedReadings(db, meter.id, readingSeries({ start: new Date(monthStart.getTime() + 30 * 60_000), count: SETTLED_READINGS, stepMinutes: 30, stepWh: 25 }), TZ)

      // Last month's data went to the grid operator under an offer; the month is settled.
      const settledOffer = await createOffer(db, {
        recipientId: grid.id,
        purpose: 'network planning',
        granularity: 'load_curve',
        priceMicrosPerDatum: SETTLED_PRICE,
        split: { householdBps: 6_000, operatorBps: 2_000, platformBps: 2_000, thirdParties: [] },
      })
      await grantConsent(db, household.id, { offerId: settledOffer.id, validUntil: new Date(now.getTime() + 365 * 86_400_000), dataFrom: monthStart, dataUntil: monthEnd }, now)
      await settleMonth(db, month, settlementContext(envToConfig({ timezone: TZ })))
      const statement = await householdStatement(db, household.id, month)
      // Written out: 144 datums × 900 µ€ = 129,600 µ€ for the household.
      expect(statement.totalMicros).toBe(BigInt(SETTLED_READINGS) * SETTLED_SHARE)
      const liveOffer = await createOffer(db, {
        recipientId: advice.id,
        purpose: 'energy-saving advice',
        granularity: 'load_curve',
        priceMicrosPerDatum: LIVE_PRICE,
        split: { householdBps: 7_000, operatorBps: 1_000, platformBps: 2_000, thirdParties: [] },
      })

      const context = await browser.newContext({ locale: 'en-GB' })
      const page = await context.newPage()
      const outside: string[] = []
      const failures: string[] = []
      page.on('request', (r) => {
        if (!r.url().startsWith(base)) outside.push(r.url())
      })
      page.on('console', (m) => {
        if (m.type() === 'error') failures.push(m.text())
      })
      page.on('pageerror', (e) => failures.push(e.message))
      page.on('response', (r) => {
        if (r.status() >= 400) failures.push(`${r.status()} ${r.url()}`)
      })
      try {
        // Sign in through the form, with the keyboard alone.
        await page.goto(`${base}/`)
        expect(await page.getAttribute('html', 'lang')).toBe('en')
        await page.keyboard.press('Tab')
        expect(await page.evaluate('document.activeElement?.textContent')).toBe('Skip to content')
        await page.getByLabel('Email').focus()
        await page.keyboard.type(EMAIL)
        await page.keyboard.press('Tab')
        await page.keyboard.type(PASSWORD)
        await page.keyboard.press('Enter')
        await page.getByRole('heading', { level: 1, name: 'Your earnings' }).waitFor()
        const cookies = await context.cookies()
        expect(cookies.find((c) => c.name === 'metershare_session')).toMatchObject({ httpOnly: true, sameSite: 'Strict' })

        // The month's total and the chart match the statement.
        // To the micro-euro, as the statement shows it.
        const total = new Formats('en').exactMoney(statement.totalMicros, 6)
        expect(total).toBe('€0.1296')
        expect(await page.locator('#month-total strong').innerText()).toBe(total)
        const bar = page.locator(`#earnings-chart rect.bar[data-key="${month}"]`)
        expect(await bar.getAttribute('data-value')).toBe(statement.totalMicros.toString())
        expect(Number(await bar.getAttribute('height'))).toBeGreaterThan(0)
        expect(await bar.locator('title').textContent()).toContain(total)
        expect(await page.locator(`#earnings-table tr[data-month="${month}"] td`).first().innerText()).toBe(total)

        // The statement of the month, line by line.
        await page.locator('#month-total ~ p a').click()
        await page.locator('#statement-total').waitFor()
        // There to the micro-euro, as settled: lines rounded one by one to the cent would not add up.
        const exact = (micros: bigint): string => new Formats('en').exactMoney(micros, 6)
        expect(await page.locator('#statement-total').innerText()).toBe(exact(statement.totalMicros))
        const line = page.locator('#statement tbody tr').first()
        expect(await line.locator('td').allInnerTexts()).toEqual([
          'Grid Utility',
          'network planning',
          'Load curve (every reading)',
          String(SETTLED_READINGS),
          exact(BigInt(SETTLED_READINGS) * SETTLED_PRICE),
          exact(statement.totalMicros),
        ])

        // On a phone, 375 px wide, in French (longer words): nothing runs off the screen, wide tables scroll in their box.
        const desktop = page.viewportSize()!
        await page.setViewportSize({ width: 375, height: 700 })
        for (const path of ['/', `/statements/${month}`, '/consents', '/access-log', '/consumption']) {
          await page.goto(`${base}${path}?lang=fr`)
          expect(await page.evaluate('document.documentElement.scrollWidth'), path).toBeLessThanOrEqual(375)
        }
        await page.setViewportSize(desktop)
        await page.goto(`${base}/statements/${month}?lang=en`)

        // Consents: the offer's price and the household's share are on the page before granting.
        await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Consents' }).click()
        const card = page.locator(`article[data-offer="${liveOffer.id}"]`)
        await card.waitFor()
        expect(await card.locator('.price').innerText()).toBe('€0.002 per datum · €2.00 per 1,000 datums')
        expect(await card.locator('.share').innerText()).toBe('70% of the price: €0.0014 per datum')
        // 30 days of half-hourly readings: 1,440 × 1,400 µ€ = 2.016 EUR.
        const estimate = card.locator('output[data-estimate]')
        expect(await estimate.innerText()).toBe('about €2.02 a month for the meters chosen (30 days of data)')
        // Every control of the page has a name a screen reader can say.
        // (A string: the browser's DOM is not in this program's types.)
        const unnamed = await page.evaluate(`[...document.querySelectorAll('input:not([type=hidden]), select, button')]
          .filter((el) => (el.labels === null || el.labels.length === 0) && !el.getAttribute('aria-label') && el.textContent.trim() === '')
          .map((el) => el.outerHTML)`)
        expect(unnamed).toEqual([])
        // No meter chosen: the estimate follows, in integer arithmetic, and nothing can be granted.
        const meterBox = card.getByRole('checkbox', { name: new RegExp(meter.id) })
        await meterBox.uncheck()
        expect(await estimate.innerText()).toBe('about €0.00 a month for the meters chosen (30 days of data)')
        await card.getByRole('button', { name: 'Accept this offer' }).click()
        expect(await card.getByRole('alert').innerText()).toBe('Not saved: choose at least one meter.')
        await meterBox.check()
        expect(await estimate.innerText()).toBe('about €2.02 a month for the meters chosen (30 days of data)')
        await card.getByLabel('Share data stamped from').selectOption({ label: 'now on' })
        await card.getByRole('button', { name: 'Accept this offer' }).click()
        await page.waitForURL(`${base}/consents?done=granted`)
        expect(await page.locator('#status').innerText()).toBe('The consent is granted.')
        const granted = await t.db.selectFrom('consents').select(['id', 'status', 'all_meters']).where('offer_id', '=', liveOffer.id).execute()
        expect(granted).toEqual([{ id: expect.any(String), status: 'active', all_meters: true }])
        const consentId = granted[0]!.id
        const row = page.locator(`tr[data-consent="${consentId}"]`)
        expect(await row.getAttribute('data-status')).toBe('active')
        // Granting the same again is refused (409), and said in the page's words, not the API's.
        const again = page.locator(`article[data-offer="${liveOffer.id}"]`)
        await again.getByRole('checkbox', { name: new RegExp(meter.id) }).check()
        await again.getByRole('button', { name: 'Accept this offer' }).click()
        expect(await again.getByRole('alert').innerText()).toBe(
          'Not saved: you already give this recipient this data of one of these meters under a consent in force. Revoke that consent first to grant other terms, or untick the meter.',
        )
        // That refusal is the only failed request so far, and the browser's own line about it.
        expect(failures.splice(0)).toEqual([`409 ${base}/me/consents`, 'Failed to load resource: the server responded with a status of 409 (Conflict)'])

        // The session ended meanwhile (signed out in another tab, or expired): a change leads to the sign-in page.
        await t.db.deleteFrom('sessions').execute()
        await again.getByRole('button', { name: 'Accept this offer' }).click()
        await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor()
        expect(failures.splice(0)).toEqual([`401 ${base}/me/consents`, 'Failed to load resource: the server responded with a status of 401 (Unauthorized)'])
        await page.getByLabel('Email').fill(EMAIL)
        await page.getByLabel('Password').fill(PASSWORD)
        await page.getByRole('button', { name: 'Sign in' }).click()
        await page.getByRole('heading', { level: 1, name: 'Your earnings' }).waitFor()
        await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Consents' }).click()
        await again.waitFor()

        // A recipient subscribed over MQTT receives the meter's datums while the consent is active.
        const recipient = await connectClient(tb.url, { clientId: 'watt-advice', username: advice.id, password: advice.apiKey })
        clients.push(recipient)
        const received = await subscribeCollect(recipient, 'readings/+')
        expect(received.granted).toBe(1)
        // The household follows its own meter: every datum it stores reaches this subscription.
        const follower = await connectClient(tb.url, { clientId: 'martin-phone', username: household.id, password: household.apiKey })
        clients.push(follower)
        const followed = await subscribeCollect(follower, `readings/${meter.id}`)
        const device = await connectMeter(tb.url, meter)
        clients.push(device)
        await waitFor(() => view.activeConsentsCount() === 2, 10_000, 'the broker’s view to hold the new consent')
        let index = 100_000
        let lastMs = 0
        const publishNow = async (): Promise<string> => {
          index += 25
          // Each datum an instant of its own (a second at the same instant with other values would be a conflict).
          lastMs = Math.max(Date.now(), lastMs + 1)
          await publishAcked(device, meterReadingsTopic(meter.id), JSON.stringify({ ts: new Date(lastMs).toISOString(), values: { '1-0:1.8.0': index } }))
          // As the datum carries it: without the fraction when it is .000 (one datum in a thousand).
          return formatTimestamp(lastMs)
        }
        const first = await publishNow()
        await waitFor(() => received.messages.some((m) => (m.payload as { ts: string }).ts === first), 10_000, 'the datum at the recipient')
        expect(received.messages[0]!.payload).toEqual({ meterId: meter.id, ts: first, granularity: 'load_curve', values: { '1-0:1.8.0': index } })

        // Revoke through the page, after confirming: Escape cancels, and the dialog opens on Cancel.
        const revoke = row.getByRole('button', { name: /^Revoke the consent for Watt Advice/ })
        const dialog = page.getByRole('dialog', { name: 'Revoke this consent?' })
        await revoke.click()
        await dialog.waitFor()
        await page.keyboard.press('Escape')
        await dialog.waitFor({ state: 'hidden' })
        expect(await row.getAttribute('data-status')).toBe('active')
        await revoke.focus()
        await page.keyboard.press('Enter')
        await dialog.waitFor()
        expect(await dialog.locator('#revoke-text').innerText()).toBe('Watt Advice will receive nothing more under it, from now on.')
        expect(await page.evaluate('document.activeElement?.textContent')).toBe('Cancel')
        await page.keyboard.press('Tab')
        expect(await page.evaluate('document.activeElement?.id')).toBe('revoke-confirm')
        await page.keyboard.press('Enter')
        await page.waitForURL(`${base}/consents?done=revoked`)
        expect(await page.locator(`tr[data-consent="${consentId}"]`).getAttribute('data-status')).toBe('revoked')
        // When, beside it.
        expect(await page.locator(`tr[data-consent="${consentId}"] .status-at`).innerText()).toMatch(/^on \d{1,2} \w+ \d{4}, \d\d:\d\d$/)
        expect(await page.locator(`tr[data-consent="${consentId}"] button`).count()).toBe(0)

        // Delivery stops: the household still receives what the meter sends; the recipient nothing more.
        await waitFor(() => view.activeConsentsCount() === 1, 10_000, 'the broker’s view to drop the revoked consent')
        const deliveredBefore = received.messages.length
        const after = [await publishNow(), await publishNow()]
        await waitFor(() => after.every((ts) => followed.messages.some((m) => (m.payload as { ts: string }).ts === ts)), 10_000, 'the datums at the household')
        // A round trip on the recipient's own connection: whatever the broker sent it before is in by now.
        await subscribeCollect(recipient, 'daily/+')
        expect(received.messages.length).toBe(deliveredBefore)

        // The access log shows what the recipient received live.
        await tb.recorder.flush()
        await page.getByRole('link', { name: 'Access log' }).click()
        const logRow = page.locator('#access-log tbody tr', { hasText: 'Watt Advice' })
        expect(await logRow.locator('td').allInnerTexts()).toEqual([expect.any(String), 'Watt Advice', meter.id, 'live (MQTT)', String(deliveredBefore)])

        // In French, then signed out.
        await page.getByRole('link', { name: 'Français' }).click()
        expect(await page.getAttribute('html', 'lang')).toBe('fr')
        await page.getByRole('heading', { level: 1, name: 'Journal des accès' }).waitFor()
        await page.getByRole('button', { name: 'Se déconnecter' }).click()
        await page.getByRole('heading', { level: 1, name: 'Connexion' }).waitFor()
        expect((await context.cookies()).find((c) => c.name === 'metershare_session')).toBeUndefined()
        expect(await t.db.selectFrom('sessions').selectAll().execute()).toEqual([])

        expect(outside).toEqual([])
        expect(failures).toEqual([])
      } finally {
        await context.close()
      }
    }, 120_000)

    it('grants and revokes without script: the grant’s form is posted as it is, Revoke leads to a page that asks first; the broker follows', async () => {
      const db = t.db
      const email = `lefebvre.${t.dialect}@example.org`
      const grid = await createParty(db, { kind: 'utility', name: 'Grid of the Plain' })
      const lab = await createParty(db, { kind: 'third_party', name: 'Heat Lab' })
      const household = await createHousehold(db, { name: 'Famille Lefebvre', email, password: PASSWORD })
      const meter = await createMeter(db, { operatorId: grid.id, commodity: 'electricity', intervalMinutes: 15 })
      await createOccupancy(db, { meterId: meter.id, householdId: household.id, from: new Date(Date.now() - 86_400_000), until: null }, { timezone: TZ })
      const offer = await createOffer(db, {
        recipientId: lab.id,
        purpose: 'heat pump sizing',
        granularity: 'daily',
        priceMicrosPerDatum: 5_000n,
        split: { householdBps: 8_000, operatorBps: 1_000, platformBps: 1_000, thirdParties: [] },
      })
      const consentsBefore = view.activeConsentsCount()
      const context = await browser.newContext({ locale: 'en-GB', javaScriptEnabled: false })
      try {
        const page = await context.newPage()
        await page.goto(`${base}/`)
        await page.getByLabel('Email').fill(email)
        await page.getByLabel('Password').fill(PASSWORD)
        await page.getByRole('button', { name: 'Sign in' }).click()
        await page.getByRole('heading', { level: 1, name: 'Your earnings' }).waitFor()
        await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Consents' }).click()
        const card = page.locator(`article[data-offer="${offer.id}"]`)
        // Nothing ticked: the server answers with the page, the refusal under the form, the choices as sent.
        await card.getByRole('checkbox', { name: new RegExp(meter.id) }).uncheck()
        const shortest = await card.getByLabel('Valid until').locator('option').first().innerText()
        await card.getByLabel('Valid until').selectOption({ index: 0 })
        await card.getByRole('button', { name: 'Accept this offer' }).click()
        await card.getByRole('alert').filter({ hasText: 'Not saved: choose at least one meter.' }).waitFor()
        expect(await card.getByRole('checkbox', { name: new RegExp(meter.id) }).getAttribute('aria-invalid')).toBe('true')
        expect(await card.getByLabel('Valid until').locator('option:checked').innerText()).toBe(shortest)
        await card.getByRole('checkbox', { name: new RegExp(meter.id) }).check()
        await card.getByRole('button', { name: 'Accept this offer' }).click()
        await page.waitForURL(`${base}/consents?done=granted`)
        expect(await page.locator('#status').innerText()).toBe('The consent is granted.')
        const [granted] = await db.selectFrom('consents').select(['id', 'status', 'all_meters', 'valid_until']).where('offer_id', '=', offer.id).execute()
        expect([granted!.status, granted!.all_meters]).toEqual(['active', true])
        // The shortest validity chosen above: a month.
        expect(granted!.valid_until!.getTime() - Date.now()).toBeLessThan(32 * 86_400_000)
        await waitFor(() => view.activeConsentsCount() === consentsBefore + 1, 10_000, 'the broker’s view to hold the new consent')

        // Revoke: a page asks first; Cancel leads back with nothing changed.
        const row = page.locator(`tr[data-consent="${granted!.id}"]`)
        await row.getByRole('button', { name: /^Revoke the consent for Heat Lab/ }).click()
        await page.getByRole('heading', { level: 1, name: 'Revoke this consent?' }).waitFor()
        expect(await page.locator('#revoke-text').innerText()).toBe('Heat Lab will receive nothing more under it, from now on.')
        await page.getByRole('link', { name: 'Cancel' }).click()
        await row.waitFor()
        expect(await row.getAttribute('data-status')).toBe('active')
        await row.getByRole('button', { name: /^Revoke the consent for Heat Lab/ }).click()
        await page.getByRole('button', { name: 'Revoke' }).click()
        await page.waitForURL(`${base}/consents?done=revoked`)
        expect(await page.locator('#status').innerText()).toBe('The consent is revoked: nothing more is sent under it.')
        expect(await row.getAttribute('data-status')).toBe('revoked')
        await waitFor(() => view.activeConsentsCount() === consentsBefore, 10_000, 'the broker’s view to drop the revoked consent')
      } finally {
        await context.close()
      }
    }, 120_000)

    // On PostgreSQL with script only: what the two differ in is the page, and the sessions' queries are
    // run on both databases by portal-session.test.
    it.each(
      (
        [
          ['with script', true],
          ['without script', false],
        ] as const
      ).filter(([, script]) => script || t.dialect !== 'postgres'),
    )('changes the password from the account page %s: wrong or mismatched refused in words, then every session ends and the new one signs in; signs out', async (label, script) => {
      const email = `roux.${t.dialect}.${script ? 'js' : 'nojs'}@example.org`
      await createHousehold(t.db, { name: 'Famille Roux', email, password: 'first password one' })
      const signIn = async (page: Page, password: string): Promise<void> => {
        await page.goto(`${base}/`)
        await page.getByLabel('Email').fill(email)
        await page.getByLabel('Password').fill(password)
        await page.getByRole('button', { name: 'Sign in' }).click()
        await page.getByRole('heading', { level: 1, name: 'Your earnings' }).waitFor()
      }
      const context = await browser.newContext({ locale: 'en-GB', javaScriptEnabled: script })
      const elsewhere = await browser.newContext({ locale: 'en-GB' })
      try {
        const page = await context.newPage()
        const failures: string[] = []
        page.on('pageerror', (e) => failures.push(e.message))
        // No password ever travels in an address (a form without script would be sent as a GET otherwise).
        const addresses: string[] = []
        page.on('request', (r) => addresses.push(r.url()))
        const other = await elsewhere.newPage()
        await signIn(page, 'first password one')
        await signIn(other, 'first password one')

        await page.getByRole('link', { name: 'Account' }).click()
        await page.getByRole('heading', { level: 1, name: 'Your account' }).waitFor()
        const change = async (current: string, next: string, again: string): Promise<void> => {
          await page.getByLabel('Current password').fill(current)
          await page.getByLabel('New password', { exact: true }).fill(next)
          await page.getByLabel('New password again').fill(again)
          await page.getByRole('button', { name: 'Change the password' }).click()
        }
        await change('not the password', 'second password two', 'second password two')
        await page.getByRole('alert').filter({ hasText: 'This is not your current password.' }).waitFor()
        await change('first password one', 'second password two', 'second password tw0')
        await page.getByRole('alert').filter({ hasText: 'The two new passwords differ.' }).waitFor()
        await change('first password one', 'second password two', 'second password two')
        await page.locator('#sign-in-notice').filter({ hasText: 'Your password has been changed' }).waitFor()
        expect(new URL(page.url()).search).toBe('?done=password')

        // The other session has ended too; the old password no longer signs in, the new one does.
        await other.goto(`${base}/consents`)
        await other.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor()
        await other.getByLabel('Email').fill(email)
        await other.getByLabel('Password').fill('first password one')
        await other.getByRole('button', { name: 'Sign in' }).click()
        await other.locator('#sign-in-error').waitFor()
        await signIn(page, 'second password two')
        expect(addresses.filter((a) => a.includes('password=') || a.includes('Password='))).toEqual([])

        // The pages fit a 320 px wide screen (WCAG 1.4.10), offers and the consumption's meter list included.
        await page.setViewportSize({ width: 320, height: 640 })
        for (const path of ['/consents', '/consumption', '/account', '/']) {
          await page.goto(`${base}${path}`)
          expect(await page.evaluate('document.documentElement.scrollWidth'), `${label} ${path}`).toBeLessThanOrEqual(320)
        }

        await page.getByRole('button', { name: 'Sign out' }).click()
        await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor()
        expect((await context.cookies()).find((c) => c.name === 'metershare_session')).toBeUndefined()
        await page.goto(`${base}/consents`)
        await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor()
        expect(failures).toEqual([])
      } finally {
        await context.close()
        await elsewhere.close()
      }
    }, 120_000)
  })
})
