import { sql, type Kysely, type RawBuilder } from 'kysely'
import { addDays, datumDayOf, startOfDayMs } from '../../shared/calendar.ts'
import type { Database } from '../../shared/db/schema.ts'
import { OBIS_REGISTERS } from '../../shared/obis.ts'
import type { RegisterValues } from '../../shared/wire.ts'
import type { BaselineIndex, RollupGroup } from './daily-energy.ts'

/**
 * Daily rollups (one row per meter, household, local day). The ingest transaction keeps
 * them current; `rebuildRollups` recomputes them from the readings of a bounded range after
 * an occupancy change, and is the only code here that scans raw readings.
 */

/** Days recomputed per statement, so that one statement's work stays bounded. */
export const REBUILD_DAYS_PER_STATEMENT = 31

const CUMULATIVE_CODES: readonly string[] = [...OBIS_REGISTERS.values()].filter((r) => r.kind === 'cumulative').map((r) => r.code)

/**
 * Recomputes the rollups of every local day of `meterId` holding a datum stamped in [from, to)
 * (to null = open: through the meter's latest reading) from the readings as they are now
 * attributed. Day D holds the datums stamped in (D 00:00, D+1 00:00] (`datumDayOf`). Run it in
 * the transaction that changed the attribution.
 */
export async function rebuildRollups(trx: Kysely<Database>, meterId: string, from: Date, to: Date | null, timezone: string): Promise<void> {
  if (to !== null && to.getTime() <= from.getTime()) return
  // Only the days that hold readings or rollups: an occupancy may span decades (a move-out planned for
  // 2099), and each day walked costs a calendar computation even where there is nothing to rebuild.
  const askedFirst = datumDayOf(from, timezone)
  const askedLast = to === null ? null : datumDayOf(to.getTime() - 1, timezone)
  const start = new Date(startOfDayMs(askedFirst, timezone))
  const end = askedLast === null ? null : new Date(startOfDayMs(addDays(askedLast, 1), timezone))
  const { rows } = await sql<{ first_ts: Date | null; last_ts: Date | null; first_day: string | null; last_day: string | null }>`
    SELECT (SELECT min(ts) FROM readings WHERE meter_id = ${meterId} AND ts > ${start} AND (${end}::timestamptz IS NULL OR ts <= ${end})) AS first_ts,
           (SELECT max(ts) FROM readings WHERE meter_id = ${meterId} AND ts > ${start} AND (${end}::timestamptz IS NULL OR ts <= ${end})) AS last_ts,
           (SELECT min(day) FROM daily_rollups WHERE meter_id = ${meterId} AND day >= ${askedFirst}::date AND (${askedLast}::date IS NULL OR day <= ${askedLast}::date)) AS first_day,
           (SELECT max(day) FROM daily_rollups WHERE meter_id = ${meterId} AND day >= ${askedFirst}::date AND (${askedLast}::date IS NULL OR day <= ${askedLast}::date)) AS last_day`.execute(trx)
  const extent = rows[0]!
  const firsts = [extent.first_ts === null ? null : datumDayOf(extent.first_ts, timezone), extent.first_day].filter((d): d is string => d !== null)
  const lasts = [extent.last_ts === null ? null : datumDayOf(extent.last_ts, timezone), extent.last_day].filter((d): d is string => d !== null)
  if (firsts.length === 0 || lasts.length === 0) return
  const firstDay = firsts.reduce((a, b) => (a < b ? a : b))
  const lastDay = lasts.reduce((a, b) => (a > b ? a : b))

  for (let chunkFirst = firstDay; chunkFirst <= lastDay; chunkFirst = addDays(chunkFirst, REBUILD_DAYS_PER_STATEMENT)) {
    const days: string[] = []
    for (let d = chunkFirst; d <= lastDay && days.length < REBUILD_DAYS_PER_STATEMENT; d = addDays(d, 1)) days.push(d)
    const bounds = [...days, addDays(days[days.length - 1]!, 1)].map((d) => startOfDayMs(d, timezone))
    const starts = bounds.slice(0, -1).map((ms) => new Date(ms).toISOString())
    const ends = bounds.slice(1).map((ms) => new Date(ms).toISOString())
    const chunkStart = new Date(bounds[0]!)
    const chunkEnd = new Date(bounds[bounds.length - 1]!)

    await sql`DELETE FROM daily_rollups WHERE meter_id = ${meterId} AND day >= ${days[0]}::date AND day <= ${days[days.length - 1]}::date`.execute(trx)
    await sql`
      WITH d AS (
        SELECT * FROM unnest(${days}::date[], ${starts}::timestamptz[], ${ends}::timestamptz[]) AS d(day, start_ts, end_ts)
      ), rd AS (
        SELECT r.household_id, d.day, r.ts, r.values
        FROM d JOIN readings r ON r.meter_id = ${meterId} AND r.ts > d.start_ts AND r.ts <= d.end_ts
        WHERE r.meter_id = ${meterId} AND r.ts > ${chunkStart} AND r.ts <= ${chunkEnd}
      ), g AS (
        SELECT household_id, day, count(*)::int AS n, min(ts) AS first_ts, max(ts) AS last_ts FROM rd GROUP BY household_id, day
      ), i AS (
        SELECT household_id, day, jsonb_object_agg(code, lo) AS index_min, jsonb_object_agg(code, hi) AS index_max
        FROM (
          SELECT rd.household_id, rd.day, e.key AS code, min(e.value::bigint) AS lo, max(e.value::bigint) AS hi
          FROM rd CROSS JOIN LATERAL jsonb_each_text(rd.values) AS e
          WHERE e.key = ANY(${CUMULATIVE_CODES}::text[])
          GROUP BY rd.household_id, rd.day, e.key
        ) AS c
        GROUP BY household_id, day
      )
      INSERT INTO daily_rollups (meter_id, household_id, day, readings_count, first_ts, last_ts, index_min, index_max)
      SELECT ${meterId}, g.household_id, g.day, g.n, g.first_ts, g.last_ts,
             coalesce(i.index_min, '{}'::jsonb), coalesce(i.index_max, '{}'::jsonb)
      FROM g LEFT JOIN i ON i.household_id IS NOT DISTINCT FROM g.household_id AND i.day = g.day`.execute(trx)
  }
}

/**
 * Whether a rollup group (alias `g`, `r`…) is a daily datum. One that holds a single reading, its
 * household's first since the meter's previous group (another household's, or none), measures no
 * interval: it has no opening index, so no energy. That is the reading stamped at the midnight that
 * closes the day before a household's first (a move-in at midnight) or before a meter's first reading.
 * Such a group is no day of that household: not published, listed, nor charged as a daily or monthly
 * datum (its reading is a load-curve datum all the same). The rule, in SQL, for every reader of days.
 * The previous group is groupBefore's.
 */
export function isDailyDatum(alias: 'g' | 'r' | 'q' | 'w'): RawBuilder<boolean> {
  const a = sql.raw(alias)
  // The subquery's aliases are none of the caller's: named `q`, it hid a caller's `q` (isFinalMonth's),
  // and compared the group before with itself, so every group after another was a day.
  return sql<boolean>`(${a}.readings_count > 1 OR EXISTS (
    SELECT 1 FROM (${groupBefore('before_g', alias)}) AS group_before WHERE group_before.household_id IS NOT DISTINCT FROM ${a}.household_id))`
}

/**
 * The meter's group before group `alias`: of those that began before it, the one that ended last.
 * Groups of one day hold disjoint stretches of time but one: the readings outside every occupancy
 * (nobody's) may stop for a stay within a day and resume after it, on the same day, in one group
 * (a household cannot: OCCUPANCY_SAME_DAY_RETURN). Taken as the one that began last, that group came
 * before the stay's and hid itself from the group after (a household's next day counted the vacant
 * hours as its own: found by the metering model test); taken as the one that ended last, it is the
 * group before both the stay's (it straddles it) and the next. Either way its datum is
 * the one before theirs, or another household's or nobody's is: the rules need no more. Selects
 * `household_id` and `last_ts`, as `p`; settlement's month count has the same rule as windows.
 */
export function groupBefore(p: string, alias: string): RawBuilder<unknown> {
  const a = sql.raw(alias)
  const q = sql.raw(p)
  return sql`SELECT ${q}.household_id, ${q}.last_ts FROM daily_rollups ${q}
      WHERE ${q}.meter_id = ${a}.meter_id AND ${q}.day <= ${a}.day AND ${q}.first_ts < ${a}.first_ts
      ORDER BY ${q}.day DESC, ${q}.last_ts DESC LIMIT 1`
}

/**
 * Whether a rollup group's daily energy is final: no datum its household could still send changes
 * it. A day's energy is its closing index less its opening one; while either is not the day's own
 * boundary reading, every late datum that moves it changes the day, and a recipient of daily data
 * that watched the day change (live on `daily/`, or pulling it again) would read each interval's
 * energy in the differences: a load curve it was never granted. So a day is released to recipients
 * (published, listed, charged) only once both ends are fixed, with the meter's interval `iv`:
 * - closing: its latest datum is the day's last (the reading at midnight, or the last before it when
 *   no reading on the meter's grid could come between them: a midnight off the grid), or the
 *   household's last before its move-out (no reading on the grid could come before `valid_until`);
 * - opening: the group before it (the meter's previous one) is the household's and holds the reading
 *   at the day's start (read as a closing is); or, for the household's first group (after another's,
 *   or the meter's first data), its first datum is the household's first possible (no reading on the
 *   grid could come between `valid_from` and it). The grid: intervalGrid.
 * A day with a boundary reading missing for good (lost, or after days without data) is never
 * released: its value would reveal part of another day, or change. The household sees its own days
 * as they grow (not through this rule). Cumulative indexes only grow (ingest quarantines
 * regressions), so a day's highest index is its latest datum's.
 */
export function isFinalDay(alias: 'g' | 'r' | 'q', timezone: string): RawBuilder<boolean> {
  const a = sql.raw(alias)
  return sql<boolean>`EXISTS (
    SELECT 1 FROM meters m
    LEFT JOIN LATERAL (${groupBefore('p', alias)}) AS p ON TRUE
    WHERE m.id = ${a}.meter_id AND ${finalDayRule(alias, sql`p.household_id`, sql`p.last_ts`, sql`m.interval_minutes`, timezone)})`
}

/**
 * isFinalDay's rule for group `alias`, given the household and last_ts of the group before it (the
 * meter's previous, any household's; null when none) and the meter's interval in minutes: by a lookup
 * per group (isFinalDay), or from a window over the meter's groups in order (lag), as a month's count
 * does for every group at once.
 */
export function finalDayRule(
  alias: string,
  previousHousehold: RawBuilder<unknown>,
  previousLastTs: RawBuilder<unknown>,
  intervalMinutes: RawBuilder<unknown>,
  timezone: string,
): RawBuilder<boolean> {
  const a = sql.raw(alias)
  const dayStart = sql`(${a}.day::timestamp AT TIME ZONE ${timezone}::text)`
  const dayEnd = sql`((${a}.day + 1)::timestamp AT TIME ZONE ${timezone}::text)`
  const grid = intervalGrid(dayStart, intervalMinutes)
  return sql<boolean>`((${a}.last_ts >= ${dayEnd} OR ${grid.next(sql`${a}.last_ts`)} > ${epochMs(dayEnd)} OR EXISTS (
      SELECT 1 FROM occupancies o
      WHERE o.meter_id = ${a}.meter_id AND o.household_id = ${a}.household_id
        AND o.valid_from <= ${a}.last_ts AND o.valid_until > ${a}.last_ts AND ${grid.next(sql`${a}.last_ts`)} >= ${epochMs(sql`o.valid_until`)}))
    AND CASE WHEN ${previousHousehold} IS NOT DISTINCT FROM ${a}.household_id AND ${previousLastTs} IS NOT NULL
      THEN ${previousLastTs} >= ${dayStart} OR ${grid.next(previousLastTs)} > ${epochMs(dayStart)}
      ELSE EXISTS (
        SELECT 1 FROM occupancies o
        WHERE o.meter_id = ${a}.meter_id AND o.household_id = ${a}.household_id
          AND o.valid_from <= ${a}.first_ts AND (o.valid_until IS NULL OR o.valid_until > ${a}.first_ts)
          AND ${grid.previous(sql`${a}.first_ts`)} < ${epochMs(sql`o.valid_from`)})
    END)`
}

function epochMs(ts: RawBuilder<unknown>): RawBuilder<number> {
  return sql<number>`(extract(epoch FROM ${ts}) * 1000)`
}

/**
 * The meter's interval grid, for finalDayRule: where the nearest reading after (`next`) or before
 * (`previous`) an instant could be stamped, in ms since the epoch. A boundary reading the day lacks
 * (at a midnight, at a move) is stood for by the reading nearest it when no reading could come between
 * them, which holds only for readings on the meter's grid. A meter keeps whole intervals either of
 * the Unix epoch (UTC's quarter-hours, hours) or of local midnights (`localMidnight`: they differ where
 * a zone's offset is not a whole number of intervals, as India's); a reading on either grid is
 * followed by the next a whole interval later. A reading off both (a reading on demand, a meter that
 * reads faster than its registered interval, a clock a few seconds off) could be followed by one on
 * either grid, whichever comes first: a reading at 23:45 of a 30-minute meter once closed its day, and
 * the reading at midnight, arriving after it, changed the day already published (found by probing:
 * 4,750 Wh published, then 5,000).
 */
function intervalGrid(localMidnight: RawBuilder<unknown>, intervalMinutes: RawBuilder<unknown>) {
  const iv = sql`(${intervalMinutes}::numeric * 60000)`
  const local = epochMs(localMidnight)
  const onGrid = (t: RawBuilder<unknown>) => sql`(mod(${t}, ${iv}) = 0 OR mod(${t} - ${local}, ${iv}) = 0)`
  return {
    next: (ts: RawBuilder<unknown>) => {
      const t = epochMs(ts)
      return sql<number>`(CASE WHEN ${onGrid(t)} THEN ${t} + ${iv}
        ELSE least((floor(${t} / ${iv}) + 1) * ${iv}, ${local} + (floor((${t} - ${local}) / ${iv}) + 1) * ${iv}) END)`
    },
    previous: (ts: RawBuilder<unknown>) => {
      const t = epochMs(ts)
      return sql<number>`(CASE WHEN ${onGrid(t)} THEN ${t} - ${iv}
        ELSE greatest(floor(${t} / ${iv}) * ${iv}, ${local} + floor((${t} - ${local}) / ${iv}) * ${iv}) END)`
    },
  }
}

/** A group released to recipients as a day: a daily datum (isDailyDatum) whose energy is final (isFinalDay). */
export function isReleasableDay(alias: 'g' | 'r', timezone: string): RawBuilder<boolean> {
  return sql<boolean>`(${isDailyDatum(alias)} AND ${isFinalDay(alias, timezone)})`
}

/**
 * Whether a household's month of a meter (its daily datums in the month of `monthStart`, a first day)
 * is final, as isFinalDay is for a day (monthFinality's rule). A month's total is the sum of its days:
 * released while a day could still join it or change, a recipient of monthly data reading it again
 * would have each day's energy.
 */
export function isFinalMonth(meterId: RawBuilder<unknown>, householdId: RawBuilder<unknown>, monthStart: RawBuilder<unknown>, timezone: string): RawBuilder<boolean> {
  const days = sql`(SELECT q.meter_id, q.household_id, q.day, ${isFinalDay('q', timezone)} AS final
    FROM daily_rollups q
    WHERE q.meter_id = ${meterId} AND q.household_id = ${householdId}
      AND q.day >= ${monthStart}::date AND q.day < (${monthStart}::date + interval '1 month')::date AND ${isDailyDatum('q')})`
  return sql<boolean>`EXISTS (SELECT 1 FROM ${monthFinality(days, monthStart, timezone)} AS mf WHERE mf.final)`
}

/**
 * The finality of households' months of meters, as a relation (meter_id, household_id, final), from
 * `days`: a relation (meter_id, household_id, day, final) of their daily datums (isDailyDatum) in the
 * month of `monthStart`, each with its isFinalDay. A month is final when every one of its days is and
 * they leave none out: its days, taken as runs of consecutive days, each run opening on the month's
 * first day or a move-in of the household's and closing on the month's last day or a move-out; and
 * every stay of the household's in the month having its days (each move-in in the month that can
 * open a day in it, each move-out that can close one, not a stay's end back to back with another's
 * start, falls within a run: a month with every day in needs no look at the moves). A month the
 * household left and came back to is final once both stays' days are. A move-in opens a day `d`
 * when the household could have no day before it: it moved in that day, or less than an interval
 * before (its first reading possible is the lone midnight one, which is no day). A stay with no day
 * at all (shorter than an interval) leaves its month never final.
 */
export function monthFinality(days: RawBuilder<unknown>, monthStart: RawBuilder<unknown>, timezone: string): RawBuilder<{ meter_id: string; household_id: string; final: boolean }> {
  const tz = sql`${timezone}::text`
  const first = sql`${monthStart}::date`
  const last = sql`(${first} + interval '1 month' - interval '1 day')::date`
  const start = (day: RawBuilder<unknown>): RawBuilder<unknown> => sql`(${day}::timestamp AT TIME ZONE ${tz})`
  const end = (day: RawBuilder<unknown>): RawBuilder<unknown> => sql`((${day} + 1)::timestamp AT TIME ZONE ${tz})`
  const iv = sql`(om.interval_minutes * interval '1 minute')`
  /** Occupancy `o` (its meter `om`) moves the household in so as to open day `day`. */
  const opens = (day: RawBuilder<unknown>): RawBuilder<boolean> => sql`(o.valid_from > ${start(day)} - ${iv} AND o.valid_from <= ${end(day)})`
  /** Occupancy `o` moves the household out so as to close day `day`. */
  const closes = (day: RawBuilder<unknown>): RawBuilder<boolean> => sql`(o.valid_until > ${start(day)} AND o.valid_until <= ${end(day)})`
  const ofPair = (a: string, b: string): RawBuilder<boolean> => sql`${sql.raw(a)}.meter_id = ${sql.raw(b)}.meter_id AND ${sql.raw(a)}.household_id = ${sql.raw(b)}.household_id`
  return sql`(
    WITH runs AS (
      SELECT d.meter_id, d.household_id, min(d.day) AS first_day, max(d.day) AS last_day, bool_and(d.final) AS final
      FROM (SELECT x.meter_id, x.household_id, x.day, x.final, x.day - (dense_rank() OVER (PARTITION BY x.meter_id, x.household_id ORDER BY x.day))::int AS run
        FROM ${days} AS x) AS d
      GROUP BY d.meter_id, d.household_id, d.run
    ), pairs AS (
      SELECT r.meter_id, r.household_id, count(*) = 1 AND min(r.first_day) = ${first} AND max(r.last_day) = ${last} AS whole_month, bool_and(r.final
        AND (r.first_day = ${first} OR EXISTS (SELECT 1 FROM occupancies o JOIN meters om ON om.id = o.meter_id WHERE ${ofPair('o', 'r')} AND ${opens(sql`r.first_day`)}))
        AND (r.last_day = ${last} OR EXISTS (SELECT 1 FROM occupancies o WHERE ${ofPair('o', 'r')} AND ${closes(sql`r.last_day`)}))) AS whole
      FROM runs r GROUP BY r.meter_id, r.household_id
    )
    SELECT p.meter_id, p.household_id, p.whole AND (p.whole_month OR NOT EXISTS (
      SELECT 1 FROM occupancies o JOIN meters om ON om.id = o.meter_id
      WHERE ${ofPair('o', 'p')} AND (
        (o.valid_from >= ${start(first)} AND o.valid_from < ${end(last)} - ${iv}
          AND NOT EXISTS (SELECT 1 FROM occupancies b WHERE ${ofPair('b', 'o')} AND b.valid_until = o.valid_from)
          AND NOT EXISTS (SELECT 1 FROM runs r WHERE ${ofPair('r', 'o')} AND o.valid_from > ${start(sql`r.first_day`)} - ${iv} AND o.valid_from <= ${end(sql`r.last_day`)}))
        OR (o.valid_until > ${start(first)} + ${iv} AND o.valid_until <= ${end(last)}
          AND NOT EXISTS (SELECT 1 FROM occupancies b WHERE ${ofPair('b', 'o')} AND b.valid_from = o.valid_until)
          AND NOT EXISTS (SELECT 1 FROM runs r WHERE ${ofPair('r', 'o')} AND o.valid_until > ${start(sql`r.first_day`)} AND o.valid_until <= ${end(sql`r.last_day`)}))))) AS final
    FROM pairs p)`
}

/** A meter's days [fromDay, toDay] (inclusive) whose daily energies are wanted. */
export interface RollupSpan {
  meterId: string
  fromDay: string
  toDay: string
}

/** What daily energy needs for a span: its groups in last_ts order (groupBefore) and the indexes before them. */
export interface RollupContext {
  groups: RollupGroup[]
  /** Per code present in the span, index_max of the closest earlier group having it, and that group's household. */
  baseline: Record<string, BaselineIndex>
}

/**
 * One context per span, in the order given; every group of the meter (any household) is included.
 * `finalIn`: the calendar in which to tell whether each group is final (isFinalDay, for what is
 * released to recipients); null when the caller selected its groups already (`final` left out).
 */
export async function loadRollupContexts(db: Kysely<Database>, spans: readonly RollupSpan[], finalIn: string | null): Promise<RollupContext[]> {
  const contexts: RollupContext[] = spans.map(() => ({ groups: [], baseline: {} }))
  if (spans.length === 0) return contexts
  const meters = spans.map((s) => s.meterId)
  const fromDays = spans.map((s) => s.fromDay)
  const toDays = spans.map((s) => s.toDay)
  const groups = await sql<{
    i: number
    meter_id: string
    household_id: string | null
    day: string
    first_ts: Date
    last_ts: Date
    index_min: RegisterValues
    index_max: RegisterValues
    datum: boolean
    final: boolean | null
  }>`
    SELECT s.i::int AS i, g.meter_id, g.household_id, g.day, g.first_ts, g.last_ts, g.index_min, g.index_max, ${isDailyDatum('g')} AS datum,
      ${finalIn === null ? sql`NULL::boolean` : isFinalDay('g', finalIn)} AS final
    FROM unnest(${meters}::text[], ${fromDays}::date[], ${toDays}::date[]) WITH ORDINALITY AS s(meter_id, from_day, to_day, i)
    JOIN daily_rollups g ON g.meter_id = s.meter_id AND g.day >= s.from_day AND g.day <= s.to_day
    ORDER BY s.i, g.last_ts`.execute(db)
  // A group another of its day began before and ended after follows nobody's readings (groupBefore):
  // the span holds whole days, so the other is among the rows.
  const straddling = new Map<string, Array<{ first: number; last: number }>>()
  for (const r of groups.rows) {
    const key = `${r.i}\u0000${r.day}`
    const day = straddling.get(key) ?? []
    day.push({ first: r.first_ts.getTime(), last: r.last_ts.getTime() })
    straddling.set(key, day)
  }
  const straddled = (r: { i: number; day: string; first_ts: Date; last_ts: Date }): boolean =>
    straddling.get(`${r.i}\u0000${r.day}`)!.some((o) => o.first < r.first_ts.getTime() && o.last > r.last_ts.getTime())
  for (const r of groups.rows) {
    contexts[r.i - 1]!.groups.push({
      meterId: r.meter_id,
      householdId: r.household_id,
      day: r.day,
      lastTs: r.last_ts,
      ...(straddled(r) ? { straddled: true } : {}),
      indexMin: r.index_min,
      indexMax: r.index_max,
      datum: r.datum,
      ...(r.final === null ? {} : { final: r.final }),
    })
  }
  const baselines = await sql<{ i: number; code: string; value: number; household_id: string | null }>`
    SELECT s.i::int AS i, c.code, b.value, b.household_id
    FROM unnest(${meters}::text[], ${fromDays}::date[], ${toDays}::date[]) WITH ORDINALITY AS s(meter_id, from_day, to_day, i)
    CROSS JOIN LATERAL (
      SELECT DISTINCT jsonb_object_keys(g.index_max) AS code
      FROM daily_rollups g WHERE g.meter_id = s.meter_id AND g.day >= s.from_day AND g.day <= s.to_day
    ) AS c
    CROSS JOIN LATERAL (
      SELECT p.index_max -> c.code AS value, p.household_id
      FROM daily_rollups p
      WHERE p.meter_id = s.meter_id AND p.day < s.from_day AND (p.index_max -> c.code) IS NOT NULL
      ORDER BY p.day DESC, p.last_ts DESC
      LIMIT 1
    ) AS b`.execute(db)
  for (const r of baselines.rows) contexts[r.i - 1]!.baseline[r.code] = { value: r.value, householdId: r.household_id }
  return contexts
}

export interface NeighbourDays {
  meterId: string
  day: string
  /** The closest earlier day with data, and its latest datum's timestamp. */
  prevDay: string | null
  prevLastTs: Date | null
  /** The closest later day with data. */
  nextDay: string | null
  /** The meter's latest datum's timestamp. */
  lastTs: Date | null
}

/** Per meter and day: the closest earlier and later days with data, and the meter's latest datum. */
export async function neighbourDays(db: Kysely<Database>, pairs: readonly { meterId: string; day: string }[]): Promise<NeighbourDays[]> {
  if (pairs.length === 0) return []
  const { rows } = await sql<{ meter_id: string; day: string; prev_day: string | null; prev_last_ts: Date | null; next_day: string | null; last_ts: Date | null }>`
    SELECT t.meter_id, t.day, p.day AS prev_day, p.last_ts AS prev_last_ts,
      (SELECT min(n.day) FROM daily_rollups n WHERE n.meter_id = t.meter_id AND n.day > t.day) AS next_day,
      (SELECT l.last_ts FROM daily_rollups l WHERE l.meter_id = t.meter_id ORDER BY l.day DESC, l.last_ts DESC LIMIT 1) AS last_ts
    FROM unnest(${pairs.map((p) => p.meterId)}::text[], ${pairs.map((p) => p.day)}::date[]) AS t(meter_id, day)
    LEFT JOIN LATERAL (
      SELECT q.day, q.last_ts FROM daily_rollups q WHERE q.meter_id = t.meter_id AND q.day < t.day ORDER BY q.day DESC, q.last_ts DESC LIMIT 1
    ) AS p ON TRUE`.execute(db)
  return rows.map((r) => ({ meterId: r.meter_id, day: r.day, prevDay: r.prev_day, prevLastTs: r.prev_last_ts, nextDay: r.next_day, lastTs: r.last_ts }))
}

/** Per span, the groups (day, household) of the meter in (afterDay, throughDay], in the order given. */
export async function groupKeysBetween(
  db: Kysely<Database>,
  spans: readonly { meterId: string; afterDay: string; throughDay: string }[],
): Promise<{ day: string; householdId: string | null }[][]> {
  const out: { day: string; householdId: string | null }[][] = spans.map(() => [])
  if (spans.length === 0) return out
  const { rows } = await sql<{ i: number; day: string; household_id: string | null }>`
    SELECT s.i::int AS i, g.day, g.household_id
    FROM unnest(${spans.map((s) => s.meterId)}::text[], ${spans.map((s) => s.afterDay)}::date[],
                ${spans.map((s) => s.throughDay)}::date[]) WITH ORDINALITY AS s(meter_id, after_day, through_day, i)
    JOIN daily_rollups g ON g.meter_id = s.meter_id AND g.day > s.after_day AND g.day <= s.through_day
    ORDER BY s.i, g.day, g.first_ts`.execute(db)
  for (const r of rows) out[r.i - 1]!.push({ day: r.day, householdId: r.household_id })
  return out
}

/** Owner filter of a rollup page: one household, or release windows in whole days. */
export interface DayWindow {
  householdId: string
  fromDay: string
  /** Inclusive; null = open. */
  untilDay: string | null
}

export interface RollupPageFilter {
  /** The calendar of the days (for the release of recipients' days: isFinalDay). */
  timezone: string
  meterId: string
  fromDay: string
  toDay: string
  householdId?: string | undefined
  windows?: readonly DayWindow[] | undefined
}

function ownerFilter(f: RollupPageFilter) {
  // A household sees its own days as they grow; a recipient only days whose energy is final.
  const parts = [sql`g.household_id IS NOT NULL`, f.windows === undefined ? isDailyDatum('g') : isReleasableDay('g', f.timezone)]
  if (f.householdId !== undefined) parts.push(sql`g.household_id = ${f.householdId}`)
  if (f.windows !== undefined) {
    parts.push(sql`EXISTS (
      SELECT 1 FROM unnest(${f.windows.map((w) => w.householdId)}::text[], ${f.windows.map((w) => w.fromDay)}::date[],
                           ${f.windows.map((w) => w.untilDay)}::date[]) AS w(household_id, from_day, until_day)
      WHERE w.household_id = g.household_id AND g.day >= w.from_day AND (w.until_day IS NULL OR g.day <= w.until_day))`)
  }
  return sql.join(parts, sql` AND `)
}

/** Owned daily groups of one meter in day order, after a (day, household) key. */
export async function pageDailyGroups(
  db: Kysely<Database>,
  filter: RollupPageFilter,
  after: { day: string; householdId: string } | null,
  limit: number,
): Promise<{ day: string; householdId: string }[]> {
  const afterCondition = after === null ? sql`TRUE` : sql`(g.day, g.household_id) > (${after.day}::date, ${after.householdId}::text)`
  const { rows } = await sql<{ day: string; household_id: string }>`
    SELECT g.day, g.household_id FROM daily_rollups g
    WHERE g.meter_id = ${filter.meterId} AND g.day >= ${filter.fromDay}::date AND g.day <= ${filter.toDay}::date
      AND ${ownerFilter(filter)} AND ${afterCondition}
    ORDER BY g.day, g.household_id
    LIMIT ${limit}`.execute(db)
  return rows.map((r) => ({ day: r.day, householdId: r.household_id }))
}

/** Owned (month, household) groups of one meter in month order, with the days that make them. */
export async function pageMonthlyGroups(
  db: Kysely<Database>,
  filter: RollupPageFilter,
  after: { month: string; householdId: string } | null,
  limit: number,
): Promise<{ month: string; householdId: string; days: string[] }[]> {
  const afterCondition =
    after === null ? sql`TRUE` : sql`(m.month, m.household_id) > (${after.month}::text, ${after.householdId}::text)`
  const { rows } = await sql<{ month: string; household_id: string; days: string[] }>`
    SELECT m.month, m.household_id, m.days FROM (
      SELECT to_char(g.day, 'YYYY-MM') AS month, g.household_id, array_agg(g.day::text ORDER BY g.day) AS days
      FROM daily_rollups g
      WHERE g.meter_id = ${filter.meterId} AND g.day >= ${filter.fromDay}::date AND g.day <= ${filter.toDay}::date
        AND ${ownerFilter(filter)}
      GROUP BY 1, 2
    ) AS m
    WHERE ${afterCondition}
      AND ${filter.windows === undefined ? sql`TRUE` : isFinalMonth(sql`${filter.meterId}::text`, sql`m.household_id`, sql`(m.month || '-01')`, filter.timezone)}
    ORDER BY m.month, m.household_id
    LIMIT ${limit}`.execute(db)
  return rows.map((r) => ({ month: r.month, householdId: r.household_id, days: r.days }))
}
