import { sql, type Kysely } from 'kysely'
import { datumDayOf, dayOf } from '../calendar.ts'
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
  let recorded = await recordedTimezone(db)
  if (recorded === undefined) {
    await checkStoredDays(db, timezone)
    await sql`INSERT INTO settings (key, value) VALUES (${TIMEZONE_SETTING}, ${timezone}) ON CONFLICT (key) DO NOTHING`.execute(db)
    recorded = (await recordedTimezone(db))!
  }
  if (recorded !== timezone) {
    throw new ConfigError(
      `METERSHARE_TIMEZONE: this database's days and months are cut in ${recorded} (got "${timezone}"); ` +
        `its stored days, daily data and settled months cannot move to another calendar: start with METERSHARE_TIMEZONE=${recorded}`,
    )
  }
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
