import { existsSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { PGlite } from '@electric-sql/pglite'
import { btree_gist } from '@electric-sql/pglite/contrib/btree_gist'
import { Kysely, PGliteDialect, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import { ensureDataDir } from '../data-dir.ts'
import { log } from '../logger.ts'
import { lockDataDir } from './data-dir-lock.ts'
import { checkPostgres } from './postgres-check.ts'
import { DurableNodeFS, syncFolderTree } from './pglite-durable-fs.ts'
import type { Database } from './schema.ts'
import { DEFAULT_SERVER_WAIT_LIMITS, ServerWatch, type ServerWaitLimits } from './server-watch.ts'
import { freeBytesOf, isDiskFull, StorageFullError } from './storage.ts'
import { logDatabaseFailure } from './unreachable.ts'

/**
 * The one place a database connection is made. PGlite (PostgreSQL in WebAssembly, files
 * under the data directory) by default; a PostgreSQL server when a URL is given. Both get
 * the same type parsers: int8 → bigint (money, counts), date → 'YYYY-MM-DD' string, bytea → Buffer,
 * numeric → string, timestamptz → Date as pg reads it; jsonb → object is already common.
 */

export type DialectName = 'pglite' | 'postgres'

export interface DatabaseOptions {
  /** postgres://… selects a server; null selects PGlite. */
  databaseUrl: string | null
  /** PGlite's data folder; null keeps it in memory (tests only). */
  pgliteDir: string | null
  /** fsync on PGlite: a PUBACK then survives a power cut, not only a crash (docs/durability.md). */
  pgliteFsync: boolean
  poolSize: number
  /** Name shown in pg_stat_activity. */
  applicationName?: string
  /** How long a PostgreSQL server may take to answer before it counts as unreachable (server-watch.ts); DEFAULT_SERVER_WAIT_LIMITS when absent. */
  serverWait?: Readonly<ServerWaitLimits>
}

export interface DatabaseHandle {
  db: Kysely<Database>
  dialect: DialectName
  /** The server's URL on PostgreSQL (other threads and processes connect with it); null on PGlite. */
  url: string | null
  /** The waits its connections to the server are bounded by (other threads connect with them too); null on PGlite. */
  serverWait: Readonly<ServerWaitLimits> | null
  /**
   * Subscribe to a NOTIFY channel; resolves to an unsubscribe function. On PostgreSQL, `onLost` is
   * called as the connection that listens is found lost: notices may be missed until it is re-opened,
   * which `onPayload` then hears as LISTEN_RESUMED_PAYLOAD. On PGlite, in the process, none is lost.
   */
  listen(channel: string, onPayload: (payload: string) => void, onLost?: () => void): Promise<() => Promise<void>>
  /**
   * PostgreSQL only (null on PGlite): runs `fn` with one connection of the pool to itself, on
   * which it can send several statements in one round trip and `COPY … FROM STDIN` (see
   * ScriptConnection). The connection is returned to the pool when `fn` settles; a transaction
   * `fn` opened should be ended by it, and if it is not, the connection is closed instead (which
   * rolls the transaction back) so that no later caller inherits it.
   */
  withConnection: (<T>(fn: (c: ScriptConnection) => Promise<T>) => Promise<T>) | null
  /** PGlite's data folder on disk, whose free space ingest watches (storage.ts); absent on PostgreSQL and in memory. */
  pgliteDir?: string
  close(): Promise<void>
}

/**
 * One PostgreSQL connection, driven by scripts. Through kysely each statement is a round trip
 * of its own (the extended protocol: one statement per message, answered before the next is
 * sent); on a busy machine each round trip is also a wait for a CPU on both sides.
 */
export interface ScriptConnection {
  /**
   * Sends the statements of `text` in one round trip (PostgreSQL's simple query protocol) and
   * answers the rows of each statement, in order (an empty list for those that return none).
   * There are no parameters: values go in as `sqlLiteral`s. After a failed statement the rest of
   * the script is skipped, and an open transaction is aborted.
   */
  script(text: string): Promise<Array<Array<Record<string, unknown>>>>
  /** `COPY … FROM STDIN` of rows in COPY's text format (see copyText). COPY stores rows several times faster than `INSERT … SELECT`. */
  copyIn(copySql: string, rows: string): Promise<void>
}

/**
 * A string as an SQL literal, for scripts: quotes doubled, and backslashes doubled in an
 * E'' literal, so that it reads the same whatever standard_conforming_strings says. A NUL
 * cannot travel in a script (the protocol ends the text there), so it is refused.
 */
export function sqlLiteral(value: string): string {
  if (value.includes('\0')) throw new Error('assertion failed: a NUL character in an SQL literal')
  const quoted = value.replaceAll("'", "''")
  return value.includes('\\') ? ` E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`
}

/** A value in COPY's text format: backslash, tab, newline and carriage return escaped; null as \N. */
export function copyText(value: string | null): string {
  if (value === null) return '\\N'
  return /[\\\t\n\r]/.test(value) ? value.replace(/[\\\t\n\r]/g, (c) => COPY_ESCAPES[c]!) : value
}

const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' }

const OID = { bytea: 17, int8: 20, date: 1082, timestamp: 1114, timestamptz: 1184, numeric: 1700 } as const

const pgParser = pg.types.getTypeParser as (oid: number, format?: string) => (v: string) => unknown

const PARSERS: Record<number, (value: string) => unknown> = {
  [OID.int8]: (v) => BigInt(v),
  // PGlite would give a Uint8Array, pg a Buffer: Buffer on both. Text form is '\\x' + hex.
  [OID.bytea]: (v) => Buffer.from(v.slice(2), 'hex'),
  [OID.date]: (v) => v,
  [OID.numeric]: (v) => v,
  // pg's reading of timestamps on both: PGlite's own (`new Date(text)`) reads year 0001 as 2001.
  [OID.timestamp]: pgParser(OID.timestamp),
  [OID.timestamptz]: pgParser(OID.timestamptz),
}

const pgTypes = {
  getTypeParser(oid: number, format?: string): (value: string) => unknown {
    return PARSERS[oid] ?? pgParser(oid, format)
  },
}

export const PGLITE_SUBDIR = 'pglite'

export function pgliteDirOf(dataDir: string): string {
  return path.join(dataDir, PGLITE_SUBDIR)
}

// Without -F PostgreSQL syncs, but only fsync() reaches the disk from PGlite (DurableNodeFS):
// its default wal_sync_method, fdatasync, would sync nothing.
const DURABLE_START_PARAMS = [...PGlite.defaultStartParams.filter((p) => p !== '-F'), '-c', 'wal_sync_method=fsync']

export async function openPglite(dir: string | null, fsync: boolean): Promise<PGlite> {
  const options = { extensions: { btree_gist }, parsers: PARSERS }
  if (dir === null) return PGlite.create(options)
  mkdirSync(dir, { recursive: true })
  if (!fsync) return PGlite.create({ ...options, dataDir: dir })
  const fresh = !existsSync(path.join(dir, 'PG_VERSION'))
  const pglite = await PGlite.create({ ...options, fs: new DurableNodeFS(dir), startParams: DURABLE_START_PARAMS })
  if (fresh) await syncFolderTree(dir)
  return pglite
}

export async function openDatabase(options: DatabaseOptions): Promise<DatabaseHandle> {
  if (options.databaseUrl !== null) return openPostgres(options.databaseUrl, options)
  if (options.pgliteDir === null) return wrapPglite(await openPglite(null, options.pgliteFsync))
  const unlock = lockDataDir(options.pgliteDir, ({ pid, file }) =>
    // A crash, a SIGKILL, a power cut: PGlite recovers from its write-ahead log as it opens.
    log.db.warn({ pid, lockFile: file }, 'the embedded database was left open by a process that is gone (it did not stop cleanly): taken over, recovering'),
  )
  try {
    const pglite = await openPglite(options.pgliteDir, options.pgliteFsync).catch(async (err: unknown) => {
      throw await diskFullAtOpen(options.pgliteDir!, err)
    })
    return { ...wrapPglite(pglite, { checkpointIntervalMs: PGLITE_CHECKPOINT_INTERVAL_MS, onClosed: unlock }), pgliteDir: options.pgliteDir }
  } catch (err) {
    unlock()
    throw err
  }
}

/**
 * PGlite failing to open (a new cluster's initdb, or the crash recovery of a folder that filled up)
 * says only "PGlite failed to initialize properly". On a full disk, say that, and where.
 */
async function diskFullAtOpen(dir: string, err: unknown): Promise<unknown> {
  const free = await freeBytesOf(dir).catch(() => null)
  if (!isDiskFull(err) && (free === null || free >= PGLITE_OPEN_FREE_BYTES_MIN)) return err
  return new StorageFullError(dir, free ?? 0, PGLITE_OPEN_FREE_BYTES_MIN, 'the embedded database may need to open', { cause: err })
}

/**
 * Bytes free, at least, that opening PGlite may need: crash recovery ends with a checkpoint and may
 * start a new 16 MiB WAL segment; a new cluster takes ~40 MiB. With less, the failure is named as a
 * full disk rather than PGlite's "failed to initialize properly".
 */
export const PGLITE_OPEN_FREE_BYTES_MIN = 48 * 1024 * 1024

/**
 * PGlite runs PostgreSQL in single-user mode, which has no checkpointer: without an explicit
 * CHECKPOINT the write-ahead log grows for as long as the process runs, and crash recovery
 * replays all of it. A checkpoint this often bounds both.
 */
export const PGLITE_CHECKPOINT_INTERVAL_MS = 5 * 60_000

export function wrapPglite(
  pglite: PGlite,
  options: { checkpointIntervalMs: number | null; onClosed?: () => void } = { checkpointIntervalMs: null },
): DatabaseHandle {
  const db = new Kysely<Database>({ dialect: new PGliteDialect({ pglite }) })
  let closed = false
  let checkpoint: Promise<unknown> = Promise.resolve()
  const timer =
    options.checkpointIntervalMs === null
      ? null
      : setInterval(() => {
          checkpoint = sql`CHECKPOINT`.execute(db).catch((err: unknown) => log.db.warn({ err }, 'checkpoint failed'))
        }, options.checkpointIntervalMs)
  timer?.unref()
  return {
    db,
    dialect: 'pglite',
    url: null,
    serverWait: null,
    withConnection: null,
    async listen(channel, onPayload) {
      const unlisten = await pglite.listen(channel, onPayload)
      return async () => {
        if (!pglite.closed) await unlisten()
      }
    },
    async close() {
      if (closed) return
      closed = true
      if (timer !== null) clearInterval(timer)
      try {
        await checkpoint
        await db.destroy()
        // kysely closes PGlite only if it ever ran a query through it.
        if (!pglite.closed) await pglite.close()
      } finally {
        options.onClosed?.()
      }
    },
  }
}

/**
 * TCP keep-alive of the server's side of our sessions: idle seconds before the first probe, seconds
 * between probes, probes unanswered before the server drops the session. A session whose client
 * vanished behind a network that dropped packets (its connection closed here by the server watch,
 * the close lost on the way) would otherwise stay for the kernel's default, over two hours, holding
 * what its transaction held: the `SHARE` lock of an ingest group on `occupancies` blocks every
 * occupancy write. With these it is dropped within a minute of the network's return (at once when
 * our kernel answers the first probe) or of its loss.
 */
export const SERVER_KEEPALIVE = { idleS: 30, intervalS: 10, count: 3 } as const

/** Settings of every session Metershare opens on PostgreSQL (the startup packet's `options`). */
export const SESSION_OPTIONS = [
  '-c jit=off',
  `-c tcp_keepalives_idle=${SERVER_KEEPALIVE.idleS}`,
  `-c tcp_keepalives_interval=${SERVER_KEEPALIVE.intervalS}`,
  `-c tcp_keepalives_count=${SERVER_KEEPALIVE.count}`,
].join(' ')

async function openPostgres(url: string, options: DatabaseOptions): Promise<DatabaseHandle> {
  const poolConfig = {
    connectionString: url,
    max: options.poolSize,
    types: pgTypes,
    application_name: options.applicationName ?? 'metershare',
    // PostgreSQL's JIT compiles a statement whose estimated cost passes jit_above_cost. Ours are
    // index-driven, but a correlated subquery per row (the release rule's finality, the pull's windows)
    // inflates their estimates past it: a month's counts spent 600 of their 1,770 ms compiling, for
    // nothing. The server's keep-alive: SERVER_KEEPALIVE. A `DATABASE_URL` with its own `options`
    // parameter replaces these.
    options: SESSION_OPTIONS,
  }
  const serverWait = options.serverWait ?? DEFAULT_SERVER_WAIT_LIMITS
  const watch = new ServerWatch(poolConfig, serverWait, log.db)
  // No connectionTimeoutMillis on the pool itself: there it would also bound the wait for a free
  // connection, and refuse work under load. The connections bound their own opening (watch.Client).
  const pool = new pg.Pool({ ...poolConfig, Client: watch.Client })
  pool.on('error', (err) => logDatabaseFailure(log.db, 'warn', err, {}, 'idle database connection failed'))
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
  const listener = new PgListener({ ...poolConfig, application_name: `${poolConfig.application_name}:listen` }, watch.Client)
  let closed = false
  const withConnection = async <T>(fn: (c: ScriptConnection) => Promise<T>): Promise<T> => {
    const client = await pool.connect()
    let broken: Error | undefined
    // A connection that failed other than by a statement's error is not handed to the next caller.
    const guarded = async <R>(work: Promise<R>): Promise<R> => {
      try {
        return await work
      } catch (err) {
        if (!(err instanceof pg.DatabaseError)) broken = err as Error
        throw err
      }
    }
    try {
      return await fn({
        async script(text) {
          const r = (await guarded(client.query(text))) as unknown as pg.QueryResult | pg.QueryResult[]
          return (Array.isArray(r) ? r : [r]).map((x) => x.rows ?? [])
        },
        async copyIn(copySql, rows) {
          await guarded(pipeline(Readable.from([rows]), client.query(copyFrom(copySql))))
        },
      })
    } finally {
      if (broken === undefined && client.getTransactionStatus() !== 'I') broken = new Error('a transaction was left open on the connection')
      client.release(broken)
    }
  }
  return {
    db,
    dialect: 'postgres',
    url,
    serverWait,
    withConnection,
    async listen(channel, onPayload, onLost) {
      if (closed) throw new Error('the database handle is closed')
      return listener.add(channel, onPayload, onLost)
    },
    async close() {
      if (closed) return
      closed = true
      try {
        await listener.stop()
        await db.destroy()
      } finally {
        watch.stop()
      }
    },
  }
}

/** Delivered to a listener whose connection was lost and is back: notices may have been missed. */
export const LISTEN_RESUMED_PAYLOAD = '{"kind":"listen_resumed"}'
/** Longest wait between two attempts to re-open a lost LISTEN connection. */
export const LISTEN_RECONNECT_DELAY_MS_MAX = 5_000

/**
 * LISTEN on one dedicated connection per database handle, for every channel the process listens
 * to (a pool would recycle the session; a connection per channel would hold several of the server's
 * connections per process). Re-opened with backoff when it is lost, listening again on every
 * channel; then each listener hears LISTEN_RESUMED_PAYLOAD so that it can reload what it may have
 * missed. Closed when the last listener leaves.
 */
class PgListener {
  private client: pg.Client | null = null
  /** The channels LISTENed on the current connection. */
  private listening = new Set<string>()
  private connecting: Promise<void> | null = null
  private readonly handlers = new Map<string, Set<(payload: string) => void>>()
  /** The `onLost` of each listener that gave one, by its `onPayload`. */
  private readonly lostHandlers = new Map<(payload: string) => void, () => void>()
  private stopped = false
  private attempts = 0
  private timer: NodeJS.Timeout | null = null

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly Client: typeof pg.Client,
  ) {}

  /** Listens on `channel` too; resolves, once the server listens, to the way to stop. */
  async add(channel: string, onPayload: (payload: string) => void, onLost?: () => void): Promise<() => Promise<void>> {
    let set = this.handlers.get(channel)
    if (set === undefined) this.handlers.set(channel, (set = new Set()))
    const handlers = set
    handlers.add(onPayload)
    if (onLost !== undefined) this.lostHandlers.set(onPayload, onLost)
    try {
      this.stopped = false
      await this.connected()
      if (!this.listening.has(channel)) {
        await this.client!.query(`LISTEN ${pg.escapeIdentifier(channel)}`)
        this.listening.add(channel)
      }
    } catch (err) {
      this.remove(channel, handlers, onPayload)
      throw err
    }
    return async () => {
      if (!handlers.has(onPayload)) return
      this.remove(channel, handlers, onPayload)
      if (this.handlers.size === 0) await this.stop()
      else if (!this.handlers.has(channel) && this.listening.delete(channel)) {
        await this.client?.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => undefined)
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.handlers.clear()
    this.lostHandlers.clear()
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    const client = this.client
    this.client = null
    this.listening = new Set()
    await client?.end().catch(() => undefined)
  }

  private remove(channel: string, handlers: Set<(payload: string) => void>, onPayload: (payload: string) => void): void {
    handlers.delete(onPayload)
    this.lostHandlers.delete(onPayload)
    if (handlers.size === 0 && this.handlers.get(channel) === handlers) this.handlers.delete(channel)
  }

  /** The connection, opened (once, for concurrent callers) when there is none. */
  private async connected(): Promise<void> {
    if (this.client !== null) return
    this.connecting ??= this.connect().finally(() => {
      this.connecting = null
    })
    await this.connecting
  }

  private async connect(): Promise<void> {
    const client = new this.Client(this.config)
    client.on('notification', (msg) => {
      for (const handler of [...(this.handlers.get(msg.channel) ?? [])]) handler(msg.payload ?? '')
    })
    client.on('error', (err) => logDatabaseFailure(log.db, 'warn', err, { channels: [...this.listening] }, 'listen connection failed'))
    client.on('end', () => {
      if (this.client !== client || this.stopped) return
      this.reconnectLater()
      for (const onLost of [...this.lostHandlers.values()]) onLost()
    })
    const listening = new Set<string>()
    try {
      await client.connect()
      for (const channel of this.handlers.keys()) {
        await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`)
        listening.add(channel)
      }
    } catch (err) {
      await client.end().catch(() => undefined)
      throw err
    }
    if (this.stopped) {
      await client.end().catch(() => undefined)
      return
    }
    this.client = client
    this.listening = listening
  }

  private reconnectLater(): void {
    this.client = null
    this.listening = new Set()
    const delay = Math.min(LISTEN_RECONNECT_DELAY_MS_MAX, 100 * 2 ** this.attempts++)
    this.timer = setTimeout(() => {
      this.timer = null
      if (this.stopped) return
      this.connected().then(
        () => {
          this.attempts = 0
          log.db.info({ channels: [...this.listening] }, 'listen connection re-opened')
          for (const handlers of [...this.handlers.values()]) for (const handler of [...handlers]) handler(LISTEN_RESUMED_PAYLOAD)
        },
        (err: unknown) => {
          logDatabaseFailure(log.db, 'warn', err, { attempts: this.attempts }, 'listen reconnection failed')
          if (!this.stopped) this.reconnectLater()
        },
      )
    }, delay)
    this.timer.unref()
  }
}

/** The database a running system uses, from its config. */
export async function openConfiguredDatabase(
  config: { databaseUrl: string | null; dataDir: string; db: { poolSize: number; pgliteFsync: boolean; serverWait?: Readonly<ServerWaitLimits> } },
  applicationName?: string,
): Promise<DatabaseHandle> {
  // A process starting: a wrong DATABASE_URL or an absent server is said in one sentence (a pool
  // itself connects only at its first query, and then fails with that query's stack).
  if (config.databaseUrl !== null) await checkPostgres({ connectionString: config.databaseUrl, application_name: applicationName ?? 'metershare' })
  else ensureDataDir(config.dataDir)
  return openDatabase({
    databaseUrl: config.databaseUrl,
    pgliteDir: pgliteDirOf(config.dataDir),
    pgliteFsync: config.db.pgliteFsync,
    poolSize: config.db.poolSize,
    ...(config.db.serverWait !== undefined ? { serverWait: config.db.serverWait } : {}),
    ...(applicationName !== undefined ? { applicationName } : {}),
  })
}

/** Longest wait, in ms, for the health probe of the database (`SELECT 1`); slower counts as down. */
/**
 * Below the whole health check's HEALTH_CHECK_TIMEOUT_MS (2 s), so that a database that does not
 * answer is said to be the part down, and the parts that answered up (found by probing: with both at
 * 2 s, a frozen server's /healthz said the broker was down too).
 */
export const HEALTH_PROBE_TIMEOUT_MS = 1_500

/** Whether the database answers a `SELECT 1` within HEALTH_PROBE_TIMEOUT_MS (the /healthz probe). */
export async function probeDatabase(handle: DatabaseHandle): Promise<boolean> {
  const probe = sql`SELECT 1`.execute(handle.db).then(
    () => true,
    () => false,
  )
  const timeout = new Promise<boolean>((r) => setTimeout(() => r(false), HEALTH_PROBE_TIMEOUT_MS).unref())
  return Promise.race([probe, timeout])
}
