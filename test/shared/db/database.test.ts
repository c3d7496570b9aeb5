import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { LISTEN_RESUMED_PAYLOAD } from '../../../shared/db/database.ts'
import { waitFor } from '../../support/broker.ts'
import { describeDatabases, describePostgres } from '../../support/database.ts'

describeDatabases('the database factory', (t) => {
  it('gives both backends the same types: bigint, day strings, Dates, Buffers, objects', async () => {
    const r = await sql<{ n: bigint; d: string; t: Date; b: Buffer; j: unknown; x: string }>`
      SELECT 9007199254740993::int8 AS n, DATE '2026-10-01' AS d, TIMESTAMPTZ '2026-10-01T00:30:00Z' AS t,
             '\\x00ff'::bytea AS b, '{"a":1}'::jsonb AS j, 1.50::numeric AS x`.execute(t.db)
    expect(r.rows[0]).toEqual({ n: 9007199254740993n, d: '2026-10-01', t: new Date('2026-10-01T00:30:00Z'), b: Buffer.from([0, 255]), j: { a: 1 }, x: '1.50' })
    expect(Buffer.isBuffer(r.rows[0]!.b)).toBe(true)
  })

  it('delivers notifications sent in a committed transaction to listeners', async () => {
    const heard: string[] = []
    const unlisten = await t.handle.listen('metershare_test_channel', (p) => heard.push(p))
    try {
      await t.db.transaction().execute(async (trx) => {
        await sql`SELECT pg_notify('metershare_test_channel', 'hello')`.execute(trx)
      })
      await waitFor(() => heard.includes('hello'), 5_000, 'the notification')
    } finally {
      await unlisten()
    }
  })
})

describePostgres('LISTEN on PostgreSQL', (t) => {
  it('re-opens a lost listen connection and says so, so that listeners can reload', async () => {
    const heard: string[] = []
    const unlisten = await t.handle.listen('metershare_test_resume', (p) => heard.push(p))
    try {
      await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name LIKE '%:listen'`.execute(t.db)
      await waitFor(() => heard.includes(LISTEN_RESUMED_PAYLOAD), 10_000, 'the resumed notice')
      await sql`SELECT pg_notify('metershare_test_resume', 'after')`.execute(t.db)
      await waitFor(() => heard.includes('after'), 5_000, 'a notification after the reconnection')
    } finally {
      await unlisten()
    }
  })
})
