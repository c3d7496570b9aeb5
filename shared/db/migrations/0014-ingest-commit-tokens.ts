import { sql, type Kysely } from 'kysely'

// Migrations see the database as it was then: Kysely<any>, never application code.

export async function up(db: Kysely<any>): Promise<void> {
  // One row per group commit of the broker's ingest thread, written in the group's transaction: the
  // proof that it committed when its answer was lost (a transaction id can be handed out again after
  // a crash, so the server's word on an id is not). Deleted by a later commit once the answer came.
  await db.schema
    .createTable('ingest_commit_tokens')
    .addColumn('token', 'bigint', (c) => c.primaryKey())
    .addColumn('committed_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('ingest_commit_tokens').execute()
}
