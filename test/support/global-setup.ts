import { createHash } from 'node:crypto'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { TestProject } from 'vitest/node'
import { openDatabase } from '../../shared/db/database.ts'
import { migrateToLatest } from '../../shared/db/migrator.ts'
import { PG_SKIP_REASON, PG_TEMPLATE_DB, adminUrl, pgAvailable } from './postgres.ts'
import { SYSTEM_TOOLS, hasCommand } from './tools.ts'
import { tmpfsSkipReason } from './tmpfs.ts'
import { privatePostgresSkipReason } from './private-postgres.ts'
import pg from 'pg'

declare module 'vitest' {
  export interface ProvidedContext {
    pgliteTemplateDir: string
    pgTemplateDb: string | null
  }
}

/**
 * Migrates once per run: a PGlite data folder (cached across runs, keyed by the migrations'
 * content) that each test file copies, and on PostgreSQL a template database that each
 * test file clones with CREATE DATABASE … TEMPLATE.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  reportSkips()
  project.provide('pgliteTemplateDir', await pgliteTemplate())
  const template = await postgresTemplate()
  project.provide('pgTemplateDb', template)
  return async () => {
    if (template === null) return
    const admin = new pg.Client({ connectionString: adminUrl() })
    await admin.connect()
    try {
      await admin.query(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`)
    } finally {
      await admin.end()
    }
  }
}

function migrationsHash(): string {
  const dir = path.resolve(import.meta.dirname, '../../shared/db/migrations')
  const h = createHash('sha256')
  for (const f of readdirSync(dir).sort()) h.update(f).update(readFileSync(path.join(dir, f)))
  h.update(readFileSync(path.resolve(import.meta.dirname, '../../node_modules/@electric-sql/pglite/package.json')))
  return h.digest('hex').slice(0, 16)
}

async function pgliteTemplate(): Promise<string> {
  const root = path.join(os.tmpdir(), 'metershare-test')
  const dir = path.join(root, `pglite-template-${migrationsHash()}`)
  if (existsSync(path.join(dir, 'PG_VERSION'))) return dir
  mkdirSync(root, { recursive: true })
  const building = `${dir}.building-${process.pid}`
  rmSync(building, { recursive: true, force: true })
  const handle = await openDatabase({ databaseUrl: null, pgliteDir: building, pgliteFsync: false, poolSize: 1 })
  await migrateToLatest(handle.db)
  await handle.close()
  rmSync(dir, { recursive: true, force: true })
  try {
    renameSync(building, dir)
  } catch {
    cpSync(building, dir, { recursive: true })
    rmSync(building, { recursive: true, force: true })
  }
  return dir
}

async function postgresTemplate(): Promise<string | null> {
  if (!pgAvailable()) return null
  const admin = new pg.Client({ connectionString: adminUrl() })
  await admin.connect()
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${PG_TEMPLATE_DB} WITH (FORCE)`)
    await admin.query(`CREATE DATABASE ${PG_TEMPLATE_DB}`)
  } finally {
    await admin.end()
  }
  const url = new URL(adminUrl())
  url.pathname = '/' + PG_TEMPLATE_DB
  const handle = await openDatabase({ databaseUrl: url.toString(), pgliteDir: null, pgliteFsync: false, poolSize: 1 })
  await migrateToLatest(handle.db)
  await handle.close()
  return PG_TEMPLATE_DB
}

/** Says once, before the run, which suites will be skipped and why (the reporter shows only counts). */
function reportSkips(): void {
  const lines: string[] = []
  if (!pgAvailable()) lines.push(`PostgreSQL suites: ${PG_SKIP_REASON}; set TEST_DATABASE_URL=postgres://… to run them`)
  for (const t of SYSTEM_TOOLS) {
    if (!hasCommand(t.command) && !(t.command === 'chromium' && hasCommand('chromium-browser'))) lines.push(`${t.needs}: ${t.command} not found (apt-get install ${t.pkg})`)
  }
  const tmpfs = tmpfsSkipReason()
  if (tmpfs !== '') lines.push(`a database's disk filling up (test/broker/disk-full.test.ts): ${tmpfs.replace(/^ \(skipped: (.*)\)$/, '$1')}; run as root where mount -t tmpfs is permitted`)
  const privatePg = privatePostgresSkipReason()
  if (privatePg !== '') lines.push(`the database server stopped and crashed under load (test/broker/database-outage.test.ts, test/e2e/database-outage.test.ts): ${privatePg.replace(/^skipped: /, '')}`)
  if (lines.length === 0) return
  process.stderr.write(`\nSkipped in this run, with the reason:\n${lines.map((l) => `  - ${l}`).join('\n')}\n\n`)
}
