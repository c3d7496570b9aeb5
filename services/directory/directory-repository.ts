import type { Kysely, Transaction } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { HouseholdsTable } from '../../shared/db/tables/households.ts'
import type { MetersTable } from '../../shared/db/tables/meters.ts'
import type { PartiesTable } from '../../shared/db/tables/parties.ts'
import type { Insertable, Selectable } from 'kysely'

type Db = Kysely<Database> | Transaction<Database>

export async function insertParty(db: Db, row: Insertable<PartiesTable>): Promise<void> {
  await db.insertInto('parties').values(row).execute()
}

export async function insertHousehold(db: Db, row: Insertable<HouseholdsTable>): Promise<void> {
  await db.insertInto('households').values(row).execute()
}

export async function insertMeter(db: Db, row: Insertable<MetersTable>): Promise<void> {
  await db.insertInto('meters').values(row).execute()
}

export async function findParty(db: Db, id: string): Promise<Selectable<PartiesTable> | undefined> {
  return db.selectFrom('parties').selectAll().where('id', '=', id).executeTakeFirst()
}

export async function findHousehold(db: Db, id: string): Promise<Selectable<HouseholdsTable> | undefined> {
  return db.selectFrom('households').selectAll().where('id', '=', id).executeTakeFirst()
}

export async function findHouseholdByEmail(db: Db, email: string): Promise<Selectable<HouseholdsTable> | undefined> {
  return db.selectFrom('households').selectAll().where('email', '=', email.toLowerCase()).executeTakeFirst()
}

export async function findMeter(db: Db, id: string): Promise<Selectable<MetersTable> | undefined> {
  return db.selectFrom('meters').selectAll().where('id', '=', id).executeTakeFirst()
}

export async function listParties(db: Db): Promise<Selectable<PartiesTable>[]> {
  return db.selectFrom('parties').selectAll().orderBy('created_at').orderBy('id').execute()
}
