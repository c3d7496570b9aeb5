import { sql, type Kysely, type Selectable, type Transaction } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { AccessLogTable, ReleaseChannel } from '../../shared/db/tables/access-log.ts'

/** The access log: datums released per (recipient, household, meter, day, channel). */

type Db = Kysely<Database> | Transaction<Database>

export type AccessLogRow = Selectable<AccessLogTable>

export interface AccessCount {
  recipientId: string
  householdId: string
  meterId: string
  day: string
  channel: ReleaseChannel
  datums: bigint
}

/** Adds counts (one statement; the keys must be distinct). */
export async function addAccessCounts(db: Db, counts: readonly AccessCount[]): Promise<void> {
  if (counts.length === 0) return
  await db
    .insertInto('access_log')
    .values(
      counts.map((c) => ({
        recipient_id: c.recipientId,
        household_id: c.householdId,
        meter_id: c.meterId,
        day: c.day,
        channel: c.channel,
        datums: c.datums,
      })),
    )
    .onConflict((oc) =>
      oc.columns(['recipient_id', 'household_id', 'meter_id', 'day', 'channel']).doUpdateSet({
        datums: sql<bigint>`access_log.datums + excluded.datums`,
        updated_at: sql<Date>`now()`,
      }),
    )
    .execute()
}

/** Which of the parties, households and meters that counts name still exist. */
export async function existingReferences(
  db: Db,
  counts: readonly AccessCount[],
): Promise<{ parties: Set<string>; households: Set<string>; meters: Set<string> }> {
  const ids = (pick: (c: AccessCount) => string) => [...new Set(counts.map(pick))]
  const [parties, households, meters] = await Promise.all([
    db.selectFrom('parties').select('id').where('id', 'in', ids((c) => c.recipientId)).execute(),
    db.selectFrom('households').select('id').where('id', 'in', ids((c) => c.householdId)).execute(),
    db.selectFrom('meters').select('id').where('id', 'in', ids((c) => c.meterId)).execute(),
  ])
  return {
    parties: new Set(parties.map((r) => r.id)),
    households: new Set(households.map((r) => r.id)),
    meters: new Set(meters.map((r) => r.id)),
  }
}

export interface AccessLogKey {
  day: string
  recipientId: string
  meterId: string
  channel: string
}

/** A household's access log in (day, recipient, meter, channel) order, after `after`. */
export async function pageAccessLogRows(
  db: Db,
  householdId: string,
  filter: { fromDay?: string | undefined; toDay?: string | undefined; recipientId?: string | undefined },
  after: AccessLogKey | null,
  limit: number,
): Promise<(AccessLogRow & { recipient_name: string })[]> {
  let q = db
    .selectFrom('access_log as a')
    .innerJoin('parties as p', 'p.id', 'a.recipient_id')
    .selectAll('a')
    .select('p.name as recipient_name')
    .where('a.household_id', '=', householdId)
  if (filter.fromDay !== undefined) q = q.where('a.day', '>=', filter.fromDay)
  if (filter.toDay !== undefined) q = q.where('a.day', '<=', filter.toDay)
  if (filter.recipientId !== undefined) q = q.where('a.recipient_id', '=', filter.recipientId)
  if (after !== null) {
    q = q.where(
      sql<boolean>`(a.day, a.recipient_id, a.meter_id, a.channel) > (${after.day}::date, ${after.recipientId}, ${after.meterId}, ${after.channel})`,
    )
  }
  return q.orderBy('a.day').orderBy('a.recipient_id').orderBy('a.meter_id').orderBy('a.channel').limit(limit).execute()
}
