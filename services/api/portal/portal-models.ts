import type { Kysely } from 'kysely'
import { addDays, addMonths, datumDayOf, datumDayStartMs, dayBounds, dayOf, daysOfMonth, isDay, isMonth, monthBounds, monthOf } from '../../../shared/calendar.ts'
import type { Config } from '../../../shared/config.ts'
import type { Database } from '../../../shared/db/schema.ts'
import { InvalidInputError, NotFoundError } from '../../../shared/errors.ts'
import { OBIS_GAS_VOLUME, OBIS_IMPORT_ENERGY_TOTAL, type Commodity } from '../../../shared/obis.ts'
import type { Granularity } from '../../../shared/wire.ts'
import { listAccessLog, type AccessLogEntry } from '../../consent/access-log-service.ts'
import { API_DAY_MAX, API_DAY_MIN, dayOutOfRange } from '../validation.ts'
import { addYearsUtc, listHouseholdConsents, type Consent } from '../../consent/consent-service.ts'
import { listOffers, listOffersForHousehold, type HouseholdOffer } from '../../consent/offer-service.ts'
import { partyNamesOf } from '../../directory/directory-service.ts'
import { householdMeters, type HouseholdMeter } from '../../directory/household-meter-service.ts'
import { intervalEnergies } from '../../metering/daily-energy.ts'
import { READINGS_PAGE_LIMIT_MAX, latestOwnedReadingTs, listReadings } from '../../metering/reading-service.ts'
import { anyMonthClosed, householdMonthTotals, type MonthTotal } from '../../settlement/statement-totals-service.ts'
import {
  householdPayouts,
  householdStatement,
  householdStatementMonths,
  type PayoutEntry,
  type Statement,
} from '../../settlement/statement-service.ts'

/**
 * What each portal page shows, read through the services (the same ones behind the
 * household's JSON endpoints), a fixed small number of queries per page.
 */

/** Settled months drawn in the earnings chart. */
export const CHART_MONTHS_MAX = 12
/** Consents listed on one page (a household has a handful; more go to a next page). */
export const CONSENTS_PAGE_ITEMS_MAX = 100
/** Access-log rows on one page. */
export const ACCESS_LOG_PAGE_ITEMS_MAX = 200
/** Default span of the access log, in days, ending today. */
export const ACCESS_LOG_DEFAULT_DAYS = 30
/** Readings pages read for one consumption curve (a day is at most 100 readings, a month 31 days). */
export const CURVE_PAGES_MAX = 2

export interface OverviewModel {
  /** Oldest first. */
  months: MonthTotal[]
  payouts: PayoutEntry[]
  balanceMicros: bigint
  payoutMinMicros: bigint
  /** Whether any month has been settled (the household may have no lines in it). */
  anyMonthSettled: boolean
}

export async function loadOverview(db: Kysely<Database>, householdId: string, config: Readonly<Config>): Promise<OverviewModel> {
  const months = await householdMonthTotals(db, householdId, CHART_MONTHS_MAX)
  const { payouts, balanceMicros } = await householdPayouts(db, householdId)
  const anyMonthSettled = months.some((m) => m.closed) || (await anyMonthClosed(db))
  return { months, payouts, balanceMicros, payoutMinMicros: config.settlement.payoutMinMicros, anyMonthSettled }
}

export interface StatementModel {
  month: string
  /** null while the month is not settled. */
  statement: Statement | null
  /** Every month with a statement, oldest first. */
  months: string[]
  recipientNames: ReadonlyMap<string, string>
  offerPurposes: ReadonlyMap<string, string>
}

export async function loadStatement(db: Kysely<Database>, householdId: string, month: string, now: Date): Promise<StatementModel> {
  let statement: Statement | null
  try {
    statement = await householdStatement(db, householdId, month)
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err
    statement = null
  }
  const months = await householdStatementMonths(db, householdId)
  const recipientNames = new Map<string, string>()
  const offerPurposes = new Map<string, string>()
  if (statement !== null && statement.lines.length > 0) {
    for (const o of await listOffers(db)) {
      offerPurposes.set(o.id, o.purpose)
      recipientNames.set(o.recipientId, o.recipientName)
    }
    // A legal basis has no offer: its recipient is named by the household's consents.
    if (statement.lines.some((l) => !recipientNames.has(l.recipientId))) {
      const consents = await listHouseholdConsents(db, householdId, { limit: CONSENTS_PAGE_ITEMS_MAX }, now)
      for (const c of consents.items) recipientNames.set(c.recipientId, c.recipientName)
    }
  }
  return { month, statement, months, recipientNames, offerPurposes }
}

export interface Choice {
  value: string
  kind: string
  count?: number
  at: Date
  /** The option a form starts on (the first one otherwise). */
  preselected?: boolean
}

export interface ConsentsModel {
  consents: Consent[]
  nextCursor: string | null
  offers: HouseholdOffer[]
  /** Meters the household occupies now: the ones it may share. */
  meters: HouseholdMeter[]
  validity: Choice[]
  dataFrom: Choice[]
  /** The names of the third parties the offers' splits pay, by id. */
  partyNames: ReadonlyMap<string, string>
}

/** Datums one meter produces in 30 days at a granularity. */
export function datumsPer30Days(granularity: Granularity, intervalMinutes: number): bigint {
  if (granularity === 'load_curve') return BigInt((30 * 24 * 60) / intervalMinutes)
  return granularity === 'daily' ? 30n : 1n
}

function addMonthsUtc(date: Date, months: number): Date {
  const d = new Date(date.getTime())
  const day = d.getUTCDate()
  d.setUTCDate(1)
  d.setUTCMonth(d.getUTCMonth() + months)
  const last = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate()
  d.setUTCDate(Math.min(day, last))
  return d
}

export async function loadConsents(
  db: Kysely<Database>,
  householdId: string,
  cursor: string | undefined,
  now: Date,
  config: Readonly<Config>,
): Promise<ConsentsModel> {
  const page = await listHouseholdConsents(db, householdId, { cursor, limit: CONSENTS_PAGE_ITEMS_MAX }, now)
  const offers = await listOffersForHousehold(db)
  const meters = (await householdMeters(db, householdId, now)).filter((m) => m.occupiedNow)
  const tz = config.timezone
  const today = dayOf(now, tz)
  // Shortest first; a year is what the form offers unless the household picks another.
  const validity: Choice[] = [
    { value: addMonthsUtc(now, 1).toISOString(), kind: 'months', count: 1, at: addMonthsUtc(now, 1) },
    { value: addMonthsUtc(now, 6).toISOString(), kind: 'months', count: 6, at: addMonthsUtc(now, 6) },
    { value: addYearsUtc(now, 1).toISOString(), kind: 'years', count: 1, at: addYearsUtc(now, 1), preselected: true },
    { value: addYearsUtc(now, 3).toISOString(), kind: 'years', count: 3, at: addYearsUtc(now, 3) },
  ]
  // "From now on" is the moment of the grant (dataFrom left out), not of this page: it may stay open a while.
  const dataFrom: Choice[] = [
    { value: '', kind: 'now', at: now },
    { value: dayBounds(today, tz).start.toISOString(), kind: 'today', at: dayBounds(today, tz).start },
    { value: monthBounds(monthOf(now, tz), tz).start.toISOString(), kind: 'month', at: monthBounds(monthOf(now, tz), tz).start },
    { value: monthBounds(addMonths(monthOf(now, tz), -12), tz).start.toISOString(), kind: 'year', at: monthBounds(addMonths(monthOf(now, tz), -12), tz).start },
  ]
  const partyNames = await partyNamesOf(db, offers.flatMap((o) => o.split.thirdParties.map((p) => p.partyId)))
  return { consents: page.items, nextCursor: page.next, offers, meters, validity, dataFrom, partyNames }
}

export interface AccessLogModel {
  items: AccessLogEntry[]
  nextCursor: string | null
  fromDay: string
  toDay: string
  cursor: string | undefined
}

/**
 * A day asked for in a page's address (YYYY-MM-DD, within the days the API takes), or null when none
 * is given. One that does not hold is said (InvalidInputError: the "link does not hold" page), never
 * replaced silently by another day.
 */
function askedDayOf(field: string, value: string | undefined): string | null {
  if (value === undefined || value === '') return null
  if (!isDay(value)) throw new InvalidInputError(`${field}: expected a day as YYYY-MM-DD`, field)
  const outside = dayOutOfRange(value)
  if (outside !== null) throw new InvalidInputError(`${field}: ${outside}`, field)
  return value
}

/** A month asked for in a page's address (YYYY-MM, its days within the days the API takes), or null when none is given. */
function askedMonthOf(field: string, value: string | undefined): string | null {
  if (value === undefined || value === '') return null
  if (!isMonth(value)) throw new InvalidInputError(`${field}: expected a month as YYYY-MM`, field)
  // The API's days run from a first of January to a 31 December: a month's first day tells.
  if (dayOutOfRange(`${value}-01`) !== null) {
    throw new InvalidInputError(`${field}: expected a month from ${API_DAY_MIN.slice(0, 7)} to ${API_DAY_MAX.slice(0, 7)}`, field)
  }
  return value
}

export async function loadAccessLog(
  db: Kysely<Database>,
  householdId: string,
  query: { from?: string | undefined; to?: string | undefined; cursor?: string | undefined },
  now: Date,
  config: Readonly<Config>,
): Promise<AccessLogModel> {
  const today = dayOf(now, config.timezone)
  // A day given that is no day, or a range that runs backwards, is said, not replaced silently by another.
  for (const [field, value] of [['from', query.from], ['to', query.to]] as const) askedDayOf(field, value)
  const toDay = query.to !== undefined && query.to !== '' ? query.to : today
  const fromDay = query.from !== undefined && query.from !== '' ? query.from : addDays(toDay, 1 - ACCESS_LOG_DEFAULT_DAYS)
  if (fromDay > toDay) throw new InvalidInputError(`from: ${fromDay} is after to (${toDay})`, 'from')
  const page = await listAccessLog(db, householdId, { fromDay, toDay, cursor: query.cursor, limit: ACCESS_LOG_PAGE_ITEMS_MAX })
  return { items: page.items, nextCursor: page.next, fromDay, toDay, cursor: query.cursor }
}

export type CurveView = 'day' | 'month'

export interface CurvePoint {
  /** A timestamp (day view) or a day (month view). */
  key: string
  at: Date | null
  /** Wh (dm³ for gas); null when unknown (no earlier reading to take a difference from, or no data). */
  value: number | null
}

export interface ConsumptionModel {
  meters: HouseholdMeter[]
  meter: HouseholdMeter | null
  view: CurveView
  day: string
  month: string
  /** Today, in METERSHARE_TIMEZONE: the pager goes no further. */
  today: string
  points: CurvePoint[]
  unit: 'kWh' | 'm³'
  /** Sum of the known values. */
  total: number
}

export function energyCode(commodity: Commodity): string {
  return commodity === 'gas' ? OBIS_GAS_VOLUME : OBIS_IMPORT_ENERGY_TOTAL
}

export async function loadConsumption(
  db: Kysely<Database>,
  householdId: string,
  query: { meterId?: string | undefined; view?: string | undefined; day?: string | undefined; month?: string | undefined },
  now: Date,
  config: Readonly<Config>,
): Promise<ConsumptionModel> {
  const tz = config.timezone
  const meters = await householdMeters(db, householdId, now)
  // A meter asked for by name is one of its own, or no page: another household's meter is not swapped
  // silently for one's own, under the other's id in the address.
  if (query.meterId !== undefined && !meters.some((m) => m.meterId === query.meterId)) throw new NotFoundError(`meterId: no meter ${query.meterId.slice(0, 100)} of this household`)
  // None asked for: an electricity meter occupied now before a gas one.
  const meter =
    meters.find((m) => m.meterId === query.meterId) ??
    meters.find((m) => m.occupiedNow && m.commodity === 'electricity') ??
    meters.find((m) => m.occupiedNow) ??
    meters[0] ??
    null
  const view: CurveView = query.view === 'day' ? 'day' : 'month'
  // The period asked for, in the view's field; the other field is only the form's (and is ignored).
  const askedDay = view === 'day' ? askedDayOf('day', query.day) : null
  const askedMonth = view === 'month' ? askedMonthOf('month', query.month) : null
  // No period asked for: where the household's data of this meter ends (a meter silent for a while,
  // the demo's simulated past), or today when it has none.
  const latest = askedDay === null && askedMonth === null && meter !== null ? await latestOwnedReadingTs(db, meter.meterId, householdId) : null
  // The day its latest datum belongs to (a reading at midnight closes the day before), or today.
  const anchorDay = latest !== null ? datumDayOf(latest, tz) : dayOf(now, tz)
  // A month asked for without a day: its first day, so the day field follows the month shown.
  const day = askedDay ?? (askedMonth !== null ? `${askedMonth}-01` : anchorDay)
  const month = askedMonth ?? (view === 'day' ? day.slice(0, 7) : anchorDay.slice(0, 7))
  const unit = meter?.commodity === 'gas' ? 'm³' : 'kWh'
  const model: ConsumptionModel = { meters, meter, view, day, month, today: dayOf(now, tz), points: [], unit, total: 0 }
  if (meter === null) return model
  const code = energyCode(meter.commodity)
  const ctx = { timezone: tz }

  if (view === 'day') {
    const { start } = dayBounds(day, tz)
    // The day's datums end its intervals: stamped after its start, through its end (the reading at
    // midnight closes it). From one interval earlier, so that its first one has a predecessor to subtract.
    const from = new Date(start.getTime() - meter.intervalMinutes * 60_000)
    const to = new Date(datumDayStartMs(addDays(day, 1), tz))
    const readings: { ts: string; values: Record<string, number> }[] = []
    let cursor: string | undefined
    for (let i = 0; i < CURVE_PAGES_MAX; i++) {
      const page = await listReadings(
        db,
        { meterIds: [meter.meterId], householdId, from, to, granularity: 'load_curve', cursor, limit: READINGS_PAGE_LIMIT_MAX },
        ctx,
      )
      for (const item of page.items) if (item.granularity === 'load_curve') readings.push({ ts: item.ts, values: item.values })
      if (page.nextCursor === null) break
      cursor = page.nextCursor
    }
    for (const e of intervalEnergies(readings)) {
      const at = new Date(e.ts)
      if (at.getTime() <= start.getTime()) continue
      const value = e.values[code] ?? null
      model.points.push({ key: e.ts, at, value })
      if (value !== null) model.total += value
    }
    return model
  }

  const { start, end } = monthBounds(month, tz)
  const byDay = new Map<string, number>()
  const page = await listReadings(
    db,
    { meterIds: [meter.meterId], householdId, from: start, to: end, granularity: 'daily', limit: READINGS_PAGE_LIMIT_MAX },
    ctx,
  )
  for (const item of page.items) {
    if (item.granularity !== 'daily') continue
    const value = item.values[code]
    if (value !== undefined) byDay.set(item.day, value)
  }
  for (const d of daysOfMonth(month)) {
    const value = byDay.get(d) ?? null
    model.points.push({ key: d, at: null, value })
    if (value !== null) model.total += value
  }
  return model
}
