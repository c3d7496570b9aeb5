import type { ColumnType } from 'kysely'

export type PartyKind = 'utility' | 'third_party'

export interface PartiesTable {
  id: string
  kind: PartyKind
  name: string
  api_key_hash: string
  created_at: ColumnType<Date, Date | undefined, never>
}
