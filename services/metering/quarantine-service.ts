import type { Kysely } from 'kysely'
import { formatTimestamp } from '../../shared/calendar.ts'
import { cursorListing, isBigintText } from '../../shared/cursor.ts'
import type { Database } from '../../shared/db/schema.ts'
import { InvalidInputError, type QuarantineReason } from '../../shared/errors.ts'
import { pageQuarantine } from './quarantine-repository.ts'
import { isTsKey } from './ts-key.ts'

/** What the operator sees of quarantined input (`GET /admin/quarantine`). */

export const QUARANTINE_PAGE_LIMIT_MAX = 1000
/** The excerpt of a payload shown, in bytes before decoding. */
export const QUARANTINE_EXCERPT_BYTES_MAX = 4096

/** Keyed by (received_at as `exactTsKey`, id). */
const CURSOR = cursorListing('quarantine', ['string', 'string'], {
  accepts: ([receivedAtKey, id]) => isTsKey(receivedAtKey) && isBigintText(id),
})

export interface QuarantineItem {
  meterId: string
  /** RFC 3339, UTC. */
  receivedAt: string
  reason: QuarantineReason
  /** The datum's timestamp when one could be read. */
  ts?: string
  /** The stored bytes decoded as UTF-8 (invalid sequences replaced), at most 4 KiB of them. */
  payloadExcerpt: string
  /** What was wrong, naming the field (as the meter's status topic said it), when asked for (`includeDetail`). */
  detail?: string
}

export interface QuarantineQuery {
  meterId?: string | undefined
  /** received_at in [from, to). */
  from?: Date | undefined
  to?: Date | undefined
  cursor?: string | undefined
  limit: number
  /** Each item's detail too (not in CONTRACT.md's item: asked for with `include=detail`). */
  includeDetail?: boolean | undefined
}

function checkDate(d: Date | undefined, field: string): void {
  if (d !== undefined && (!(d instanceof Date) || Number.isNaN(d.getTime()))) {
    throw new InvalidInputError(`${field}: expected an RFC 3339 timestamp`, field)
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: false })

export async function listQuarantine(
  db: Kysely<Database>,
  query: QuarantineQuery,
): Promise<{ items: QuarantineItem[]; nextCursor: string | null }> {
  checkDate(query.from, 'from')
  checkDate(query.to, 'to')
  if (query.from !== undefined && query.to !== undefined && query.to.getTime() < query.from.getTime()) {
    throw new InvalidInputError('to: must not be before from', 'to')
  }
  if (!Number.isInteger(query.limit) || query.limit < 1 || query.limit > QUARANTINE_PAGE_LIMIT_MAX) {
    throw new InvalidInputError(`limit: must be an integer from 1 to ${QUARANTINE_PAGE_LIMIT_MAX}`, 'limit')
  }
  if (query.meterId === '') throw new InvalidInputError('meterId: must not be empty', 'meterId')
  let after: { receivedAtKey: string; id: string } | null = null
  if (query.cursor !== undefined) {
    const [receivedAtKey, id] = CURSOR.decode(query.cursor)
    after = { receivedAtKey, id }
  }
  const rows = await pageQuarantine(db, query, after, query.limit + 1, QUARANTINE_EXCERPT_BYTES_MAX)
  const page = rows.slice(0, query.limit)
  const last = page[page.length - 1]
  return {
    items: page.map((r) => ({
      meterId: r.meterId,
      receivedAt: formatTimestamp(r.receivedAt),
      reason: r.reason,
      ...(r.ts !== null ? { ts: formatTimestamp(r.ts) } : {}),
      payloadExcerpt: utf8.decode(r.excerpt),
      ...(query.includeDetail === true ? { detail: r.detail } : {}),
    })),
    nextCursor: rows.length > query.limit && last !== undefined ? CURSOR.encode([last.receivedAtKey, last.id]) : null,
  }
}
