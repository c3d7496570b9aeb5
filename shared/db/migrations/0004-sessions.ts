import { sql, type Kysely } from 'kysely'

// Migrations see the database as it was then: Kysely<any>, never application code.

export async function up(db: Kysely<any>): Promise<void> {
  // A household's portal session. The cookie carries `<id>.<secret>`; only the secret's
  // salted hash is kept, so a copy of this table signs nobody in.
  await db.schema
    .createTable('sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('household_id', 'text', (c) => c.notNull().references('households.id').onDelete('cascade'))
    .addColumn('token_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addCheckConstraint('sessions_expiry_check', sql`expires_at > created_at`)
    .execute()
  await db.schema.createIndex('sessions_household_idx').on('sessions').columns(['household_id', 'created_at']).execute()
  await db.schema.createIndex('sessions_expires_idx').on('sessions').column('expires_at').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('sessions').execute()
}
