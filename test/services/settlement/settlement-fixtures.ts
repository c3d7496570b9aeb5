import { sql, type Kysely } from 'kysely'
import { createDatumDayResolver, startOfDayMs } from '../../../shared/calendar.ts'
import { DEFAULT_INGEST_LIMITS, envToConfig, type Config } from '../../../shared/config.ts'
import type { DialectName } from '../../../shared/db/database.ts'
import type { Database } from '../../../shared/db/schema.ts'
import { newId } from '../../../shared/ids.ts'
import { OBIS_GAS_VOLUME, OBIS_IMPORT_ENERGY_TOTAL, type Commodity } from '../../../shared/obis.ts'
import type { Granularity } from '../../../shared/wire.ts'
import { createHousehold, createMeter, createParty } from '../../../services/directory/directory-service.ts'
import { MeterTails, commitMessages } from '../../../services/metering/ingest-service.ts'
import { validatePayload } from '../../../services/metering/ingest-validation.ts'
import { settlementContext, type SettlementContext } from '../../../services/settlement/settlement-service.ts'

/**
 * A small world for settlement tests: parties, households and meters through the directory
 * service, readings through the real ingest transaction (which fills the daily rollups),
 * offers and consents written as the consent service stores them.
 */

export const TZ = 'Europe/Paris'
export const HOUR_MS = 3_600_000

export function testConfig(payoutMinMicros = 5_000_000n): Readonly<Config> {
  return envToConfig({ timezone: TZ, payoutMinMicros: payoutMinMicros.toString() })
}

export function ctxAt(now: Date | string, payoutMinMicros = 5_000_000n): SettlementContext {
  const at = typeof now === 'string' ? new Date(now) : now
  return settlementContext(testConfig(payoutMinMicros), () => at)
}

/** Local wall-clock time in Paris as an instant: `paris('2026-10-10', 12, 30)`. */
export function paris(day: string, hour = 0, minute = 0): Date {
  return new Date(startOfDayMs(day, TZ) + hour * HOUR_MS + minute * 60_000)
}

export async function party(db: Kysely<Database>, kind: 'utility' | 'third_party', name: string): Promise<string> {
  return (await createParty(db, { kind, name })).id
}

export async function household(db: Kysely<Database>, name: string): Promise<string> {
  return (await createHousehold(db, { name, email: `${name.toLowerCase()}-${newId('household')}@example.org`, password: 'correct horse' })).id
}

export async function meter(db: Kysely<Database>, operatorId: string, commodity: Commodity = 'electricity'): Promise<string> {
  return (await createMeter(db, { operatorId, commodity, intervalMinutes: 60 })).id
}

export async function occupy(db: Kysely<Database>, meterId: string, householdId: string, from: Date, until: Date | null = null): Promise<string> {
  const id = newId('occupancy')
  await db.insertInto('occupancies').values({ id, meter_id: meterId, household_id: householdId, valid_from: from, valid_until: until }).execute()
  return id
}

export interface OfferSpec {
  recipientId: string
  granularity: Granularity
  priceMicrosPerDatum: bigint
  householdBps: number
  operatorBps: number
  platformBps: number
  thirdParties?: { partyId: string; bps: number }[]
}

export async function offer(db: Kysely<Database>, spec: OfferSpec): Promise<string> {
  const id = newId('offer')
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('offers')
      .values({
        id,
        recipient_id: spec.recipientId,
        purpose: 'settlement test',
        granularity: spec.granularity,
        price_micros_per_datum: spec.priceMicrosPerDatum,
        household_bps: spec.householdBps,
        operator_bps: spec.operatorBps,
        platform_bps: spec.platformBps,
      })
      .execute()
    for (const tp of spec.thirdParties ?? []) {
      await trx.insertInto('offer_shares').values({ offer_id: id, party_id: tp.partyId, bps: tp.bps }).execute()
    }
  })
  return id
}

export interface ConsentSpec {
  householdId: string
  recipientId: string
  offerId: string | null
  granularity: Granularity
  meterIds: string[]
  validFrom: Date
  validUntil?: Date
  dataFrom?: Date
  dataUntil?: Date | null
  revokedAt?: Date | null
}

export async function consent(db: Kysely<Database>, spec: ConsentSpec): Promise<string> {
  const id = newId('consent')
  const validUntil = spec.validUntil ?? new Date(spec.validFrom.getTime() + 365 * 24 * HOUR_MS)
  const revokedAt = spec.revokedAt ?? null
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('consents')
      .values({
        id,
        household_id: spec.householdId,
        recipient_id: spec.recipientId,
        offer_id: spec.offerId,
        kind: spec.offerId === null ? 'legal_basis' : 'offer',
        purpose: 'settlement test',
        granularity: spec.granularity,
        all_meters: false,
        valid_from: spec.validFrom,
        valid_until: validUntil,
        data_from: spec.dataFrom ?? spec.validFrom,
        data_until: spec.dataUntil ?? null,
        status: revokedAt === null ? 'active' : 'revoked',
        status_changed_at: revokedAt ?? spec.validFrom,
        revoked_at: revokedAt,
      })
      .execute()
    for (const meterId of spec.meterIds) await trx.insertInto('consent_meters').values({ consent_id: id, meter_id: meterId }).execute()
  })
  return id
}

export async function revoke(db: Kysely<Database>, consentId: string, at: Date): Promise<void> {
  await db.updateTable('consents').set({ status: 'revoked', revoked_at: at, status_changed_at: at }).where('id', '=', consentId).execute()
}

/** Hourly timestamps in [from, until). */
export function hourly(from: Date, until: Date): Date[] {
  const out: Date[] = []
  for (let t = from.getTime(); t < until.getTime(); t += HOUR_MS) out.push(new Date(t))
  return out
}

/** The readings of each hour in [from, until), each stamped at its end: after `from`, through `until` (a day's last at its midnight). */
export function hourEnds(from: Date, until: Date): Date[] {
  return hourly(new Date(from.getTime() + HOUR_MS), new Date(until.getTime() + HOUR_MS))
}

/** A cumulative index that grows with time, so readings may arrive in any order. */
export function indexAt(ts: Date): number {
  return Math.floor(ts.getTime() / HOUR_MS) * 10
}

/**
 * Stores readings through the ingest transaction, as the broker would, then dates their storage
 * a minute after their timestamp, as a meter sending live: the tests' clocks are fictitious, and a
 * consent that ended counts only what was stored before its end. `storedAt` gives another instant
 * (data arriving late).
 */
export async function ingest(
  db: Kysely<Database>,
  dialect: DialectName,
  meterId: string,
  commodity: Commodity,
  times: readonly Date[],
  storedAt: Date | 'live' = 'live',
): Promise<void> {
  const code = commodity === 'gas' ? OBIS_GAS_VOLUME : OBIS_IMPORT_ENERGY_TOTAL
  const datumDayOf = createDatumDayResolver(TZ)
  for (let i = 0; i < times.length; i += DEFAULT_INGEST_LIMITS.batchReadingsMax) {
    const batch = times.slice(i, i + DEFAULT_INGEST_LIMITS.batchReadingsMax)
    const payload = Buffer.from(JSON.stringify({ readings: batch.map((ts) => ({ ts: ts.toISOString(), values: { [code]: indexAt(ts) } })) }))
    const receivedAtMs = batch[batch.length - 1]!.getTime() + HOUR_MS
    const message = validatePayload({ meterId, commodity }, payload, receivedAtMs, DEFAULT_INGEST_LIMITS)
    if (message.rejects.length > 0) throw new Error(`test readings rejected: ${message.rejects[0]!.detail}`)
    const result = await commitMessages(db, [message], { dialect, datumDayOf, tails: new MeterTails() })
    const quarantined = result.outcomes.flatMap((o) => o.quarantined)
    if (quarantined.length > 0) throw new Error(`test readings quarantined: ${quarantined[0]!.detail}`)
    const stamps = batch.map((ts) => ts.toISOString())
    const stored = storedAt === 'live' ? sql`ts + interval '1 minute'` : sql`${storedAt.toISOString()}::timestamptz`
    await sql`UPDATE readings SET ingested_at = ${stored} WHERE meter_id = ${meterId} AND ts = ANY(${stamps}::timestamptz[])`.execute(db)
    // A day's rollup changed when its latest datum was stored (a datum's day: that of the interval it ends).
    await sql`UPDATE daily_rollups r SET updated_at = s.latest
      FROM (SELECT household_id, ((ts - interval '1 millisecond') AT TIME ZONE ${TZ})::date AS day, max(ingested_at) AS latest FROM readings WHERE meter_id = ${meterId} GROUP BY 1, 2) s
      WHERE r.meter_id = ${meterId} AND r.household_id IS NOT DISTINCT FROM s.household_id AND r.day = s.day`.execute(db)
  }
}

/** Empties every table (what the harness does before each test), for property runs inside one test. */
export async function emptyDatabase(db: Kysely<Database>): Promise<void> {
  const tables = (
    await sql<{ name: string }>`SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname NOT LIKE 'schema_migrations%'`.execute(db)
  ).rows.map((r) => `"${r.name}"`)
  await sql.raw(`TRUNCATE ${tables.join(', ')} RESTART IDENTITY CASCADE`).execute(db)
}

/** Sum of entries per account, over journals matching the filter. */
export async function accountTotals(
  db: Kysely<Database>,
  filter: { forMonth?: string; postingMonth?: string; kinds?: string[] } = {},
): Promise<Map<string, bigint>> {
  let q = db
    .selectFrom('ledger_entries as e')
    .innerJoin('ledger_journals as j', 'j.id', 'e.journal_id')
    .select(['e.account_id', sql<bigint>`sum(e.amount_micros)::bigint`.as('amount')])
    .groupBy('e.account_id')
  if (filter.forMonth !== undefined) q = q.where('j.for_month', '=', filter.forMonth)
  if (filter.postingMonth !== undefined) q = q.where('j.posting_month', '=', filter.postingMonth)
  if (filter.kinds !== undefined) q = q.where('j.kind', 'in', filter.kinds as ('settlement' | 'adjustment' | 'payout')[])
  const rows = await q.execute()
  return new Map(rows.filter((r) => r.amount !== 0n).map((r) => [r.account_id, r.amount]))
}

/** Journals whose entries do not sum to zero (there must never be any). */
export async function unbalancedJournals(db: Kysely<Database>): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    SELECT j.id FROM ledger_journals j LEFT JOIN ledger_entries e ON e.journal_id = j.id
    GROUP BY j.id HAVING coalesce(sum(e.amount_micros), 0) <> 0 OR count(e.id) < 2`.execute(db)
  return rows.map((r) => r.id)
}

/** Every journal booked in a month with its entries, for before/after comparisons. */
export async function journalsBookedIn(db: Kysely<Database>, postingMonth: string): Promise<unknown[]> {
  const { rows } = await sql`
    SELECT j.id, j.kind, j.run_id, j.for_month, e.account_id, e.amount_micros::text AS amount
    FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
    WHERE j.posting_month = ${postingMonth} ORDER BY j.id, e.account_id`.execute(db)
  return rows
}
