import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { announceSchema } from '../../shared/db/migrator.ts'
import { CliProcess, runCli } from '../support/cli.ts'
import { describePostgres } from '../support/database.ts'
import { freePort, waitFor } from '../support/tools.ts'

const LATER = '9999-from-a-later-version'

/**
 * A rolling upgrade run in the wrong order: the database migrated by a later version while this
 * version's processes still run on it, or start on it. They stop (exit 2) rather than write past
 * rules they do not know of; one started on a schema not migrated to this version is refused too.
 */
describePostgres('processes of the layout and the schema under them', (t) => {
  it('stop when a later version migrates the database, and refuse to start on it, or on one not migrated yet', async () => {
    const env = { DATABASE_URL: t.url!, METERSHARE_LOG_LEVEL: 'info', METERSHARE_ADMIN_TOKEN: 'rolling-upgrade-token-0123456789' }
    const worker = new CliProcess(['settlement'], env)
    try {
      await worker.printed(/settlement running/, 60_000)
      // Nothing newer: a notice changes nothing.
      await announceSchema(t.db)
      await new Promise((r) => setTimeout(r, 1_000))
      expect(worker.exitCode).toBeNull()

      await sql`INSERT INTO schema_migrations (name, timestamp) VALUES (${LATER}, ${new Date().toISOString()})`.execute(t.db)
      await announceSchema(t.db)
      await waitFor(() => worker.exitCode !== null, 30_000, 'the settlement worker to stop')
      expect(worker.exitCode).toBe(2)
      expect(worker.output).toContain('the database was migrated by a later version of Metershare: stopping')

      const api = await runCli(['api'], { ...env, HTTP_PORT: String(await freePort()) })
      expect([api.code, api.stderr]).toEqual([2, expect.stringContaining(`migration ${LATER} is unknown to this one`)])
    } finally {
      worker.kill()
      await sql`DELETE FROM schema_migrations WHERE name = ${LATER}`.execute(t.db)
    }

    const last = await sql<{ name: string; timestamp: string }>`SELECT name, timestamp FROM schema_migrations ORDER BY name DESC LIMIT 1`.execute(t.db)
    await sql`DELETE FROM schema_migrations WHERE name = ${last.rows[0]!.name}`.execute(t.db)
    try {
      const broker = await runCli(['broker'], { ...env, MQTT_PORT: String(await freePort()), HTTP_PORT: String(await freePort()) })
      expect([broker.code, broker.stderr]).toEqual([2, expect.stringContaining(`the database has not been migrated to this version (migration ${last.rows[0]!.name} is not applied)`)])
    } finally {
      await sql`INSERT INTO schema_migrations (name, timestamp) VALUES (${last.rows[0]!.name}, ${last.rows[0]!.timestamp})`.execute(t.db)
    }
  }, 180_000)

  it('stops `metershare up` on PostgreSQL too, when a later version migrates its database', async () => {
    const up = new CliProcess(['up', '--no-demo', '--no-simulate'], {
      DATABASE_URL: t.url!,
      METERSHARE_LOG_LEVEL: 'info',
      MQTT_PORT: String(await freePort()),
      HTTP_PORT: String(await freePort()),
    })
    try {
      await up.printed(/Metershare is running/, 60_000)
      await sql`INSERT INTO schema_migrations (name, timestamp) VALUES (${LATER}, ${new Date().toISOString()})`.execute(t.db)
      await announceSchema(t.db)
      await waitFor(() => up.exitCode !== null, 30_000, '`up` to stop')
      expect(up.exitCode).toBe(2)
      expect(up.output).toContain('the database was migrated by a later version of Metershare: stopping')
    } finally {
      up.kill()
      await sql`DELETE FROM schema_migrations WHERE name = ${LATER}`.execute(t.db)
    }
  }, 120_000)
})
