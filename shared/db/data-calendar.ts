import { sql, type Kysely } from 'kysely'
import { datumDayOf, dayOf, zoneOffsetMs } from '../calendar.ts'
import { ConfigError } from '../errors.ts'
import type { Database } from './schema.ts'

/** The settings key of the time zone that cuts the stored data's days and months. */
export const TIMEZONE_SETTING = 'timezone'

/**
 * The settings key marking daily rollups still cut by the instant each datum is stamped with (before
 * migration 0010): the reading at midnight in the day after it. The first process to start cuts them
 * again (services/metering/rollup-recut.ts) and removes the mark.
 */
export const ROLLUPS_RECUT_SETTING = 'rollups_cut_by_instant'

/** Stored days checked against a zone before it is recorded for data stored before zones were recorded. */
export const ZONE_EVIDENCE_DAYS_MAX = 2_000
/** Zones suggested when the stored days do not match the one asked for. */
const ZONES_SUGGESTED_MAX = 5

/**
 * Days and months are cut in `METERSHARE_TIMEZONE` as data is stored (daily rollups, daily datums
 * published, months settled); they cannot be cut again in another zone. The first process to start on
 * a database records its zone there; any process started later with another zone is refused with a
 * sentence naming both, rather than mixing two calendars in one set of books.
 *
 * A database holding data from before zones were recorded is checked first: each stored day must be
 * the local day, in the zone asked for, of its first and last readings. Otherwise the start is refused,
 * naming zones that fit, rather than recording a zone the stored days contradict.
 */
export async function pinTimezone(db: Kysely<Database>, timezone: string): Promise<void> {
  // Its callers have migrated the schema, or checked it is this version's (requireSchemaCurrent).
  await checkZoneReadAlike(db, timezone)
  let recorded = await recordedTimezone(db)
  if (recorded === undefined) {
    await checkStoredDays(db, timezone)
    await sql`INSERT INTO settings (key, value) VALUES (${TIMEZONE_SETTING}, ${timezone}) ON CONFLICT (key) DO NOTHING`.execute(db)
    recorded = (await recordedTimezone(db))!
  }
  if (recorded !== timezone && zoneId(recorded) !== zoneId(timezone)) {
    throw new ConfigError(
      `METERSHARE_TIMEZONE: this database's days and months are cut in ${recorded} (got "${timezone}"); ` +
        `its stored days, daily data and settled months cannot move to another calendar: start with METERSHARE_TIMEZONE=${recorded}`,
    )
  }
}

/**
 * The span, from its first instant to before its last, and the step, in hours, over which Node.js's
 * and the database's readings of the zone are compared: readings that part do so for days or months
 * (another zone, a summer time one has and the other not), which every 6 hours over three years sees,
 * in ~20 ms of Node.js (hourly took 190 ms, at every start).
 */
const ZONE_CHECK_FROM = '2025-01-01T00:00:00Z'
const ZONE_CHECK_UNTIL = '2028-01-01T00:00:00Z'
const ZONE_CHECK_STEP_HOURS = 6

/** The zone as ICU names it once resolved (`asia/kathmandu` and `Asia/Kathmandu` are one zone); the name itself if none. */
function zoneId(timezone: string): string {
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: timezone }).resolvedOptions().timeZone
  } catch {
    return timezone
  }
}

/** `+05:30` for 19,800 s. */
function offsetText(seconds: number): string {
  const a = Math.abs(seconds)
  return `${seconds < 0 ? '-' : '+'}${String(Math.floor(a / 3600)).padStart(2, '0')}:${String(Math.floor((a % 3600) / 60)).padStart(2, '0')}`
}

/**
 * Days are cut in Node.js (rollups, the calendar of the API) and in SQL (`AT TIME ZONE`: which days are
 * final, released and billed): both must read the zone alike. Node.js takes names that are not IANA
 * zones and PostgreSQL reads otherwise, as abbreviations or not at all (found by probing: `IST` is
 * Kolkata to Node.js and Israel to PostgreSQL, and no day was published or billed; `AET`, Sydney to
 * Node.js, is unknown to PostgreSQL, and settlement answered 500). Such a zone is refused at start.
 */
async function checkZoneReadAlike(db: Kysely<Database>, timezone: string): Promise<void> {
  let rows: { at: Date; offset_s: number }[]
  try {
    rows = (
      await sql<{ at: Date; offset_s: number }>`
        SELECT t AS at, (extract(epoch FROM (t AT TIME ZONE ${timezone})) - extract(epoch FROM t))::int AS offset_s
        FROM generate_series(${ZONE_CHECK_FROM}::timestamptz, ${ZONE_CHECK_UNTIL}::timestamptz - interval '1 second', make_interval(hours => ${ZONE_CHECK_STEP_HOURS})) AS t
        ORDER BY t`.execute(db)
    ).rows
  } catch (err) {
    if (!/time zone .* not recognized/i.test((err as Error).message)) throw err
    throw new ConfigError(`METERSHARE_TIMEZONE: the database does not know "${timezone}": give an IANA zone name (Region/City)${suggestion(timezone)}`)
  }
  for (const row of rows) {
    const node = zoneOffsetMs(row.at.getTime(), timezone) / 1000
    if (node === Number(row.offset_s)) continue
    throw new ConfigError(
      `METERSHARE_TIMEZONE: "${timezone}" is read as UTC${offsetText(node)} by Node.js and as UTC${offsetText(Number(row.offset_s))} by the database ` +
        `at ${row.at.toISOString()}: give an IANA zone name (Region/City) both read alike${suggestion(timezone)}`,
    )
  }
}

/** `, such as Asia/Calcutta` when ICU resolves the name to another one. */
function suggestion(timezone: string): string {
  const id = zoneId(timezone)
  return id !== timezone && id.includes('/') ? `, such as ${id} (what Node.js reads "${timezone}" as)` : ''
}

async function recordedTimezone(db: Kysely<Database>): Promise<string | undefined> {
  return (await db.selectFrom('settings').select('value').where('key', '=', TIMEZONE_SETTING).executeTakeFirst())?.value
}

async function checkStoredDays(db: Kysely<Database>, timezone: string): Promise<void> {
  // Rollups not yet cut again (migration 0010) put a datum in the day of its instant.
  const cutByInstant = (await db.selectFrom('settings').select('key').where('key', '=', ROLLUPS_RECUT_SETTING).executeTakeFirst()) !== undefined
  const dayOfDatum = cutByInstant ? dayOf : datumDayOf
  const days = await db
    .selectFrom('daily_rollups')
    .select(['day', 'first_ts', 'last_ts'])
    .orderBy('day', 'desc')
    .limit(ZONE_EVIDENCE_DAYS_MAX)
    .execute()
  // A stored day's first and last readings both lie in it, in the zone that cut it (its first alone
  // would fit every zone up to a day east of the true one).
  const misfit = (zone: string) => {
    for (const d of days) {
      for (const ts of [d.first_ts, d.last_ts]) if (dayOfDatum(ts, zone) !== d.day) return { day: d.day, ts }
    }
    return null
  }
  const miss = misfit(timezone)
  if (miss === null) return
  const fitting = Intl.supportedValuesOf('timeZone').filter((zone) => misfit(zone) === null).slice(0, ZONES_SUGGESTED_MAX)
  throw new ConfigError(
    `METERSHARE_TIMEZONE: the days stored in this database were not cut in "${timezone}" ` +
      `(day ${miss.day} holds a reading at ${miss.ts.toISOString()}, on ${dayOfDatum(miss.ts, timezone)} there)` +
      (fitting.length > 0 ? `; they fit ${fitting.join(', ')}` : '') +
      ': start with the zone the data was stored in',
  )
}
