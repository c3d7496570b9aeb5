import { spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { PGlite } from '@electric-sql/pglite'
import { openPglite } from '../../shared/db/database.ts'
import { describeMachine, packageVersion } from './support/machine.ts'
import { fmtFixed, fmtInt, fmtMs, formatTable, percentile } from './support/report.ts'

/**
 * `npm run bench:pglite-fsync`: what fsync costs PGlite on this machine's disk. Commit latency
 * (p50, p99) and throughput of single-row transactions and of group commits of 1,000 rows (as
 * the ingest path commits), with METERSHARE_PGLITE_FSYNC on and off, and stock PGlite without
 * `-F` (what "on" meant before PGlite's fsync was made to reach the disk: no sync at all).
 * Modes alternate within each repeat so that load from other processes spreads over all of
 * them. Prints figures; asserts nothing.
 *
 *   npm run bench:pglite-fsync -- [--single N] [--groups N] [--rows N] [--repeat N] [--dir D] [--quick]
 */

const USAGE = `usage: npm run bench:pglite-fsync -- [options]
  --single N   single-row transactions per run (default 400; --quick: 50)
  --groups N   group commits per run (default 40; --quick: 5)
  --rows N     rows per group commit (default 1000)
  --repeat N   runs of each mode (default 3; --quick: 1)
  --dir D      folder on the disk to measure (default: the system's temporary folder)
  --quick      a short smoke run`

const MODES = ['off', 'on', 'stock-no-F'] as const
type Mode = (typeof MODES)[number]
const MODE_TITLE: Record<Mode, string> = {
  off: 'fsync off (METERSHARE_PGLITE_FSYNC=off)',
  on: 'fsync on (default)',
  'stock-no-F': 'stock PGlite without -F',
}
/** Parameters per INSERT statement in a group commit (PostgreSQL allows 65,535). */
const paramsPerStatementMax = 4_000
const COLUMNS = 4

const { values: args } = parseArgs({
  options: {
    single: { type: 'string' },
    groups: { type: 'string' },
    rows: { type: 'string' },
    repeat: { type: 'string' },
    dir: { type: 'string' },
    quick: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
if (args.help) {
  process.stdout.write(`${USAGE}\n`)
  process.exit(0)
}
const positive = (name: string, raw: string | undefined, fallback: number): number => {
  const n = raw === undefined ? fallback : Number(raw)
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${raw}`)
  return n
}
const singleCommits = positive('single', args.single, args.quick ? 50 : 400)
const groupCommits = positive('groups', args.groups, args.quick ? 5 : 40)
const rowsPerGroup = positive('rows', args.rows, 1000)
const repeats = positive('repeat', args.repeat, args.quick ? 1 : 3)
const parent = path.resolve(args.dir ?? os.tmpdir())

interface Run {
  mode: Mode
  singleUs: number[]
  singleSeconds: number
  groupUs: number[]
  groupSeconds: number
}

async function open(mode: Mode, dir: string): Promise<PGlite> {
  if (mode === 'stock-no-F') return PGlite.create({ dataDir: dir, startParams: PGlite.defaultStartParams.filter((p) => p !== '-F') })
  return openPglite(dir, mode === 'on')
}

const CREATE = `CREATE TABLE bench_readings (
  meter_id text NOT NULL, ts timestamptz NOT NULL, obis_code text NOT NULL, value bigint NOT NULL,
  PRIMARY KEY (meter_id, obis_code, ts))`

async function runMode(mode: Mode, template: string, root: string, runIndex: number): Promise<Run> {
  const dir = path.join(root, `${mode}-${runIndex}`)
  cpSync(template, dir, { recursive: true })
  const pglite = await open(mode, dir)
  try {
    await pglite.exec(CREATE)
    const t0 = Date.UTC(2026, 0, 1)
    const singleUs: number[] = []
    let start = performance.now()
    for (let i = 0; i < singleCommits; i++) {
      const s = performance.now()
      await pglite.query('INSERT INTO bench_readings VALUES ($1, $2, $3, $4)', ['single', new Date(t0 + i * 900_000), '1-0:1.8.0', i])
      singleUs.push((performance.now() - s) * 1000)
    }
    const singleSeconds = (performance.now() - start) / 1000

    const groupUs: number[] = []
    const rowsPerStatement = Math.floor(paramsPerStatementMax / COLUMNS)
    start = performance.now()
    for (let g = 0; g < groupCommits; g++) {
      const meter = `group-${g}`
      const s = performance.now()
      await pglite.transaction(async (tx) => {
        for (let first = 0; first < rowsPerGroup; first += rowsPerStatement) {
          const count = Math.min(rowsPerStatement, rowsPerGroup - first)
          const params: unknown[] = []
          const tuples: string[] = []
          for (let r = 0; r < count; r++) {
            const n = params.length
            tuples.push(`($${n + 1}, $${n + 2}, $${n + 3}, $${n + 4})`)
            params.push(meter, new Date(t0 + (first + r) * 900_000), '1-0:1.8.0', first + r)
          }
          await tx.query(`INSERT INTO bench_readings VALUES ${tuples.join(', ')}`, params)
        }
      })
      groupUs.push((performance.now() - s) * 1000)
    }
    const groupSeconds = (performance.now() - start) / 1000
    return { mode, singleUs, singleSeconds, groupUs, groupSeconds }
  } finally {
    await pglite.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

function diskOf(dir: string): string {
  const r = spawnSync('df', ['-PT', dir], { encoding: 'utf8' })
  const line = r.status === 0 ? r.stdout.trim().split('\n')[1] : undefined
  if (line === undefined) return 'unknown'
  const [device, type] = line.split(/\s+/)
  return `${device} (${type})`
}

const out = (line = ''): void => void process.stdout.write(`${line}\n`)

mkdirSync(parent, { recursive: true })
const root = mkdtempSync(path.join(parent, 'metershare-bench-fsync-'))
try {
  out('PGlite commit cost, fsync on and off')
  for (const line of describeMachine()) out(line)
  out(`PGlite     ${packageVersion('@electric-sql/pglite')}`)
  out(`disk       ${root} on ${diskOf(root)}`)
  out(`runs       ${repeats} per mode; each: ${singleCommits} single-row commits, then ${groupCommits} commits of ${rowsPerGroup} rows`)
  out()

  const template = path.join(root, 'template')
  const created = performance.now()
  await (await PGlite.create({ dataDir: template })).close()
  out(`(template cluster created in ${fmtFixed((performance.now() - created) / 1000)} s)`)

  const runs: Run[] = []
  for (let r = 0; r < repeats; r++) {
    for (const mode of MODES) {
      const run = await runMode(mode, template, root, r)
      runs.push(run)
      const single = Float64Array.from(run.singleUs).sort()
      const group = Float64Array.from(run.groupUs).sort()
      out(
        `run ${r + 1} ${mode.padEnd(10)} single p50 ${fmtMs(percentile(single, 50))} ms, ${fmtInt(singleCommits / run.singleSeconds)} commits/s;` +
          ` group p50 ${fmtMs(percentile(group, 50))} ms, ${fmtInt((groupCommits * rowsPerGroup) / run.groupSeconds)} rows/s`,
      )
    }
  }

  out()
  out('All runs of a mode pooled (latency in ms; throughput is the median over runs):')
  const median = (xs: number[]): number => percentile(Float64Array.from(xs).sort(), 50)
  const rows = MODES.map((mode) => {
    const mine = runs.filter((r) => r.mode === mode)
    const single = Float64Array.from(mine.flatMap((r) => r.singleUs)).sort()
    const group = Float64Array.from(mine.flatMap((r) => r.groupUs)).sort()
    return [
      MODE_TITLE[mode],
      fmtMs(percentile(single, 50)),
      fmtMs(percentile(single, 99)),
      fmtInt(median(mine.map((r) => singleCommits / r.singleSeconds))),
      fmtMs(percentile(group, 50)),
      fmtMs(percentile(group, 99)),
      fmtInt(median(mine.map((r) => (groupCommits * rowsPerGroup) / r.groupSeconds))),
    ]
  })
  out(
    formatTable(
      [
        { title: 'mode', align: 'left' },
        { title: '1-row p50' },
        { title: '1-row p99' },
        { title: 'commits/s' },
        { title: `${rowsPerGroup}-row p50` },
        { title: `${rowsPerGroup}-row p99` },
        { title: 'rows/s' },
      ],
      rows,
    ),
  )
  out()
  out(`load avg   ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (1, 5, 15 min) at end: other processes share the CPU and the disk`)
} finally {
  rmSync(root, { recursive: true, force: true })
}
