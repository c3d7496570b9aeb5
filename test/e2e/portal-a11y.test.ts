import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import type { AxeResults } from 'axe-core'
import type { FastifyInstance } from 'fastify'
import type { Browser, BrowserContext, Page, Route } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { grantConsent, revokeConsent } from '../../services/consent/consent-service.ts'
import { createOffer } from '../../services/consent/offer-service.ts'
import { createHousehold, createMeter, createParty } from '../../services/directory/directory-service.ts'
import { createOccupancy } from '../../services/metering/occupancy-service.ts'
import { settleMonth, settlementContext } from '../../services/settlement/settlement-service.ts'
import { addMonths, dayOf, monthBounds, monthOf } from '../../shared/calendar.ts'
import { envToConfig } from '../../shared/config.ts'
import { BROWSER_PATH, BROWSER_SKIP, launchChromium, startPortalApi } from '../support/browser.ts'
import { describeDatabases } from '../support/database.ts'
import { readingSeries, seedReadings } from '../support/seed.ts'

/**
 * The household portal against WCAG 2.1 AA as axe-core checks it, in headless Chromium: every
 * page (sign-in, refused sign-in, earnings, a statement, consents with an offer, an active and a
 * revoked consent, a grant refused, the revoke dialog open and a revocation refused, the access log, the consumption chart
 * and its table, the account page and a refused change, a page not found), in English and
 * French, with script and without, 1280 and 320 px wide. A violation fails the test with its
 * rule, impact, page and elements. Besides axe: `lang` on each page, the charts' text alternatives,
 * nothing wider than a 320 px screen (even with WCAG 1.4.12's text spacing), Chromium's own advice
 * on forms, and, last, sign-in, grant and revoke with the keyboard alone, with the focus shown on
 * every control of every page.
 *
 * On both databases: the pages are server-rendered from what each database answers (dates,
 * amounts, empty or not), and the same world on PostgreSQL and PGlite must read the same. The
 * whole matrix runs on PGlite; on PostgreSQL, every page in one of its eight set-ups (English, with
 * script, wide) and the keyboard walk: the other seven differ from it only in the browser, which
 * PGlite's run already covers (and each set-up takes 10-30 s of a CI's two cores).
 */

const TZ = 'Europe/Paris'
const EMAIL = 'famille.lefebvre@example.org'
const PASSWORD = 'correct horse battery staple'
/** WCAG 2.0 and 2.1, levels A and AA. */
const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')
const WIDTHS = [1280, 320] as const
/** The narrow width, at which nothing may run off the screen sideways (WCAG 1.4.10), even with text spaced out (1.4.12). */
const NARROW = 320
/** WCAG 1.4.12's spacing, which a reader's own style may set. */
const TEXT_SPACING = '* { line-height: 1.5 !important; letter-spacing: .12em !important; word-spacing: .16em !important } p { margin-bottom: 2em !important }'
const LANGUAGES = [
  { lang: 'en', locale: 'en-GB' },
  { lang: 'fr', locale: 'fr-FR' },
] as const

/** One line per violation: where, which rule, how bad, which elements. */
function describeViolations(where: string, results: AxeResults): string[] {
  return results.violations.map((v) => `${where}: ${v.id} (${v.impact ?? 'no impact'}) on ${v.nodes.map((n) => n.target.join(' ')).join(' | ')}`)
}

/**
 * The focused element after a Tab, and whether its focus shows (an outline or a ring); null on
 * the body (focus has left the page's controls).
 */
const FOCUSED = `(() => {
  const el = document.activeElement
  if (el === null || el === document.body) return null
  const s = getComputedStyle(el)
  const what = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' "' + (el.getAttribute('aria-label') || el.textContent || '').trim().slice(0, 40) + '"'
  const path = []
  for (let n = el; n.parentElement !== null; n = n.parentElement) path.unshift([...n.parentElement.children].indexOf(n))
  return { what, path: path.join('.'), visible: (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none' }
})()`

/** Presses Tab until `until` (an expression) holds of the focused element, or focus comes round again; the elements passed whose focus did not show. */
async function tabThrough(page: Page, until: string | null, stopsMax = 120): Promise<{ reached: boolean; unseen: string[] }> {
  const unseen: string[] = []
  const seen = new Set<string>()
  for (let i = 0; i < stopsMax; i++) {
    await page.keyboard.press('Tab')
    const focused = (await page.evaluate(FOCUSED)) as { what: string; path: string; visible: boolean } | null
    if (focused === null || seen.has(focused.path)) return { reached: false, unseen }
    seen.add(focused.path)
    if (!focused.visible) unseen.push(focused.what)
    if (until !== null && (await page.evaluate(`document.activeElement.matches(${JSON.stringify(until)})`))) return { reached: true, unseen }
  }
  return { reached: false, unseen }
}

/**
 * What axe does not judge of a chart: that it is an image named by its title and description,
 * and that a table on the page gives its figures (as many rows as bars).
 */
async function chartProblems(page: Page, tableId: string): Promise<string[]> {
  return (await page.evaluate(`(() => {
    const problems = []
    for (const svg of document.querySelectorAll('svg.chart')) {
      const ids = (svg.getAttribute('aria-labelledby') || '').split(' ').filter(Boolean)
      const named = ids.length === 2 && ids.every((id) => (document.getElementById(id)?.textContent || '').trim() !== '')
      if (svg.getAttribute('role') !== 'img' || !named) problems.push(svg.id + ': not an image named by its title and description')
      const bars = svg.querySelectorAll('rect.bar').length
      const rows = document.querySelectorAll('#${tableId} tbody tr').length
      if (bars !== rows) problems.push(svg.id + ': ' + bars + ' bars, ' + rows + ' rows in #${tableId}')
    }
    return problems
  })()`)) as string[]
}

/** axe on the page as it is now (script on). */
async function axeOn(page: Page): Promise<AxeResults> {
  if ((await page.evaluate('typeof axe')) !== 'object') await page.addScriptTag({ content: AXE_SOURCE })
  return (await page.evaluate(`axe.run(document, ${JSON.stringify({ runOnly: { type: 'tag', values: AXE_TAGS }, resultTypes: ['violations'] })})`)) as AxeResults
}

describe.skipIf(BROWSER_PATH === null)(`the household portal against WCAG 2.1 AA (axe-core)${BROWSER_SKIP}`, () => {
  let browser: Browser

  beforeAll(async () => {
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
  })

  describeDatabases(
    'every page, both languages, with and without script, wide and narrow',
    (t) => {
      let api: FastifyInstance
      let base: string
      let month: string
      /** The offer of the revoked consent, open again. */
      let advisoryId: string

      beforeAll(async () => {
        // Eight refused sign-ins from one address, one per browser set-up: not throttled.
        ;({ api, base } = await startPortalApi(t.handle, envToConfig({ adminToken: 'a11y-admin-token-0123456789abcdef', timezone: TZ }, { portal: { signInFailuresMax: 100 } })))

        // A household at a half-hourly meter with a settled month of earnings, a consent in force, a
        // revoked one, an offer open to it and an access log.
        const db = t.db
        const now = new Date()
        month = addMonths(monthOf(now, TZ), -1)
        const { start, end } = monthBounds(month, TZ)
        const grid = await createParty(db, { kind: 'utility', name: 'Grid Utility' })
        const advice = await createParty(db, { kind: 'third_party', name: 'Watt Advice' })
        const household = await createHousehold(db, { name: 'Famille Lefebvre', email: EMAIL, password: PASSWORD })
        const meter = await createMeter(db, { operatorId: grid.id, commodity: 'electricity', intervalMinutes: 30 })
        await createOccupancy(db, { meterId: meter.id, householdId: household.id, from: new Date(start.getTime() - 7 * 86_400_000), until: null }, { timezone: TZ })
        await seedReadings(db, meter.id, readingSeries({ start: new Date(start.getTime() + 30 * 60_000), count: 3 * 48, stepMinutes: 30, stepWh: 25 }), TZ)
        const split = { householdBps: 6_000, operatorBps: 2_000, platformBps: 2_000, thirdParties: [] }
        const planning = await createOffer(db, { recipientId: grid.id, purpose: 'network planning', granularity: 'load_curve', priceMicrosPerDatum: 1_500n, split })
        await grantConsent(db, household.id, { offerId: planning.id, validUntil: new Date(now.getTime() + 365 * 86_400_000), dataFrom: start, dataUntil: end }, now)
        await settleMonth(db, month, settlementContext(envToConfig({ timezone: TZ })))
        const advisory = await createOffer(db, { recipientId: advice.id, purpose: 'energy-saving advice', granularity: 'daily', priceMicrosPerDatum: 20_000n, split })
        advisoryId = advisory.id
        const revoked = await grantConsent(db, household.id, { offerId: advisory.id, validUntil: new Date(now.getTime() + 365 * 86_400_000) }, now)
        await revokeConsent(db, revoked.id, { role: 'household', householdId: household.id }, now)
        await db
          .insertInto('access_log')
          .values({ recipient_id: grid.id, household_id: household.id, meter_id: meter.id, day: dayOf(start, TZ), channel: 'mqtt', datums: 48n })
          .execute()
      })
      afterAll(async () => {
        await api?.close()
      })

      for (const { lang, locale } of LANGUAGES) {
        for (const script of [true, false]) {
          for (const width of WIDTHS) {
            // Every pair of language, script and width once (four runs of the eight, as a pairwise test
            // plan does): French text at the narrow width, a page without script at it, and so on.
            if ((lang === LANGUAGES[0]!.lang) !== (script === (width === WIDTHS[0]))) continue
            if (t.dialect === 'postgres' && !(lang === LANGUAGES[0]!.lang && script && width === WIDTHS[0])) continue
            it(`has no violation in ${lang}, ${script ? 'with' : 'without'} script, ${width} px wide`, async () => {
              const found: string[] = []
              const failures: string[] = []
              const contexts: BrowserContext[] = []
              const open = async (javaScriptEnabled: boolean): Promise<Page> => {
                // The page's CSP forbids inline script: axe is injected past it.
                const context = await browser.newContext({ locale, javaScriptEnabled, bypassCSP: true, viewport: { width, height: 800 } })
                contexts.push(context)
                const page = await context.newPage()
                page.on('pageerror', (e) => failures.push(e.message))
                // Chromium's own advice on forms ("[DOM] Password forms should have (optionally hidden) username fields…").
                page.on('console', (m) => {
                  if (m.text().startsWith('[DOM]')) failures.push(`${page.url()}: ${m.text()}`)
                })
                return page
              }
              try {
                const page = await open(script)
                // Without script, axe (whose checks wait on timers) cannot run in the page itself: it runs on a
                // copy of the page as shown without script (<noscript> in place, no <script>) in a page with script.
                const checker = script ? page : await open(true)
                const check = async (where: string): Promise<void> => {
                  if (!script) {
                    const shown = (await page.evaluate(`(() => {
                      for (const n of [...document.querySelectorAll('noscript')]) n.replaceWith(...n.childNodes)
                      for (const s of [...document.querySelectorAll('script')]) s.remove()
                      return '<!doctype html>' + document.documentElement.outerHTML
                    })()`)) as string
                    const url = page.url()
                    await checker.route(url, (route) => route.fulfill({ contentType: 'text/html; charset=utf-8', body: shown }))
                    await checker.goto(url)
                    await checker.unroute(url)
                  }
                  found.push(...describeViolations(where, await axeOn(checker)))
                  const declared = await checker.getAttribute('html', 'lang')
                  if (declared !== lang) found.push(`${where}: <html lang="${declared}"> on a page in ${lang}`)
                  if (width === NARROW) {
                    const wide = (await checker.evaluate('document.documentElement.scrollWidth')) as number
                    if (wide > width) found.push(`${where}: ${wide} px wide on a ${width} px screen`)
                    await checker.addStyleTag({ content: TEXT_SPACING })
                    const spaced = (await checker.evaluate('document.documentElement.scrollWidth')) as number
                    if (spaced > width) found.push(`${where}: ${spaced} px wide on a ${width} px screen with text spaced out`)
                  }
                }
                const go = async (path: string, where: string): Promise<void> => {
                  await page.goto(`${base}${path}`)
                  await check(where)
                }

                await go('/?done=password', 'sign-in, after a password change')
                await go('/', 'sign-in')
                await page.locator('#email').fill(EMAIL)
                await page.locator('#password').fill('not the password')
                await page.locator('form.sign-in button[type=submit]').click()
                await page.locator('#sign-in-error').waitFor()
                await check('sign-in refused')
                await page.locator('#password').fill(PASSWORD)
                await page.locator('form.sign-in button[type=submit]').click()
                await page.locator('#balance').waitFor()
                await check('earnings')
                found.push(...(await chartProblems(page, 'earnings-table')))
                await go(`/statements/${month}`, 'statement')
                await go('/consents', 'consents')
                expect(await page.locator('tr[data-status="revoked"]').count()).toBe(1)
                expect(await page.locator('tr[data-status="active"]').count()).toBe(1)
                expect(await page.locator('article[data-offer]').count()).toBeGreaterThan(0)
                // Grant and revoke work with and without script: none of their buttons is disabled.
                expect([await page.locator('form[data-grant] button[type=submit], button[data-revoke]').count(), await page.locator('button:disabled').count()]).toEqual([3, 0])
                // A grant refused: said by the script, or by the server in the page it answers with.
                const card = page.locator('article[data-offer]').filter({ has: page.locator('form[data-grant]') }).first()
                await card.locator('input[name=meterId]').first().uncheck()
                await card.locator('button[type=submit]').click()
                await card.locator('[data-error]:not([hidden])').waitFor()
                // The error is tied to the boxes it is about.
                const errorId = await card.locator('[data-error]').getAttribute('id')
                expect([await card.locator('fieldset').getAttribute('aria-describedby'), await card.locator('input[name=meterId]').first().getAttribute('aria-invalid')]).toEqual([errorId, 'true'])
                await check('consents, grant refused')
                if (!script) {
                  // Revoke leads to a page that asks first; one for a consent that has ended says so.
                  await page.locator('button[data-revoke]').first().click()
                  await page.locator('#revoke-confirm').waitFor()
                  await check('revoke, asked first')
                  await page.goto(`${base}/consents`)
                  const revokedId = await page.locator('tr[data-status="revoked"]').getAttribute('data-consent')
                  await go(`/consents/${revokedId}/revoke`, 'revoke, ended')
                  expect(await page.locator('#revoke-error').count()).toBe(1)
                }
                if (script) {
                  await page.locator('button[data-revoke]').first().click()
                  await page.locator('#revoke-dialog[open]').waitFor()
                  await check('consents, revoke dialog')
                  // A refusal is said in the dialog, which stays open with the focus on its button.
                  const refuse = (route: Route) =>
                    route.fulfill({ status: 409, contentType: 'application/json', body: JSON.stringify({ error: { code: 'CONFLICT', message: 'consent: already ended' } }) })
                  await page.route('**/me/consents/*', refuse)
                  await page.locator('#revoke-confirm').click()
                  await page.locator('#revoke-error:not([hidden])').waitFor()
                  expect(await page.evaluate('document.activeElement?.id')).toBe('revoke-confirm')
                  await check('consents, revoke refused')
                  await page.unroute('**/me/consents/*', refuse)
                  await page.keyboard.press('Escape')
                  await page.locator('#revoke-dialog[open]').waitFor({ state: 'detached' })
                }
                await go('/access-log', 'access log')
                await go('/consumption', 'consumption, month')
                await go('/consumption?view=day', 'consumption, day')
                await page.locator('details summary').click()
                await check('consumption, day, table open')
                found.push(...(await chartProblems(page, 'consumption-table')))
                await go('/account', 'account')
                await page.locator('#current-password').fill(PASSWORD)
                await page.locator('#new-password').fill('second password two')
                await page.locator('#confirm-password').fill('second password tw0')
                await page.locator('#password-form button[type=submit]').click()
                await page.locator('#password-error').waitFor()
                await check('account, change refused')
                await go('/no-such-page', 'not found')

                expect(found, `axe found ${found.length} violation(s):\n${found.join('\n')}`).toEqual([])
                expect(failures).toEqual([])
              } finally {
                for (const context of contexts) await context.close()
              }
            }, 120_000)
          }
        }
      }

      // Last: it changes the world (a consent granted, then revoked).
      it('signs in, grants and revokes with the keyboard alone, and shows where the focus is on every control of every page', async () => {
        const context = await browser.newContext({ locale: 'en-GB', viewport: { width: 1280, height: 800 } })
        try {
          const page = await context.newPage()
          const unseen: string[] = []
          const tab = async (until: string | null): Promise<void> => {
            const r = await tabThrough(page, until)
            unseen.push(...r.unseen.map((u) => `${new URL(page.url()).pathname}: ${u}`))
            if (until !== null) expect(r.reached, `Tab never reached ${until} on ${page.url()}`).toBe(true)
          }
          await page.goto(`${base}/`)
          await tab('#email')
          await page.keyboard.type(EMAIL)
          await tab('#password')
          await page.keyboard.type(PASSWORD)
          await page.keyboard.press('Enter')
          await page.locator('#balance').waitFor()
          for (const path of ['/', `/statements/${month}`, '/consents', '/access-log', '/consumption?view=day', '/account']) {
            await page.goto(`${base}${path}`)
            await tab(null)
          }

          // Grant: Tab to the offer's button (its meter ticked, validity and start preselected), Enter.
          await page.goto(`${base}/consents`)
          await tab(`article[data-offer="${advisoryId}"] button[type=submit]`)
          await page.keyboard.press('Enter')
          await page.waitForURL(`${base}/consents?done=granted`)
          expect(await page.locator('#status').innerText()).toBe('The consent is granted.')
          const row = page.locator('tr[data-status="active"]', { hasText: 'Watt Advice' })
          expect(await row.count()).toBe(1)

          // Revoke: Tab to its button, Enter opens the dialog on Cancel; Escape closes it and focus is back
          // on the button; Enter again, Tab to confirm, Enter.
          const revokeButton = 'tr[data-status="active"] button[data-recipient="Watt Advice"]'
          await tab(revokeButton)
          await page.keyboard.press('Enter')
          await page.locator('#revoke-dialog[open]').waitFor()
          expect(await page.evaluate('document.activeElement.value')).toBe('cancel')
          await page.keyboard.press('Escape')
          await page.locator('#revoke-dialog[open]').waitFor({ state: 'detached' })
          expect(await page.evaluate(`document.activeElement.matches(${JSON.stringify(revokeButton)})`)).toBe(true)
          await page.keyboard.press('Enter')
          await page.locator('#revoke-dialog[open]').waitFor()
          await tab('#revoke-confirm')
          await page.keyboard.press('Enter')
          await page.waitForURL(`${base}/consents?done=revoked`)
          expect(await page.locator('tr[data-status="active"]', { hasText: 'Watt Advice' }).count()).toBe(0)

          expect(unseen, `focus not shown on:\n${unseen.join('\n')}`).toEqual([])
        } finally {
          await context.close()
        }
      }, 120_000)
    },
    { resetEach: false },
  )
})
