import { sql, type Kysely } from 'kysely'
import { ensureReadingsPartitions, partitionMonthOf } from '../../shared/db/partitions.ts'
import type { Database } from '../../shared/db/schema.ts'
import { newId } from '../../shared/ids.ts'
import type { Commodity } from '../../shared/obis.ts'
import type { RegisterValues } from '../../shared/wire.ts'
import { rebuildRollups } from '../../services/metering/rollup-repository.ts'

/**
 * Test data written straight to the tables, without the ingest path: parties, meters,
 * households, occupancies, and readings attributed by the same SQL rule as ingest with their
 * daily rollups recomputed by `rebuildRollups`, so rows and rollups always agree.
 * Credentials are placeholders: nothing here signs in.
 */

const PLACEHOLDER_HASH = 'seeded-without-credentials'

export async function seedOperator(db: Kysely<Database>, name = 'Grid operator'): Promise<string> {
  const id = newId('party')
  await db.insertInto('parties').values({ id, kind: 'utility', name, api_key_hash: PLACEHOLDER_HASH }).execute()
  return id
}

export async function seedMeter(
  db: Kysely<Database>,
  options: { operatorId?: string; id?: string; commodity?: Commodity; intervalMinutes?: 15 | 30 | 60 } = {},
): Promise<string> {
  const operatorId = options.operatorId ?? (await seedOperator(db))
  const id = options.id ?? newId('meter')
  await db
    .insertInto('meters')
    .values({
      id,
      operator_id: operatorId,
      commodity: options.commodity ?? 'electricity',
      interval_minutes: options.intervalMinutes ?? 60,
      secret_hash: PLACEHOLDER_HASH,
    })
    .execute()
  return id
}

export async function seedHousehold(db: Kysely<Database>, name = 'A household'): Promise<string> {
  const id = newId('household')
  await db
    .insertInto('households')
    .values({ id, name, email: `${id}@example.org`, password_hash: PLACEHOLDER_HASH, api_key_hash: PLACEHOLDER_HASH })
    .execute()
  return id
}

/** An occupancy row alone: readings already stored keep their owner (unlike createOccupancy). */
export async function seedOccupancy(
  db: Kysely<Database>,
  row: { meterId: string; householdId: string; from: Date | string; until?: Date | string | null },
): Promise<string> {
  const id = newId('occupancy')
  const until = row.until === undefined || row.until === null ? null : new Date(row.until)
  await db
    .insertInto('occupancies')
    .values({ id, meter_id: row.meterId, household_id: row.householdId, valid_from: new Date(row.from), valid_until: until })
    .execute()
  return id
}

export interface SeedReading {
  ts: Date | string
  values: RegisterValues
}

/**
 * Stores readings of one meter attributed to the occupant at their ts (as ingest does), then
 * rebuilds the rollups of the days they fall in.
 */
export async function seedReadings(db: Kysely<Database>, meterId: string, readings: readonly SeedReading[], timezone: string): Promise<void> {
  if (readings.length === 0) return
  const rows = readings.map((r) => ({ ts: new Date(r.ts), values: r.values }))
  await ensureReadingsPartitions(db, new Set(rows.map((r) => partitionMonthOf(r.ts.getTime()))))
  await sql`
    INSERT INTO readings (meter_id, ts, household_id, values)
    SELECT ${meterId}, x.ts, (SELECT o.household_id FROM occupancies o WHERE o.meter_id = ${meterId} AND o.period @> x.ts), x.values
    FROM unnest(${rows.map((r) => r.ts.toISOString())}::timestamptz[], ${rows.map((r) => JSON.stringify(r.values))}::jsonb[]) AS x(ts, values)`.execute(db)
  const times = rows.map((r) => r.ts.getTime())
  await rebuildRollups(db, meterId, new Date(Math.min(...times)), new Date(Math.max(...times) + 1), timezone)
}

/** `count` readings every `stepMinutes`, the first at `start`, with one cumulative index growing by `stepWh` (the first is firstIndex + stepWh). */
export function readingSeries(options: {
  start: Date | string
  count: number
  stepMinutes?: number
  code?: string
  firstIndex?: number
  stepWh?: number
}): SeedReading[] {
  const step = (options.stepMinutes ?? 60) * 60_000
  const start = new Date(options.start).getTime()
  const code = options.code ?? '1-0:1.8.0'
  const out: SeedReading[] = []
  for (let i = 0; i < options.count; i++) {
    out.push({ ts: new Date(start + i * step), values: { [code]: (options.firstIndex ?? 0) + (i + 1) * (options.stepWh ?? 10) } })
  }
  return out
}

export async function readingOwners(db: Kysely<Database>, meterId: string): Promise<{ ts: string; householdId: string | null }[]> {
  const rows = await db.selectFrom('readings').select(['ts', 'household_id']).where('meter_id', '=', meterId).orderBy('ts').execute()
  return rows.map((r) => ({ ts: r.ts.toISOString(), householdId: r.household_id }))
}

export async function rollupsOf(
  db: Kysely<Database>,
  meterId: string,
): Promise<{ day: string; householdId: string | null; count: number; firstTs: string; lastTs: string; indexMin: RegisterValues; indexMax: RegisterValues }[]> {
  const rows = await db.selectFrom('daily_rollups').selectAll().where('meter_id', '=', meterId).orderBy('first_ts').execute()
  return rows.map((r) => ({
    day: r.day,
    householdId: r.household_id,
    count: r.readings_count,
    firstTs: r.first_ts.toISOString(),
    lastTs: r.last_ts.toISOString(),
    indexMin: r.index_min,
    indexMax: r.index_max,
  }))
}
