import { sql, type Kysely } from 'kysely'
import { ROLLUPS_RECUT_SETTING, pinTimezone } from '../../shared/db/data-calendar.ts'
import type { Database } from '../../shared/db/schema.ts'
import { log } from '../../shared/logger.ts'
import { rebuildRollups } from './rollup-repository.ts'

// One advisory lock for cutting the rollups again, on PostgreSQL and PGlite alike.
const LOCK_CLASS = 0x6d73_7263 // 'msrc'
const LOCK_OBJECT = 1
/** Before any reading the product stores (2000–2099): a meter's whole history is cut again. */
const HISTORY_START = new Date(Date.UTC(1970, 0, 1))

/**
 * Every process calls this at start, once the schema is current: it records or checks the data's zone
 * (pinTimezone), then, on a database whose daily rollups were stored before a datum's day was that of
 * the interval it ends (migration 0010), cuts them again from the readings, meter by meter, in that
 * zone. One process does it; the others starting meanwhile wait for it. Interrupted, it starts over at
 * the next start (a meter's rollups are recomputed whole, so cutting one twice changes nothing).
 */
export async function openDataCalendar(db: Kysely<Database>, timezone: string): Promise<void> {
  await pinTimezone(db, timezone)
  if (!(await recutPending(db))) return
  await db.connection().execute(async (conn) => {
    await sql`SELECT pg_advisory_lock(${LOCK_CLASS}::int, ${LOCK_OBJECT}::int)`.execute(conn)
    try {
      if (!(await recutPending(conn))) return
      const meters = (await sql<{ meter_id: string }>`SELECT DISTINCT meter_id FROM daily_rollups ORDER BY meter_id`.execute(conn)).rows
      log.metering.info({ meters: meters.length, timezone }, 'cutting daily rollups again: a reading at midnight closes the day before it')
      const started = performance.now()
      for (const { meter_id } of meters) {
        await conn.transaction().execute((trx) => rebuildRollups(trx, meter_id, HISTORY_START, null, timezone))
      }
      await sql`DELETE FROM settings WHERE key = ${ROLLUPS_RECUT_SETTING}`.execute(conn)
      log.metering.info({ meters: meters.length, ms: Math.round(performance.now() - started) }, 'daily rollups cut again')
    } finally {
      await sql`SELECT pg_advisory_unlock(${LOCK_CLASS}::int, ${LOCK_OBJECT}::int)`.execute(conn)
    }
  })
}

async function recutPending(db: Kysely<Database>): Promise<boolean> {
  return (await db.selectFrom('settings').select('key').where('key', '=', ROLLUPS_RECUT_SETTING).executeTakeFirst()) !== undefined
}
