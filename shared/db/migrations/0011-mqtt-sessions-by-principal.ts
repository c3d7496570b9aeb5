import type { Kysely } from 'kysely'

// Migrations see the database as it was then: Kysely<any>, never application code.

export async function up(db: Kysely<any>): Promise<void> {
  // A principal's persistent MQTT sessions are counted at each persistent connect under a new
  // client id (persistentSessionsPerPrincipalMax).
  await db.schema.createIndex('mqtt_sessions_principal_idx').on('mqtt_sessions').column('principal').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('mqtt_sessions_principal_idx').execute()
}
