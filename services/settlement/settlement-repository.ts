import { sql, type Kysely, type Selectable, type Transaction } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { ConsentKind } from '../../shared/db/tables/consents.ts'
import type { JournalKind } from '../../shared/db/tables/ledger-journals.ts'
import type { SettlementRunsTable } from '../../shared/db/tables/settlement-runs.ts'
import type { Granularity } from '../../shared/wire.ts'
import { OCCUPANCY_FACT_COLUMNS, toOccupancyFact, type OccupancyFactRow } from '../consent/release-facts-repository.ts'
import type { ConsentFact, OccupancyFact } from '../consent/release-rule.ts'
import { finalDayRule, isDailyDatum, isFinalMonth, isReleasableDay, monthFinality } from '../metering/rollup-repository.ts'
import { pairKey, type RangeCount, type ReadingsPiece, type RollupRange } from './count-plan.ts'
import { parseAccount } from './ledger-account.ts'
import type { LineState } from './settlement-calculation.ts'

/**
 * SQL of settlement runs and the ledger. Rows to write travel as one array per column
 * (unnest), rows to look up as one JSON document (jsonb_to_recordset): a few parameters per
 * statement on PostgreSQL and PGlite alike. Money goes as strings of integers, so no amount
 * passes through a JavaScript number.
 */

type Db = Kysely<Database> | Transaction<Database>

/** Rows per statement when posting; keeps each JSON document to a few megabytes. */
export const POSTING_ROWS_PER_STATEMENT_MAX = 20_000

// One advisory lock for all settlement runs and payouts, on PostgreSQL and PGlite alike.
const LOCK_CLASS = 0x6d73_6574 // 'mset'
const LOCK_OBJECT = 1

export async function acquireSettlementLock(conn: Kysely<Database>, waitMsMax: number): Promise<void> {
  await sql`SELECT set_config('lock_timeout', ${String(waitMsMax)}, false)`.execute(conn)
  try {
    await sql`SELECT pg_advisory_lock(${LOCK_CLASS}::int, ${LOCK_OBJECT}::int)`.execute(conn)
  } finally {
    await sql`RESET lock_timeout`.execute(conn)
  }
}

export async function releaseSettlementLock(conn: Kysely<Database>): Promise<void> {
  await sql`SELECT pg_advisory_unlock(${LOCK_CLASS}::int, ${LOCK_OBJECT}::int)`.execute(conn)
}

/** The database's clock at the start of the transaction (the clock `readings.ingested_at` uses). */
export async function transactionStart(trx: Db): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`SELECT now() AS now`.execute(trx)
  return rows[0]!.now
}

export interface MonthWindow {
  start: Date
  end: Date
  /** The run's instant: consents that start later release nothing yet. */
  now: Date
}

/**
 * Consents that may have released data of the month (a superset: the rule decides). A datum ends its
 * interval, so the month's load curve runs from just after its first midnight through its last,
 * inclusive: a data window that opens at the month's end (a move-in at midnight on the 1st) holds
 * the datum stamped at that instant, which is the month's.
 */
function monthConsentsWhere(w: MonthWindow) {
  return sql`c.data_from <= ${w.end} AND (c.data_until IS NULL OR c.data_until > ${w.start}) AND c.valid_from <= ${w.now}`
}

export interface ConsentRow {
  id: string
  household_id: string
  recipient_id: string
  kind: ConsentKind
  granularity: Granularity
  offer_id: string | null
  valid_from_ms: number
  valid_until_ms: number
  data_from_ms: number
  data_until_ms: number | null
  revoked_at_ms: number | null
  /** Its meters, sorted, and each one's operator (same order); [null] when it names none. */
  meter_ids: (string | null)[]
  operator_ids: (string | null)[]
}

/** An instant as epoch milliseconds (a float8 holds them exactly): cheaper to read than a Date. */
function epochMs(column: string) {
  return sql.raw(`floor(extract(epoch FROM ${column}) * 1000)::float8`)
}

/** The consents of the month with the times the release rule needs, their meters and those meters' operators. */
export async function findMonthConsents(trx: Db, w: MonthWindow): Promise<ConsentRow[]> {
  const { rows } = await sql<ConsentRow>`
    SELECT c.id, c.household_id, c.recipient_id, c.kind, c.granularity, c.offer_id,
      ${epochMs('c.valid_from')} AS valid_from_ms, ${epochMs('c.valid_until')} AS valid_until_ms,
      ${epochMs('c.data_from')} AS data_from_ms, ${epochMs('c.data_until')} AS data_until_ms, ${epochMs('c.revoked_at')} AS revoked_at_ms,
      array_agg(cm.meter_id ORDER BY cm.meter_id) AS meter_ids, array_agg(m.operator_id ORDER BY cm.meter_id) AS operator_ids
    FROM consents c LEFT JOIN consent_meters cm ON cm.consent_id = c.id LEFT JOIN meters m ON m.id = cm.meter_id
    WHERE ${monthConsentsWhere(w)}
    GROUP BY c.id
    ORDER BY c.id`.execute(trx)
  return rows
}

/** The meters a consent row names (without the null of a consent that names none). */
export function meterIdsOf(r: ConsentRow): string[] {
  return r.meter_ids.filter((m): m is string => m !== null)
}

/** The operator of every meter the consent rows name. */
export function operatorsOf(rows: readonly ConsentRow[]): Map<string, string> {
  const operators = new Map<string, string>()
  for (const r of rows) {
    r.meter_ids.forEach((m, i) => {
      if (m !== null) operators.set(m, r.operator_ids[i]!)
    })
  }
  return operators
}

export function toConsentFact(r: ConsentRow): ConsentFact {
  return {
    id: r.id,
    householdId: r.household_id,
    recipientId: r.recipient_id,
    granularity: r.granularity,
    meterIds: meterIdsOf(r),
    validFromMs: r.valid_from_ms,
    validUntilMs: r.valid_until_ms,
    dataFromMs: r.data_from_ms,
    dataUntilMs: r.data_until_ms,
    revokedAtMs: r.revoked_at_ms,
  }
}

/** Every occupancy of the meters those consents name, by meter, in order of start. */
export async function findMonthOccupancies(trx: Db, w: MonthWindow): Promise<Map<string, OccupancyFact[]>> {
  const { rows } = await sql<OccupancyFactRow>`
    SELECT ${OCCUPANCY_FACT_COLUMNS} FROM occupancies o
    WHERE o.meter_id IN (SELECT cm.meter_id FROM consent_meters cm JOIN consents c ON c.id = cm.consent_id WHERE ${monthConsentsWhere(w)})
    ORDER BY o.meter_id, o.valid_from`.execute(trx)
  const byMeter = new Map<string, OccupancyFact[]>()
  for (const r of rows) {
    let list = byMeter.get(r.meter_id)
    if (list === undefined) byMeter.set(r.meter_id, (list = []))
    list.push(toOccupancyFact(r))
  }
  return byMeter
}

export interface OfferRow {
  id: string
  price_micros_per_datum: bigint
  household_bps: number
  operator_bps: number
  platform_bps: number
  third_parties: Array<{ p: string; b: number }>
}

export async function findMonthOffers(trx: Db, w: MonthWindow): Promise<OfferRow[]> {
  const { rows } = await sql<OfferRow>`
    SELECT o.id, o.price_micros_per_datum, o.household_bps, o.operator_bps, o.platform_bps,
      coalesce((SELECT jsonb_agg(jsonb_build_object('p', s.party_id, 'b', s.bps) ORDER BY s.party_id)
                FROM offer_shares s WHERE s.offer_id = o.id), '[]'::jsonb) AS third_parties
    FROM offers o
    WHERE o.id IN (SELECT c.offer_id FROM consents c WHERE ${monthConsentsWhere(w)})
    ORDER BY o.id`.execute(trx)
  return rows
}

export { pairKey }

/**
 * Per (meter, household) with data in [firstDay, lastDay] (a whole month): the datums
 * (Σ readings_count), the days released (isReleasableDay) and whether the month is final
 * (isFinalMonth), in one pass over those days' rollups and the day before: each group's predecessor
 * comes from a window over its meter's groups (`lag` by last_ts, as groupBefore), not a lookup per group. A group whose
 * predecessor lies before that day has none here, which decides alike: its opening is not the
 * previous day's closing reading either way.
 */
export async function findMonthRollupTotals(trx: Db, firstDay: string, lastDay: string, timezone: string): Promise<Map<string, RangeCount>> {
  const { rows } = await sql<{ meter_id: string; household_id: string; readings: bigint; days: bigint; month_final: boolean }>`
    WITH w AS (
      SELECT r.meter_id, r.household_id, r.day, r.readings_count, r.first_ts, r.last_ts,
        -- groupBefore's rule as windows: a straddled group (another of its day began before it and ended after) follows nobody's readings.
        -- (Straddled: a group of its day ending later began earlier. Both windows sort alike: one sort.)
        CASE WHEN min(r.first_ts) OVER d < r.first_ts THEN NULL ELSE lag(r.household_id) OVER o END AS previous_household,
        CASE WHEN min(r.first_ts) OVER d < r.first_ts THEN NULL ELSE lag(r.last_ts) OVER o END AS previous_last_ts
      FROM daily_rollups r
      WHERE r.day BETWEEN ${firstDay}::date - 1 AND ${lastDay}::date
      WINDOW o AS (PARTITION BY r.meter_id ORDER BY r.day, r.last_ts),
        d AS (PARTITION BY r.meter_id, r.day ORDER BY r.last_ts ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
    ), f AS MATERIALIZED (
      -- Materialized: inlined, each FILTER below would evaluate the two rules again.
      SELECT w.meter_id, w.household_id, w.day, w.readings_count, ${isDailyDatum('w')} AS datum,
        ${finalDayRule('w', sql`w.previous_household`, sql`w.previous_last_ts`, sql`m.interval_minutes`, timezone)} AS final
      FROM w JOIN meters m ON m.id = w.meter_id
      WHERE w.day >= ${firstDay}::date AND w.household_id IS NOT NULL
    ), t AS (
      -- A household with a datum every day of the month (one group a day: daily_rollups_key) has it
      -- final when every day is; monthFinality looks at the others' runs of days and moves.
      SELECT f.meter_id, f.household_id, sum(f.readings_count)::bigint AS readings,
        (count(*) FILTER (WHERE f.datum AND f.final))::bigint AS days,
        count(*) FILTER (WHERE f.datum) = ${lastDay}::date - ${firstDay}::date + 1 AS every_day,
        coalesce(bool_and(f.final) FILTER (WHERE f.datum), false) AS every_final
      FROM f GROUP BY f.meter_id, f.household_id
    )
    SELECT t.meter_id, t.household_id, t.readings, t.days, CASE WHEN t.every_day THEN t.every_final ELSE coalesce(mf.final, false) END AS month_final
    FROM t LEFT JOIN ${monthFinality(
      sql`(SELECT f.meter_id, f.household_id, f.day, f.final FROM f JOIN t ON t.meter_id = f.meter_id AND t.household_id = f.household_id WHERE f.datum AND NOT t.every_day)`,
      sql`${firstDay}`,
      timezone,
    )} AS mf ON mf.meter_id = t.meter_id AND mf.household_id = t.household_id`.execute(trx)
  return new Map(rows.map((r) => [pairKey(r.meter_id, r.household_id), { readings: r.readings, days: r.days, monthFinal: r.month_final }]))
}

/** Of these (meter, household) pairs, those whose month of `monthStart` (its first day) is final (isFinalMonth), as pairKey. */
export async function findFinalMonths(trx: Db, pairs: readonly { meterId: string; householdId: string }[], monthStart: string, timezone: string): Promise<Set<string>> {
  if (pairs.length === 0) return new Set()
  const { rows } = await sql<{ m: string; h: string }>`
    SELECT p.m, p.h FROM unnest(${pairs.map((p) => p.meterId)}::text[], ${pairs.map((p) => p.householdId)}::text[]) AS p(m, h)
    WHERE ${isFinalMonth(sql`p.m`, sql`p.h`, sql`${monthStart}`, timezone)}`.execute(trx)
  return new Set(rows.map((r) => pairKey(r.m, r.h)))
}

/**
 * For each range, from the daily rollups: the datums (Σ readings_count) and the days with
 * data. One index range scan per range; answers by position in `ranges`.
 */
export async function sumRollups(trx: Db, ranges: readonly RollupRange[], timezone: string): Promise<RangeCount[]> {
  if (ranges.length === 0) return []
  const doc = JSON.stringify(ranges.map((r, i) => ({ i, m: r.meterId, h: r.householdId, d0: r.firstDay, d1: r.lastDay })))
  const { rows } = await sql<{ i: number; readings: bigint; days: bigint }>`
    SELECT g.i, a.readings, a.days
    FROM jsonb_to_recordset(${doc}::jsonb) AS g(i integer, m text, h text, d0 date, d1 date)
    CROSS JOIN LATERAL (
      SELECT coalesce(sum(r.readings_count), 0)::bigint AS readings, (count(*) FILTER (WHERE ${isReleasableDay('r', timezone)}))::bigint AS days
      FROM daily_rollups r WHERE r.meter_id = g.m AND r.household_id = g.h AND r.day BETWEEN g.d0 AND g.d1) AS a`.execute(trx)
  const out = ranges.map(() => ({ readings: 0n, days: 0n }))
  for (const r of rows) out[r.i] = { readings: r.readings, days: r.days }
  return out
}

/**
 * Per (meter, instant): the timestamp of the meter's latest reading from `fromMs` on that was stored
 * before the instant (epoch ms), or none. For consents that ended: what was complete while they were
 * in force. Scans the meter's readings from `fromMs` (its key), not its history.
 */
export async function latestStoredBefore(trx: Db, pairs: readonly { meterId: string; beforeMs: number }[], fromMs: number): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  if (pairs.length === 0) return out
  const doc = JSON.stringify(pairs.map((p) => ({ m: p.meterId, b: new Date(p.beforeMs).toISOString() })))
  const { rows } = await sql<{ m: string; b: Date; ts: Date | null }>`
    SELECT e.m, e.b, (SELECT max(x.ts) FROM readings x WHERE x.meter_id = e.m AND x.ts >= ${new Date(fromMs).toISOString()}::timestamptz AND x.ingested_at < e.b) AS ts
    FROM jsonb_to_recordset(${doc}::jsonb) AS e(m text, b timestamptz)`.execute(trx)
  for (const r of rows) if (r.ts !== null) out.set(`${r.m}\u0000${r.b.getTime()}`, r.ts.getTime())
  return out
}

/**
 * Per (meter, household, instant): the days in [firstDay, lastDay] whose rollup changed at or after
 * the instant (its `updated_at`: the start of the last transaction that stored or re-attributed a
 * datum of it). A day absent from the answer holds only datums stored before the instant.
 */
export async function daysChangedSince(
  trx: Db,
  keys: readonly { meterId: string; householdId: string; sinceMs: number }[],
  firstDay: string,
  lastDay: string,
): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>()
  if (keys.length === 0) return out
  const doc = JSON.stringify(keys.map((k) => ({ m: k.meterId, h: k.householdId, b: new Date(k.sinceMs).toISOString() })))
  const { rows } = await sql<{ m: string; h: string; b: Date; day: string }>`
    SELECT e.m, e.h, e.b, r.day::text AS day
    FROM jsonb_to_recordset(${doc}::jsonb) AS e(m text, h text, b timestamptz)
    JOIN daily_rollups r ON r.meter_id = e.m AND r.household_id = e.h AND r.day BETWEEN ${firstDay}::date AND ${lastDay}::date AND r.updated_at >= e.b`.execute(trx)
  for (const r of rows) {
    const key = changedDaysKey(r.m, r.h, r.b.getTime())
    let set = out.get(key)
    if (set === undefined) out.set(key, (set = new Set()))
    set.add(r.day)
  }
  return out
}

export function changedDaysKey(meterId: string, householdId: string, sinceMs: number): string {
  return `${meterId}\u0000${householdId}\u0000${sinceMs}`
}

/** For each piece, its raw readings (by the (meter_id, ts) key); answers by position. */
export async function countRawReadings(trx: Db, pieces: readonly ReadingsPiece[]): Promise<bigint[]> {
  if (pieces.length === 0) return []
  const doc = JSON.stringify(
    pieces.map((p, i) => ({
      i,
      m: p.meterId,
      h: p.householdId,
      f: new Date(p.fromMs).toISOString(),
      u: new Date(p.untilMs).toISOString(),
      s: p.storedBeforeMs === null ? null : new Date(p.storedBeforeMs).toISOString(),
      a: p.storedFromMs === null ? null : new Date(p.storedFromMs).toISOString(),
    })),
  )
  const { rows } = await sql<{ i: number; n: bigint }>`
    SELECT e.i, (SELECT count(*) FROM readings x WHERE x.meter_id = e.m AND x.ts >= e.f AND x.ts < e.u AND x.household_id = e.h
                 AND (e.s IS NULL OR x.ingested_at < e.s) AND (e.a IS NULL OR x.ingested_at >= e.a))::bigint AS n
    FROM jsonb_to_recordset(${doc}::jsonb) AS e(i integer, m text, h text, f timestamptz, u timestamptz, s timestamptz, a timestamptz)`.execute(trx)
  const out = pieces.map(() => 0n)
  for (const r of rows) out[r.i] = r.n
  return out
}

export type RunRow = Selectable<SettlementRunsTable>

export async function findLatestRun(db: Db, month: string): Promise<RunRow | undefined> {
  return db.selectFrom('settlement_runs').selectAll().where('month', '=', month).orderBy('seq', 'desc').limit(1).executeTakeFirst()
}

export async function findClosingRun(db: Db, month: string): Promise<RunRow | undefined> {
  return db.selectFrom('settlement_runs').selectAll().where('month', '=', month).where('seq', '=', 1).executeTakeFirst()
}

/** The latest month closed after `month`, if any: books are closed up to it, `month` included. */
export async function findClosedMonthAfter(db: Db, month: string): Promise<string | undefined> {
  const row = await db.selectFrom('settlement_runs').select('month').where('seq', '=', 1).where('month', '>', month).orderBy('month', 'desc').limit(1).executeTakeFirst()
  return row?.month
}

/** Months that have been closed (settled at least once). */
export async function findClosedMonths(db: Db): Promise<Set<string>> {
  const rows = await db.selectFrom('settlement_runs').select('month').where('seq', '=', 1).execute()
  return new Set(rows.map((r) => r.month))
}

/** The first local day with data owned by a household, or null. */
export async function findFirstDataDay(db: Db): Promise<string | null> {
  const { rows } = await sql<{ day: string | null }>`SELECT min(day) AS day FROM daily_rollups WHERE household_id IS NOT NULL`.execute(db)
  return rows[0]?.day ?? null
}

/** What the ledger holds for a month's data, per account (its settlement and adjustment journals). */
export async function findPostedForMonth(trx: Db, month: string): Promise<Map<string, bigint>> {
  const { rows } = await sql<{ account_id: string; amount: bigint }>`
    SELECT e.account_id, sum(e.amount_micros)::bigint AS amount
    FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
    WHERE j.for_month = ${month} AND j.kind IN ('settlement', 'adjustment')
    GROUP BY e.account_id`.execute(trx)
  return new Map(rows.filter((r) => r.amount !== 0n).map((r) => [r.account_id, r.amount]))
}

/** The latest state of each (month, consent) line. */
export async function findLatestLines(trx: Db, month: string): Promise<Map<string, LineState>> {
  const { rows } = await sql<{ consent_id: string; data_count: bigint; gross_micros: bigint; household_share_micros: bigint }>`
    SELECT DISTINCT ON (l.consent_id) l.consent_id, l.data_count, l.gross_micros, l.household_share_micros
    FROM settlement_lines l JOIN settlement_runs r ON r.id = l.run_id
    WHERE l.month = ${month}
    ORDER BY l.consent_id, r.seq DESC`.execute(trx)
  return new Map(
    rows.map((r) => [r.consent_id, { data: r.data_count, grossMicros: r.gross_micros, householdShareMicros: r.household_share_micros }]),
  )
}

export interface HouseholdBalance {
  /** Over the journals posted up to a month. */
  upTo: bigint
  /** Over every journal posted so far (corrections booked in later months too). */
  all: bigint
}

/** Balances of household accounts, by household: up to a posting month, and over everything posted. */
export async function findHouseholdBalances(trx: Db, upToPostingMonth: string): Promise<Map<string, HouseholdBalance>> {
  const { rows } = await sql<{ owner_id: string; up_to: bigint; all_months: bigint }>`
    SELECT a.owner_id,
      coalesce(sum(e.amount_micros) FILTER (WHERE j.posting_month <= ${upToPostingMonth}), 0)::bigint AS up_to,
      sum(e.amount_micros)::bigint AS all_months
    FROM ledger_entries e
    JOIN ledger_accounts a ON a.id = e.account_id
    JOIN ledger_journals j ON j.id = e.journal_id
    WHERE a.kind = 'household'
    GROUP BY a.owner_id`.execute(trx)
  return new Map(rows.map((r) => [r.owner_id, { upTo: r.up_to, all: r.all_months }]))
}

/** Whether a month after this one has been closed (its first run recorded). */
export async function hasClosedMonthAfter(db: Db, month: string): Promise<boolean> {
  const row = await db.selectFrom('settlement_runs').select('id').where('month', '>', month).where('seq', '=', 1).limit(1).executeTakeFirst()
  return row !== undefined
}

export async function insertRun(trx: Db, row: Omit<RunRow, 'created_at'>): Promise<RunRow> {
  return trx.insertInto('settlement_runs').values(row).returningAll().executeTakeFirstOrThrow()
}

/** Creates the accounts that do not exist yet. */
export async function ensureAccounts(trx: Db, accountIds: Iterable<string>): Promise<void> {
  const all = [...new Set(accountIds)].map(parseAccount)
  for (let i = 0; i < all.length; i += POSTING_ROWS_PER_STATEMENT_MAX) {
    const batch = all.slice(i, i + POSTING_ROWS_PER_STATEMENT_MAX)
    await sql`INSERT INTO ledger_accounts (id, kind, owner_id)
      SELECT * FROM unnest(${batch.map((a) => a.id)}::text[], ${batch.map((a) => a.kind)}::text[], ${batch.map((a) => a.ownerId)}::text[])
      ON CONFLICT (id) DO NOTHING`.execute(trx)
  }
}

export interface NewJournal {
  id: string
  kind: JournalKind
  runId: string
  postingMonth: string
  forMonth: string
  /** Account → signed amount; non-zero, summing to zero. */
  entries: ReadonlyMap<string, bigint>
}

/** Inserts journals and their entries; the database checks each journal's balance at commit. */
export async function insertJournals(trx: Db, journals: readonly NewJournal[], onRows?: (done: number) => void): Promise<void> {
  for (let i = 0; i < journals.length; ) {
    const batch: NewJournal[] = []
    let rows = 0
    while (i < journals.length && (batch.length === 0 || rows + journals[i]!.entries.size < POSTING_ROWS_PER_STATEMENT_MAX)) {
      rows += journals[i]!.entries.size
      batch.push(journals[i]!)
      i++
    }
    await sql`INSERT INTO ledger_journals (id, kind, run_id, posting_month, for_month)
      SELECT * FROM unnest(${batch.map((j) => j.id)}::text[], ${batch.map((j) => j.kind)}::text[], ${batch.map((j) => j.runId)}::text[],
        ${batch.map((j) => j.postingMonth)}::text[], ${batch.map((j) => j.forMonth)}::text[])`.execute(trx)
    const journalIds: string[] = []
    const accountIds: string[] = []
    const amounts: string[] = []
    for (const j of batch) {
      for (const [account, amount] of j.entries) {
        journalIds.push(j.id)
        accountIds.push(account)
        amounts.push(amount.toString())
      }
    }
    // One statement per batch: a journal's entries never straddle two (see the loop above).
    await sql`INSERT INTO ledger_entries (journal_id, account_id, amount_micros)
      SELECT * FROM unnest(${journalIds}::text[], ${accountIds}::text[], ${amounts}::bigint[])`.execute(trx)
    onRows?.(i)
  }
}

export interface NewLine {
  runId: string
  month: string
  consentId: string
  householdId: string
  recipientId: string
  offerId: string | null
  granularity: Granularity
  state: LineState
}

export async function insertLines(trx: Db, lines: readonly NewLine[]): Promise<void> {
  for (let i = 0; i < lines.length; i += POSTING_ROWS_PER_STATEMENT_MAX) {
    const b = lines.slice(i, i + POSTING_ROWS_PER_STATEMENT_MAX)
    await sql`INSERT INTO settlement_lines
        (run_id, month, consent_id, household_id, recipient_id, offer_id, granularity, data_count, gross_micros, household_share_micros)
      SELECT * FROM unnest(${b.map((l) => l.runId)}::text[], ${b.map((l) => l.month)}::text[], ${b.map((l) => l.consentId)}::text[],
        ${b.map((l) => l.householdId)}::text[], ${b.map((l) => l.recipientId)}::text[], ${b.map((l) => l.offerId)}::text[],
        ${b.map((l) => l.granularity)}::text[], ${b.map((l) => l.state.data.toString())}::bigint[],
        ${b.map((l) => l.state.grossMicros.toString())}::bigint[], ${b.map((l) => l.state.householdShareMicros.toString())}::bigint[])`.execute(trx)
  }
}

export interface NewPayout {
  id: string
  householdId: string
  month: string
  amountMicros: bigint
  journalId: string
  runId: string
}

export async function insertPayouts(trx: Db, payouts: readonly NewPayout[]): Promise<void> {
  for (let i = 0; i < payouts.length; i += POSTING_ROWS_PER_STATEMENT_MAX) {
    const b = payouts.slice(i, i + POSTING_ROWS_PER_STATEMENT_MAX)
    await sql`INSERT INTO payouts (id, household_id, month, amount_micros, status, journal_id, run_id)
      SELECT p.id, p.h, p.m, p.v, 'paid', p.j, p.r
      FROM unnest(${b.map((p) => p.id)}::text[], ${b.map((p) => p.householdId)}::text[], ${b.map((p) => p.month)}::text[],
        ${b.map((p) => p.amountMicros.toString())}::bigint[], ${b.map((p) => p.journalId)}::text[], ${b.map((p) => p.runId)}::text[])
        AS p(id, h, m, v, j, r)`.execute(trx)
  }
}
