import { sql } from 'kysely'
import pg from 'pg'
import { expect, it } from 'vitest'
import { LISTEN_RESUMED_PAYLOAD, copyText, openDatabase, sqlLiteral } from '../../../shared/db/database.ts'
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

  it('reads timestamps of any year as that year (PGlite by itself read 0001 as 2001)', async () => {
    const r = await sql<{ a: Date; b: Date; c: Date }>`
      SELECT TIMESTAMPTZ '0001-01-01T00:00:00Z' AS a, TIMESTAMPTZ '0099-03-01T12:00:00.5Z' AS b, TIMESTAMP '0050-06-01 00:00:00' AS c`.execute(t.db)
    expect(r.rows[0]!.a.toISOString()).toBe('0001-01-01T00:00:00.000Z')
    expect(r.rows[0]!.b.toISOString()).toBe('0099-03-01T12:00:00.500Z')
    expect(r.rows[0]!.c.getFullYear()).toBe(50)
  })

  it('gives scripts on a connection of its own on PostgreSQL only (PGlite is one connection)', () => {
    expect(t.handle.withConnection === null).toBe(t.dialect === 'pglite')
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

describePostgres('sessions on PostgreSQL', (t) => {
  it('run with JIT off, on the pool and on a connection of its own (the server compiled a month count for 600 ms)', async () => {
    // The test means something only where the server has JIT on (PostgreSQL's default), as a plain client sees.
    const plain = new pg.Client({ connectionString: t.url! })
    await plain.connect()
    try {
      expect((await plain.query<{ jit: string }>('SHOW jit')).rows[0]!.jit).toBe('on')
    } finally {
      await plain.end()
    }
    expect((await sql<{ jit: string }>`SHOW jit`.execute(t.db)).rows[0]!.jit).toBe('off')
    const own = await t.handle.withConnection!((c) => c.script('SHOW jit'))
    expect(own).toEqual([[{ jit: 'off' }]])
  })

  it('have the server probe them with TCP keep-alive within a minute, so that a session whose client vanished does not hold its locks for hours', async () => {
    const keepalive = "SELECT current_setting('tcp_keepalives_idle') AS idle, current_setting('tcp_keepalives_interval') AS every, current_setting('tcp_keepalives_count') AS n"
    const expected = { idle: '30', every: '10', n: '3' }
    expect((await sql<typeof expected>`${sql.raw(keepalive)}`.execute(t.db)).rows).toEqual([expected])
    expect(await t.handle.withConnection!((c) => c.script(keepalive))).toEqual([[expected]])
  })
})

describePostgres('a long statement on PostgreSQL', (t) => {
  it('is never cut for its length while the server answers: the check finds it alive (server-watch.ts)', async () => {
    // Waits far shorter than the statement: it goes 2 s without a word from the server, checked about every 0.3 s.
    const handle = await openDatabase({ databaseUrl: t.url!, pgliteDir: null, pgliteFsync: false, poolSize: 2, serverWait: { connectTimeoutMs: 1_000, answerWaitMs: 300 } })
    try {
      const slept = await sql<{ n: number }>`SELECT 1 AS n FROM pg_sleep(2)`.execute(handle.db)
      expect(slept.rows).toEqual([{ n: 1 }])
      const own = await handle.withConnection!((c) => c.script('BEGIN; SELECT pg_sleep(1.5); COMMIT'))
      expect(own).toHaveLength(3)
    } finally {
      await handle.close()
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

describePostgres('LISTEN on one connection for every channel', (t) => {
  const listenConnections = async (): Promise<number> =>
    (
      await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE '%:listen'`.execute(t.db)
    ).rows[0]!.n

  it('listens on several channels over one connection, re-opened for all of them, and closes it with the last listener', async () => {
    const heard: string[] = []
    const offA = await t.handle.listen('metershare_test_a', (p) => heard.push(`a:${p}`))
    const offB = await t.handle.listen('metershare_test_b', (p) => heard.push(`b:${p}`))
    const offB2 = await t.handle.listen('metershare_test_b', (p) => heard.push(`b2:${p}`))
    try {
      expect(await listenConnections()).toBe(1)
      await sql`SELECT pg_notify('metershare_test_a', '1'), pg_notify('metershare_test_b', '2')`.execute(t.db)
      await waitFor(() => heard.length === 3, 5_000, 'the notifications')
      expect([...heard].sort()).toEqual(['a:1', 'b2:2', 'b:2'])
      // Lost: every listener hears that it may have missed notices, then hears again.
      await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE '%:listen'`.execute(t.db)
      await waitFor(() => heard.filter((h) => h.endsWith(LISTEN_RESUMED_PAYLOAD)).length === 3, 10_000, 'the resumed notices')
      expect(await listenConnections()).toBe(1)
      await offB()
      heard.length = 0
      await sql`SELECT pg_notify('metershare_test_a', '3'), pg_notify('metershare_test_b', '4')`.execute(t.db)
      await waitFor(() => heard.length === 2, 5_000, 'the notifications after')
      expect([...heard].sort()).toEqual(['a:3', 'b2:4'])
    } finally {
      await offA()
      await offB2()
    }
    await waitFor(async () => (await listenConnections()) === 0, 5_000, 'the listen connection closed')
  })
})

describePostgres('scripts and COPY on a connection of its own', (t) => {
  const awkward = `tab\there, new\nline, cr\r, back\\slash \\N, 'single' "double", $1 $$ dollar, é ✓`

  it('sends several statements in one round trip and answers the rows of each, in order', async () => {
    const results = await t.handle.withConnection!((c) => c.script(`SELECT 1 AS a; SET LOCAL work_mem = '8MB'; SELECT ${sqlLiteral(awkward)} AS text, 2::int8 AS n UNION ALL SELECT ${sqlLiteral('x')}, 3`))
    // The same type parsers as kysely's queries: int8 → bigint.
    expect(results).toEqual([[{ a: 1 }], [], [{ text: awkward, n: 2n }, { text: 'x', n: 3n }]])
  })

  it('writes any text as a literal that reads back the same, and refuses a NUL', async () => {
    for (const value of [awkward, '', "''", '\\', "\\'", 'E\'x\'', '{"a":"b\\"c"}']) {
      const results = await t.handle.withConnection!((c) => c.script(`SELECT ${sqlLiteral(value)} AS v`))
      expect(results).toEqual([[{ v: value }]])
    }
    expect(() => sqlLiteral('a\0b')).toThrow('NUL')
  })

  it('stores awkward text by COPY inside the transaction of a script, and only when it commits', async () => {
    await sql`CREATE TABLE copy_probe (a text, b text)`.execute(t.db)
    const row = (a: string | null, b: string | null): string => `${copyText(a)}\t${copyText(b)}\n`
    await t.handle.withConnection!(async (c) => {
      await c.script('BEGIN')
      await c.copyIn('COPY copy_probe (a, b) FROM STDIN', row(awkward, null) + row('plain', '\\N'))
      const [inside] = await c.script('SELECT count(*)::int AS n FROM copy_probe')
      expect(inside).toEqual([{ n: 2 }])
      // Not visible to others before the commit.
      const outside = await sql<{ n: number }>`SELECT count(*)::int AS n FROM copy_probe`.execute(t.db)
      expect(outside.rows[0]!.n).toBe(0)
      await c.script('COMMIT')
    })
    const stored = await sql<{ a: string; b: string | null }>`SELECT a, b FROM copy_probe ORDER BY a DESC`.execute(t.db)
    expect(stored.rows).toEqual([
      { a: awkward, b: null },
      { a: 'plain', b: '\\N' },
    ])
    await t.handle.withConnection!(async (c) => {
      await c.script('BEGIN')
      await c.copyIn('COPY copy_probe (a, b) FROM STDIN', row('rolled back', 'x'))
      await c.script('ROLLBACK')
    })
    const after = await sql<{ n: number }>`SELECT count(*)::int AS n FROM copy_probe`.execute(t.db)
    expect(after.rows[0]!.n).toBe(2)
  })

  it('closes a connection left inside a transaction rather than hand it to the next caller', async () => {
    await sql`CREATE TABLE left_open (a int)`.execute(t.db)
    await expect(
      t.handle.withConnection!(async (c) => {
        await c.script('BEGIN; INSERT INTO left_open VALUES (1)')
        throw new Error('gave up mid-transaction')
      }),
    ).rejects.toThrow('gave up mid-transaction')
    const idleInTransaction = async (): Promise<number> =>
      (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`.execute(t.db)).rows[0]!.n
    await waitFor(async () => (await idleInTransaction()) === 0, 5_000, 'the abandoned transaction to end')
    expect(await t.handle.withConnection!((c) => c.script('SELECT count(*)::int AS n FROM left_open'))).toEqual([[{ n: 0 }]])
  })

  it('skips what follows a failed statement, and leaves the connection usable after a ROLLBACK', async () => {
    await sql`CREATE TABLE script_probe (a int PRIMARY KEY)`.execute(t.db)
    await t.handle.withConnection!(async (c) => {
      await expect(c.script('BEGIN; INSERT INTO script_probe VALUES (1); INSERT INTO script_probe VALUES (1); COMMIT')).rejects.toThrow(/duplicate key/)
      await c.script('ROLLBACK')
      expect(await c.script('SELECT count(*)::int AS n FROM script_probe')).toEqual([[{ n: 0 }]])
    })
  })
})
