import type { Kysely } from 'kysely'

// Migrations see the database as it was then: Kysely<any>, never application code.

export async function up(db: Kysely<any>): Promise<void> {
  // Who holds each persistent MQTT session of a recipient or household (a meter's client id is its
  // meter id): while one is kept for its owner, offline or not, nobody else may connect with its
  // client id, which would take over or wipe the messages queued for it. Shared by every broker.
  await db.schema
    .createTable('mqtt_sessions')
    .addColumn('client_id', 'text', (c) => c.primaryKey())
    .addColumn('principal', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('mqtt_sessions').execute()
}
