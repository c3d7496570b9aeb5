import { sql, type RawBuilder } from 'kysely'
import { isTimestampText } from '../../shared/cursor.ts'

/**
 * A timestamptz as exact UTC text (microseconds), for keys: a Date keeps only milliseconds,
 * and a key rounded off would skip or repeat rows that share the millisecond.
 */
export function exactTsKey(column: RawBuilder<unknown>): RawBuilder<string> {
  return sql<string>`to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
}

/** The text `exactTsKey` yields. */
export const TS_KEY_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/

/** Whether a cursor's key is text `exactTsKey` yields and a time the database reads back (not `2026-13-45T99:…`). */
export function isTsKey(s: string): boolean {
  return TS_KEY_RE.test(s) && isTimestampText(s)
}
