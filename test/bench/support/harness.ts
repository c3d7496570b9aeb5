import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { summarizeProfile } from './cpu-profile.ts'
import { NodeChild } from './processes.ts'
import { fmtInt, fmtPercent } from './report.ts'

/**
 * What the load benchmarks share: their command-line conventions, progress lines, broker CPU
 * profile summaries, and the bookkeeping of the PostgreSQL databases and child processes one
 * run creates, so an interrupted run still drops and stops all of them.
 */

const REPO_ROOT = path.resolve(import.meta.dirname, '../../..')
/** Functions and modules listed in a profile summary. */
const PROFILE_TOP = 10

/** The PostgreSQL server a benchmark administers unless BENCH_DATABASE_URL says otherwise: the local one. */
export const DEFAULT_BENCH_DATABASE_URL = 'postgres://postgres:postgres@localhost:5432/postgres'
const CHILD_STOP_MS = 5_000

export function progress(line: string): void {
  process.stderr.write(`… ${line}\n`)
}

/** A database URL fit to print: its password masked. */
export function redact(url: string): string {
  const u = new URL(url)
  if (u.password !== '') u.password = '***'
  return u.toString()
}

/** The options every load benchmark takes, for `parseArgs` (each adds its own). */
export const BENCH_OPTIONS = {
  seconds: { type: 'string' },
  warmup: { type: 'string' },
  meters: { type: 'string' },
  only: { type: 'string' },
  profile: { type: 'boolean', default: false },
  quick: { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
} as const

/** A numeric command-line option: its default when absent, an error naming it when not a number ≥ min. */
export function numberOption(name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) return fallback
  const n = Number(raw)
  if (!Number.isFinite(n) || n < min) throw new Error(`--${name}: expected a number ≥ ${min}, got ${JSON.stringify(raw)}`)
  return n
}

/** `--only a,b`: the phases asked for (all when absent), refusing unknown names. */
export function phasesOption<P extends string>(raw: string | undefined, phases: readonly P[]): Set<P> {
  const only = new Set<P>()
  for (const p of (raw ?? phases.join(',')).split(',')) {
    if (!(phases as readonly string[]).includes(p)) throw new Error(`--only: unknown phase ${JSON.stringify(p)} (phases: ${phases.join(', ')})`)
    only.add(p as P)
  }
  return only
}

/** `--help`: prints the usage and ends the process. */
export function exitWithUsageIf(help: boolean | undefined, usage: string): void {
  if (help !== true) return
  process.stdout.write(usage + '\n')
  process.exit(0)
}

/**
 * Where a broker's CPU profiles go: a folder of their own under the run's profile folder (kept
 * after the run for a closer look), and the flags that profile every thread of the broker, each
 * into its own file (`CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile`): the main thread, the
 * ingest thread, and the module loader's threads.
 */
export function profileFlags(slug: string): { dir: string; execArgv: string[] } {
  const dir = path.join(os.tmpdir(), `metershare-bench-profiles-${process.pid}`, slug)
  mkdirSync(dir, { recursive: true })
  return { dir, execArgv: ['--cpu-prof', '--cpu-prof-dir', dir] }
}

/** The profiles a broker left in its folder worth reading: its main thread's and its ingest thread's. */
function brokerThreadProfiles(dir: string): Array<{ thread: string; file: string }> {
  if (!existsSync(dir)) return []
  const found: Array<{ thread: string; file: string }> = []
  for (const name of readdirSync(dir).sort()) {
    const m = /^CPU\.\d+\.\d+\.\d+\.(\d+)\.\d+\.cpuprofile$/.exec(name)
    if (m === null) continue
    const file = path.join(dir, name)
    if (m[1] === '0') found.push({ thread: 'main thread', file })
    // The ingest thread runs broker/ingest-worker.ts; the loader's threads run none of ours.
    else if (readFileSync(file, 'utf8').includes('/broker/ingest-worker.ts')) found.push({ thread: 'ingest thread', file })
  }
  return found.sort((a, b) => (a.thread === b.thread ? 0 : a.thread === 'main thread' ? -1 : 1))
}

/** A summary of each of a broker's thread profiles, over the measured window when its bounds are known. */
export function profileLines(dir: string, fromUs: number | null, toUs: number | null, top = PROFILE_TOP): string[] {
  const threads = brokerThreadProfiles(dir)
  if (threads.length === 0) return [`(no profile written in ${dir})`]
  const window = fromUs !== null && toUs !== null ? { fromUs, toUs } : {}
  const list = (entries: Array<{ name: string; share: number }>): string => entries.map((e) => `${fmtPercent(e.share)} ${e.name}`).join(', ')
  return threads.flatMap(({ thread, file }) => {
    const p = summarizeProfile(file, { root: REPO_ROOT, top, ...window })
    return [
      `broker ${thread} CPU profile over ${'fromUs' in window ? 'the window' : 'its life'} (${fmtInt(p.windowMs)} ms, self time): ${file}`,
      `  by module:   ${list(p.byModule)}`,
      `  by function: ${list(p.byFunction)}`,
    ]
  })
}

/** The databases and Node children of one benchmark run, on a PostgreSQL server it administers. */
export class BenchHarness {
  protected readonly createdDatabases: string[] = []
  protected readonly children = new Set<NodeChild>()
  private phaseCounter = 0

  constructor(
    readonly adminUrl: string,
    /** Prefix of the databases this run creates (unique per run: it carries the pid). */
    protected readonly dbPrefix: string,
    /** Folder the child scripts are resolved against. */
    private readonly scriptsDir: string,
  ) {}

  databaseUrl(name: string): string {
    const u = new URL(this.adminUrl)
    u.pathname = '/' + name
    return u.toString()
  }

  async admin(text: string): Promise<pg.QueryResult> {
    const client = new pg.Client({ connectionString: this.adminUrl })
    await client.connect()
    try {
      return await client.query(text)
    } finally {
      await client.end()
    }
  }

  /** Creates `<prefix>_<suffix>`, empty or copied from a template database; dropped by `cleanup`. */
  async createDatabase(suffix: string, template: string | null = null): Promise<string> {
    const name = `${this.dbPrefix}_${suffix}`
    await this.admin(`CREATE DATABASE ${name}${template !== null ? ` TEMPLATE ${template}` : ''}`)
    this.createdDatabases.push(name)
    return name
  }

  async dropDatabase(name: string): Promise<void> {
    await this.admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    const i = this.createdDatabases.indexOf(name)
    if (i >= 0) this.createdDatabases.splice(i, 1)
  }

  spawn(name: string, script: string, execArgv: string[] = []): NodeChild {
    const child = new NodeChild(name, path.join(this.scriptsDir, script), { execArgv })
    this.children.add(child)
    void child.exited.then(() => this.children.delete(child))
    return child
  }

  /** A name unique within the run for a phase's database, folder or profile. */
  nextSlug(slug: string): string {
    return `${++this.phaseCounter}_${slug.replace(/\W/g, '_')}`
  }

  /** Stops the children, then drops the databases, newest first; reports what could not be dropped. */
  protected async stopChildrenAndDropDatabases(beforeDropping: () => Promise<unknown> = async () => undefined): Promise<void> {
    await Promise.all([...this.children].map((c) => c.stop(CHILD_STOP_MS)))
    await beforeDropping()
    for (const name of [...this.createdDatabases].reverse()) {
      try {
        await this.dropDatabase(name)
      } catch (err) {
        process.stderr.write(`could not drop database ${name}: ${(err as Error).message}\n`)
      }
    }
  }
}

/** SIGINT or SIGTERM: the first marks the run interrupted, cleans up and exits 130; a second exits at once. */
export function cleanUpOnSignal(bench: { interrupted: boolean; cleanup(): Promise<void> }): void {
  const onSignal = (): void => {
    if (bench.interrupted) process.exit(130)
    bench.interrupted = true
    process.stderr.write('\ninterrupted: cleaning up (again to quit at once)\n')
    void bench.cleanup().finally(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}

/** The server's line of a benchmark's header (version and the settings that decide durability); throws when unreachable. */
export async function describePostgres(h: BenchHarness): Promise<string> {
  const r = await h.admin(`SELECT version() AS v, current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sc, current_setting('shared_buffers') AS sb`)
  const row = r.rows[0] as { v: string; fsync: string; sc: string; sb: string }
  return `PostgreSQL ${row.v.split(' on ')[0]} (fsync ${row.fsync}, synchronous_commit ${row.sc}, shared_buffers ${row.sb}) at ${redact(h.adminUrl)}`
}
