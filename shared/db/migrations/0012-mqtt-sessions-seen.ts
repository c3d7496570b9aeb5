import { sql, type Kysely } from 'kysely'

// Migrations see the database as it was then: Kysely<any>, never application code.

export async function up(db: Kysely<any>): Promise<void> {
  // When a persistent MQTT session was last known connected (its connect, its disconnect, and each
  // sweep while connected): one offline longer than persistentSessionOfflineMsMax expires. A session
  // recorded before is taken as seen when it was created.
  await db.schema.alterTable('mqtt_sessions').addColumn('seen_at', 'timestamptz').execute()
  await sql`UPDATE mqtt_sessions SET seen_at = created_at`.execute(db)
  await db.schema.alterTable('mqtt_sessions').alterColumn('seen_at', (c) => c.setNotNull()).execute()
  await db.schema.createIndex('mqtt_sessions_seen_at_idx').on('mqtt_sessions').column('seen_at').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('mqtt_sessions_seen_at_idx').execute()
  await db.schema.alterTable('mqtt_sessions').dropColumn('seen_at').execute()
}
