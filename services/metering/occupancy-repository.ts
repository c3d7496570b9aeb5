import { sql, type Kysely, type Selectable } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { OccupanciesTable } from '../../shared/db/tables/occupancies.ts'

/** Occupancies: which household lives at a meter's premises over [valid_from, valid_until). */

export const CHANGES_CHANNEL = 'metershare_changes'

export type OccupancyRow = Selectable<OccupanciesTable>

/**
 * Taken first by every occupancy change. It conflicts with the SHARE lock of ingest batches
 * (so a batch never attributes against a half-made change) and with itself (so two changes
 * of overlapping ranges never rebuild the same rollups at once).
 */
export async function lockOccupancies(trx: Kysely<Database>): Promise<void> {
  await sql`LOCK TABLE occupancies IN SHARE ROW EXCLUSIVE MODE`.execute(trx)
}

export async function insertOccupancy(
  trx: Kysely<Database>,
  row: { id: string; meterId: string; householdId: string; from: Date; until: Date | null; consentsEndAt: Date | null },
): Promise<void> {
  await trx
    .insertInto('occupancies')
    .values({ id: row.id, meter_id: row.meterId, household_id: row.householdId, valid_from: row.from, valid_until: row.until, consents_end_at: row.consentsEndAt })
    .execute()
}

export async function updateOccupancyUntil(trx: Kysely<Database>, id: string, until: Date | null, consentsEndAt: Date | null): Promise<void> {
  await trx.updateTable('occupancies').set({ valid_until: until, consents_end_at: consentsEndAt }).where('id', '=', id).execute()
}

export async function findOccupancy(db: Kysely<Database>, id: string): Promise<OccupancyRow | undefined> {
  return db.selectFrom('occupancies').selectAll().where('id', '=', id).executeTakeFirst()
}

export async function listOccupancyRows(
  db: Kysely<Database>,
  filter: { meterId?: string | undefined; householdId?: string | undefined },
): Promise<OccupancyRow[]> {
  let q = db.selectFrom('occupancies').selectAll()
  if (filter.meterId !== undefined) q = q.where('meter_id', '=', filter.meterId)
  if (filter.householdId !== undefined) q = q.where('household_id', '=', filter.householdId)
  return q.orderBy('meter_id').orderBy('valid_from').execute()
}

/** A page of a meter's or household's occupancies, by meter and then move-in, after a key (`from_key`: valid_from as PostgreSQL prints it). */
export async function pageOccupancyRows(
  db: Kysely<Database>,
  filter: { meterId?: string | undefined; householdId?: string | undefined },
  after: { meterId: string; from: string; id: string } | null,
  limit: number,
): Promise<(OccupancyRow & { from_key: string })[]> {
  let q = db.selectFrom('occupancies').selectAll().select(sql<string>`valid_from::text`.as('from_key'))
  if (filter.meterId !== undefined) q = q.where('meter_id', '=', filter.meterId)
  if (filter.householdId !== undefined) q = q.where('household_id', '=', filter.householdId)
  if (after !== null) q = q.where(sql<boolean>`(meter_id, valid_from, id) > (${after.meterId}, ${after.from}::timestamptz, ${after.id})`)
  return q.orderBy('meter_id').orderBy('valid_from').orderBy('id').limit(limit).execute()
}

/** Whether one of the household's occupancies of the meter starts at `at`. */
export async function occupancyStartsAt(db: Kysely<Database>, meterId: string, householdId: string, at: Date): Promise<boolean> {
  const row = await db.selectFrom('occupancies').select('id').where('meter_id', '=', meterId).where('household_id', '=', householdId).where('valid_from', '=', at).executeTakeFirst()
  return row !== undefined
}

export async function meterExists(db: Kysely<Database>, meterId: string): Promise<boolean> {
  return (await db.selectFrom('meters').select('id').where('id', '=', meterId).executeTakeFirst()) !== undefined
}

export async function householdExists(db: Kysely<Database>, householdId: string): Promise<boolean> {
  return (await db.selectFrom('households').select('id').where('id', '=', householdId).executeTakeFirst()) !== undefined
}

/** Sent inside the changing transaction, so listeners hear of it only once it is committed. */
export async function notifyOccupancyChange(
  trx: Kysely<Database>,
  change: { meterId: string; householdId: string; occupancyId: string },
): Promise<void> {
  const payload = JSON.stringify({ kind: 'occupancy', ...change })
  await sql`SELECT pg_notify(${CHANGES_CHANNEL}, ${payload})`.execute(trx)
}
