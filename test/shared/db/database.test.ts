import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { LISTEN_RESUMED_PAYLOAD, copyText, openDatabase } from '../../../shared/db/database.ts'
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

describePostgres('COPY on a one-connection handle', (t) => {
  it('stores awkward text exactly, inside the running transaction, and only there', async () => {
    expect(t.handle.copyIn).toBeNull()
    const one = await openDatabase({ databaseUrl: t.url, pgliteDir: null, pgliteFsync: false, poolSize: 1 })
    try {
      const copyIn = one.copyIn!
      expect(copyIn).not.toBeNull()
      await sql`CREATE TABLE copy_probe (a text, b text)`.execute(one.db)
      const awkward = 'tab\there, new\nline, cr\r, back\\slash \\N, "quoted", é'
      const row = (a: string | null, b: string | null): string => `${copyText(a)}\t${copyText(b)}\n`
      await one.db.transaction().execute(async (trx) => {
        await copyIn('COPY copy_probe (a, b) FROM STDIN', row(awkward, null) + row('plain', '\\N'))
        const inside = await sql<{ n: number }>`SELECT count(*)::int AS n FROM copy_probe`.execute(trx)
        expect(inside.rows[0]!.n).toBe(2)
      })
      const stored = await sql<{ a: string; b: string | null }>`SELECT a, b FROM copy_probe ORDER BY a DESC`.execute(one.db)
      expect(stored.rows).toEqual([
        { a: awkward, b: null },
        { a: 'plain', b: '\\N' },
      ])
      // Rolled back with its transaction like any other statement.
      await expect(
        one.db.transaction().execute(async () => {
          await copyIn('COPY copy_probe (a, b) FROM STDIN', row('rolled back', 'x'))
          throw new Error('abort')
        }),
      ).rejects.toThrow('abort')
      const after = await sql<{ n: number }>`SELECT count(*)::int AS n FROM copy_probe`.execute(one.db)
      expect(after.rows[0]!.n).toBe(2)
      await expect(copyIn('COPY copy_probe (a, b) FROM STDIN', row('outside', 'x'))).rejects.toThrow('COPY outside a transaction')
    } finally {
      await one.close()
    }
  })
})
