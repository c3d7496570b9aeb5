import { sql, type Kysely } from 'kysely'
import { ConfigError } from '../errors.ts'
import type { Database } from './schema.ts'

/** The settings key of the time zone that cuts the stored data's days and months. */
export const TIMEZONE_SETTING = 'timezone'

/**
 * Days and months are cut in `METERSHARE_TIMEZONE` as data is stored (daily rollups, daily datums
 * published, months settled); they cannot be cut again in another zone. The first process to start
 * on a database records its zone there; any process started later with another zone is refused
 * with a sentence naming both, rather than mixing two calendars in one set of books.
 */
export async function pinTimezone(db: Kysely<Database>, timezone: string): Promise<void> {
  const { rows } = await sql<{ found: string | null }>`SELECT to_regclass('settings')::text AS found`.execute(db)
  if (rows[0]?.found == null) throw new ConfigError('DATABASE_URL: the database has not been migrated to this version: run `metershare migrate` first')
  await sql`INSERT INTO settings (key, value) VALUES (${TIMEZONE_SETTING}, ${timezone}) ON CONFLICT (key) DO NOTHING`.execute(db)
  const row = await db.selectFrom('settings').select('value').where('key', '=', TIMEZONE_SETTING).executeTakeFirstOrThrow()
  if (row.value !== timezone) {
    throw new ConfigError(
      `METERSHARE_TIMEZONE: this database's days and months are cut in ${row.value} (got "${timezone}"); ` +
        `its stored days, daily data and settled months cannot move to another calendar: start with METERSHARE_TIMEZONE=${row.value}`,
    )
  }
}
