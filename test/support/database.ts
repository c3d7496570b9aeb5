import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { sql, type Kysely } from 'kysely'
import pg from 'pg'
import { afterAll, beforeAll, beforeEach, describe, inject } from 'vitest'
import { openDatabase, type DatabaseHandle, type DialectName } from '../../shared/db/database.ts'
import type { Database } from '../../shared/db/schema.ts'
import { PG_SKIP_REASON, adminUrl, databaseUrl, pgAvailable } from './postgres.ts'

/**
 * One suite, several backends (kysely's DIALECTS loop): `describeDatabases` runs its body on
 * PGlite always and on PostgreSQL whenever TEST_DATABASE_URL is set; otherwise the
 * PostgreSQL half is reported as skipped with the reason.
 */
export const DIALECTS: readonly DialectName[] = ['pglite', 'postgres']

export interface TestDatabase {
  readonly dialect: DialectName
  readonly handle: DatabaseHandle
  readonly db: DatabaseHandle['db']
  /** postgres://… of this file's own database, null on PGlite. */
  readonly url: string | null
  /** PGlite's data folder of this file, null on PostgreSQL. */
  readonly pgliteDir: string | null
  /** Opens another handle on the same database (PostgreSQL only: PGlite is one connection), of 5 connections unless told. */
  openAnother(options?: { poolSize?: number }): Promise<DatabaseHandle>
}

let fileCounter = 0

/** SQLSTATE 40P01, and how often the reset between tests runs again when it loses one. */
const DEADLOCK_DETECTED = '40P01'
const TRUNCATE_ATTEMPTS_MAX = 5

/** Creates a migrated database of its own for the enclosing describe; emptied before each test. */
export function useTestDatabase(dialect: DialectName, options: { resetEach?: boolean } = {}): TestDatabase {
  let handle: DatabaseHandle | undefined
  let url: string | null = null
  let dir: string | null = null
  let dbName: string | null = null
  let tables: string[] | undefined

  beforeAll(async () => {
    if (dialect === 'pglite') {
      dir = mkdtempSync(path.join(os.tmpdir(), 'metershare-pglite-'))
      cpSync(inject('pgliteTemplateDir'), dir, { recursive: true })
      handle = await openDatabase({ databaseUrl: null, pgliteDir: dir, pgliteFsync: false, poolSize: 1 })
    } else {
      const template = inject('pgTemplateDb')
      if (template === null) throw new Error('PostgreSQL template missing')
      dbName = `metershare_test_${process.pid}_${++fileCounter}_${Date.now() % 100000}`
      await adminQuery(`CREATE DATABASE ${dbName} TEMPLATE ${template}`)
      url = databaseUrl(dbName)
      handle = await openDatabase({ databaseUrl: url, pgliteDir: null, pgliteFsync: false, poolSize: 10 })
    }
  })

  afterAll(async () => {
    await handle?.close()
    if (dir !== null) rmSync(dir, { recursive: true, force: true })
    if (dbName !== null) await adminQuery(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`)
  })

  if (options.resetEach !== false) {
    beforeEach(async () => {
      const db = handle!.db
      tables ??= (
        await sql<{ name: string }>`SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND c.relname NOT LIKE 'schema_migrations%'`.execute(db)
      ).rows.map((r) => r.name)
      if (tables.length === 0) return
      const truncate = sql.raw(`TRUNCATE ${tables.map((t) => `"${t}"`).join(', ')} RESTART IDENTITY CASCADE`)
      // A broker shared by a file's tests may still be writing (an access-log flush) when the next
      // test starts: PostgreSQL can then pick the TRUNCATE as a deadlock's victim. It is run again.
      for (let attempt = 1; ; attempt++) {
        try {
          await truncate.execute(db)
          return
        } catch (err) {
          if ((err as { code?: string }).code !== DEADLOCK_DETECTED || attempt >= TRUNCATE_ATTEMPTS_MAX) throw err
        }
      }
    })
  }

  return {
    dialect,
    get handle() {
      if (handle === undefined) throw new Error('database not open yet: use it inside a test or hook')
      return handle
    },
    get db() {
      return this.handle.db
    },
    get url() {
      return url
    },
    get pgliteDir() {
      return dir
    },
    async openAnother(options = {}) {
      if (url === null) throw new Error('openAnother needs PostgreSQL')
      return openDatabase({ databaseUrl: url, pgliteDir: null, pgliteFsync: false, poolSize: options.poolSize ?? 5 })
    },
  }
}

async function adminQuery(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl() })
  await client.connect()
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}

/** Runs `body` once per available backend, each in a describe of its own. */
export function describeDatabases(name: string, body: (t: TestDatabase) => void, options: { resetEach?: boolean } = {}): void {
  for (const dialect of DIALECTS) {
    if (dialect === 'postgres' && !pgAvailable()) {
      describe.skip(`${name} [postgres] (skipped: ${PG_SKIP_REASON})`, () => {
        body(unavailable(dialect))
      })
      continue
    }
    describe(`${name} [${dialect}]`, () => {
      body(useTestDatabase(dialect, options))
    })
  }
}

/** Only for PostgreSQL (lock-dependent or multi-process behaviour). */
export function describePostgres(name: string, body: (t: TestDatabase) => void, options: { resetEach?: boolean } = {}): void {
  if (!pgAvailable()) {
    describe.skip(`${name} [postgres] (skipped: ${PG_SKIP_REASON})`, () => body(unavailable('postgres')))
    return
  }
  describe(`${name} [postgres]`, () => body(useTestDatabase('postgres', options)))
}

function unavailable(dialect: DialectName): TestDatabase {
  const fail = (): never => {
    throw new Error(PG_SKIP_REASON)
  }
  return {
    dialect,
    get handle() {
      return fail()
    },
    get db() {
      return fail()
    },
    url: null,
    pgliteDir: null,
    openAnother: fail,
  }
}

/** A connection held by holdConnection. */
export interface HeldConnection {
  /** Lets the connection go: `then` runs, and the transaction (if one) commits. */
  release(): void
  /** Settles once the connection is given back, as `hold` and `then` did. */
  done: Promise<void>
}

/**
 * Takes a connection of `db` (in a transaction, or as it is) and keeps it, and whatever `hold` took
 * there (locks, writes not yet committed), until `release()`; answers once `hold` has run. For tests
 * of what waits behind it: on PGlite, its one connection itself.
 */
export async function holdConnection(
  db: Kysely<Database>,
  mode: 'transaction' | 'session',
  hold: (conn: Kysely<Database>) => Promise<unknown> = async () => {},
  then: (conn: Kysely<Database>) => Promise<unknown> = async () => {},
): Promise<HeldConnection> {
  let release = (): void => {}
  const released = new Promise<void>((r) => (release = r))
  let held = (): void => {}
  const isHeld = new Promise<void>((r) => (held = r))
  const body = async (conn: Kysely<Database>): Promise<void> => {
    await hold(conn)
    held()
    await released
    await then(conn)
  }
  const done = mode === 'transaction' ? db.transaction().execute(body) : db.connection().execute(body)
  // A hold that fails never answers `isHeld`: its failure does.
  await Promise.race([isHeld, done])
  return { release, done }
}
