import type { Kysely } from 'kysely'
import { Migrator, type MigrationResultSet } from 'kysely/migration'
import { SchemaTooNewError } from '../errors.ts'
import { migrations } from './migrations/index.ts'

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
