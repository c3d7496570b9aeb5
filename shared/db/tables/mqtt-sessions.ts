import type { ColumnType } from 'kysely'

/** The owner of a persistent MQTT session (`<role>:<id>` of a recipient or household), by client id. */
export interface MqttSessionsTable {
  client_id: string
  principal: string
  created_at: ColumnType<Date, Date, never>
  /** When the session was last known connected (connect, disconnect, each sweep while connected): it expires once this is persistentSessionOfflineMsMax old. */
  seen_at: Date
}
