import type { Kysely } from 'kysely'
import { addDays, datumDayOf, dayOf } from '../../shared/calendar.ts'
import type { Database } from '../../shared/db/schema.ts'
import type { DailyDatum } from '../../shared/wire.ts'
import { dailyEnergies } from './daily-energy.ts'
import type { MeteringContext } from './metering-context.ts'
import { groupKeysBetween, loadRollupContexts, neighbourDays, type NeighbourDays, type RollupContext } from './rollup-repository.ts'

/**
 * Which daily datums to publish after an ingest batch commits. A day of a meter is complete
 * once the meter has a datum stamped at or after the day's end: the reading at midnight, which
 * closes the day's last interval and belongs to it, or any later one. So:
 * - a batch that stores a day's closing reading, or touches an already complete day (late data),
 *   publishes that day, and the next day with data when complete (its predecessor's index moved);
 * - a batch that starts a meter's new latest day completes the day with data before it, unless
 *   that day held its closing reading already (it was published then).
 * Groups owned by nobody are never published; one datum per (meter, household, day).
 */

export interface TouchedGroup {
  meterId: string
  /** Local day, YYYY-MM-DD. */
  day: string
  /** The batch inserted this rollup row (it did not exist before). */
  created: boolean
  /**
   * The row's household, when the caller knows it. With it, a group created on a day that
   * already had another group (a move-in during the day) does not publish the previous
   * day a second time.
   */
  householdId?: string | null | undefined
}

export type PublishedDailyDatum = DailyDatum & { householdId: string }

function pairKey(meterId: string, day: string): string {
  return JSON.stringify([meterId, day])
}

function compareKeys(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1
  return 0
}

/** `ctx` is the system's calendar; the touched days arrive already cut in it. */
export async function dailyDatumsToPublish(
  db: Kysely<Database>,
  touched: readonly TouchedGroup[],
  ctx: MeteringContext,
): Promise<PublishedDailyDatum[]> {
  if (touched.length === 0) return []
  const pairs = new Map<string, { meterId: string; day: string }>()
  for (const t of touched) pairs.set(pairKey(t.meterId, t.day), { meterId: t.meterId, day: t.day })
  const neighbours = await neighbourDays(db, [...pairs.values()])

  // A meter's days through the one its latest datum closes or passes are complete.
  const lastComplete = (n: NeighbourDays): string | null => (n.lastTs === null ? null : addDays(dayOf(n.lastTs, ctx.timezone), -1))
  const candidates = new Map<string, { meterId: string; day: string }>()
  const add = (meterId: string, day: string) => candidates.set(pairKey(meterId, day), { meterId, day })
  for (const n of neighbours) {
    const through = lastComplete(n)
    if (through === null || n.day > through) continue
    add(n.meterId, n.day)
    if (n.nextDay !== null && n.nextDay <= through) add(n.meterId, n.nextDay)
  }

  // A created group completes the previous day with data only if that day was the meter's
  // latest before the batch: every group after it must have been created by this batch.
  const createdByMeter = new Map<string, TouchedGroup[]>()
  for (const t of touched) {
    if (!t.created) continue
    const list = createdByMeter.get(t.meterId) ?? []
    list.push(t)
    createdByMeter.set(t.meterId, list)
  }
  const checks: { meterId: string; afterDay: string; throughDay: string; created: TouchedGroup[] }[] = []
  const checked = new Set<string>()
  for (const n of neighbours) {
    const created = createdByMeter.get(n.meterId)
    if (created === undefined || n.prevDay === null || !created.some((c) => c.day === n.day)) continue
    // Closed by its own midnight reading: complete before (published then) or touched now (above).
    if (n.prevLastTs !== null && dayOf(n.prevLastTs, ctx.timezone) !== n.prevDay) continue
    const throughDay = created.reduce((max, c) => (c.day > max ? c.day : max), created[0]!.day)
    const latestDay = n.lastTs === null ? null : datumDayOf(n.lastTs, ctx.timezone)
    if (latestDay !== null && latestDay > throughDay) continue
    const key = pairKey(n.meterId, n.prevDay)
    if (checked.has(key) || candidates.has(key)) continue
    checked.add(key)
    checks.push({ meterId: n.meterId, afterDay: n.prevDay, throughDay, created })
  }
  const later = await groupKeysBetween(db, checks)
  checks.forEach((check, i) => {
    const exact = check.created.every((c) => c.householdId !== undefined)
    const createdGroups = new Set(check.created.map((c) => (exact ? JSON.stringify([c.day, c.householdId]) : c.day)))
    const allNew = later[i]!.every((g) => createdGroups.has(exact ? JSON.stringify([g.day, g.householdId]) : g.day))
    if (allNew) add(check.meterId, check.afterDay)
  })

  const days = [...candidates.values()].sort((a, b) => compareKeys([a.meterId, a.day], [b.meterId, b.day]))
  return releasedDaysOf(await loadRollupContexts(db, days.map((d) => ({ meterId: d.meterId, fromDay: d.day, toDay: d.day })), ctx.timezone))
}

/**
 * The days of the contexts' groups that are released to recipients as days: owned, a daily datum
 * (isDailyDatum: a group that measures no interval is no day) and final (isFinalDay: one whose energy
 * a late datum could still change is not), sorted by meter, day and household. The caller has cut the
 * spans to complete days.
 */
function releasedDaysOf(contexts: readonly RollupContext[]): PublishedDailyDatum[] {
  const out: PublishedDailyDatum[] = []
  for (const context of contexts) {
    const notDays = new Set(context.groups.filter((g) => g.datum === false || g.final === false).map((g) => JSON.stringify([g.householdId, g.day])))
    for (const e of dailyEnergies(context.groups, context.baseline)) {
      if (e.householdId === null || notDays.has(JSON.stringify([e.householdId, e.day]))) continue
      out.push({ meterId: e.meterId, day: e.day, granularity: 'daily', values: e.values, householdId: e.householdId })
    }
  }
  out.sort((a, b) => compareKeys([a.meterId, a.day, a.householdId], [b.meterId, b.day, b.householdId]))
  return out
}

/**
 * The days of one meter in [fromDay, toDay] published on `daily/` as things stand: complete (the
 * meter has a datum stamped at or after the day's end) and released as days (releasedDaysOf). Run in
 * an occupancy change's transaction before and after it, to find the days the change made due.
 */
export async function publishedDaysBetween(db: Kysely<Database>, meterId: string, fromDay: string, toDay: string, ctx: MeteringContext): Promise<PublishedDailyDatum[]> {
  const [latest] = await neighbourDays(db, [{ meterId, day: fromDay }])
  if (latest === undefined || latest.lastTs === null) return []
  const through = addDays(dayOf(latest.lastTs, ctx.timezone), -1)
  const last = toDay < through ? toDay : through
  if (last < fromDay) return []
  return releasedDaysOf(await loadRollupContexts(db, [{ meterId, fromDay, toDay: last }], ctx.timezone))
}

/**
 * What an occupancy change makes due on `daily/`: the days published after it (`after`) that were not
 * published, for the same household with the same values, before it (`before`). A day that changed
 * owner is due for its new owner; one whose owner and energy stand is not published again.
 */
export function newlyPublishedDays(before: readonly PublishedDailyDatum[], after: readonly PublishedDailyDatum[]): PublishedDailyDatum[] {
  const key = (d: PublishedDailyDatum): string => JSON.stringify([d.meterId, d.householdId, d.day, Object.entries(d.values).sort(([a], [b]) => (a < b ? -1 : 1))])
  const was = new Set(before.map(key))
  return after.filter((d) => !was.has(key(d)))
}
