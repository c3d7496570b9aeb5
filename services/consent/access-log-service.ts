import type { Kysely } from 'kysely'
import { isDay } from '../../shared/calendar.ts'
import { CURSOR_NOT_RETURNED, cursorListing, isDayKeyText } from '../../shared/cursor.ts'
import type { Database } from '../../shared/db/schema.ts'
import type { ReleaseChannel } from '../../shared/db/tables/access-log.ts'
import { InvalidInputError } from '../../shared/errors.ts'
import { pageAccessLogRows, type AccessLogKey } from './access-log-repository.ts'

/**
 * Who received how much of a household's data: datums per recipient, meter, local day the
 * datums belong to (a monthly datum: the first day of its month) and channel.
 */

export interface AccessLogEntry {
  recipientId: string
  recipientName: string
  meterId: string
  /** The local day the datums belong to. */
  day: string
  channel: ReleaseChannel
  datums: bigint
}

export interface AccessLogQuery {
  fromDay?: string | undefined
  toDay?: string | undefined
  recipientId?: string | undefined
  cursor?: string | undefined
  limit: number
}

const KEY_PART_CHARS_MAX = 128

/** Keyed by (day, recipientId, meterId, channel). */
const CURSOR = cursorListing('access_log', ['string', 'string', 'string', 'string'], {
  refusal: CURSOR_NOT_RETURNED,
  accepts: (key) => key.every((part) => part.length <= KEY_PART_CHARS_MAX) && isDayKeyText(key[0]),
})

export async function listAccessLog(
  db: Kysely<Database>,
  householdId: string,
  query: AccessLogQuery,
): Promise<{ items: AccessLogEntry[]; next: string | null }> {
  if (query.fromDay !== undefined && !isDay(query.fromDay)) throw new InvalidInputError('from: expected a day, YYYY-MM-DD', 'from')
  if (query.toDay !== undefined && !isDay(query.toDay)) throw new InvalidInputError('to: expected a day, YYYY-MM-DD', 'to')
  let after: AccessLogKey | null = null
  if (query.cursor !== undefined) {
    const [day, recipientId, meterId, channel] = CURSOR.decode(query.cursor)
    after = { day, recipientId, meterId, channel }
  }
  const rows = await pageAccessLogRows(
    db,
    householdId,
    { fromDay: query.fromDay, toDay: query.toDay, recipientId: query.recipientId },
    after,
    query.limit + 1,
  )
  const items = rows.slice(0, query.limit)
  const last = items[items.length - 1]
  return {
    items: items.map((r) => ({
      recipientId: r.recipient_id,
      recipientName: r.recipient_name,
      meterId: r.meter_id,
      day: r.day,
      channel: r.channel,
      datums: r.datums,
    })),
    next:
      rows.length > query.limit && last !== undefined
        ? CURSOR.encode([last.day, last.recipient_id, last.meter_id, last.channel])
        : null,
  }
}
