import { addDays, addMonths, dayOf, startOfDayMs, zoneOffsetMs } from '../../../shared/calendar.ts'
import { BPS_TOTAL, divideRoundHalfEven } from '../../../shared/money.ts'
import type { Consent } from '../../consent/consent-service.ts'
import type { HouseholdOffer } from '../../consent/offer-service.ts'
import { barChart, type ChartBar } from './charts.ts'
import { html, trusted, type SafeHtml } from './html.ts'
import { fill, LANGUAGES, type Formats, type Language, type Messages } from './i18n.ts'
import {
  datumsPer30Days,
  type AccessLogModel,
  type Choice,
  type ConsentsModel,
  type ConsumptionModel,
  type CurvePoint,
  type OverviewModel,
  type StatementModel,
} from './portal-models.ts'

/**
 * The portal's pages as HTML strings: plain, server-rendered documents that read without
 * script, with one stylesheet and one small script of our own for the changes (grant,
 * revoke, sign out). Every value is escaped by `html`.
 */

export interface PortalAssetUrls {
  css: string
  js: string
  icon: string
}

export interface PageContext {
  language: Language
  t: Messages
  f: Formats
  timezone: string
  /** Path of this page, without its query. */
  path: string
  /** Query of this page (kept by the language links). */
  query: Readonly<Record<string, string>>
  /** The session's CSRF token; null when signed out. */
  csrfToken: string | null
  assets: PortalAssetUrls
}

export type Section = 'overview' | 'consents' | 'access-log' | 'consumption' | 'account'

const SECTIONS: readonly { section: Section; href: string; label: (t: Messages) => string }[] = [
  { section: 'overview', href: '/', label: (t) => t.nav.overview },
  { section: 'consents', href: '/consents', label: (t) => t.nav.consents },
  { section: 'access-log', href: '/access-log', label: (t) => t.nav.accessLog },
  { section: 'consumption', href: '/consumption', label: (t) => t.nav.consumption },
  { section: 'account', href: '/account', label: (t) => t.nav.account },
]

/** The arrows of the pagers' links, for the eye only: a screen reader would read "leftwards arrow". */
const BACK = trusted('<span aria-hidden="true">←</span>')
const ON = trusted('<span aria-hidden="true">→</span>')

export function pageHref(path: string, query: Readonly<Record<string, string | undefined>>): string {
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') params.set(k, v)
  const q = params.toString()
  return q === '' ? path : `${path}?${q}`
}

function layout(ctx: PageContext, page: { title: string; section: Section | null; body: SafeHtml }): string {
  const { t } = ctx
  const signedIn = ctx.csrfToken !== null
  const languageLinks = LANGUAGES.map(
    (l) =>
      html`<li><a href="${pageHref(ctx.path, { ...ctx.query, lang: l })}" lang="${l}" hreflang="${l}"${l === ctx.language ? trusted(' aria-current="true"') : ''}>${t.languageNames[l]}</a></li>`,
  )
  const nav = signedIn
    ? html`<nav class="main-nav" aria-label="${t.mainNav}"><ul>${SECTIONS.map(
        (s) => html`<li><a href="${s.href}"${s.section === page.section ? trusted(' aria-current="page"') : ''}>${s.label(t)}</a></li>`,
      )}</ul></nav>`
    : ''
  const doc = html`<!doctype html>
<html lang="${ctx.language}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${page.title} · ${t.appName}</title>
<link rel="icon" href="${ctx.assets.icon}" type="image/svg+xml">
<link rel="stylesheet" href="${ctx.assets.css}">
${signedIn ? html`<meta name="csrf-token" content="${ctx.csrfToken}">` : ''}
<script src="${ctx.assets.js}" defer></script>
</head>
<body>
<a class="skip" href="#main">${t.skipToContent}</a>
<header class="site">
<p class="brand"><a href="/">${t.appName}</a></p>
${nav}
<nav class="languages" aria-label="${t.languageNav}"><ul>${languageLinks}</ul></nav>
${
  signedIn
    ? html`<form method="post" action="/portal/sign-out" class="sign-out"><input type="hidden" name="csrfToken" value="${ctx.csrfToken}"><button type="submit" id="sign-out" class="quiet">${t.signOut}</button></form>`
    : ''
}
</header>
<main id="main" tabindex="-1">
${page.body}
</main>
</body>
</html>
`
  return doc.value
}

export function signInPage(ctx: PageContext, state: { email?: string; error?: string; notice?: string; next?: string | undefined } = {}): string {
  const { t } = ctx
  const error = state.error === undefined ? '' : html`<p class="error" role="alert" id="sign-in-error">${state.error}</p>`
  const notice = state.notice === undefined ? '' : html`<p class="notice" role="status" id="sign-in-notice">${state.notice}</p>`
  // A refused sign-in marks both fields, says why in their description, and puts the cursor back in the password.
  const invalid = state.error === undefined ? '' : trusted(' aria-invalid="true" aria-describedby="sign-in-error"')
  const body = html`<h1>${t.signIn.title}</h1>
<p>${t.signIn.intro}</p>
${notice}${error}
<form method="post" action="/portal/session" class="sign-in"${state.error === undefined ? '' : trusted(' aria-describedby="sign-in-error"')}>
${state.next === undefined ? '' : html`<input type="hidden" name="next" value="${state.next}">`}
<p><label for="email">${t.signIn.email}</label>
<input id="email" name="email" type="email" autocomplete="username" required maxlength="254" value="${state.email ?? ''}"${invalid}></p>
<p><label for="password">${t.signIn.password}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="256"${invalid}${state.error === undefined ? '' : trusted(' autofocus')}></p>
<p><button type="submit">${t.signIn.submit}</button></p>
</form>`
  return layout(ctx, { title: t.signIn.title, section: null, body })
}

/** A field of the account's password form. */
export type PasswordField = 'currentPassword' | 'newPassword' | 'confirmPassword'

/** The account form's answer to a change refused: what to say, and the field it is about (null: the form as a whole). */
export interface PasswordFormError {
  field: PasswordField | null
  message: string
}

/**
 * The household's account: its password (the API key stays an API matter). A plain form posted to
 * `/account/password` with the session's CSRF token, so it works without script; a refusal comes
 * back on this page, tied to its field (`aria-invalid`, `aria-describedby`) and focused. The account's email is
 * in the form, hidden and without a name (never sent), so that a password manager knows whose password changes.
 */
export function accountPage(ctx: PageContext, account: { email: string; passwordMin: number; passwordMax: number }, error: PasswordFormError | null = null): string {
  const { t } = ctx
  const field = (name: PasswordField, id: string, autocomplete: string, length: SafeHtml, describedBy: string[]): SafeHtml => {
    const invalid = error !== null && error.field === name
    const ids = invalid ? ['password-error', ...describedBy] : describedBy
    return html`<input id="${id}" name="${name}" type="password" autocomplete="${autocomplete}" required ${length}${ids.length === 0 ? '' : html` aria-describedby="${ids.join(' ')}"`}${invalid ? trusted(' aria-invalid="true" autofocus') : ''}>`
  }
  const max = trusted(`maxlength="${account.passwordMax}"`)
  const bounded = trusted(`minlength="${account.passwordMin}" maxlength="${account.passwordMax}"`)
  const body = html`<h1>${t.account.title}</h1>
<h2 id="password-heading">${t.account.passwordHeading}</h2>
<form method="post" action="/account/password" id="password-form" class="password" aria-labelledby="password-heading">
<input type="hidden" name="csrfToken" value="${ctx.csrfToken ?? ''}">
<input type="email" autocomplete="username" value="${account.email}" hidden readonly>
${error === null ? '' : html`<p class="error" id="password-error" role="alert">${error.message}</p>`}
<p><label for="current-password">${t.account.current}</label>
${field('currentPassword', 'current-password', 'current-password', max, [])}</p>
<p><label for="new-password">${t.account.new}</label>
${field('newPassword', 'new-password', 'new-password', bounded, ['password-rules'])}</p>
<p><label for="confirm-password">${t.account.confirm}</label>
${field('confirmPassword', 'confirm-password', 'new-password', bounded, [])}</p>
<p id="password-rules" class="muted">${fill(t.account.rules, { min: String(account.passwordMin), max: String(account.passwordMax) })}</p>
<p><button type="submit">${t.account.submit}</button></p>
</form>`
  return layout(ctx, { title: t.account.title, section: 'account', body })
}

/** A page that could not be shown: not found, or a link whose parameters do not hold (the detail says which). */
export function problemPage(ctx: PageContext, heading: string, detail?: string): string {
  const body = html`<h1>${heading}</h1>${detail === undefined ? '' : html`<p>${detail}</p>`}<p><a href="/">${ctx.t.nav.overview}</a></p>`
  return layout(ctx, { title: heading, section: null, body })
}

export function overviewPage(ctx: PageContext, model: OverviewModel): string {
  const { t, f } = ctx
  // The last month settled; a month in progress (only adjustments booked in it so far) is in the table, marked.
  const last = model.months.filter((m) => m.closed).at(-1)
  const paid = new Map(model.payouts.map((p) => [p.month, p.amountMicros]))
  const summary =
    last === undefined
      ? html`<p>${model.months.length > 0 ? t.overview.onlyInProgress : model.anyMonthSettled ? t.overview.noEarnings : t.overview.noMonths}</p>`
      : html`<p class="figure" id="month-total" data-month="${last.month}" data-micros="${last.totalMicros.toString()}"><span>${f.month(last.month)}</span> <strong>${f.exactMoney(last.totalMicros, 6)}</strong></p>
<p><a href="/statements/${last.month}">${fill(t.overview.seeStatement, { month: f.month(last.month) })}</a></p>`
  const bars: ChartBar[] = model.months.map((m) => ({
    key: m.month,
    label: f.month(m.month),
    tick: f.monthShort(m.month),
    value: m.totalMicros,
    valueText: f.exactMoney(m.totalMicros, 6),
  }))
  const maxMicros = model.months.reduce((max, m) => (m.totalMicros > max ? m.totalMicros : max), 0n)
  // A payout pays the whole balance: a month without one of its own was paid with the next payout after it.
  const paidWith = (month: string): string | undefined => model.payouts.map((p) => p.month).filter((p) => p > month).sort()[0]
  const paidCell = (month: string): string => {
    if (paid.has(month)) return f.money(paid.get(month)!)
    const later = paidWith(month)
    return later === undefined ? t.overview.notPaid : fill(t.overview.paidWith, { month: f.month(later) })
  }
  const rows = [...model.months].reverse().map(
    (m) => html`<tr data-month="${m.month}"><th scope="row"><a href="/statements/${m.month}">${f.month(m.month)}</a>${m.closed ? '' : html` <span class="muted">(${t.overview.inProgress})</span>`}</th>
<td class="num">${f.exactMoney(m.totalMicros, 6)}</td><td class="num">${paidCell(m.month)}</td></tr>`,
  )
  const chart =
    model.months.length === 0
      ? ''
      : html`<section aria-labelledby="earnings-heading">
<h2 id="earnings-heading">${t.overview.chartTitle}</h2>
<div class="chart-and-table">
<figure class="chart-box">${barChart({ id: 'earnings-chart', title: t.overview.chartTitle, description: t.overview.chartDescription, bars, maxText: f.exactMoney(maxMicros, 6) })}</figure>
<div class="scroll" role="region" tabindex="0" aria-labelledby="earnings-table-caption"><table id="earnings-table">
<caption id="earnings-table-caption">${t.overview.tableCaption}</caption>
<thead><tr><th scope="col">${t.overview.month}</th><th scope="col" class="num">${t.overview.earned}</th><th scope="col" class="num">${t.overview.paidOut}</th></tr></thead>
<tbody>${rows}</tbody>
</table></div>
</div>
</section>`
  const body = html`<h1>${t.overview.title}</h1>
<div class="cards">
<section class="card" aria-labelledby="last-month-heading">
<h2 id="last-month-heading">${t.overview.lastMonth}</h2>
${summary}
</section>
<section class="card" aria-labelledby="balance-heading">
<h2 id="balance-heading">${t.overview.balance}</h2>
<p class="figure" id="balance" data-micros="${model.balanceMicros.toString()}"><strong>${f.exactMoney(model.balanceMicros, 6)}</strong></p>
<p>${fill(t.overview.balanceNote, { amount: f.money(model.payoutMinMicros) })}</p>
</section>
</div>
${chart}`
  return layout(ctx, { title: t.overview.title, section: 'overview', body })
}

export function statementPage(ctx: PageContext, model: StatementModel): string {
  const { t, f } = ctx
  const monthName = f.month(model.month)
  const index = model.months.indexOf(model.month)
  const previous = index > 0 ? model.months[index - 1] : index < 0 ? model.months.filter((m) => m < model.month).pop() : undefined
  const next = index >= 0 ? model.months[index + 1] : model.months.find((m) => m > model.month)
  const monthNav =
    previous === undefined && next === undefined
      ? ''
      : html`<nav class="pager" aria-label="${t.statement.otherMonths}"><ul>
${previous === undefined ? '' : html`<li><a href="/statements/${previous}" rel="prev">${BACK} ${t.statement.previous} (${f.month(previous)})</a></li>`}
${next === undefined ? '' : html`<li><a href="/statements/${next}" rel="next">${t.statement.next} (${f.month(next)}) ${ON}</a></li>`}
</ul></nav>`
  const title = fill(t.statement.title, { month: monthName })
  const s = model.statement
  if (s === null) {
    return layout(ctx, { title, section: 'overview', body: html`<h1>${title}</h1><p>${fill(t.statement.notSettled, { month: monthName })}</p>${monthNav}` })
  }
  // Amounts to the micro-euro, as settled: lines rounded to the cent one by one would not add up to the total.
  const lines = s.lines.map(
    (l) => html`<tr>
<td>${model.recipientNames.get(l.recipientId) ?? l.recipientId}</td>
<td>${l.offerId === null ? t.statement.legalBasis : (model.offerPurposes.get(l.offerId) ?? l.offerId)}</td>
<td>${t.granularities[l.granularity]}</td>
<td class="num">${f.integer(l.data)}</td>
<td class="num">${f.exactMoney(l.grossMicros, 6)}</td>
<td class="num">${f.exactMoney(l.shareMicros, 6)}</td>
</tr>`,
  )
  const body = html`<h1>${title}</h1>
${monthNav}
<div class="scroll" role="region" tabindex="0" aria-labelledby="statement-caption"><table id="statement">
<caption id="statement-caption">${fill(t.statement.caption, { month: monthName })}</caption>
<thead><tr><th scope="col">${t.statement.recipient}</th><th scope="col">${t.statement.offer}</th><th scope="col">${t.statement.granularity}</th>
<th scope="col" class="num">${t.statement.data}</th><th scope="col" class="num">${t.statement.gross}</th><th scope="col" class="num">${t.statement.share}</th></tr></thead>
<tbody>${s.lines.length === 0 ? html`<tr><td colspan="6">${s.closed ? t.statement.noLines : fill(t.statement.openMonth, { month: monthName })}</td></tr>` : lines}</tbody>
<tfoot>
<tr><th scope="row" colspan="5">${t.statement.adjustments}</th><td class="num" id="statement-adjustments">${f.exactMoney(s.adjustmentsMicros, 6)}</td></tr>
<tr class="total"><th scope="row" colspan="5">${t.statement.total}</th><td class="num" id="statement-total" data-micros="${s.totalMicros.toString()}">${f.exactMoney(s.totalMicros, 6)}</td></tr>
</tfoot>
</table></div>
<p><a href="/me/statements/${s.month}?format=csv" download="statement-${s.month}.csv" id="statement-csv">${t.statement.csv}</a></p>`
  return layout(ctx, { title, section: 'overview', body })
}

function consentMeters(ctx: PageContext, c: Consent): string {
  const ended = new Set(c.endedMeterIds)
  const list = c.meterIds.map((m) => (ended.has(m) ? fill(ctx.t.consents.meterEnded, { meter: m }) : m)).join(', ')
  return c.allMeters ? fill(ctx.t.consents.allMeters, { meters: list }) : list
}

function consentRow(ctx: PageContext, c: Consent): SafeHtml {
  const { t, f } = ctx
  const price =
    c.kind === 'legal_basis'
      ? t.consents.free
      : html`${f.exactMoney(c.priceMicrosPerDatum, 6)}${c.householdBps === null ? '' : html` <span class="muted">(${t.consents.yourShare.toLowerCase()} ${f.percentOfBps(c.householdBps)})</span>`}`
  const revocable = c.status === 'active' && c.kind === 'offer'
  const action = revocable
    ? html`<form method="get" action="${revokeHref(c.id)}" class="revoke"><button type="submit" class="danger" data-revoke="${c.id}" data-recipient="${c.recipientName}" aria-label="${fill(t.consents.revokeLabel, { recipient: c.recipientName, purpose: c.purpose })}">${t.consents.revoke}</button></form>`
    : c.status === 'active' && c.kind === 'legal_basis'
      ? html`<span class="muted">${t.consents.legalBasisNotRevocable}</span>`
      : ''
  return html`<tr data-consent="${c.id}" data-status="${c.status}">
<td>${c.recipientName}${c.kind === 'legal_basis' ? html` <span class="tag">${t.consents.legalBasis}</span>` : ''}</td>
<td>${c.kind === 'legal_basis' ? t.consents.legalBasisPurpose : c.purpose}</td>
<td>${t.granularities[c.granularity]}</td>
<td>${consentMeters(ctx, c)}</td>
<td>${f.date(c.validUntil, ctx.timezone)}</td>
<td>${c.dataUntil === null ? fill(t.consents.dataSince, { from: f.dateTime(c.dataFrom, ctx.timezone) }) : fill(t.consents.dataBetween, { from: f.dateTime(c.dataFrom, ctx.timezone), until: f.dateTime(c.dataUntil, ctx.timezone) })}</td>
<td>${price}</td>
<td><span class="status status-${c.status}">${t.consents.statuses[c.status]}</span><br><span class="muted status-at">${
    c.status === 'active'
      ? fill(t.consents.statusAt.active, { at: f.dateTime(c.validFrom, ctx.timezone) })
      : fill(t.consents.statusAt.ended, { at: f.dateTime(c.statusChangedAt, ctx.timezone) })
  }</span></td>
<td>${action}</td>
</tr>`
}

function choiceLabel(ctx: PageContext, c: Choice): string {
  const { t, f } = ctx
  switch (c.kind) {
    case 'years':
      return fill(c.count === 1 ? t.consents.validityYear : t.consents.validityYears, { count: String(c.count), date: f.date(c.at, ctx.timezone) })
    case 'months':
      return fill(c.count === 1 ? t.consents.validityMonth : t.consents.validityMonths, { count: String(c.count), date: f.date(c.at, ctx.timezone) })
    case 'now':
      return t.consents.fromNow
    case 'today':
      return t.consents.fromToday
    case 'month':
      return t.consents.fromMonth
    default:
      return `${t.consents.fromYear} (${f.date(c.at, ctx.timezone)})`
  }
}

/** The household's estimated share of 30 days of data, in micro-euros (rounded half to even). */
export function estimateMicros(offer: HouseholdOffer, datums: bigint): bigint {
  return divideRoundHalfEven(offer.householdMicrosPer10000Datums * datums, BigInt(BPS_TOTAL))
}

/** Who is paid what part of the price, the household first; parts of 0 left out. */
function splitText(ctx: PageContext, offer: HouseholdOffer, partyNames: ReadonlyMap<string, string>): string {
  const { t, f } = ctx
  const { split } = offer
  const parts: [string, number][] = [
    [t.consents.splitParts.household, split.householdBps],
    [t.consents.splitParts.operator, split.operatorBps],
    [t.consents.splitParts.platform, split.platformBps],
    ...split.thirdParties.map((p): [string, number] => [partyNames.get(p.partyId) ?? p.partyId, p.bps]),
  ]
  return parts
    .filter(([, bps]) => bps > 0)
    .map(([who, bps]) => `${who} ${f.percentOfBps(bps)}`)
    .join(' · ')
}

/** The address of a consent's revocation: without script, a page that asks first; with it, a dialog. */
export function revokeHref(consentId: string): string {
  return `/consents/${encodeURIComponent(consentId)}/revoke`
}

/**
 * A grant's form refused, shown again in its offer's card as it was sent: the choices kept, the
 * refusal said (and announced) under them; `noMeter` marks the boxes.
 */
export interface GrantRefusal {
  offerId: string
  message: string
  noMeter: boolean
  meterIds: readonly string[]
  validUntil: string
  dataFrom: string
}

/** `covered`: the meters an active consent for this offer already shares (null: none accepted). */
function offerCard(ctx: PageContext, model: ConsentsModel, offer: HouseholdOffer, covered: ReadonlySet<string> | null, refusal: GrantRefusal | null): SafeHtml {
  const { t, f } = ctx
  const id = offer.id
  const perThousand = offer.priceMicrosPerDatum * 1000n
  // A meter already shared under this offer starts unticked: sharing it again would be refused. A refused form keeps what was sent.
  const ticked = (meterId: string): boolean => (refusal === null ? covered?.has(meterId) !== true : refusal.meterIds.includes(meterId))
  // The estimate is of the meters ticked to begin with, as the page's script recomputes it on change.
  const datums = model.meters.filter((m) => ticked(m.meterId)).reduce((sum, m) => sum + datumsPer30Days(offer.granularity, m.intervalMinutes), 0n)
  const errorId = `grant-error-${id}`
  const invalid = refusal?.noMeter === true ? trusted(' aria-invalid="true"') : ''
  const meters = model.meters.map(
    (m) =>
      html`<li><label><input type="checkbox" name="meterId" value="${m.meterId}"${ticked(m.meterId) ? trusted(' checked') : ''}${invalid} data-datums="${datumsPer30Days(offer.granularity, m.intervalMinutes).toString()}"> ${m.meterId} <span class="muted">(${t.consumption.commodity[m.commodity]}, ${m.intervalMinutes} min)</span></label></li>`,
  )
  const selected = (c: Choice, sent: string | undefined): boolean => (sent === undefined ? c.preselected === true : c.value === sent)
  // Without script the form is sent as it is (to /consents, with the session's CSRF token); with it, the script sends it to the API.
  const form =
    model.meters.length === 0
      ? html`<p>${t.consents.noMeter}</p>`
      : html`<form class="grant" data-grant="${id}" method="post" action="/consents">
<input type="hidden" name="csrfToken" value="${ctx.csrfToken ?? ''}"><input type="hidden" name="offerId" value="${id}">
<fieldset${refusal?.noMeter === true ? html` aria-describedby="${errorId}"` : ''}><legend>${t.consents.chooseMeters}</legend><ul class="plain">${meters}</ul></fieldset>
<p><label for="valid-${id}">${t.consents.validity}</label>
<select id="valid-${id}" name="validUntil">${model.validity.map((c) => html`<option value="${c.value}"${selected(c, refusal?.validUntil) ? trusted(' selected') : ''}>${choiceLabel(ctx, c)}</option>`)}</select></p>
<p><label for="from-${id}">${t.consents.shareFrom}</label>
<select id="from-${id}" name="dataFrom">${model.dataFrom.map((c) => html`<option value="${c.value}"${refusal !== null && c.value === refusal.dataFrom ? trusted(' selected') : ''}>${choiceLabel(ctx, c)}</option>`)}</select></p>
${refusal === null ? html`<p class="error" role="alert" id="${errorId}" data-error hidden></p>` : html`<p class="error" role="alert" id="${errorId}" data-error>${fill(t.consents.failed, { message: refusal.message })}</p>`}
<p><button type="submit">${t.consents.accept}</button></p>
</form>`
  return html`<li><article class="offer card" data-offer="${id}" aria-labelledby="offer-${id}-title">
<h3 id="offer-${id}-title">${offer.recipientName}: ${offer.purpose}</h3>
<dl>
<dt>${t.consents.granularity}</dt><dd>${t.granularities[offer.granularity]}</dd>
<dt>${t.consents.offerPrice}</dt><dd class="price">${fill(t.consents.pricePerDatum, { amount: f.exactMoney(offer.priceMicrosPerDatum, 6) })} · ${fill(t.consents.per1000, { amount: f.money(perThousand) })}</dd>
<dt>${t.consents.yourShare}</dt><dd class="share">${fill(t.consents.shareText, { percent: f.percentOfBps(offer.householdBps), amount: f.exactMoney(offer.householdMicrosPer10000Datums, 10) })}</dd>
<dt>${t.consents.split}</dt><dd class="split">${splitText(ctx, offer, model.partyNames)}</dd>
<dt>${t.consents.estimate}</dt><dd class="estimate"><output data-estimate data-share-per-10000="${offer.householdMicrosPer10000Datums.toString()}" data-template="${t.consents.estimateText}">${fill(t.consents.estimateText, { amount: f.money(estimateMicros(offer, datums)) })}</output></dd>
</dl>
${covered !== null ? html`<p class="note">${t.consents.alreadyAccepted}</p>` : ''}
${form}
</article></li>`
}

/**
 * Granting and revoking work with or without script. Without it, a grant's form is posted to
 * `/consents` and a Revoke button leads to a page that asks first (revokePage); with it, the page's
 * script sends them to the API and asks in a dialog. `refusal`: a grant's form refused, shown again.
 */
export function consentsPage(ctx: PageContext, model: ConsentsModel, flash: 'granted' | 'revoked' | null, refusal: GrantRefusal | null = null): string {
  const { t } = ctx
  // Per offer, the meters its active consents share ("all meters": every meter the household occupies).
  const coveredByOffer = new Map<string, Set<string>>()
  for (const c of model.consents) {
    if (c.status !== 'active' || c.offerId === null) continue
    const covered = coveredByOffer.get(c.offerId) ?? new Set<string>()
    for (const m of c.allMeters ? model.meters.map((x) => x.meterId) : c.meterIds) covered.add(m)
    coveredByOffer.set(c.offerId, covered)
  }
  const table =
    model.consents.length === 0
      ? html`<p>${t.consents.none}</p>`
      : html`<div class="scroll" role="region" tabindex="0" aria-labelledby="consents-caption"><table id="consents">
<caption id="consents-caption" class="visually-hidden">${t.consents.yours}</caption>
<thead><tr><th scope="col">${t.consents.recipient}</th><th scope="col">${t.consents.purpose}</th><th scope="col">${t.consents.granularity}</th><th scope="col">${t.consents.meters}</th>
<th scope="col">${t.consents.validUntil}</th><th scope="col">${t.consents.dataWindow}</th><th scope="col">${t.consents.price}</th><th scope="col">${t.consents.status}</th><th scope="col">${t.consents.action}</th></tr></thead>
<tbody>${model.consents.map((c) => consentRow(ctx, c))}</tbody>
</table></div>
${model.nextCursor === null ? '' : html`<p><a href="${pageHref('/consents', { cursor: model.nextCursor })}">${t.accessLog.next}</a></p>`}`
  const flashText = flash === 'granted' ? t.consents.granted : flash === 'revoked' ? t.consents.revoked : ''
  const body = html`<h1>${t.consents.title}</h1>
<p id="status" role="status" class="${flash === null ? 'status-line' : 'status-line done'}">${flashText}</p>
<section aria-labelledby="yours-heading">
<h2 id="yours-heading">${t.consents.yours}</h2>
${table}
</section>
<section aria-labelledby="offers-heading">
<h2 id="offers-heading">${t.consents.offers}</h2>
${model.offers.length === 0 ? html`<p>${t.consents.noOffers}</p>` : html`<ul class="offers plain">${model.offers.map((o) => offerCard(ctx, model, o, coveredByOffer.get(o.id) ?? null, refusal?.offerId === o.id ? refusal : null))}</ul>`}
</section>
<dialog id="revoke-dialog" aria-labelledby="revoke-title" aria-describedby="revoke-text">
<form method="dialog">
<h2 id="revoke-title">${t.consents.revokeTitle}</h2>
<p id="revoke-text" data-template="${t.consents.revokeText}"></p>
<p class="error" role="alert" id="revoke-error" data-error hidden></p>
<p class="actions"><button type="submit" value="cancel" class="quiet" autofocus>${t.consents.cancel}</button> <button type="submit" value="confirm" class="danger" id="revoke-confirm">${t.consents.confirmRevoke}</button></p>
</form>
</dialog>
<template id="messages" data-failed="${t.consents.failed}" data-no-meter="${t.consents.noMeterChosen}" data-conflict="${t.consents.alreadyShared}" data-withdrawn="${t.consents.withdrawn}" data-ended="${t.consents.alreadyEnded}"${ctx.language === 'en' ? '' : html` data-refused="${t.consents.refused}"`}></template>`
  return layout(ctx, { title: t.consents.title, section: 'consents', body })
}

/**
 * Without script, Revoke leads here: the question the dialog asks, and a form that revokes (posted
 * with the session's CSRF token) or a way back. `error`: why it cannot be, said under the question. A
 * consent that can no longer be revoked (it has ended, or is a legal basis) gets only the way back.
 */
export function revokePage(ctx: PageContext, consent: Consent, error: string | null = null): string {
  const { t } = ctx
  const revocable = consent.status === 'active' && consent.kind === 'offer'
  const back = html`<a href="/consents" class="button quiet">${revocable ? t.consents.cancel : t.nav.consents}</a>`
  const body = html`<h1 id="revoke-title">${t.consents.revokeTitle}</h1>
<p id="revoke-text">${fill(t.consents.revokeText, { recipient: consent.recipientName })}</p>
<p class="muted">${consent.kind === 'legal_basis' ? t.consents.legalBasisPurpose : consent.purpose} · ${t.granularities[consent.granularity]} · ${consentMeters(ctx, consent)}</p>
${error === null ? '' : html`<p class="error" role="alert" id="revoke-error">${error}</p>`}
${
  revocable
    ? html`<form method="post" action="${revokeHref(consent.id)}" aria-labelledby="revoke-title">
<input type="hidden" name="csrfToken" value="${ctx.csrfToken ?? ''}">
<p class="actions">${back} <button type="submit" class="danger" id="revoke-confirm">${t.consents.confirmRevoke}</button></p>
</form>`
    : html`<p>${back}</p>`
}`
  return layout(ctx, { title: t.consents.revokeTitle, section: 'consents', body })
}

export function accessLogPage(ctx: PageContext, model: AccessLogModel): string {
  const { t, f } = ctx
  const total = model.items.reduce((sum, e) => sum + e.datums, 0n)
  const rows = model.items.map(
    (e) => html`<tr><td>${f.day(e.day)}</td><td>${e.recipientName}</td><td>${e.meterId}</td><td>${t.accessLog.channels[e.channel]}</td><td class="num">${f.integer(e.datums)}</td></tr>`,
  )
  const body = html`<h1>${t.accessLog.title}</h1>
<p>${t.accessLog.intro}</p>
<form method="get" action="/access-log" class="filters">
<p><label for="from">${t.accessLog.from}</label> <input type="date" id="from" name="from" value="${model.fromDay}"></p>
<p><label for="to">${t.accessLog.to}</label> <input type="date" id="to" name="to" value="${model.toDay}"></p>
<p><button type="submit">${t.accessLog.show}</button></p>
</form>
${
  model.items.length === 0
    ? html`<p>${t.accessLog.none}</p>`
    : html`<div class="scroll" role="region" tabindex="0" aria-labelledby="access-log-caption"><table id="access-log">
<caption id="access-log-caption">${fill(t.accessLog.caption, { from: f.day(model.fromDay), to: f.day(model.toDay) })}</caption>
<thead><tr><th scope="col">${t.accessLog.day}</th><th scope="col">${t.accessLog.recipient}</th><th scope="col">${t.accessLog.meter}</th><th scope="col">${t.accessLog.channel}</th><th scope="col" class="num">${t.accessLog.datums}</th></tr></thead>
<tbody>${rows}</tbody>
<tfoot><tr><th scope="row" colspan="4">${t.accessLog.total}</th><td class="num">${f.integer(total)}</td></tr></tfoot>
</table></div>`
}
${model.nextCursor === null ? '' : html`<p><a href="${pageHref('/access-log', { from: model.fromDay, to: model.toDay, cursor: model.nextCursor })}">${t.accessLog.next}</a></p>`}`
  return layout(ctx, { title: t.accessLog.title, section: 'access-log', body })
}

/** Ticks under a day's intervals: every three hours of the clock. */
const DAY_TICK_EVERY_HOURS = 3
/** The clock of the reading at midnight that closes a day, in the day's view (the end of its last interval). */
const DAY_END_CLOCK = '24:00'

/**
 * Whether the wall-clock time of `at` comes twice on its day in the zone (the clocks going back): the
 * same time under each other offset the day has, if that instant has that offset.
 */
function wallTimeTwice(at: Date, day: string, timeZone: string): boolean {
  const ms = at.getTime()
  const offset = zoneOffsetMs(ms, timeZone)
  const offsets = new Set([zoneOffsetMs(startOfDayMs(day, timeZone), timeZone), zoneOffsetMs(startOfDayMs(addDays(day, 1), timeZone) - 1, timeZone)])
  for (const other of offsets) {
    if (other !== offset && zoneOffsetMs(ms + offset - other, timeZone) === other) return true
  }
  return false
}

export function consumptionPage(ctx: PageContext, model: ConsumptionModel): string {
  const { t, f } = ctx
  if (model.meter === null) {
    return layout(ctx, { title: t.consumption.title, section: 'consumption', body: html`<h1>${t.consumption.title}</h1><p>${t.consumption.noMeter}</p>` })
  }
  const meter = model.meter
  const energy = (v: number | null): string => (v === null ? '—' : f.energy(v, model.unit))
  // A day's points are its intervals' ends, on the clock: the last, at the next midnight, is 24:00. On the
  // day the clocks go back an hour comes twice, told apart by its offset.
  const clock = model.points.map((p) => (p.at === null ? null : dayOf(p.at, ctx.timezone) !== model.day ? DAY_END_CLOCK : f.time(p.at, ctx.timezone)))
  // A time is marked so whenever the day has it twice, even if the list shows it once (an hourly meter on
  // UTC hours in a zone that goes back half an hour: found by probing).
  const timeOf = (p: CurvePoint, i: number): string => (clock[i] !== DAY_END_CLOCK && wallTimeTwice(p.at!, model.day, ctx.timezone) ? f.timeWithOffset(p.at!, ctx.timezone) : clock[i]!)
  const bars: ChartBar[] = model.points.map((p, i) => {
    const label = p.at === null ? f.day(p.key) : `${f.day(model.day)} ${timeOf(p, i)}`
    // Ticks every few hours by the clock, once each (not by time elapsed, which a 23- or 25-hour day shifts).
    const c = clock[i]
    const tick =
      p.at === null
        ? Number(p.key.slice(8, 10)) % 5 === 1
          ? f.dayOfMonth(p.key)
          : null
        : c !== null && c !== undefined && c.endsWith(':00') && Number(c.slice(0, 2)) % DAY_TICK_EVERY_HOURS === 0 && clock.indexOf(c) === i
          ? c
          : null
    return { key: p.key, label, tick, value: BigInt(p.value ?? 0), valueText: energy(p.value) }
  })
  const max = model.points.reduce((m, p) => (p.value !== null && p.value > m ? p.value : m), 0)
  const isDay = model.view === 'day'
  // A gas meter counts volume (m³), not energy.
  const gas = meter.commodity === 'gas'
  const chartTitle = isDay
    ? fill(gas ? t.consumption.chartDayGas : t.consumption.chartDay, { day: f.day(model.day) })
    : fill(gas ? t.consumption.chartMonthGas : t.consumption.chartMonth, { month: f.month(model.month) })
  const base = { meterId: meter.meterId, view: model.view }
  const previous = isDay ? pageHref('/consumption', { ...base, day: addDays(model.day, -1) }) : pageHref('/consumption', { ...base, month: addMonths(model.month, -1) })
  const next = isDay ? pageHref('/consumption', { ...base, day: addDays(model.day, 1) }) : pageHref('/consumption', { ...base, month: addMonths(model.month, 1) })
  // Which day or month a link leads to, in its text: "Previous" alone says nothing in a list of the page's links.
  const previousName = isDay ? f.day(addDays(model.day, -1)) : f.month(addMonths(model.month, -1))
  const nextName = isDay ? f.day(addDays(model.day, 1)) : f.month(addMonths(model.month, 1))
  // No paging into days or months that have not begun.
  const nextBegun = (isDay ? addDays(model.day, 1) : `${addMonths(model.month, 1)}-01`) <= model.today
  const known = model.points.some((p) => p.value !== null)
  const rows = model.points.map(
    (p, i) => html`<tr><th scope="row">${p.at === null ? f.day(p.key) : timeOf(p, i)}</th><td class="num">${energy(p.value)}</td></tr>`,
  )
  const body = html`<h1>${t.consumption.title}</h1>
<form method="get" action="/consumption" class="filters">
<p><label for="meter">${t.consumption.meter}</label>
<select id="meter" name="meterId">${model.meters.map(
    (m) =>
      html`<option value="${m.meterId}"${m.meterId === meter.meterId ? trusted(' selected') : ''}>${m.meterId} (${t.consumption.commodity[m.commodity]})</option>`,
  )}</select></p>
<fieldset class="inline"><legend>${t.consumption.view}</legend>
<label><input type="radio" name="view" value="day"${isDay ? trusted(' checked') : ''}> ${t.consumption.viewDay}</label>
<label><input type="radio" name="view" value="month"${isDay ? '' : trusted(' checked')}> ${t.consumption.viewMonth}</label>
</fieldset>
<p><label for="day">${t.consumption.day}</label> <input type="date" id="day" name="day" value="${model.day}"></p>
<p><label for="month">${t.consumption.month}</label> <input type="month" id="month" name="month" value="${model.month}" pattern="[0-9]{4}-[0-9]{2}"></p>
<p><button type="submit">${t.consumption.show}</button></p>
</form>
<nav class="pager" aria-label="${t.consumption.view}"><ul><li><a href="${previous}" rel="prev">${BACK} ${t.consumption.previous} (${previousName})</a></li>${nextBegun ? html`<li><a href="${next}" rel="next">${t.consumption.next} (${nextName}) ${ON}</a></li>` : ''}</ul></nav>
<h2 id="curve-heading">${chartTitle}</h2>
${
  known
    ? html`<figure class="chart-box">${barChart({ id: 'consumption-chart', title: chartTitle, description: t.consumption.chartDescription, bars, maxText: f.energy(max, model.unit) })}
<figcaption id="consumption-total">${fill(t.consumption.total, { amount: f.energy(model.total, model.unit) })}</figcaption></figure>
<details><summary>${t.consumption.asTable}</summary>
<table id="consumption-table"><caption class="visually-hidden">${chartTitle}</caption>
<thead><tr><th scope="col">${isDay ? t.consumption.time : t.consumption.day}</th><th scope="col" class="num">${gas ? t.consumption.volume : t.consumption.energy}</th></tr></thead>
<tbody>${rows}</tbody></table></details>`
    : html`<p>${t.consumption.none}</p>`
}`
  return layout(ctx, { title: t.consumption.title, section: 'consumption', body })
}
