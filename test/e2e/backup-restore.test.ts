import { mkdtempSync, rmSync, statSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { MqttClient } from 'mqtt'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { connectMeter, endClient, publishAcked, waitFor } from '../support/broker.ts'
import { CliProcess, callApi, runCli, settleMonthsOver } from '../support/cli.ts'
import { describePostgres } from '../support/database.ts'
import { adminUrl, databaseUrl } from '../support/postgres.ts'
import { hasCommand, run, skipReason } from '../support/tools.ts'

/**
 * The backup of docs/operations.md on PostgreSQL: `pg_dump -Fc` of a running system while a meter
 * publishes and settlement re-runs a month, `pg_restore` into an empty database, `metershare migrate`
 * finding it up to date, and a system started on it serving what the first one served.
 */
const ADMIN = 'backup-e2e-admin-token-0123456789'
const START_MS_MAX = 90_000
const TOOL_MS_MAX = 60_000
const MONTH = '2026-10'
const HOUR_MS = 3_600_000
const PRICE_MICROS = 10_000
/** The system's calendar (METERSHARE_TIMEZONE). */
const TIMEZONE = 'Europe/Paris'
/** Readings of the second meter published before the backup; the rest of its month is published during it. */
const EARLY_READINGS = 480
/** Readings the writer has had acknowledged before the dump starts, so that it writes throughout. */
const ACKED_BEFORE_DUMP_MIN = 20

const tools = ['pg_dump', 'pg_restore'] as const
const missing = tools.filter((c) => !hasCommand(c))
const reasons = skipReason('pg_dump', 'postgresql-client') + skipReason('pg_restore', 'postgresql-client')

/** Hourly readings of a cumulative index from `fromMs` (exclusive), `count` of them, starting at `index0`. */
function hourly(fromMs: number, count: number, index0: number): Array<{ ts: string; values: Record<string, number> }> {
  return Array.from({ length: count }, (_, i) => ({ ts: new Date(fromMs + (i + 1) * HOUR_MS).toISOString().replace('.000Z', 'Z'), values: { '1-0:1.8.0': index0 + (i + 1) * 400 } }))
}

async function query<T = Record<string, unknown>>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(text)).rows as T[]
  } finally {
    await client.end()
  }
}

/** What must come back as it was: the structure of the schema and the migrations' bookkeeping. */
const STRUCTURE: Record<string, string> = {
  partitions: `SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'readings'::regclass ORDER BY 1`,
  indexes: `SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 2`,
  triggers: `SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) AS def FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal ORDER BY 1, 2`,
  constraints: `SELECT conrelid::regclass::text AS rel, conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
    WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2, 3`,
  functions: `SELECT proname, md5(prosrc) AS src FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1, 2`,
  sequences: `SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1`,
  extensions: `SELECT extname FROM pg_extension ORDER BY 1`,
  migrations: `SELECT name FROM schema_migrations ORDER BY name`,
}

/** Tables the writer and settlement only append to: what was restored must be in the source, row for row. */
const APPEND_ONLY = ['readings', 'quarantine', 'settlement_runs', 'settlement_lines', 'ledger_accounts', 'ledger_journals', 'ledger_entries', 'payouts', 'consent_log']
/** Tables nobody wrote to during the backup: the same on both sides. */
const UNCHANGED = ['parties', 'households', 'meters', 'occupancies', 'offers', 'offer_shares', 'consents', 'consent_meters', 'settings']

describe.skipIf(missing.length > 0)(`a backup of a running system on PostgreSQL${reasons}`, () => {
  describePostgres(
    'pg_dump -Fc while ingest and settlement write, pg_restore into an empty database',
    (t) => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'metershare-backup-'))
      const dump = path.join(dir, 'metershare.dump')
      const restoredName = `metershare_restored_${process.pid}_${Date.now() % 100_000}`
      let restoredUrl = ''
      const processes: CliProcess[] = []
      const clients: MqttClient[] = []
      let env: NodeJS.ProcessEnv

      beforeAll(() => {
        const { DATABASE_URL: _url, ...rest } = process.env
        env = { ...rest, METERSHARE_TIMEZONE: TIMEZONE, MQTT_PORT: '0', HTTP_PORT: '0', METERSHARE_HOST: '127.0.0.1', METERSHARE_ADMIN_TOKEN: ADMIN, METERSHARE_LOG_LEVEL: 'warn' }
        restoredUrl = databaseUrl(restoredName)
      })

      afterAll(async () => {
        for (const c of clients) await endClient(c)
        for (const p of processes) p.kill()
        rmSync(dir, { recursive: true, force: true })
        await query(adminUrl(), `DROP DATABASE IF EXISTS ${restoredName} WITH (FORCE)`)
      })

      async function up(url: string): Promise<{ http: string; mqtt: string }> {
        const p = new CliProcess(['up', '--no-demo', '--no-simulate'], { ...env, DATABASE_URL: url, METERSHARE_DATA_DIR: mkdtempSync(path.join(dir, 'data-')) })
        processes.push(p)
        return { http: (await p.printed(/HTTP API\s+(http:\/\/\S+)/, START_MS_MAX))[1]!, mqtt: (await p.printed(/MQTT\s+(mqtt:\/\/\S+)/, START_MS_MAX))[1]! }
      }


      it(
        'restores partitions, indexes, sequences, triggers and the migrations table, a consistent snapshot of the data, and a system on it serves the same',
        async () => {
          const source = await up(t.url!)
          const admin = <T>(method: string, route: string, body?: unknown): Promise<T> => callApi<T>(source.http, method, route, ADMIN, body)

          // A world provisioned over the API: two households, a meter each, both consenting to one offer.
          const utility = await admin<{ id: string }>('POST', '/admin/parties', { kind: 'utility', name: 'Backup grid' })
          const app = await admin<{ id: string; apiKey: string }>('POST', '/admin/parties', { kind: 'third_party', name: 'Backup app' })
          const offer = await admin<{ id: string }>('POST', '/admin/offers', {
            recipientId: app.id,
            purpose: 'advice',
            granularity: 'load_curve',
            priceMicrosPerDatum: String(PRICE_MICROS),
            split: { householdBps: 7000, operatorBps: 1000, platformBps: 2000, thirdParties: [] },
          })
          const households: Array<{ id: string; apiKey: string }> = []
          const meters: Array<{ id: string; secret: string }> = []
          for (const n of [1, 2]) {
            const h = await admin<{ id: string; apiKey: string }>('POST', '/admin/households', { name: `Backup ${n}`, email: `backup${n}@metershare.test`, password: 'backup-password-123' })
            const m = await admin<{ id: string; secret: string }>('POST', '/admin/meters', { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 60 })
            await admin('POST', '/admin/occupancies', { meterId: m.id, householdId: h.id, from: `${MONTH}-01T00:00:00Z` })
            await callApi(source.http, 'POST', '/me/consents', h.apiKey, { offerId: offer.id, validUntil: '2027-12-01T00:00:00Z', dataFrom: `${MONTH}-01T00:00:00Z` })
            households.push(h)
            meters.push(m)
          }
          const [h1, h2] = households as [(typeof households)[0], (typeof households)[0]]
          const [m1, m2] = meters as [(typeof meters)[0], (typeof meters)[0]]

          // October through the broker: the first meter whole, the second up to the 20th; one bad datum for the quarantine.
          const monthStart = Date.parse(`${MONTH}-01T00:00:00Z`)
          const october1 = hourly(monthStart, 31 * 24, 1_000)
          const october2 = hourly(monthStart, 31 * 24, 5_000)
          const c1 = await connectMeter(source.mqtt, m1)
          const c2 = await connectMeter(source.mqtt, m2)
          clients.push(c1, c2)
          await publishAcked(c1, meterReadingsTopic(m1.id), JSON.stringify({ readings: october1 }))
          await publishAcked(c2, meterReadingsTopic(m2.id), JSON.stringify({ readings: october2.slice(0, EARLY_READINGS) }))
          await publishAcked(c2, meterReadingsTopic(m2.id), '{"ts": not json')
          await admin('POST', '/admin/settlements', { month: MONTH })
          // 743 datums at 7,000 µ€ each (Paris's October; the 744th is its November's): past the minimum payout.
          expect((await callApi<{ payouts: unknown[] }>(source.http, 'GET', '/me/payouts', h1.apiKey)).payouts).toHaveLength(1)
          // The first meter's November, then every month over by now settled, as the system's own periodic
          // settlement does at its start (the copy's): what it settles there finds nothing new of the first
          // household, whose data the writer below leaves alone. (From 2026-12-01 on, the copy's start settled
          // November, which the source had not, and their balances differed.)
          const november1 = hourly(Date.parse('2026-11-01T00:00:00Z'), 24 * 10, october1.at(-1)!.values['1-0:1.8.0']!)
          await publishAcked(c1, meterReadingsTopic(m1.id), JSON.stringify({ readings: november1 }))
          await settleMonthsOver(source.http, ADMIN, MONTH, TIMEZONE)

          // The writer: the second meter's late October, one datum a publish, and settlement re-running the
          // month (each run posts adjustments).
          const late2 = october2.slice(EARLY_READINGS)
          let acked2 = 0
          let settlements = 0
          let writing = true
          const writer = Promise.all([
            (async () => {
              for (const r of late2) {
                if (!writing) break
                await publishAcked(c2, meterReadingsTopic(m2.id), JSON.stringify(r))
                acked2++
              }
            })(),
            (async () => {
              while (writing) {
                await admin('POST', '/admin/settlements', { month: MONTH })
                settlements++
              }
            })(),
          ])
          await waitFor(() => acked2 >= ACKED_BEFORE_DUMP_MIN && settlements >= 1, 30_000, 'the writer under way')
          const before = { acked2, settlements }
          const dumped = await run('pg_dump', ['-Fc', '-f', dump, t.url!], { timeoutMs: TOOL_MS_MAX })
          const after = { acked2, settlements }
          writing = false
          await writer
          expect(dumped.stderr).toBe('')
          expect(dumped.code).toBe(0)
          expect(statSync(dump).size).toBeGreaterThan(0)
          // The writer wrote while pg_dump ran.
          expect(after.acked2).toBeGreaterThan(before.acked2)

          await query(adminUrl(), `CREATE DATABASE ${restoredName}`)
          const restored = await run('pg_restore', ['--no-owner', '-d', restoredUrl, dump], { timeoutMs: TOOL_MS_MAX })
          expect(restored.stderr).toBe('')
          expect(restored.code).toBe(0)

          // The structure, as it was.
          for (const [what, text] of Object.entries(STRUCTURE)) {
            expect({ what, rows: await query(restoredUrl, text) }).toEqual({ what, rows: await query(t.url!, text) })
          }
          expect((await query<{ relname: string }>(restoredUrl, STRUCTURE.partitions!)).map((r) => r.relname)).toEqual(expect.arrayContaining(['readings_y2026m10', 'readings_y2026m11']))
          // Each identity sequence is past the rows restored, so the next insert finds its number free.
          const identities = await query<{ tbl: string; col: string; seq: string }>(
            restoredUrl,
            `SELECT a.attrelid::regclass::text AS tbl, a.attname AS col, pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) AS seq
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attidentity <> ''`,
          )
          expect(identities.length).toBeGreaterThan(0)
          for (const { tbl, col, seq } of identities) {
            const [row] = await query<{ max: string | null; last: string | null }>(restoredUrl, `SELECT (SELECT max("${col}") FROM "${tbl}")::text AS max, (SELECT last_value FROM ${seq})::text AS last`)
            expect({ tbl, behind: BigInt(row!.max ?? 0) > BigInt(row!.last ?? 0) }).toEqual({ tbl, behind: false })
          }

          // The data: one instant of the source. Untouched tables equal, appended ones a part of the source,
          // the rollups those of the readings restored, every journal balanced, each meter's datums a prefix.
          const rowsOf = async (url: string, table: string): Promise<string[]> =>
            (await query<{ r: string }>(url, `SELECT to_jsonb(x)::text AS r FROM "${table}" x`)).map((x) => x.r).sort()
          for (const table of UNCHANGED) expect({ table, rows: await rowsOf(restoredUrl, table) }).toEqual({ table, rows: await rowsOf(t.url!, table) })
          for (const table of APPEND_ONLY) {
            const sourceRows = new Set(await rowsOf(t.url!, table))
            const extra = (await rowsOf(restoredUrl, table)).filter((r) => !sourceRows.has(r))
            expect({ table, extra }).toEqual({ table, extra: [] })
          }
          expect(
            await query(
              restoredUrl,
              `SELECT r.meter_id, r.n, d.n AS rolled FROM (SELECT meter_id, count(*) AS n FROM readings GROUP BY 1) r
                FULL JOIN (SELECT meter_id, sum(readings_count) AS n FROM daily_rollups GROUP BY 1) d USING (meter_id) WHERE r.n IS DISTINCT FROM d.n`,
            ),
          ).toEqual([])
          expect(
            await query(
              restoredUrl,
              `SELECT j.id FROM ledger_journals j LEFT JOIN ledger_entries e ON e.journal_id = j.id GROUP BY j.id
                HAVING coalesce(sum(e.amount_micros), 0) <> 0 OR count(e.id) < 2
               UNION ALL SELECT e.journal_id FROM ledger_entries e LEFT JOIN ledger_journals j ON j.id = e.journal_id WHERE j.id IS NULL
               UNION ALL SELECT p.journal_id FROM payouts p LEFT JOIN ledger_journals j ON j.id = p.journal_id WHERE j.id IS NULL
               UNION ALL SELECT r.id FROM settlement_runs r WHERE r.journals <> (SELECT count(*) FROM ledger_journals j WHERE j.run_id = r.id)`,
            ),
          ).toEqual([])
          const tsOf = async (meterId: string): Promise<string[]> =>
            (await query<{ ts: string }>(restoredUrl, `SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS ts FROM readings WHERE meter_id = '${meterId}' ORDER BY ts`)).map((r) => r.ts)
          const restored2 = await tsOf(m2.id)
          const k2 = restored2.length - EARLY_READINGS
          expect(restored2).toEqual(october2.slice(0, EARLY_READINGS + k2).map((r) => r.ts))
          expect(k2).toBeGreaterThanOrEqual(before.acked2)
          expect(k2).toBeLessThanOrEqual(after.acked2)
          const restored1 = await tsOf(m1.id)
          expect(restored1).toEqual([...october1, ...november1].map((r) => r.ts))

          // `metershare migrate` finds the restored database up to date.
          const migrated = await runCli(['migrate'], { ...env, DATABASE_URL: restoredUrl })
          expect(migrated.stderr).toBe('')
          expect(migrated.stdout).toBe('schema is up to date\n')
          expect(migrated.code).toBe(0)

          // A system on the restored database serves what the source serves of what the writer did not touch
          // (the first household's months, settled before the dump), once it has settled every month over by
          // now as its periodic settlement does at its start (here at once, not when its first run ends).
          const copy = await up(restoredUrl)
          await settleMonthsOver(copy.http, ADMIN, MONTH, TIMEZONE)
          for (const route of ['/me/payouts', `/me/statements/${MONTH}`, '/me/consents', '/me/consent-log', `/me/readings?meterId=${m1.id}&from=${MONTH}-01T00:00:00Z&to=${MONTH}-30T00:00:00Z&granularity=daily`]) {
            expect({ route, body: await callApi(copy.http, 'GET', route, h1.apiKey) }).toEqual({ route, body: await callApi(source.http, 'GET', route, h1.apiKey) })
          }
          expect(await callApi(copy.http, 'GET', '/recipient/consents', app.apiKey)).toEqual(await callApi(source.http, 'GET', '/recipient/consents', app.apiKey))
          // The second meter's datums, page by page: the restored ones.
          let served = 0
          for (let cursor: string | null = ''; cursor !== null; ) {
            const page: { items: unknown[]; nextCursor: string | null } = await callApi(
              copy.http,
              'GET',
              `/me/readings?meterId=${m2.id}&from=${MONTH}-01T00:00:00Z&to=2026-11-01T00:00:00Z&granularity=load_curve${cursor === '' ? '' : `&cursor=${encodeURIComponent(cursor)}`}`,
              h2.apiKey,
            )
            served += page.items.length
            cursor = page.nextCursor
          }
          expect(served).toBe(EARLY_READINGS + k2)

          // And it carries on: the next datum and a bad one are stored (partitions and sequences in place),
          // a settlement posts balanced journals (its triggers are there), and the ledger stays append-only.
          const c2copy = await connectMeter(copy.mqtt, m2)
          clients.push(c2copy)
          await publishAcked(c2copy, meterReadingsTopic(m2.id), JSON.stringify(late2[k2]))
          await publishAcked(c2copy, meterReadingsTopic(m2.id), '{"ts": not json either')
          expect(await tsOf(m2.id)).toHaveLength(EARLY_READINGS + k2 + 1)
          const quarantined = await callApi<{ items: unknown[] }>(copy.http, 'GET', `/admin/quarantine?meterId=${m2.id}`, ADMIN)
          expect(quarantined.items).toHaveLength(2)
          await callApi(copy.http, 'POST', '/admin/settlements', ADMIN, { month: MONTH })
          await expect(query(restoredUrl, 'UPDATE ledger_entries SET amount_micros = amount_micros + 1')).rejects.toThrow()
        },
        2 * START_MS_MAX + 2 * TOOL_MS_MAX,
      )
    },
    { resetEach: false },
  )
})
