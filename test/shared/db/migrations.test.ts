import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { migrateDownAll, migrateToLatest } from '../../../shared/db/migrator.ts'
import { migrations } from '../../../shared/db/migrations/index.ts'
import { SchemaTooNewError } from '../../../shared/errors.ts'
import { describeDatabases } from '../../support/database.ts'

async function userTables(db: Parameters<typeof migrateToLatest>[0]): Promise<string[]> {
  const r = await sql<{ name: string }>`SELECT tablename AS name FROM pg_tables
    WHERE schemaname = 'public' AND tablename NOT LIKE 'schema_migrations%' ORDER BY 1`.execute(db)
  return r.rows.map((x) => x.name)
}

describeDatabases(
  'migrations',
  (t) => {
    it('go all the way down and back up, leaving the same tables', async () => {
      const before = await userTables(t.db)
      expect(before.length).toBeGreaterThan(0)
      const down = await migrateDownAll(t.db)
      expect(down).toEqual(Object.keys(migrations).reverse().map((n) => `reverted ${n}`))
      expect(await userTables(t.db)).toEqual([])
      const up = await migrateToLatest(t.db)
      expect(up).toEqual(Object.keys(migrations).map((n) => `applied ${n}`))
      expect(await userTables(t.db)).toEqual(before)
    })

    it('are a no-op when the schema is already up to date', async () => {
      expect(await migrateToLatest(t.db)).toEqual([])
    })

    it('refuse a database a later version migrated, saying so, and change nothing', async () => {
      // As a later Metershare would leave it: one more migration applied than this version knows.
      const later = '9999-from-a-later-version'
      await sql`INSERT INTO schema_migrations (name, timestamp) VALUES (${later}, ${new Date().toISOString()})`.execute(t.db)
      try {
        const err = await migrateToLatest(t.db).then(
          () => null,
          (e: unknown) => e,
        )
        expect(err).toBeInstanceOf(SchemaTooNewError)
        expect((err as SchemaTooNewError).code).toBe('SCHEMA_TOO_NEW')
        expect((err as Error).message).toBe(
          `the database was migrated by a later version of Metershare (migration ${later} is unknown to this one): run that version or a later one, or restore a backup taken before it`,
        )
      } finally {
        await sql`DELETE FROM schema_migrations WHERE name = ${later}`.execute(t.db)
      }
      expect(await migrateToLatest(t.db)).toEqual([])
    })
  },
  { resetEach: false },
)
