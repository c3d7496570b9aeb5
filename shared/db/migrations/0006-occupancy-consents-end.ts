import type { Kysely } from 'kysely'

// Migrations see the database as it was then: Kysely<any>, never application code.

export async function up(db: Kysely<any>): Promise<void> {
  // When the occupancy's end ends the household's consents for the meter. A move-out registered
  // after the fact ends them when it is registered, not at the move-out: what they released
  // meanwhile was released under a consent in force, as the records then stood. Once ended they stay
  // ended, wherever the move-out is moved later. Null: at valid_until (rows from before this column).
  await db.schema.alterTable('occupancies').addColumn('consents_end_at', 'timestamptz').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('occupancies').dropColumn('consents_end_at').execute()
}
