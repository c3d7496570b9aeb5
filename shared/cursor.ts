import { createHash } from 'node:crypto'
import { INTERFACE_DAY_MAX, INTERFACE_DAY_MIN, isDay, utcMs } from './calendar.ts'
import { assert, InvalidInputError } from './errors.ts'
import { hasUnstorableText } from './text.ts'

/**
 * Keyset cursors: the key of the last item of a page, as base64url JSON `[listing, ...key]`,
 * opaque to callers. A cursor names the listing it came from, so one listing's cursor is
 * refused by another.
 */

/** The longest cursor decoded; the key of any page fits well within. */
export const CURSOR_CHARS_MAX = 1024

/**
 * The answers to a refused cursor. Each listing keeps the one its clients have been shown (the
 * second once ended at "returned", which was untrue of a cursor another listing returned: it now says
 * which, its start unchanged for clients that match it).
 */
export const CURSOR_NOT_OF_LISTING = 'cursor: not a cursor of this listing'
export const CURSOR_NOT_RETURNED = 'cursor: not a cursor this API returned for this listing'

/** A part of a key: a string, or a string or null. */
export type CursorPart = 'string' | 'string?'

/** The key a listing's parts describe, as a tuple. */
export type CursorKey<P extends readonly CursorPart[]> = { -readonly [I in keyof P]: P[I] extends 'string' ? string : string | null }

export interface CursorListingOptions<P extends readonly CursorPart[]> {
  /** Further checks of a key whose parts have the right types (formats, lengths). */
  accepts?: ((key: CursorKey<P>) => boolean) | undefined
  /** The message of the 400 answer to a refused cursor; `CURSOR_NOT_OF_LISTING` by default. */
  refusal?: string | undefined
}

export interface CursorListing<P extends readonly CursorPart[]> {
  readonly listing: string
  /**
   * `scope`: what the page answered beyond the listing (its filters, who asked), when a cursor of one
   * query must not be taken by another: a keyset position of one meter's listing read in another's
   * skipped everything before it, and answered an empty last page (found by probing).
   */
  encode(key: CursorKey<P>, scope?: string): string
  /** The key of a cursor this listing encoded for the same `scope`; InvalidInputError on `cursor` otherwise. */
  decode(cursor: string, scope?: string): CursorKey<P>
}

/** The refusal of a cursor of this listing made for another query. */
export const CURSOR_OF_ANOTHER_QUERY = 'cursor: made for another query of this listing (other filters, or another caller): start again without it'

/** What a cursor carries of its scope: a digest, short, that tells one query from another. */
function scopeDigest(scope: string): string {
  return createHash('sha256').update(scope).digest('base64url').slice(0, 16)
}

const CURSOR_RE = /^[A-Za-z0-9_-]+$/

function hasPart(value: unknown, part: CursorPart): boolean {
  return typeof value === 'string' || (part === 'string?' && value === null)
}

export function cursorListing<const P extends readonly CursorPart[]>(
  listing: string,
  parts: P,
  options: CursorListingOptions<P> = {},
): CursorListing<P> {
  const refusal = options.refusal ?? CURSOR_NOT_OF_LISTING
  assert(refusal.startsWith('cursor: '), 'a cursor refusal names the field')
  const accepts = options.accepts ?? (() => true)
  return {
    listing,
    encode(key, scope = '') {
      assert(key.length === parts.length, `a ${listing} cursor has ${parts.length} parts`)
      const named = scope === '' ? listing : `${listing}@${scopeDigest(scope)}`
      return Buffer.from(JSON.stringify([named, ...key]), 'utf8').toString('base64url')
    },
    decode(cursor, scope = '') {
      const refused = () => new InvalidInputError(refusal, 'cursor')
      if (cursor.length === 0 || cursor.length > CURSOR_CHARS_MAX || !CURSOR_RE.test(cursor)) throw refused()
      let parsed: unknown
      try {
        parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
      } catch {
        throw refused()
      }
      if (!Array.isArray(parsed) || parsed.length !== parts.length + 1) throw refused()
      const named = scope === '' ? listing : `${listing}@${scopeDigest(scope)}`
      if (parsed[0] !== named) {
        // This listing's, of another query (or of none, or scoped where this one is not).
        if (typeof parsed[0] === 'string' && (parsed[0] === listing || parsed[0].startsWith(`${listing}@`))) throw new InvalidInputError(CURSOR_OF_ANOTHER_QUERY, 'cursor')
        throw refused()
      }
      const key = parsed.slice(1)
      if (!parts.every((part, i) => hasPart(key[i], part))) throw refused()
      // Every key we encode is text PostgreSQL stored; one it cannot hold was forged, and would fail the query.
      if (key.some((k) => typeof k === 'string' && hasUnstorableText(k))) throw refused()
      if (!accepts(key as CursorKey<P>)) throw refused()
      return key as CursorKey<P>
    },
  }
}

/**
 * A timestamptz as PostgreSQL prints it (`created_at::text`, e.g. `2026-10-01 00:30:00.123456+00`),
 * checked before it goes back into a query: a forged key must be a 400, not a failing cast.
 */
const TIMESTAMP_TEXT_RE = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(?:Z|[+-](\d{2})(?::(\d{2})(?::(\d{2}))?)?)?$/

/** PostgreSQL's widest UTC offset, 15:59:59 (`time zone displacement out of range` beyond). */
const OFFSET_HOURS_MAX = 15

export function isTimestampText(s: string): boolean {
  const m = TIMESTAMP_TEXT_RE.exec(s)
  if (m === null) return false
  const [y, mo, d, h, mi, sec] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number]
  const [oh, om, os] = [m[8], m[9], m[10]].map((x) => (x === undefined ? 0 : Number(x))) as [number, number, number]
  // Year 0 does not exist for PostgreSQL (1 BC precedes AD 1): its cast fails.
  const date = y >= 1 && mo >= 1 && mo <= 12 && d >= 1 && d <= new Date(utcMs(y, mo, 0)).getUTCDate()
  return date && h <= 23 && mi <= 59 && sec <= 59 && oh <= OFFSET_HOURS_MAX && om <= 59 && os <= 59
}

/**
 * A day in a key (YYYY-MM-DD), one of the days the interfaces take (INTERFACE_DAY_MIN to _MAX): every
 * day a listing keys by is one of them, and one of year 0 is no date to the database.
 */
export function isDayKeyText(s: string): boolean {
  return isDay(s) && s >= INTERFACE_DAY_MIN && s <= INTERFACE_DAY_MAX
}

const BIGINT_MAX = 9_223_372_036_854_775_807n

/** A non-negative bigint (int8) as decimal text. */
export function isBigintText(s: string): boolean {
  return /^\d{1,19}$/.test(s) && BigInt(s) <= BIGINT_MAX
}
