import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { CliProcess } from '../support/cli.ts'
import { describePostgres } from '../support/database.ts'
import { connectOutcome, freePort, waitFor } from '../support/tools.ts'

/**
 * A signal that reaches `metershare broker` while it starts (seconds: its database, its ingest thread,
 * its listener) stops it in order once the start is complete, as `up` does: before, its handlers were
 * installed only after the start, so it died half-started (exit 143, nothing said), and the helper that
 * held its MQTT socket (broker/listen-handles.cjs) could stay behind listening on the port.
 */
describePostgres('a signal during the start of one component', (t) => {
  it('stops `metershare broker` in order once started (exit 0), and lets go of its ports', async () => {
    const mqttPort = await freePort()
    const httpPort = await freePort()
    const broker = new CliProcess(['broker'], { DATABASE_URL: t.url!, METERSHARE_LOG_LEVEL: 'info', MQTT_PORT: String(mqttPort), HTTP_PORT: String(httpPort) })
    try {
      // Mid-start: its ingest thread has connected to the database, its listener is not up yet.
      await waitFor(
        async () => {
          const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'metershare:ingest:%' AND datname = current_database()`.execute(t.db)
          return rows[0]!.n > 0
        },
        60_000,
        "the broker's ingest thread to connect",
      )
      expect(broker.output).not.toContain('broker running')
      expect(await broker.stop('SIGTERM')).toBe(0)
      expect(broker.output).toContain('broker running')
      expect(broker.output).toContain('shutting down')
      expect(await connectOutcome(mqttPort)).toBe('ECONNREFUSED')
      expect(await connectOutcome(httpPort)).toBe('ECONNREFUSED')
    } finally {
      broker.kill()
    }
  }, 120_000)
})
