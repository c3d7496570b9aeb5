import { sql, type Kysely } from 'kysely'
import type { Database } from '../../../shared/db/schema.ts'

/**
 * A large consent world for measuring the release view, generated in SQL (generate_series)
 * into the services' own tables, rows as the services write them: `households` households,
 * each occupying one meter since 2020, each holding CONSENTS_PER_HOUSEHOLD active consents
 * (with their meter row and their `granted` log entry) for two of the recipients'
 * offers. Ids have the length of real ones (a prefix and 16 characters) because the view's
 * memory depends on them. Nothing here signs in: credentials are placeholders.
 */

export const VIEW_RECIPIENTS = 5
export const CONSENTS_PER_HOUSEHOLD = 2
/** The recipients' offers: mostly load curves, some coarser (a load-curve datum is not released under those). */
export const VIEW_OFFER_GRANULARITIES = ['load_curve', 'load_curve', 'daily', 'load_curve', 'monthly'] as const
export const VIEW_OCCUPIED_SINCE = new Date('2020-01-01T00:00:00Z')

const PLACEHOLDER_HASH = 'seeded-without-credentials'
const ROWS_PER_INSERT = 25_000

/** The generated id of kind `prefix` number `i`: the prefix and 16 characters, like newId's. */
export function viewId(prefix: string, i: number): string {
  return `${prefix}_${String(i).padStart(16, '0')}`
}

function idSql(prefix: string, expr: ReturnType<typeof sql>) {
  return sql`${prefix + '_'} || lpad((${expr})::text, 16, '0')`
}

export interface ViewWorld {
  households: number
  consents: number
  recipientIds: string[]
}

export async function generateViewWorld(db: Kysely<Database>, options: { households: number; now: Date }): Promise<ViewWorld> {
  const n = options.households
  const validFrom = new Date(options.now.getTime() - 30 * 86_400_000)
  const validUntil = new Date(validFrom.getTime() + 2 * 365 * 86_400_000)
  const recipientIds = Array.from({ length: VIEW_RECIPIENTS }, (_, k) => viewId('pty', k + 1))
  const operatorId = viewId('pty', 0)
  await sql`INSERT INTO parties (id, kind, name, api_key_hash)
    SELECT ${operatorId}, 'utility', 'View bench grid operator', ${PLACEHOLDER_HASH}
    UNION ALL
    SELECT ${idSql('pty', sql`k`)}, 'third_party', 'View bench recipient ' || k, ${PLACEHOLDER_HASH}
    FROM generate_series(1, ${VIEW_RECIPIENTS}::int) AS k`.execute(db)
  await db.transaction().execute(async (trx) => {
    for (let k = 1; k <= VIEW_RECIPIENTS; k++) {
      await sql`INSERT INTO offers (id, recipient_id, purpose, granularity, price_micros_per_datum, household_bps, operator_bps, platform_bps)
        VALUES (${viewId('off', k)}, ${viewId('pty', k)}, ${`view bench offer ${k}`}, ${VIEW_OFFER_GRANULARITIES[k - 1]!}, 10, 5000, 3000, 2000)`.execute(trx)
    }
  })
  for (let first = 1; first <= n; first += ROWS_PER_INSERT) {
    const last = Math.min(n, first + ROWS_PER_INSERT - 1)
    const range = sql`generate_series(${first}::int, ${last}::int) AS i`
    await sql`INSERT INTO households (id, name, email, password_hash, api_key_hash)
      SELECT ${idSql('hh', sql`i`)}, 'View household ' || i, 'view-h' || i || '@bench.example', ${PLACEHOLDER_HASH}, ${PLACEHOLDER_HASH}
      FROM ${range}`.execute(db)
    await sql`INSERT INTO meters (id, operator_id, commodity, interval_minutes, secret_hash)
      SELECT ${idSql('mtr', sql`i`)}, ${operatorId}, 'electricity', 15, ${PLACEHOLDER_HASH} FROM ${range}`.execute(db)
    await sql`INSERT INTO occupancies (id, meter_id, household_id, valid_from)
      SELECT ${idSql('occ', sql`i`)}, ${idSql('mtr', sql`i`)}, ${idSql('hh', sql`i`)}, ${VIEW_OCCUPIED_SINCE} FROM ${range}`.execute(db)
    // Consent c = 2i + s of household i goes to recipient (i + 2s) mod 5, + 1: two different recipients.
    const consents = sql`(SELECT i, s, ${idSql('cns', sql`i * ${CONSENTS_PER_HOUSEHOLD}::int + s`)} AS cid,
        ${idSql('pty', sql`(i + 2 * s) % ${VIEW_RECIPIENTS}::int + 1`)} AS rid,
        ${idSql('off', sql`(i + 2 * s) % ${VIEW_RECIPIENTS}::int + 1`)} AS oid
      FROM ${range} CROSS JOIN generate_series(0, ${CONSENTS_PER_HOUSEHOLD - 1}::int) AS s) AS x`
    await sql`INSERT INTO consents (id, household_id, recipient_id, offer_id, kind, purpose, granularity, all_meters,
        valid_from, valid_until, data_from, status, status_changed_at)
      SELECT x.cid, ${idSql('hh', sql`x.i`)}, x.rid, x.oid, 'offer', o.purpose, o.granularity, true,
        ${validFrom}, ${validUntil}, ${VIEW_OCCUPIED_SINCE}, 'active', ${validFrom}
      FROM ${consents} JOIN offers o ON o.id = x.oid`.execute(db)
    await sql`INSERT INTO consent_meters (consent_id, meter_id)
      SELECT x.cid, ${idSql('mtr', sql`x.i`)} FROM ${consents}`.execute(db)
    await sql`INSERT INTO consent_log (consent_id, household_id, event, meter_id, actor, at)
      SELECT x.cid, ${idSql('hh', sql`x.i`)}, 'granted', NULL, ${idSql('hh', sql`x.i`)}, ${validFrom} FROM ${consents}`.execute(db)
  }
  await sql`ANALYZE`.execute(db)
  return { households: n, consents: n * CONSENTS_PER_HOUSEHOLD, recipientIds }
}
