import { sql, type Kysely, type Transaction } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { ConsentStatus } from '../../shared/db/tables/consents.ts'
import type { Granularity } from '../../shared/wire.ts'
import type { ConsentFact, OccupancyFact } from './release-rule.ts'

/**
 * The facts the release rule decides on, read from the database: consents with their
 * meters, and occupancies. The in-memory view, the pull API and settlement load them here.
 */

type Db = Kysely<Database> | Transaction<Database>

export interface ConsentFactFilter {
  ids?: readonly string[] | undefined
  recipientId?: string | undefined
  householdId?: string | undefined
  /** Default: every status (a revoked consent's fact carries its revocation time). */
  statuses?: readonly ConsentStatus[] | undefined
}

interface ConsentFactRow {
  id: string
  household_id: string
  recipient_id: string
  granularity: Granularity
  valid_from: Date
  valid_until: Date
  data_from: Date
  data_until: Date | null
  revoked_at: Date | null
  meter_ids: string[] | null
}

export async function loadConsentFacts(db: Db, filter: ConsentFactFilter = {}): Promise<ConsentFact[]> {
  if (filter.ids !== undefined && filter.ids.length === 0) return []
  const parts = [sql`TRUE`]
  if (filter.ids !== undefined) parts.push(sql`c.id = ANY(${[...filter.ids]}::text[])`)
  if (filter.recipientId !== undefined) parts.push(sql`c.recipient_id = ${filter.recipientId}`)
  if (filter.householdId !== undefined) parts.push(sql`c.household_id = ${filter.householdId}`)
  if (filter.statuses !== undefined) parts.push(sql`c.status = ANY(${[...filter.statuses]}::text[])`)
  const { rows } = await sql<ConsentFactRow>`
    SELECT c.id, c.household_id, c.recipient_id, c.granularity, c.valid_from, c.valid_until, c.data_from, c.data_until,
           c.revoked_at,
           (SELECT array_agg(cm.meter_id ORDER BY cm.meter_id) FROM consent_meters cm WHERE cm.consent_id = c.id) AS meter_ids
    FROM consents c
    WHERE ${sql.join(parts, sql` AND `)}
    ORDER BY c.id`.execute(db)
  return rows.map(toConsentFact)
}

function toConsentFact(r: ConsentFactRow): ConsentFact {
  return {
    id: r.id,
    householdId: r.household_id,
    recipientId: r.recipient_id,
    granularity: r.granularity,
    meterIds: r.meter_ids ?? [],
    validFromMs: r.valid_from.getTime(),
    validUntilMs: r.valid_until.getTime(),
    dataFromMs: r.data_from.getTime(),
    dataUntilMs: r.data_until === null ? null : r.data_until.getTime(),
    revokedAtMs: r.revoked_at === null ? null : r.revoked_at.getTime(),
  }
}

export interface OccupancyFactFilter {
  meterIds?: readonly string[] | undefined
  householdId?: string | undefined
}

/** Occupancies, ordered by meter and start. */
export async function loadOccupancyFacts(db: Db, filter: OccupancyFactFilter = {}): Promise<OccupancyFact[]> {
  if (filter.meterIds !== undefined && filter.meterIds.length === 0) return []
  let q = db.selectFrom('occupancies').select(['meter_id', 'household_id', 'valid_from', 'valid_until'])
  if (filter.meterIds !== undefined) q = q.where('meter_id', 'in', [...filter.meterIds])
  if (filter.householdId !== undefined) q = q.where('household_id', '=', filter.householdId)
  const rows = await q.orderBy('meter_id').orderBy('valid_from').execute()
  return rows.map((r) => ({
    meterId: r.meter_id,
    householdId: r.household_id,
    fromMs: r.valid_from.getTime(),
    untilMs: r.valid_until === null ? null : r.valid_until.getTime(),
  }))
}

/** Groups occupancies by meter (keeping their order). */
export function occupanciesByMeter(facts: readonly OccupancyFact[]): Map<string, OccupancyFact[]> {
  const byMeter = new Map<string, OccupancyFact[]>()
  for (const o of facts) {
    let list = byMeter.get(o.meterId)
    if (list === undefined) byMeter.set(o.meterId, (list = []))
    list.push(o)
  }
  return byMeter
}
