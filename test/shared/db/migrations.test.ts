import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { migrateDownAll, migrateToLatest } from '../../../shared/db/migrator.ts'
import { migrations } from '../../../shared/db/migrations/index.ts'
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
  },
  { resetEach: false },
)
