import { sql, type RawBuilder } from 'kysely'
import { InvalidInputError } from '../../shared/errors.ts'

/**
 * Keyset cursors: the last key of a page, as base64url JSON, opaque to callers. A cursor
 * names the listing it came from, so one listing's cursor is refused by another.
 */

export const CURSOR_CHARS_MAX = 1024

export function encodeCursor(listing: string, key: readonly string[]): string {
  return Buffer.from(JSON.stringify([listing, ...key]), 'utf8').toString('base64url')
}

/** The key of a cursor made by `encodeCursor(listing, …)` with `length` parts; 400 otherwise. */
export function decodeCursor(cursor: string, listing: string, length: number): string[] {
  const invalid = () => new InvalidInputError('cursor: not a cursor of this listing', 'cursor')
  if (cursor.length === 0 || cursor.length > CURSOR_CHARS_MAX || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid()
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
  } catch {
    throw invalid()
  }
  if (!Array.isArray(parsed) || parsed.length !== length + 1 || parsed[0] !== listing) throw invalid()
  const key = parsed.slice(1)
  if (!key.every((k): k is string => typeof k === 'string')) throw invalid()
  return key
}

/**
 * A timestamptz as exact UTC text (microseconds), for keys: a Date keeps only milliseconds,
 * and a key rounded off would skip or repeat rows that share the millisecond.
 */
export function exactTsKey(column: RawBuilder<unknown>): RawBuilder<string> {
  return sql<string>`to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
}

export const TS_KEY_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/
