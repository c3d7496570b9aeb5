import type { Kysely } from 'kysely'
import { addDays, addMonths, datumDayOf, dayOf, monthOf, startOfDayMs } from '../../shared/calendar.ts'
import { cursorListing } from '../../shared/cursor.ts'
import type { Database } from '../../shared/db/schema.ts'
import { InvalidInputError } from '../../shared/errors.ts'
import type { Metrics } from '../../shared/metrics.ts'
import { GRANULARITIES, type EgressDatum, type Granularity } from '../../shared/wire.ts'
import { latestReadingTimes, listReadings, type ReleaseWindow as ReadingWindow } from '../metering/reading-service.ts'
import { addAccessCounts, type AccessCount } from './access-log-repository.ts'
import { consentedMeterSlice, loadConsentFacts, loadOccupancyFacts, occupanciesByMeter } from './release-facts-repository.ts'
import { datumEndMs, datumInstantMs, releasedTo, releaseWindows, type ReleaseWindow } from './release-rule.ts'

/**
 * The pull API of recipients (`GET /data/readings`): exactly the data the release rule
 * releases to the recipient now, in the egress payload shapes. The rule yields release
 * windows per (meter, household); each group is read with `listReadings` under that
 * group's windows, so every item's owner is known, and every item is checked with the
 * rule again before it leaves. Items come in (meter, household, time) order. Every datum
 * returned is counted in the access log (channel 'http') and in
 * metershare_datums_released_total{channel="http"}.
 *
 * A meter the recipient holds no consent for yields no window: the answer is an empty page,
 * exactly as for a meter that does not exist. Days and months are released once over, and once
 * their meter has sent data stamped after them.
 */

/** Groups (meter, household) read per page at most; a page may end early, with a cursor. */
export const PULL_GROUPS_PER_PAGE_MAX = 200

export interface ReleasedReadingsQuery {
  /** Absent: every meter the recipient may see. */
  meterId?: string | undefined
  from: Date
  to: Date
  granularity: Granularity
  cursor?: string | undefined
  /** What the query's cursors belong to (readingsCursorScope: the recipient, the meter, the range as asked); none when absent. */
  cursorScope?: string | undefined
  limit: number
}

export interface ReleasedReadingsContext {
  timezone: string
  now: Date
  metrics?: Metrics | undefined
  /** Whether the page is sent (false for a HEAD request): only data sent is counted as released. */
  sent?: boolean | undefined
  /** PULL_GROUPS_PER_PAGE_MAX, but for tests. */
  groupsPerPageMax?: number | undefined
}

export interface ReleasedReadingsPage {
  items: EgressDatum[]
  nextCursor: string | null
}

interface Position {
  meterId: string
  householdId: string
  /** listReadings' cursor inside that group; null = from its start. */
  inner: string | null
}

/** Keyed by (granularity, meterId, householdId, inner). */
const CURSOR = cursorListing('data.readings', ['string', 'string', 'string', 'string?'])

function encodePosition(granularity: Granularity, p: Position, scope: string): string {
  return CURSOR.encode([granularity, p.meterId, p.householdId, p.inner], scope)
}

function decodePosition(cursor: string, granularity: Granularity, scope: string): Position {
  const [madeFor, meterId, householdId, inner] = CURSOR.decode(cursor, scope)
  if (madeFor !== granularity) throw new InvalidInputError('cursor: made for another granularity', 'cursor')
  return { meterId, householdId, inner }
}

/** A household id above every real one (ids are ASCII): a position after all of a meter's groups. */
const AFTER_EVERY_HOUSEHOLD = '\u{10ffff}'

function groupKey(meterId: string, householdId: string): string {
  return meterId + '\u0000' + householdId
}

/**
 * The rule's windows in listReadings' terms. The rule releases a daily (monthly) datum when
 * its day's (month's) start lies in the window; listReadings selects a day when the whole
 * day lies in its window, and a month's days likewise: so a window is widened to the end of
 * its last selected day (month), and for months narrowed to the first whole month.
 */
function toReadingWindow(w: ReleaseWindow, granularity: Granularity, timezone: string): ReadingWindow | null {
  if (granularity === 'load_curve') {
    return { meterId: w.meterId, householdId: w.householdId, from: new Date(w.fromMs), until: w.untilMs === null ? null : new Date(w.untilMs) }
  }
  if (granularity === 'daily') {
    const until = w.untilMs === null ? null : startOfDayMs(addDays(dayOf(w.untilMs - 1, timezone), 1), timezone)
    return { meterId: w.meterId, householdId: w.householdId, from: new Date(w.fromMs), until: until === null ? null : new Date(until) }
  }
  const firstMonth = monthOf(w.fromMs, timezone)
  const fromMs = startOfDayMs(firstMonth + '-01', timezone) === w.fromMs ? w.fromMs : startOfDayMs(addMonths(firstMonth, 1) + '-01', timezone)
  const untilMs = w.untilMs === null ? null : startOfDayMs(addMonths(monthOf(w.untilMs - 1, timezone), 1) + '-01', timezone)
  if (untilMs !== null && untilMs <= fromMs) return null
  return { meterId: w.meterId, householdId: w.householdId, from: new Date(fromMs), until: untilMs === null ? null : new Date(untilMs) }
}

/** Where the day or month under way at `nowMs` began; for the load curve, no bound (a reading is final when stored). */
function currentPeriodStartMs(granularity: Granularity, nowMs: number, timeZone: string): number {
  switch (granularity) {
    case 'load_curve':
      return Infinity
    case 'daily':
      return startOfDayMs(dayOf(nowMs, timeZone), timeZone)
    case 'monthly':
      return startOfDayMs(monthOf(nowMs, timeZone) + '-01', timeZone)
  }
}


export async function listReleasedReadings(
  db: Kysely<Database>,
  recipientId: string,
  query: ReleasedReadingsQuery,
  ctx: ReleasedReadingsContext,
): Promise<ReleasedReadingsPage> {
  if (!GRANULARITIES.includes(query.granularity)) {
    throw new InvalidInputError(`granularity: expected one of ${GRANULARITIES.join(', ')}`, 'granularity')
  }
  const scope = query.cursorScope ?? ''
  const start = query.cursor === undefined ? null : decodePosition(query.cursor, query.granularity, scope)
  // listReadings' own checks of from, to and limit, before anything is read (no window: no query),
  // so that every recipient gets the same answer to the same bad input.
  await listReadings(db, { meterIds: [], windows: [], from: query.from, to: query.to, granularity: query.granularity, limit: query.limit }, { timezone: ctx.timezone })
  const nowMs = ctx.now.getTime()
  // A day or month is released once it is over, as `daily/` publishes it and as settlement charges
  // it: the one under way is left out (its start would lie in [from, to) otherwise), and so is one
  // whose meter has sent nothing stamped after it yet (`daily/`'s rule: a meter replaying or
  // catching up on past days is still filling them in).
  const to = new Date(Math.min(query.to.getTime(), currentPeriodStartMs(query.granularity, nowMs, ctx.timezone)))
  if (to.getTime() <= query.from.getTime()) return { items: [], nextCursor: null }

  // This page's meters: from the cursor's on, at most as many as a page reads groups (each meter has
  // one at least), with the consents and occupancies that decide them: not every consent of a
  // recipient that may see a district, on every page.
  const groupsMax = ctx.groupsPerPageMax ?? PULL_GROUPS_PER_PAGE_MAX
  const pastMeter = start !== null && start.householdId === AFTER_EVERY_HOUSEHOLD
  // One meter more than a page reads tells whether any lie beyond it.
  const meterIds = await consentedMeterSlice(db, recipientId, {
    fromMeterId: start === null || pastMeter ? undefined : start.meterId,
    afterMeterId: pastMeter ? start.meterId : undefined,
    meterId: query.meterId,
    limit: groupsMax + 1,
  })
  const sliceEnds = meterIds.length <= groupsMax
  if (!sliceEnds) meterIds.pop()
  const consents = await loadConsentFacts(db, { recipientId, statuses: ['active'], meterIds })
  const occupancies = occupanciesByMeter(await loadOccupancyFacts(db, { meterIds }))
  const inSlice = new Set(meterIds)
  // The latest reading of each meter read on this page (one index probe per meter, when first read).
  const latestByMeter = new Map<string, number>()
  // A consent of the slice may name meters beyond it: those are another page's.
  const windows = releaseWindows(recipientId, query.granularity, consents, occupancies, nowMs).filter((w) => inSlice.has(w.meterId))

  const groups = new Map<string, ReadingWindow[]>()
  for (const w of windows) {
    const rw = toReadingWindow(w, query.granularity, ctx.timezone)
    if (rw === null) continue
    const key = groupKey(w.meterId, w.householdId)
    const list = groups.get(key) ?? []
    list.push(rw)
    groups.set(key, list)
  }
  const keys = [...groups.keys()].sort()
  let index = 0
  let inner: string | null = null
  if (start !== null) {
    const startKey = groupKey(start.meterId, start.householdId)
    while (index < keys.length && keys[index]! < startKey) index++
    if (keys[index] === startKey) inner = start.inner
  }

  const items: EgressDatum[] = []
  const released = new Map<string, AccessCount>()
  let nextCursor: string | null = null
  let groupsRead = 0

  for (; index < keys.length; index++) {
    const key = keys[index]!
    const groupWindows = groups.get(key)!
    const { meterId, householdId } = groupWindows[0]!
    if (items.length >= query.limit || groupsRead >= groupsMax) {
      nextCursor = encodePosition(query.granularity, { meterId, householdId, inner }, scope)
      break
    }
    groupsRead++
    const page = await listReadings(
      db,
      {
        meterIds: [meterId],
        householdId,
        windows: groupWindows,
        from: query.from,
        to,
        granularity: query.granularity,
        cursor: inner ?? undefined,
        limit: query.limit - items.length,
      },
      { timezone: ctx.timezone },
    )
    const meterOccupancies = occupancies.get(meterId) ?? []
    if (query.granularity !== 'load_curve' && page.items.length > 0 && !latestByMeter.has(meterId)) {
      latestByMeter.set(meterId, (await latestReadingTimes(db, [meterId])).get(meterId) ?? -Infinity)
    }
    for (const datum of page.items) {
      const ref = {
        meterId,
        granularity: datum.granularity,
        ts: datum.granularity === 'load_curve' ? Date.parse(datum.ts) : undefined,
        day: datum.granularity === 'daily' ? datum.day : undefined,
        month: datum.granularity === 'monthly' ? datum.month : undefined,
      }
      const atMs = datumInstantMs(ref, ctx.timezone)
      if (atMs === null) continue
      const endMs = datumEndMs(ref, ctx.timezone) ?? undefined
      if (endMs !== undefined && latestByMeter.get(meterId)! < endMs) continue
      const owner = releasedTo(recipientId, { meterId, granularity: datum.granularity, atMs, householdId, endMs }, consents, meterOccupancies, nowMs)
      if (owner !== householdId) continue
      items.push(datum)
      // Counted by the local day the datum belongs to (a month's datum: its first day), as live delivery counts.
      const day = datum.granularity === 'load_curve' ? datumDayOf(atMs, ctx.timezone) : datum.granularity === 'daily' ? datum.day : datum.month + '-01'
      const countKey = key + '\u0000' + day
      const count = released.get(countKey)
      if (count === undefined) released.set(countKey, { recipientId, householdId, meterId, day, channel: 'http', datums: 1n })
      else count.datums++
    }
    if (page.nextCursor !== null) {
      nextCursor = encodePosition(query.granularity, { meterId, householdId, inner: page.nextCursor }, scope)
      break
    }
    inner = null
  }
  // Every group of the slice read, and meters beyond it: the next page starts after its last meter.
  if (nextCursor === null && !sliceEnds && index === keys.length) {
    nextCursor = encodePosition(query.granularity, { meterId: meterIds.at(-1)!, householdId: AFTER_EVERY_HOUSEHOLD, inner: null }, scope)
  }

  if (released.size > 0 && ctx.sent !== false) {
    await addAccessCounts(db, [...released.values()])
    ctx.metrics?.datumsReleased.labels('http').inc(items.length)
  }
  return { items, nextCursor }
}
