import { sql, type Kysely } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { QuarantineReason } from '../../shared/errors.ts'
import { exactTsKey } from './ts-key.ts'

/** Quarantined input, read side (the ingest path writes it). */

export interface QuarantineRow {
  id: string
  meterId: string
  receivedAt: Date
  receivedAtKey: string
  reason: QuarantineReason
  ts: Date | null
  excerpt: Uint8Array
  detail: string
}

/** Rows in (received_at, id) order after a key; `excerptBytesMax` bytes of each payload at most. */
export async function pageQuarantine(
  db: Kysely<Database>,
  filter: { meterId?: string | undefined; from?: Date | undefined; to?: Date | undefined },
  after: { receivedAtKey: string; id: string } | null,
  limit: number,
  excerptBytesMax: number,
): Promise<QuarantineRow[]> {
  const parts = [sql`TRUE`]
  if (filter.meterId !== undefined) parts.push(sql`q.meter_id = ${filter.meterId}`)
  if (filter.from !== undefined) parts.push(sql`q.received_at >= ${filter.from}`)
  if (filter.to !== undefined) parts.push(sql`q.received_at < ${filter.to}`)
  if (after !== null) parts.push(sql`(q.received_at, q.id) > (${after.receivedAtKey}::timestamptz, ${after.id}::bigint)`)
  const { rows } = await sql<{
    id: bigint
    meter_id: string
    received_at: Date
    received_at_key: string
    reason: QuarantineReason
    ts: Date | null
    excerpt: Uint8Array
    detail: string
  }>`
    SELECT q.id, q.meter_id, q.received_at, ${exactTsKey(sql.ref('q.received_at'))} AS received_at_key, q.reason, q.ts,
           substring(q.payload FROM 1 FOR ${excerptBytesMax}::int) AS excerpt, q.detail
    FROM quarantine q
    WHERE ${sql.join(parts, sql` AND `)}
    ORDER BY q.received_at, q.id
    LIMIT ${limit}`.execute(db)
  return rows.map((r) => ({
    id: String(r.id),
    meterId: r.meter_id,
    receivedAt: r.received_at,
    receivedAtKey: r.received_at_key,
    reason: r.reason,
    ts: r.ts,
    excerpt: r.excerpt,
    detail: r.detail,
  }))
}
