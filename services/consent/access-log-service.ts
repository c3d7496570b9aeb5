import type { Kysely } from 'kysely'
import { isDay } from '../../shared/calendar.ts'
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

function encodeKey(k: AccessLogKey): string {
  return Buffer.from(JSON.stringify([k.day, k.recipientId, k.meterId, k.channel]), 'utf8').toString('base64url')
}

function decodeKey(cursor: string | undefined): AccessLogKey | null {
  if (cursor === undefined) return null
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown
    if (Array.isArray(v) && v.length === 4 && v.every((x) => typeof x === 'string' && x.length <= 128) && isDay(v[0] as string)) {
      const [day, recipientId, meterId, channel] = v as [string, string, string, string]
      return { day, recipientId, meterId, channel }
    }
  } catch {
    // fall through
  }
  throw new InvalidInputError('cursor: not a cursor this API returned', 'cursor')
}

export async function listAccessLog(
  db: Kysely<Database>,
  householdId: string,
  query: AccessLogQuery,
): Promise<{ items: AccessLogEntry[]; next: string | null }> {
  if (query.fromDay !== undefined && !isDay(query.fromDay)) throw new InvalidInputError('from: expected a day, YYYY-MM-DD', 'from')
  if (query.toDay !== undefined && !isDay(query.toDay)) throw new InvalidInputError('to: expected a day, YYYY-MM-DD', 'to')
  const after = decodeKey(query.cursor)
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
        ? encodeKey({ day: last.day, recipientId: last.recipient_id, meterId: last.meter_id, channel: last.channel })
        : null,
  }
}
