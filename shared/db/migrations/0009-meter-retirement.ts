import type { Kysely } from 'kysely'

// Migrations see the database as it was then: Kysely<any>, never application code.

export async function up(db: Kysely<any>): Promise<void> {
  // A meter taken out of service (replaced, removed): it may not connect any more; its id is never
  // given to another meter, and its data, occupancies and consents stay as they were.
  await db.schema.alterTable('meters').addColumn('retired_at', 'timestamptz').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('meters').dropColumn('retired_at').execute()
}
