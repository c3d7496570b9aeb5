import type { Kysely } from 'kysely'
import { formatTimestamp, isMonth } from '../../shared/calendar.ts'
import { cursorListing, isDayKeyText, type CursorListing } from '../../shared/cursor.ts'
import type { Database } from '../../shared/db/schema.ts'
import { assert, InvalidInputError } from '../../shared/errors.ts'
import {
  GRANULARITIES,
  type DailyDatum,
  type EgressDatum,
  type Granularity,
  type LoadCurveDatum,
  type MonthlyDatum,
  type RegisterValues,
} from '../../shared/wire.ts'
import { dailyEnergies, monthlyEnergies, type GroupEnergy } from './daily-energy.ts'
import {
  firstDayOfMonth,
  firstDayStartingAtOrAfter,
  firstMonthStartingAtOrAfter,
  lastDayEndingBy,
  lastDayOfMonth,
  lastDayStartingBefore,
  lastMonthStartingBefore,
} from './day-range.ts'
import type { MeteringContext } from './metering-context.ts'
import { metersOfHousehold, pageReadings, type InstantWindow } from './reading-repository.ts'
import { loadRollupContexts, pageDailyGroups, pageMonthlyGroups, type DayWindow, type RollupPageFilter } from './rollup-repository.ts'
import { isTsKey } from './ts-key.ts'

/** Where stored data ends: per meter (a simulated fleet resuming), or of one meter for its household (the portal's default period). */
export { latestOwnedReadingTs, latestReadings, latestReadingTimes } from './reading-repository.ts'

/**
 * Stored data as the egress payloads show it: load-curve datums exactly as the meter sent
 * them, and daily and monthly energy derived from the rollups (never from raw readings).
 * Only owned data is ever listed: the caller names the owner (a household looking at its
 * own data) or gives release windows (a recipient, under its consents).
 *
 * A daily datum is one (meter, household, day) rollup group, a monthly datum the sum of a
 * household's daily datums of a month. [from, to) selects a day or month when its start
 * lies in it. A window selects a reading when its ts lies in [from, until), and a day only
 * when the whole day does; a monthly datum under windows sums only the days they select.
 */

export const READINGS_PAGE_LIMIT_MAX = 1000
export const READINGS_METER_IDS_MAX = 100

/** "Owned by `householdId` and inside [from, until)" for one meter, from a consent. */
export interface ReleaseWindow {
  meterId: string
  householdId: string
  from: Date
  /** null = open. */
  until: Date | null
}

export interface ReadingsQuery {
  /** The meters to list; 'all-of-household' = every meter the owner filter or the windows allow. */
  meterIds: readonly string[] | 'all-of-household'
  /** Only datums this household owns. */
  householdId?: string | undefined
  /** Only datums inside one of these windows (matching meter and owner). */
  windows?: readonly ReleaseWindow[] | undefined
  from: Date
  to: Date
  granularity: Granularity
  cursor?: string | undefined
  /**
   * What the query's cursors belong to (readingsCursorScope: who asks, the meter, the range as asked, not
   * as resolved: a `to` left out is now, which moves from page to page); none when absent.
   */
  cursorScope?: string | undefined
  limit: number
}

export interface ReadingsPage {
  items: EgressDatum[]
  nextCursor: string | null
}

type Key = string[]

interface MeterPage {
  items: { datum: EgressDatum; key: Key }[]
}

/** Keyed by (meterId, ts as `exactTsKey`) and (meterId, day | month, householdId). */
const CURSOR: Readonly<Record<Granularity, CursorListing<readonly 'string'[]>>> = {
  load_curve: cursorListing('readings.load_curve', ['string', 'string'], { accepts: ([m, ts]) => m !== '' && isTsKey(ts) }),
  daily: cursorListing('readings.daily', ['string', 'string', 'string'], { accepts: ([m, day, h]) => m !== '' && isDayKeyText(day) && h !== '' }),
  monthly: cursorListing('readings.monthly', ['string', 'string', 'string'], { accepts: ([m, month, h]) => m !== '' && isMonth(month) && h !== '' }),
}

function isValidDate(d: unknown): d is Date {
  return d instanceof Date && !Number.isNaN(d.getTime())
}

function validate(query: ReadingsQuery): void {
  assert(query.householdId !== undefined || query.windows !== undefined, 'listReadings needs an owner or release windows')
  if (!GRANULARITIES.includes(query.granularity)) {
    throw new InvalidInputError(`granularity: expected one of ${GRANULARITIES.join(', ')}`, 'granularity')
  }
  if (!isValidDate(query.from)) throw new InvalidInputError('from: expected an RFC 3339 timestamp', 'from')
  if (!isValidDate(query.to)) throw new InvalidInputError('to: expected an RFC 3339 timestamp', 'to')
  // [from, from) is empty, not wrong: answered with an empty page.
  if (query.to.getTime() < query.from.getTime()) throw new InvalidInputError('to: must not be before from', 'to')
  if (!Number.isInteger(query.limit) || query.limit < 1 || query.limit > READINGS_PAGE_LIMIT_MAX) {
    throw new InvalidInputError(`limit: must be an integer from 1 to ${READINGS_PAGE_LIMIT_MAX}`, 'limit')
  }
  if (query.meterIds !== 'all-of-household') {
    if (query.meterIds.length > READINGS_METER_IDS_MAX) {
      throw new InvalidInputError(`meterId: at most ${READINGS_METER_IDS_MAX} meters`, 'meterId')
    }
    if (query.meterIds.some((m) => typeof m !== 'string' || m === '')) throw new InvalidInputError('meterId: must not be empty', 'meterId')
  }
}

/** One page of owned datums, ordered by (meterId, ts | day | month, owner). */
export async function listReadings(db: Kysely<Database>, query: ReadingsQuery, ctx: MeteringContext): Promise<ReadingsPage> {
  validate(query)
  const scope = query.cursorScope ?? ''
  const after = query.cursor === undefined ? null : CURSOR[query.granularity].decode(query.cursor, scope)
  // A window that names another owner, or holds no instant, selects nothing.
  const windowsByMeter = new Map<string, ReleaseWindow[]>()
  for (const w of query.windows ?? []) {
    if (query.householdId !== undefined && w.householdId !== query.householdId) continue
    if (w.until !== null && w.until.getTime() <= w.from.getTime()) continue
    const list = windowsByMeter.get(w.meterId) ?? []
    list.push(w)
    windowsByMeter.set(w.meterId, list)
  }

  let meters: string[]
  if (query.meterIds !== 'all-of-household') meters = [...query.meterIds]
  else if (query.windows !== undefined) meters = [...windowsByMeter.keys()]
  else meters = await metersOfHousehold(db, query.householdId!)
  if (query.windows !== undefined) meters = meters.filter((m) => windowsByMeter.has(m))
  meters = [...new Set(meters)].sort()

  const want = query.limit + 1
  const collected: { datum: EgressDatum; key: Key }[] = []
  for (const meterId of meters) {
    if (collected.length >= want) break
    if (after !== null && meterId < after[0]!) continue
    const afterWithin = after !== null && meterId === after[0] ? after : null
    const scope: MeterScope = {
      meterId,
      householdId: query.householdId,
      windows: query.windows === undefined ? undefined : (windowsByMeter.get(meterId) ?? []),
    }
    const n = want - collected.length
    const page =
      query.granularity === 'load_curve'
        ? await loadCurvePage(db, scope, query, afterWithin, n)
        : query.granularity === 'daily'
          ? await dailyPage(db, scope, query, afterWithin, n, ctx)
          : await monthlyPage(db, scope, query, afterWithin, n, ctx)
    collected.push(...page.items)
  }

  const hasMore = collected.length > query.limit
  const items = collected.slice(0, query.limit)
  const last = items[items.length - 1]
  return {
    items: items.map((i) => i.datum),
    nextCursor: hasMore && last !== undefined ? CURSOR[query.granularity].encode(last.key, scope) : null,
  }
}

interface MeterScope {
  meterId: string
  householdId: string | undefined
  /** Undefined: no windows (owner filter only); otherwise this meter's windows. */
  windows: ReleaseWindow[] | undefined
}

async function loadCurvePage(
  db: Kysely<Database>,
  scope: MeterScope,
  query: ReadingsQuery,
  after: Key | null,
  limit: number,
): Promise<MeterPage> {
  let from = query.from
  let to = query.to
  let windows: InstantWindow[] | undefined
  if (scope.windows !== undefined) {
    // Scan only the hull of the windows.
    windows = scope.windows.map((w) => ({ householdId: w.householdId, from: w.from, until: w.until }))
    const hullFrom = Math.min(...windows.map((w) => w.from.getTime()))
    const hullTo = windows.some((w) => w.until === null) ? Infinity : Math.max(...windows.map((w) => w.until!.getTime()))
    if (hullFrom > from.getTime()) from = new Date(hullFrom)
    if (hullTo < to.getTime()) to = new Date(hullTo)
    if (from.getTime() >= to.getTime()) return { items: [] }
  }
  const rows = await pageReadings(
    db,
    { meterId: scope.meterId, from, to, householdId: scope.householdId, windows },
    after === null ? null : after[1]!,
    limit,
  )
  return {
    items: rows.map((r) => {
      const datum: LoadCurveDatum = { meterId: r.meterId, ts: formatTimestamp(r.ts), granularity: 'load_curve', values: r.values }
      return { datum, key: [r.meterId, r.tsKey] }
    }),
  }
}

function dayWindows(scope: MeterScope, ctx: MeteringContext): DayWindow[] | undefined {
  if (scope.windows === undefined) return undefined
  return scope.windows
    .map((w) => ({
      householdId: w.householdId,
      fromDay: firstDayStartingAtOrAfter(w.from, ctx.timezone),
      untilDay: w.until === null ? null : lastDayEndingBy(w.until, ctx.timezone),
    }))
    .filter((w) => w.untilDay === null || w.fromDay <= w.untilDay)
}

/** The rollup groups of a scope in [fromDay, toDay]; null when nothing can be selected. */
function rollupFilter(scope: MeterScope, fromDay: string, toDay: string, ctx: MeteringContext): RollupPageFilter | null {
  if (fromDay > toDay) return null
  const windows = dayWindows(scope, ctx)
  if (windows !== undefined && windows.length === 0) return null
  return { timezone: ctx.timezone, meterId: scope.meterId, fromDay, toDay, householdId: scope.householdId, windows }
}

/** The daily energy of each group of a meter in [fromDay, toDay], by household and day. */
async function dailyEnergiesOf(
  db: Kysely<Database>,
  meterId: string,
  fromDay: string,
  toDay: string,
): Promise<(householdId: string, day: string) => RegisterValues> {
  // The page chose its days (rollupFilter): their values only.
  const [context] = await loadRollupContexts(db, [{ meterId, fromDay, toDay }], null)
  const byGroup = new Map<string, RegisterValues>()
  for (const e of dailyEnergies(context!.groups, context!.baseline)) byGroup.set(groupKey(e.householdId, e.day), e.values)
  return (householdId, day) => {
    const values = byGroup.get(groupKey(householdId, day))
    assert(values !== undefined, 'a listed rollup group is in its context')
    return values
  }
}

function groupKey(householdId: string | null, day: string): string {
  return JSON.stringify([householdId, day])
}

async function dailyPage(
  db: Kysely<Database>,
  scope: MeterScope,
  query: ReadingsQuery,
  after: Key | null,
  limit: number,
  ctx: MeteringContext,
): Promise<MeterPage> {
  const filter = rollupFilter(scope, firstDayStartingAtOrAfter(query.from, ctx.timezone), lastDayStartingBefore(query.to, ctx.timezone), ctx)
  if (filter === null) return { items: [] }
  const rows = await pageDailyGroups(db, filter, after === null ? null : { day: after[1]!, householdId: after[2]! }, limit)
  if (rows.length === 0) return { items: [] }
  const energyOf = await dailyEnergiesOf(db, scope.meterId, rows[0]!.day, rows[rows.length - 1]!.day)
  return {
    items: rows.map((r) => {
      const datum: DailyDatum = { meterId: scope.meterId, day: r.day, granularity: 'daily', values: energyOf(r.householdId, r.day) }
      return { datum, key: [scope.meterId, r.day, r.householdId] }
    }),
  }
}

async function monthlyPage(
  db: Kysely<Database>,
  scope: MeterScope,
  query: ReadingsQuery,
  after: Key | null,
  limit: number,
  ctx: MeteringContext,
): Promise<MeterPage> {
  const fromMonth = firstMonthStartingAtOrAfter(query.from, ctx.timezone)
  const toMonth = lastMonthStartingBefore(query.to, ctx.timezone)
  const filter = rollupFilter(scope, firstDayOfMonth(fromMonth), lastDayOfMonth(toMonth), ctx)
  if (filter === null) return { items: [] }
  const rows = await pageMonthlyGroups(db, filter, after === null ? null : { month: after[1]!, householdId: after[2]! }, limit)
  if (rows.length === 0) return { items: [] }
  const days = rows.flatMap((r) => r.days).sort()
  const energyOf = await dailyEnergiesOf(db, scope.meterId, days[0]!, days[days.length - 1]!)
  return {
    items: rows.map((r) => {
      const daily = r.days.map((day): GroupEnergy => ({ meterId: scope.meterId, householdId: r.householdId, day, values: energyOf(r.householdId, day) }))
      const [month] = monthlyEnergies(daily)
      assert(month !== undefined && month.month === r.month, 'the days of a month sum to that month')
      const datum: MonthlyDatum = { meterId: scope.meterId, month: r.month, granularity: 'monthly', values: month.values }
      return { datum, key: [scope.meterId, r.month, r.householdId] }
    }),
  }
}
