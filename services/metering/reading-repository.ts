import { sql, type Kysely } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { RegisterValues } from '../../shared/wire.ts'
import { exactTsKey } from './ts-key.ts'

/** Readings as stored: one row per datum, keyed (meter_id, ts), owned by the occupant at ts. */

/**
 * Gives every reading of `meterId` with ts in [from, to) (to null = open) the household whose
 * occupancy contains its ts, or nobody; the same rule as attribution at ingest. Returns how
 * many readings changed owner.
 */
export async function reattributeReadings(trx: Kysely<Database>, meterId: string, from: Date, to: Date | null): Promise<number> {
  const upper = to === null ? sql`TRUE` : sql`r.ts < ${to}`
  const owner = sql`(SELECT o.household_id FROM occupancies o WHERE o.meter_id = r.meter_id AND o.period @> r.ts)`
  const result = await sql`
    UPDATE readings AS r SET household_id = ${owner}
    WHERE r.meter_id = ${meterId} AND r.ts >= ${from} AND ${upper} AND r.household_id IS DISTINCT FROM ${owner}`.execute(trx)
  return Number(result.numAffectedRows ?? 0n)
}

/** A reading as listed, with its ts also as exact text (microseconds) for keyset cursors. */
export interface ReadingRow {
  meterId: string
  ts: Date
  tsKey: string
  values: RegisterValues
}

/** Owner filter of a readings page: one household, or release windows. */
export interface InstantWindow {
  householdId: string
  from: Date
  until: Date | null
}

export interface ReadingPageFilter {
  meterId: string
  from: Date
  to: Date
  householdId?: string | undefined
  windows?: readonly InstantWindow[] | undefined
}

/** Readings of one meter in [from, to) in ts order, after the reading whose key is `afterTsKey`. */
export async function pageReadings(
  db: Kysely<Database>,
  filter: ReadingPageFilter,
  afterTsKey: string | null,
  limit: number,
): Promise<ReadingRow[]> {
  const parts = [sql`r.meter_id = ${filter.meterId}`, sql`r.ts >= ${filter.from}`, sql`r.ts < ${filter.to}`]
  if (filter.householdId !== undefined) parts.push(sql`r.household_id = ${filter.householdId}`)
  if (filter.windows !== undefined) {
    const w = filter.windows
    parts.push(sql`EXISTS (
      SELECT 1 FROM unnest(${w.map((x) => x.householdId)}::text[], ${w.map((x) => x.from.toISOString())}::timestamptz[],
                           ${w.map((x) => (x.until === null ? null : x.until.toISOString()))}::timestamptz[]) AS w(household_id, from_ts, until_ts)
      WHERE w.household_id = r.household_id AND r.ts >= w.from_ts AND (w.until_ts IS NULL OR r.ts < w.until_ts))`)
  }
  if (afterTsKey !== null) parts.push(sql`r.ts > ${afterTsKey}::timestamptz`)
  const { rows } = await sql<{ meter_id: string; ts: Date; ts_key: string; values: RegisterValues }>`
    SELECT r.meter_id, r.ts, ${exactTsKey(sql.ref('r.ts'))} AS ts_key, r.values
    FROM readings r
    WHERE ${sql.join(parts, sql` AND `)}
    ORDER BY r.ts
    LIMIT ${limit}`.execute(db)
  return rows.map((r) => ({ meterId: r.meter_id, ts: r.ts, tsKey: r.ts_key, values: r.values }))
}

/** Per meter of `meterIds` that has any: its latest reading's instant (epoch ms) and register values. */
export async function latestReadings(db: Kysely<Database>, meterIds: readonly string[]): Promise<Map<string, { ts: number; values: RegisterValues }>> {
  if (meterIds.length === 0) return new Map()
  // One backward index probe per meter (readings' key is (meter_id, ts)), not a scan of its history.
  const { rows } = await sql<{ id: string; ts: Date; values: RegisterValues }>`
    SELECT m.id, r.ts, r.values FROM meters m
    CROSS JOIN LATERAL (SELECT ts, values FROM readings WHERE meter_id = m.id ORDER BY ts DESC LIMIT 1) AS r
    WHERE m.id = ANY(${[...meterIds]}::text[])`.execute(db)
  return new Map(rows.map((r) => [r.id, { ts: r.ts.getTime(), values: r.values }]))
}

/** Each meter's latest stored reading (epoch ms of its ts); meters with none are absent. */
export async function latestReadingTimes(db: Kysely<Database>, meterIds: readonly string[]): Promise<Map<string, number>> {
  const latest = await latestReadings(db, meterIds)
  return new Map([...latest].map(([id, r]) => [id, r.ts]))
}

/** The latest reading of a meter that a household owns, or null when it owns none. */
export async function latestOwnedReadingTs(db: Kysely<Database>, meterId: string, householdId: string): Promise<Date | null> {
  const row = await db
    .selectFrom('readings')
    .select((eb) => eb.fn.max('ts').as('ts'))
    .where('meter_id', '=', meterId)
    .where('household_id', '=', householdId)
    .executeTakeFirst()
  return row?.ts ?? null
}

/** The meters a household has ever occupied (its data can only come from them). */
export async function metersOfHousehold(db: Kysely<Database>, householdId: string): Promise<string[]> {
  const rows = await db.selectFrom('occupancies').select('meter_id').distinct().where('household_id', '=', householdId).execute()
  return rows.map((r) => r.meter_id)
}
