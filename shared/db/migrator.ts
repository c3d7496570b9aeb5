import { sql, type Kysely } from 'kysely'
import { Migrator, type MigrationResultSet } from 'kysely/migration'
import { ConfigError, SchemaTooNewError } from '../errors.ts'
import { migrations } from './migrations/index.ts'

/** Channel on which `metershare migrate` announces a migrated schema to the processes running on it. */
export const SCHEMA_CHANNEL = 'metershare_schema'

const provider = { getMigrations: async () => migrations }

function migrator(db: Kysely<any>): Migrator {
  return new Migrator({ db, provider, migrationTableName: 'schema_migrations', migrationLockTableName: 'schema_migrations_lock' })
}

function check(result: MigrationResultSet): string[] {
  if (result.error !== undefined) {
    // A database migrated by a later Metershare (a deployment rolled back): said as such, not as kysely's "corrupted".
    const newer = /previously executed migration (\S+) is missing/.exec((result.error as Error).message)
    if (newer !== null) throw new SchemaTooNewError(newer[1]!, { cause: result.error })
    throw result.error
  }
  return (result.results ?? []).map((r) => `${r.direction === 'Up' ? 'applied' : 'reverted'} ${r.migrationName}`)
}

/** Brings the schema up to date; returns what it applied. Safe to run from several processes. */
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  return check(await migrator(db).migrateToLatest())
}

/**
 * For a process that does not migrate (a broker, the API, the settlement worker of a layout, after
 * `metershare migrate`): refuses a schema this version does not know all of (a later version migrated
 * it) or that lacks one of this version's migrations (not migrated yet).
 */
export async function requireSchemaCurrent(db: Kysely<any>): Promise<void> {
  const { rows } = await sql<{ found: string | null }>`SELECT to_regclass('schema_migrations')::text AS found`.execute(db)
  const applied = rows[0]?.found == null ? [] : (await sql<{ name: string }>`SELECT name FROM schema_migrations ORDER BY name`.execute(db)).rows.map((r) => r.name)
  const unknown = applied.find((name) => !(name in migrations))
  if (unknown !== undefined) throw new SchemaTooNewError(unknown)
  const missing = Object.keys(migrations).find((name) => !applied.includes(name))
  if (missing !== undefined) {
    throw new ConfigError(`DATABASE_URL: the database has not been migrated to this version (migration ${missing} is not applied): run \`metershare migrate\` first`)
  }
}

/** Tells the processes listening on the database that its schema changed (after a migration). */
export async function announceSchema(db: Kysely<any>): Promise<void> {
  await sql`SELECT pg_notify(${SCHEMA_CHANNEL}, ${Object.keys(migrations).at(-1)!})`.execute(db)
}

/** Reverts migrations one by one, down to none (tests of `down`). */
export async function migrateDownAll(db: Kysely<any>): Promise<string[]> {
  const done: string[] = []
  for (;;) {
    const result = await migrator(db).migrateDown()
    const step = check(result)
    if (step.length === 0) return done
    done.push(...step)
  }
}
