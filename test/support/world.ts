import { sql } from 'kysely'
import type { Kysely } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import { createHousehold, createMeter, createParty } from '../../services/directory/directory-service.ts'
import { newId } from '../../shared/ids.ts'

/** Small worlds for tests, provisioned through the directory service like the API does. */
export interface TestMeter {
  id: string
  secret: string
}

export async function createUtility(db: Kysely<Database>, name = 'Grid Utility'): Promise<{ id: string; apiKey: string }> {
  return createParty(db, { kind: 'utility', name })
}

export async function createTestMeter(
  db: Kysely<Database>,
  operatorId: string,
  options: { id?: string; commodity?: 'electricity' | 'gas'; intervalMinutes?: 15 | 30 | 60 } = {},
): Promise<TestMeter> {
  return createMeter(db, {
    operatorId,
    commodity: options.commodity ?? 'electricity',
    intervalMinutes: options.intervalMinutes ?? 30,
    id: options.id,
  })
}

let emailCounter = 0

export async function createTestHousehold(db: Kysely<Database>, name = 'Household'): Promise<{ id: string; apiKey: string; email: string; password: string }> {
  const email = `household${++emailCounter}-${Date.now()}@example.test`
  const password = 'correct horse battery'
  const h = await createHousehold(db, { name, email, password })
  return { ...h, email, password }
}

/** An occupancy row as the operator API would store it (without re-attribution). */
export async function insertOccupancy(
  db: Kysely<Database>,
  meterId: string,
  householdId: string,
  from: Date,
  until: Date | null = null,
): Promise<string> {
  const id = newId('occupancy')
  await db.insertInto('occupancies').values({ id, meter_id: meterId, household_id: householdId, valid_from: from, valid_until: until }).execute()
  return id
}

/** A meter of a new utility, occupied by a new household from `from` on: the world most ingest tests start from. */
export async function createOccupiedMeter(
  db: Kysely<Database>,
  from: Date,
  options: Parameters<typeof createTestMeter>[2] = {},
): Promise<{ operatorId: string; meter: TestMeter; householdId: string }> {
  const operatorId = (await createUtility(db)).id
  const meter = await createTestMeter(db, operatorId, options)
  const householdId = (await createTestHousehold(db)).id
  await insertOccupancy(db, meter.id, householdId, from)
  return { operatorId, meter, householdId }
}

export async function readingsOf(db: Kysely<Database>, meterId: string) {
  return db.selectFrom('readings').selectAll().where('meter_id', '=', meterId).orderBy('ts').execute()
}

export async function quarantineOf(db: Kysely<Database>, meterId: string) {
  return db.selectFrom('quarantine').selectAll().where('meter_id', '=', meterId).orderBy('id').execute()
}

export async function countRows(db: Kysely<Database>, table: 'readings' | 'quarantine' | 'daily_rollups'): Promise<number> {
  const r = await sql<{ n: bigint }>`SELECT count(*) AS n FROM ${sql.table(table)}`.execute(db)
  return Number(r.rows[0]!.n)
}
