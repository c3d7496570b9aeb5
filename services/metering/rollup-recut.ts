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
/** Passes over the meters that took readings while they were being cut, before giving up. */
export const RECUT_PASSES_MAX = 5
/**
 * How long `migrate` waits, after announcing a schema that marks the rollups, before cutting them: a
 * broker of an earlier version stops on the notice within a fraction of a second, committing the
 * publishes it holds (its egress drains for at most 5 s); what it stores after that is cut again.
 */
export const SCHEMA_NOTICE_GRACE_MS = 5_000
/** Meters cut between two progress reports. */
const PROGRESS_EVERY_METERS = 500

export interface RecutProgress {
  phase: 'waiting' | 'cutting' | 'done'
  /** 1 for every meter; from 2, the meters that took readings since the previous pass began (or the notice). */
  pass: number
  meters: number
  done: number
  ms?: number
}

/** Whether the daily rollups wait to be cut again (migration 0010 marked them). */
export async function recutPending(db: Kysely<Database>): Promise<boolean> {
  return (await db.selectFrom('settings').select('key').where('key', '=', ROLLUPS_RECUT_SETTING).executeTakeFirst()) !== undefined
}

/**
 * Every process calls this at start, once the schema is current: it records or checks the data's zone
 * (pinTimezone), then, on a database whose daily rollups were stored before a datum's day was that of
 * the interval it ends (migration 0010), cuts them again from the readings, meter by meter, in that
 * zone. One process does it; the others starting meanwhile wait for it. Interrupted, it starts over at
 * the next start (a meter's rollups are recomputed whole, so cutting one twice changes nothing).
 *
 * A process of an earlier version may still be storing readings by the old rule while the cut runs
 * (until the schema notice `migrate` sends first has stopped it): the meters that took readings since
 * `storedSince` (the notice; by default the cut's start) are cut once more, and so on until a pass
 * finds none.
 */
export async function openDataCalendar(
  db: Kysely<Database>,
  timezone: string,
  options: { storedSince?: Date; onProgress?: (p: RecutProgress) => void } = {},
): Promise<void> {
  const { onProgress } = options
  await pinTimezone(db, timezone)
  if (!(await recutPending(db))) return
  await db.connection().execute(async (conn) => {
    const { rows } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_lock(${LOCK_CLASS}::int, ${LOCK_OBJECT}::int) AS locked`.execute(conn)
    if (rows[0]?.locked !== true) {
      log.metering.info('another process is cutting the daily rollups again: waiting for it')
      onProgress?.({ phase: 'waiting', pass: 0, meters: 0, done: 0 })
      await sql`SELECT pg_advisory_lock(${LOCK_CLASS}::int, ${LOCK_OBJECT}::int)`.execute(conn)
    }
    try {
      if (!(await recutPending(conn))) return
      const started = performance.now()
      let meters = (await sql<{ meter_id: string }>`SELECT DISTINCT meter_id FROM daily_rollups ORDER BY meter_id`.execute(conn)).rows.map((r) => r.meter_id)
      const total = meters.length
      log.metering.info({ meters: total, timezone }, 'cutting daily rollups again: a reading at midnight closes the day before it')
      for (let pass = 1; meters.length > 0; pass++) {
        const clock = (await sql<{ now: Date }>`SELECT clock_timestamp() AS now`.execute(conn)).rows[0]!.now
        const passStart = pass === 1 && options.storedSince !== undefined && options.storedSince < clock ? options.storedSince : clock
        for (let i = 0; i < meters.length; i++) {
          if (i % PROGRESS_EVERY_METERS === 0) onProgress?.({ phase: 'cutting', pass, meters: meters.length, done: i })
          await conn.transaction().execute((trx) => rebuildRollups(trx, meters[i]!, HISTORY_START, null, timezone))
        }
        // Readings stored meanwhile by a process that did not know the rule yet: their meters once more.
        meters = (
          await sql<{ meter_id: string }>`SELECT DISTINCT meter_id FROM readings WHERE ingested_at >= ${passStart} ORDER BY meter_id`.execute(conn)
        ).rows.map((r) => r.meter_id)
        if (meters.length > 0) {
          if (pass >= RECUT_PASSES_MAX) throw new Error(`daily rollups: readings keep arriving by the old rule after ${pass} passes (an earlier version still running?): stop it and start again`)
          log.metering.warn({ meters: meters.length, pass }, 'readings were stored while the rollups were cut: cutting their meters again')
        }
      }
      await sql`DELETE FROM settings WHERE key = ${ROLLUPS_RECUT_SETTING}`.execute(conn)
      const ms = Math.round(performance.now() - started)
      log.metering.info({ meters: total, ms }, 'daily rollups cut again')
      onProgress?.({ phase: 'done', pass: 0, meters: total, done: total, ms })
    } finally {
      await sql`SELECT pg_advisory_unlock(${LOCK_CLASS}::int, ${LOCK_OBJECT}::int)`.execute(conn)
    }
  })
}
