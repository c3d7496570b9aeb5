import { sql, type Kysely } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { RegisterValues } from '../../shared/wire.ts'
import type { PublishedDailyDatum } from './daily-publication.ts'

/**
 * Days an occupancy change made due on `daily/{meterId}`. The change's transaction writes them and
 * announces them on DAILY_DUE_CHANNEL; every broker hears it, and the one whose DELETE takes a row
 * publishes it, so each is published once however many brokers there are. Rows written while no
 * broker runs wait for the next to start.
 */

export const DAILY_DUE_CHANNEL = 'metershare_daily_due'

/** Due days taken per query by a broker; it takes again while it gets as many. */
export const DAILY_DUE_TAKEN_PER_QUERY_MAX = 1_000

/** Writes the due days (announce them with notifyDueDays). */
export async function recordDueDays(trx: Kysely<Database>, days: readonly PublishedDailyDatum[]): Promise<void> {
  if (days.length === 0) return
  await trx
    .insertInto('daily_publications_due')
    .values(days.map((d) => ({ meter_id: d.meterId, household_id: d.householdId, day: d.day, values: JSON.stringify(d.values) })))
    .execute()
}

/** Sent inside the recording transaction, so that brokers hear of due days only once they are committed. */
export async function notifyDueDays(trx: Kysely<Database>, meterId: string): Promise<void> {
  await sql`SELECT pg_notify(${DAILY_DUE_CHANNEL}, ${JSON.stringify({ meterId })})`.execute(trx)
}

/**
 * Takes (deletes and returns) up to `limit` due days, oldest first. Rows another broker is taking
 * are skipped, not waited for; each row goes to one taker.
 */
export async function takeDueDays(db: Kysely<Database>, limit: number): Promise<PublishedDailyDatum[]> {
  const { rows } = await sql<{ id: string; meter_id: string; household_id: string; day: string; values: RegisterValues }>`
    DELETE FROM daily_publications_due
    WHERE id IN (SELECT id FROM daily_publications_due ORDER BY id LIMIT ${limit} FOR UPDATE SKIP LOCKED)
    RETURNING id::text AS id, meter_id, household_id, day::text AS day, values`.execute(db)
  rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1))
  return rows.map((r) => ({ meterId: r.meter_id, householdId: r.household_id, day: r.day, granularity: 'daily', values: r.values }))
}
