import { sql, type Transaction } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { RegisterValues } from '../../shared/wire.ts'
import type { QuarantineItem } from './ingest-validation.ts'

/**
 * SQL of the ingest transaction. Rows travel as one JSON document per statement
 * (jsonb_to_recordset), which is one parameter on both PostgreSQL and PGlite.
 */
type Trx = Transaction<Database>

/** How far back the first pass looks for a meter's previous reading (keeps partition pruning tight). */
export const NEIGHBOUR_WINDOW_MS = 40 * 86_400_000

export interface MeterSpan {
  meterId: string
  minTsMs: number
  maxTsMs: number
}

export interface StoredReading {
  meterId: string
  tsMs: number
  values: RegisterValues
}

/**
 * Serialises ingest batches against occupancy changes on PostgreSQL: SHARE mode lets ingest
 * batches run together but waits for (and holds off) a transaction that writes occupancies,
 * so no datum is attributed from an occupancy that is being changed.
 */
export async function lockOccupanciesForIngest(trx: Trx): Promise<void> {
  await sql`LOCK TABLE occupancies IN SHARE MODE`.execute(trx)
}

/**
 * For each meter: its stored readings inside the span, the nearest one before it and the
 * nearest one after it. Enough to tell duplicates, conflicts and index regressions apart.
 */
export async function fetchNeighbourhood(trx: Trx, spans: MeterSpan[]): Promise<StoredReading[]> {
  if (spans.length === 0) return []
  const doc = JSON.stringify(
    spans.map((s) => ({
      m: s.meterId,
      lo: new Date(s.minTsMs).toISOString(),
      hi: new Date(s.maxTsMs).toISOString(),
      w: new Date(s.minTsMs - NEIGHBOUR_WINDOW_MS).toISOString(),
    })),
  )
  const near = await sql<{ meter_id: string; ts: Date; values: RegisterValues; before: boolean }>`
    SELECT s.m AS meter_id, r.ts, r.values, r.ts < s.lo AS before
    FROM jsonb_to_recordset(${doc}::jsonb) AS s(m text, lo timestamptz, hi timestamptz, w timestamptz)
    CROSS JOIN LATERAL (
      (SELECT ts, values FROM readings WHERE meter_id = s.m AND ts >= s.w AND ts < s.lo ORDER BY ts DESC LIMIT 1)
      UNION ALL
      (SELECT ts, values FROM readings WHERE meter_id = s.m AND ts >= s.lo AND ts <= s.hi)
      UNION ALL
      (SELECT ts, values FROM readings WHERE meter_id = s.m AND ts > s.hi ORDER BY ts LIMIT 1)
    ) AS r`.execute(trx)
  const rows: StoredReading[] = near.rows.map((r) => ({ meterId: r.meter_id, tsMs: r.ts.getTime(), values: r.values }))

  // Meters with nothing recent before their span: look further back (new meters, long outages).
  const found = new Set(near.rows.filter((r) => r.before).map((r) => r.meter_id))
  const far = spans.filter((s) => !found.has(s.meterId))
  if (far.length > 0) {
    const farDoc = JSON.stringify(far.map((s) => ({ m: s.meterId, w: new Date(s.minTsMs - NEIGHBOUR_WINDOW_MS).toISOString() })))
    const older = await sql<{ meter_id: string; ts: Date; values: RegisterValues }>`
      SELECT s.m AS meter_id, r.ts, r.values
      FROM jsonb_to_recordset(${farDoc}::jsonb) AS s(m text, w timestamptz)
      CROSS JOIN LATERAL (SELECT ts, values FROM readings WHERE meter_id = s.m AND ts < s.w ORDER BY ts DESC LIMIT 1) AS r`.execute(trx)
    for (const r of older.rows) rows.push({ meterId: r.meter_id, tsMs: r.ts.getTime(), values: r.values })
  }
  return rows
}

export interface NewReading {
  meterId: string
  tsMs: number
  values: RegisterValues
}

/** Inserts datums, attributing each to the household occupying its meter at its ts (or nobody). */
export async function insertReadings(
  trx: Trx,
  readings: NewReading[],
): Promise<Array<{ meterId: string; tsMs: number; householdId: string | null }>> {
  if (readings.length === 0) return []
  const doc = JSON.stringify(readings.map((r) => ({ m: r.meterId, t: new Date(r.tsMs).toISOString(), v: r.values })))
  const result = await sql<{ meter_id: string; ts: Date; household_id: string | null }>`
    INSERT INTO readings (meter_id, ts, household_id, values)
    SELECT x.m, x.t,
      (SELECT o.household_id FROM occupancies o WHERE o.meter_id = x.m AND o.period @> x.t),
      x.v
    FROM jsonb_to_recordset(${doc}::jsonb) AS x(m text, t timestamptz, v jsonb)
    RETURNING meter_id, ts, household_id`.execute(trx)
  return result.rows.map((r) => ({ meterId: r.meter_id, tsMs: r.ts.getTime(), householdId: r.household_id }))
}

export interface RollupDelta {
  meterId: string
  householdId: string | null
  day: string
  count: number
  firstTsMs: number
  lastTsMs: number
  indexMin: RegisterValues
  indexMax: RegisterValues
}

/** Merges per-(meter, household, day) deltas into the rollups; tells which rows are new. */
export async function upsertRollups(
  trx: Trx,
  deltas: RollupDelta[],
): Promise<Array<{ meterId: string; householdId: string | null; day: string; created: boolean }>> {
  if (deltas.length === 0) return []
  const doc = JSON.stringify(
    deltas.map((d) => ({
      m: d.meterId,
      h: d.householdId,
      d: d.day,
      n: d.count,
      f: new Date(d.firstTsMs).toISOString(),
      l: new Date(d.lastTsMs).toISOString(),
      mn: d.indexMin,
      mx: d.indexMax,
    })),
  )
  const result = await sql<{ meter_id: string; household_id: string | null; day: string; created: boolean }>`
    INSERT INTO daily_rollups AS r (meter_id, household_id, day, readings_count, first_ts, last_ts, index_min, index_max)
    SELECT x.m, x.h, x.d, x.n, x.f, x.l, x.mn, x.mx
    FROM jsonb_to_recordset(${doc}::jsonb) AS x(m text, h text, d date, n integer, f timestamptz, l timestamptz, mn jsonb, mx jsonb)
    ON CONFLICT (meter_id, day, household_id) DO UPDATE SET
      readings_count = r.readings_count + excluded.readings_count,
      first_ts = least(r.first_ts, excluded.first_ts),
      last_ts = greatest(r.last_ts, excluded.last_ts),
      index_min = metershare_jsonb_min(r.index_min, excluded.index_min),
      index_max = metershare_jsonb_max(r.index_max, excluded.index_max),
      updated_at = now()
    RETURNING r.meter_id, r.household_id, r.day, (r.xmax = 0) AS created`.execute(trx)
  return result.rows.map((r) => ({ meterId: r.meter_id, householdId: r.household_id, day: r.day, created: r.created }))
}

export async function insertQuarantine(trx: Trx, items: QuarantineItem[]): Promise<void> {
  if (items.length === 0) return
  const doc = JSON.stringify(
    items.map((q) => ({
      m: q.meterId,
      r: new Date(q.receivedAtMs).toISOString(),
      why: q.reason,
      t: q.tsMs === null ? null : new Date(q.tsMs).toISOString(),
      p: q.payload.toString('base64'),
      n: q.payloadBytes,
      d: q.detail,
    })),
  )
  await sql`
    INSERT INTO quarantine (meter_id, received_at, reason, ts, payload, payload_bytes, detail)
    SELECT x.m, x.r, x.why, x.t, decode(x.p, 'base64'), x.n, x.d
    FROM jsonb_to_recordset(${doc}::jsonb) AS x(m text, r timestamptz, why text, t timestamptz, p text, n integer, d text)`.execute(trx)
}
