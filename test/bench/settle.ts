import { parseArgs } from 'node:util'
import { sql, type Kysely } from 'kysely'
import pg from 'pg'
import { monthBounds } from '../../shared/calendar.ts'
import { envToConfig } from '../../shared/config.ts'
import { openDatabase, type DatabaseHandle } from '../../shared/db/database.ts'
import { migrateToLatest } from '../../shared/db/migrator.ts'
import { ensureReadingsPartitions, partitionMonthOf } from '../../shared/db/partitions.ts'
import type { Database } from '../../shared/db/schema.ts'
import { configureLogging } from '../../shared/logger.ts'
import { formatEur } from '../../shared/money.ts'
import { settleMonth, settlementContext, type RunSummary } from '../../services/settlement/settlement-service.ts'
import { DEFAULT_BENCH_DATABASE_URL } from './support/harness.ts'

/**
 * `npm run bench:settle`: settlement of one month on PostgreSQL. 10,000 households with a
 * meter each and a month of 30-minute readings (November 2026 in Paris: 30 days, no clock
 * change, so 14.4 million datums), generated directly in the database with generate_series
 * together with their daily rollups; three offers (load curve, daily, monthly), each accepted
 * by every household. Prints the settlement time and peak memory, then the time of a re-run
 * with nothing new. Figures are printed, never asserted (targets: under 10 s, re-run under
 * 2 s posting nothing). Runs in a database of its own, dropped at the end unless --keep.
 *
 *   npm run bench:settle -- [--households N] [--quick] [--keep]
 *   BENCH_DATABASE_URL=postgres://…/postgres   (an admin URL; default: the local server)
 */

const USAGE = `usage: npm run bench:settle -- [--households N] [--quick] [--keep]
  --households N   households, one meter each (default 10000; --quick: 500)
  --keep           keep the bench database afterwards (its name is printed)
environment: BENCH_DATABASE_URL (an admin URL of a PostgreSQL server; default ${DEFAULT_BENCH_DATABASE_URL})`

const TIMEZONE = 'Europe/Paris'
const MONTH = '2026-11'
const INTERVAL_MINUTES = 30
const METERS_PER_INSERT = 500
const MEMORY_SAMPLE_MS = 20
const TARGET = { settleMsMax: 10_000, rerunMsMax: 2_000 }

function fmtInt(n: number | bigint): string {
  return new Intl.NumberFormat('en-US').format(n)
}

function fmtMb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MB`
}

function fmtS(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`
}

async function admin(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}

function step(label: string): () => void {
  const started = performance.now()
  process.stdout.write(`  ${label}…`)
  return () => process.stdout.write(` ${fmtS(performance.now() - started)}\n`)
}

/** The world, generated in SQL: parties, households, meters, occupancies, offers, consents, readings, rollups. */
async function generate(db: Kysely<Database>, households: number): Promise<{ datums: bigint; rollups: bigint }> {
  const { start, end } = monthBounds(MONTH, TIMEZONE)
  const since = new Date(start.getTime() - 61 * 86_400_000)
  let done = step('parties, households, meters, occupancies, offers, consents')
  await sql`INSERT INTO parties (id, kind, name, api_key_hash) VALUES
    ('pty_grid', 'utility', 'Grid', 'x'), ('pty_advice', 'third_party', 'Advice App', 'x'),
    ('pty_supplier', 'utility', 'Supplier', 'x'), ('pty_lab', 'third_party', 'Research Lab', 'x'),
    ('pty_charity', 'third_party', 'Charity', 'x')`.execute(db)
  await sql`INSERT INTO households (id, name, email, password_hash, api_key_hash)
    SELECT 'hh_' || i, 'Household ' || i, 'h' || i || '@bench.example', 'x', 'x' FROM generate_series(1, ${households}::int) AS i`.execute(db)
  await sql`INSERT INTO meters (id, operator_id, commodity, interval_minutes, secret_hash)
    SELECT 'mtr_' || i, 'pty_grid', 'electricity', ${INTERVAL_MINUTES}, 'x' FROM generate_series(1, ${households}::int) AS i`.execute(db)
  await sql`INSERT INTO occupancies (id, meter_id, household_id, valid_from)
    SELECT 'occ_' || i, 'mtr_' || i, 'hh_' || i, ${since} FROM generate_series(1, ${households}::int) AS i`.execute(db)
  await db.transaction().execute(async (trx) => {
    await sql`INSERT INTO offers (id, recipient_id, purpose, granularity, price_micros_per_datum, household_bps, operator_bps, platform_bps) VALUES
      ('off_curve', 'pty_advice', 'load curve for advice', 'load_curve', 7000, 5000, 2500, 1500),
      ('off_daily', 'pty_supplier', 'daily totals', 'daily', 20000, 3333, 3333, 3334),
      ('off_month', 'pty_lab', 'monthly research panel', 'monthly', 100001, 6000, 1000, 2000)`.execute(trx)
    await sql`INSERT INTO offer_shares (offer_id, party_id, bps) VALUES ('off_curve', 'pty_charity', 1000), ('off_month', 'pty_charity', 1000)`.execute(trx)
  })
  for (const [offer, recipient, granularity] of [
    ['off_curve', 'pty_advice', 'load_curve'],
    ['off_daily', 'pty_supplier', 'daily'],
    ['off_month', 'pty_lab', 'monthly'],
  ] as const) {
    await sql`INSERT INTO consents (id, household_id, recipient_id, offer_id, kind, purpose, granularity, all_meters,
        valid_from, valid_until, data_from, status, status_changed_at)
      SELECT 'cns_' || ${offer} || '_' || i, 'hh_' || i, ${recipient}, ${offer}, 'offer', 'bench', ${granularity}, true,
        ${since}, ${since}::timestamptz + interval '2 years', ${since}, 'active', ${since}
      FROM generate_series(1, ${households}::int) AS i`.execute(db)
    await sql`INSERT INTO consent_meters (consent_id, meter_id)
      SELECT 'cns_' || ${offer} || '_' || i, 'mtr_' || i FROM generate_series(1, ${households}::int) AS i`.execute(db)
  }
  done()

  // Through the index of 1 December 00:00: it completes November's last day and the month (a daily or
  // monthly datum is charged once its meter has data stamped at or after its end); it is December's datum.
  const last = end
  await ensureReadingsPartitions(db, new Set([partitionMonthOf(start.getTime()), partitionMonthOf(last.getTime())]))
  const started = performance.now()
  for (let first = 1; first <= households; first += METERS_PER_INSERT) {
    const lastMeter = Math.min(households, first + METERS_PER_INSERT - 1)
    await sql`INSERT INTO readings (meter_id, ts, household_id, values)
      SELECT 'mtr_' || i, ts, 'hh_' || i,
        jsonb_build_object('1-0:1.8.0', (i * 1000 + (extract(epoch FROM ts)::bigint - ${Math.floor(start.getTime() / 1000)}) / 1800 * 250)::bigint)
      FROM generate_series(${first}::int, ${lastMeter}::int) AS i
      CROSS JOIN generate_series(${start}::timestamptz, ${last}::timestamptz, ${`${INTERVAL_MINUTES} minutes`}::interval) AS ts`.execute(db)
    const seconds = (performance.now() - started) / 1000
    process.stdout.write(`\r  readings: ${fmtInt(lastMeter)}/${fmtInt(households)} meters, ${seconds.toFixed(0)} s`)
  }
  process.stdout.write('\n')
  done = step('daily rollups from the readings')
  // Cut as ingest and rebuildRollups cut them: day D holds the datums stamped in (D 00:00, D+1 00:00],
  // so the reading at 1 November 00:00 closes 31 October (and opens November), that at 1 December
  // closes 30 November. Cut by the instant's own day, each day lacked its closing reading and none was final.
  await sql`INSERT INTO daily_rollups (meter_id, household_id, day, readings_count, first_ts, last_ts, index_min, index_max)
    SELECT meter_id, household_id, ((ts - interval '1 microsecond') AT TIME ZONE ${TIMEZONE})::date, count(*), min(ts), max(ts),
      jsonb_build_object('1-0:1.8.0', min((values->>'1-0:1.8.0')::bigint)), jsonb_build_object('1-0:1.8.0', max((values->>'1-0:1.8.0')::bigint))
    FROM readings WHERE ts >= ${start} AND ts <= ${end}
    GROUP BY 1, 2, 3`.execute(db)
  done()
  done = step('vacuum analyze')
  await sql`VACUUM ANALYZE`.execute(db)
  done()
  const counts = await sql<{ datums: bigint; rollups: bigint }>`
    SELECT (SELECT count(*) FROM readings) AS datums, (SELECT count(*) FROM daily_rollups) AS rollups`.execute(db)
  return counts.rows[0]!
}

/** Runs `fn` while sampling this process's resident memory; answers the peak seen. */
async function withPeakMemory<T>(fn: () => Promise<T>): Promise<{ result: T; ms: number; peakRss: number; peakHeap: number }> {
  let peakRss = process.memoryUsage.rss()
  let peakHeap = process.memoryUsage().heapUsed
  const timer = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss())
    peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed)
  }, MEMORY_SAMPLE_MS)
  const started = performance.now()
  try {
    const result = await fn()
    return { result, ms: performance.now() - started, peakRss: Math.max(peakRss, process.memoryUsage.rss()), peakHeap }
  } finally {
    clearInterval(timer)
  }
}

function mark(pass: boolean): string {
  return pass ? 'PASS' : 'MISS'
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { households: { type: 'string' }, quick: { type: 'boolean' }, keep: { type: 'boolean' }, help: { type: 'boolean' } },
    strict: true,
  })
  if (values.help === true) {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  const households = Number(values.households ?? (values.quick === true ? 500 : 10_000))
  if (!Number.isInteger(households) || households < 1) throw new Error('--households: expected a positive integer')
  configureLogging({ level: 'warn' })
  const adminUrl = process.env.BENCH_DATABASE_URL ?? DEFAULT_BENCH_DATABASE_URL
  const dbName = `metershare_bench_settle_${process.pid}`
  const url = new URL(adminUrl)
  url.pathname = '/' + dbName

  process.stdout.write(`settlement benchmark: ${fmtInt(households)} households and meters, ${MONTH} in ${TIMEZONE}, ${INTERVAL_MINUTES}-minute readings\n`)
  process.stdout.write(`database: ${dbName} on ${url.host}\n`)
  await admin(adminUrl, `CREATE DATABASE ${dbName}`)
  let handle: DatabaseHandle | undefined
  try {
    handle = await openDatabase({ databaseUrl: url.toString(), pgliteDir: null, pgliteFsync: false, poolSize: 4, applicationName: 'metershare:bench-settle' })
    await migrateToLatest(handle.db)
    const world = await generate(handle.db, households)

    const config = envToConfig({ timezone: TIMEZONE })
    const now = new Date(monthBounds(MONTH, TIMEZONE).end.getTime() + 3_600_000)
    const phases = new Map<string, number>()
    const ctx = settlementContext(config, () => now, (p) => {
      if (!phases.has(p.phase)) phases.set(p.phase, performance.now())
    })
    const t0 = performance.now()
    const first = await withPeakMemory(() => settleMonth(handle!.db, MONTH, ctx))
    const t1 = performance.now()
    const marks = [...phases.entries(), ['commit and lock release', t1] as const]
    const phaseTimes = marks.map(([name, at], i) => `${name} ${fmtS((marks[i + 1]?.[1] ?? t1) - at)}`).slice(0, -1)
    phaseTimes.unshift(`start ${fmtS((marks[0]?.[1] ?? t1) - t0)}`)
    phases.clear()
    const again = await withPeakMemory(() => settleMonth(handle!.db, MONTH, ctx))
    const entries = await sql<{ n: bigint }>`SELECT count(*) AS n FROM ledger_entries`.execute(handle.db)

    const s: RunSummary = first.result
    const rows: [string, string][] = [
      ['datums in the month', fmtInt(world.datums)],
      ['daily rollups', fmtInt(world.rollups)],
      ['consents (3 offers)', fmtInt(households * 3)],
      ['lines settled', fmtInt(s.lines)],
      ['datums released', fmtInt(s.dataCount)],
      ['gross', `${formatEur(s.grossMicros)} EUR`],
      ['journals posted', `${fmtInt(s.journals)} (${fmtInt(entries.rows[0]!.n)} entries)`],
      ['payouts', `${fmtInt(s.payouts)}, ${formatEur(s.payoutsMicros)} EUR`],
      ['settlement time', `${fmtS(first.ms)}   target < ${fmtS(TARGET.settleMsMax)}: ${mark(first.ms < TARGET.settleMsMax)}`],
      ['  by phase', phaseTimes.join(', ')],
      ['peak memory (RSS of this process)', `${fmtMb(first.peakRss)} (heap ${fmtMb(first.peakHeap)})`],
      [
        're-run, nothing new',
        `${fmtS(again.ms)}, ${again.result.kind}, ${fmtInt(again.result.journals)} journals posted   target < ${fmtS(TARGET.rerunMsMax)} posting nothing: ${mark(again.ms < TARGET.rerunMsMax && again.result.journals === 0)}`,
      ],
      ['re-run peak memory', fmtMb(again.peakRss)],
    ]
    const width = Math.max(...rows.map(([k]) => k.length))
    process.stdout.write('\n' + rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n') + '\n')
  } finally {
    await handle?.close()
    if (values.keep === true) process.stdout.write(`kept database ${dbName}\n`)
    else await admin(adminUrl, `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`)
  }
  return 0
}

process.exitCode = await main()
