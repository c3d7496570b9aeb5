import { spawnSync } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { afterAll, assert, beforeAll, describe } from 'vitest'
import { freePort, run } from './tools.ts'

/**
 * A PostgreSQL 15 server of a test file's own, in a temporary folder on a free port, which the test
 * may stop (`pg_ctl stop -m fast`), crash (`-m immediate`) and start again: the shared server of
 * TEST_DATABASE_URL must never be stopped. initdb refuses to run as root (CI runs as root): the
 * cluster then belongs to the `postgres` user and its commands run through `runuser`.
 */

/** The PostgreSQL 15 binaries Debian's postgresql-15 installs (CI's `.ci/run` starts that server). */
export const PG_BIN_DIR = '/usr/lib/postgresql/15/bin'

/** Why the private server cannot be made here, or '' when it can. */
export function privatePostgresSkipReason(): string {
  if (!existsSync(path.join(PG_BIN_DIR, 'initdb')) || !existsSync(path.join(PG_BIN_DIR, 'pg_ctl'))) {
    return `skipped: no PostgreSQL 15 server binaries in ${PG_BIN_DIR} (apt-get install postgresql-15)`
  }
  if (process.getuid?.() === 0 && spawnSync('id', ['-u', 'postgres'], { stdio: 'ignore' }).status !== 0) {
    return 'skipped: running as root, and no postgres user to own a cluster (initdb refuses root)'
  }
  return ''
}

export interface PrivatePostgres {
  /** postgres://… of its `postgres` database (user postgres, no password: trust on its socket and 127.0.0.1). */
  readonly url: string
  readonly port: number
  readonly dir: string
  /** Milliseconds initdb took (the file's cost, printed by tests that measure). */
  readonly initdbMs: number
  /** `pg_ctl stop -m fast` (sessions terminated, a checkpoint) or `immediate` (a crash: recovery at the next start). */
  stop(mode: 'fast' | 'immediate'): Promise<void>
  /** Starts it again (crash recovery first after an immediate stop); resolves once it accepts connections. */
  start(): Promise<void>
  readonly running: boolean
  /**
   * A server that stops answering without closing anything (a frozen host): SIGSTOP to the postmaster,
   * then to every process it started. Its kernel still accepts connections and acknowledges what is sent;
   * nothing answers. `thaw` (SIGCONT) undoes it.
   */
  freeze(): void
  thaw(): void
  readonly frozen: boolean
  /** Stops it (immediate) and removes its folder. */
  destroy(): Promise<void>
}

/** Longest wait for pg_ctl to start or stop the server. */
const PG_CTL_TIMEOUT_S = 60

/** Creates, and starts, a cluster with fsync and synchronous_commit on (PostgreSQL's defaults, as docker-compose.yml sets them). */
export async function privatePostgres(): Promise<PrivatePostgres> {
  const reason = privatePostgresSkipReason()
  if (reason !== '') throw new Error(reason)
  const asRoot = process.getuid?.() === 0
  const base = mkdtempSync(path.join(os.tmpdir(), 'metershare-private-pg-'))
  const dir = path.join(base, 'data')
  const socketDir = base
  if (asRoot) {
    const uid = Number(spawnSync('id', ['-u', 'postgres']).stdout.toString().trim())
    const gid = Number(spawnSync('id', ['-g', 'postgres']).stdout.toString().trim())
    chownSync(base, uid, gid)
    chmodSync(base, 0o700)
  }
  const pgCmd = async (bin: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    const command = path.join(PG_BIN_DIR, bin)
    // From its own folder: the postgres user may not enter the clone's (a root-only home, in CI).
    const options = { timeoutMs: PG_CTL_TIMEOUT_S * 1000 + 5_000, cwd: base }
    return asRoot ? run('runuser', ['-u', 'postgres', '--', command, ...args], options) : run(command, args, options)
  }
  const started = Date.now()
  const init = await pgCmd('initdb', ['-D', dir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'])
  if (init.code !== 0) throw new Error(`initdb failed: ${init.stderr}${init.stdout}`)
  const initdbMs = Date.now() - started
  const port = await freePort()
  const options = `-p ${port} -k ${socketDir} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=100`
  let running = false
  const start = async (): Promise<void> => {
    const r = await pgCmd('pg_ctl', ['-D', dir, '-o', options, '-l', path.join(base, 'server.log'), '-w', '-t', String(PG_CTL_TIMEOUT_S), 'start'])
    if (r.code !== 0) throw new Error(`pg_ctl start failed: ${r.stderr}${r.stdout}`)
    running = true
  }
  await start()
  let frozen: number[] = []
  const thaw = (): void => {
    for (const pid of frozen.reverse()) signal(pid, 'SIGCONT')
    frozen = []
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    initdbMs,
    get running() {
      return running
    },
    async stop(mode) {
      const r = await pgCmd('pg_ctl', ['-D', dir, '-m', mode, '-w', '-t', String(PG_CTL_TIMEOUT_S), 'stop'])
      if (r.code !== 0) throw new Error(`pg_ctl stop failed: ${r.stderr}${r.stdout}`)
      running = false
    },
    start,
    freeze() {
      if (frozen.length > 0) return
      // The postmaster first: it starts no process while the others are listed and stopped.
      const postmaster = Number(readFileSync(path.join(dir, 'postmaster.pid'), 'utf8').split('\n')[0])
      signal(postmaster, 'SIGSTOP')
      frozen = [postmaster, ...childrenOf(postmaster)]
      for (const pid of frozen.slice(1)) signal(pid, 'SIGSTOP')
    },
    thaw,
    get frozen() {
      return frozen.length > 0
    },
    async destroy() {
      thaw()
      if (running) await pgCmd('pg_ctl', ['-D', dir, '-m', 'immediate', '-w', 'stop'])
      running = false
      rmSync(base, { recursive: true, force: true })
    },
  }
}

/** The processes whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const children: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // pid (comm) state ppid …: comm may hold spaces and parentheses, so read after the last ')'.
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(entry))
    } catch {
      // It ended meanwhile.
    }
  }
  return children
}

function signal(pid: number, sig: 'SIGSTOP' | 'SIGCONT'): void {
  try {
    process.kill(pid, sig)
  } catch (err) {
    if ((err as { code?: string }).code !== 'ESRCH') throw err
  }
}

/** Runs one statement on `url` with a connection of its own. */
export async function queryOnce<R extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url })
  client.on('error', () => undefined)
  await client.connect()
  try {
    return (await client.query<R>(text, values)).rows
  } finally {
    await client.end().catch(() => undefined)
  }
}

/**
 * A suite on a private server of its own (one per file, made in its beforeAll: initdb takes about
 * 1 s here), for what the shared server must not undergo: being stopped, or crashed. Reported as
 * skipped, with the reason, where the server binaries are absent.
 */
export function describePrivatePostgres(name: string, body: (server: () => PrivatePostgres) => void): void {
  const reason = privatePostgresSkipReason()
  if (reason !== '') {
    describe.skip(`${name} [private postgres] (${reason})`, () => body(() => assert.fail(reason)))
    return
  }
  describe(`${name} [private postgres]`, () => {
    let server: PrivatePostgres | undefined
    beforeAll(async () => {
      server = await privatePostgres()
    }, PG_CTL_TIMEOUT_S * 2_000)
    afterAll(async () => {
      await server?.destroy()
    })
    body(() => server ?? assert.fail('the private server is not made yet: use it in a test or hook'))
  })
}
