import type { ColumnType } from 'kysely'

/** Settings of the data itself, set once (the time zone its days and months are cut in). */
export interface SettingsTable {
  key: string
  value: string
  set_at: ColumnType<Date, Date | undefined, never>
}
