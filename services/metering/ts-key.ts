import { sql, type RawBuilder } from 'kysely'

/**
 * A timestamptz as exact UTC text (microseconds), for keys: a Date keeps only milliseconds,
 * and a key rounded off would skip or repeat rows that share the millisecond.
 */
export function exactTsKey(column: RawBuilder<unknown>): RawBuilder<string> {
  return sql<string>`to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
}

/** The text `exactTsKey` yields. */
export const TS_KEY_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/
