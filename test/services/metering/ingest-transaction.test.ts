import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { COMMIT_TOKEN_KEPT_DAYS, COPY_READINGS_MIN, CommitOutcomeUnknownError, CommitTokens } from '../../../services/metering/ingest-repository.ts'
import { MeterTails, commitMessages, scriptedIngest, type CommitResult, type IngestContext } from '../../../services/metering/ingest-service.ts'
import { validatePayload, type ValidatedMessage } from '../../../services/metering/ingest-validation.ts'
import { datumDayOf } from '../../../shared/calendar.ts'
import { DEFAULT_INGEST_LIMITS } from '../../../shared/config.ts'
import { newId } from '../../../shared/ids.ts'
import { describePostgres } from '../../support/database.ts'
import { readingOwners, rollupsOf, seedHousehold, seedMeter, seedOccupancy } from '../../support/seed.ts'

const TZ = 'Europe/Paris'
const IMPORT = '1-0:1.8.0'
const HOUR = 3_600_000
const T0 = Date.parse('2026-10-02T08:00:00Z')
/** The first household moves out and the second in at this instant. */
const MOVE = Date.parse('2026-10-02T12:00:00Z')

function message(meterId: string, readings: Array<[number, number]> | string): ValidatedMessage {
  const body = typeof readings === 'string' ? readings : JSON.stringify({ readings: readings.map(([ts, wh]) => ({ ts: new Date(ts).toISOString(), values: { [IMPORT]: wh } })) })
  return validatePayload({ meterId, commodity: 'electricity' }, Buffer.from(body), T0 + 30 * 86_400_000, DEFAULT_INGEST_LIMITS)
}

describePostgres('the ingest transaction, through kysely and as scripts', (t) => {
  function context(scripted: boolean, tails = new MeterTails()): IngestContext {
    return { dialect: 'postgres', datumDayOf: (ms) => datumDayOf(ms, TZ), tails, ...(scripted ? { scripted: scriptedIngest(t.handle) } : {}) }
  }

  async function movingMeter(): Promise<{ meter: string; before: string; after: string }> {
    const meter = await seedMeter(t.db)
    const before = await seedHousehold(t.db)
    const after = await seedHousehold(t.db)
    await seedOccupancy(t.db, { meterId: meter, householdId: before, from: '2026-09-01T00:00:00Z', until: new Date(MOVE) })
    await seedOccupancy(t.db, { meterId: meter, householdId: after, from: new Date(MOVE) })
    return { meter, before, after }
  }

  /** What a commit did, with the meter's and households' ids replaced by their roles. */
  function anonymous(result: CommitResult, ids: Record<string, string>): unknown {
    let text = JSON.stringify(result, (_k, v: unknown) => (Buffer.isBuffer(v) || (v as { type?: string })?.type === 'Buffer' ? '<bytes>' : v))
    for (const [role, id] of Object.entries(ids)) text = text.replaceAll(id, role)
    return JSON.parse(text)
  }

  async function stored(meter: string, ids: Record<string, string>): Promise<unknown> {
    const quarantine = await sql<{ reason: string; ts: Date | null }>`SELECT reason, ts FROM quarantine WHERE meter_id = ${meter} ORDER BY ts NULLS FIRST, reason`.execute(t.db)
    return anonymous({ readings: await readingOwners(t.db, meter), rollups: await rollupsOf(t.db, meter), quarantine: quarantine.rows } as never, ids)
  }

  it('gives the same outcomes and stores the same rows either way', async () => {
    const seen: unknown[] = []
    for (const scripted of [false, true]) {
      const { meter, before, after } = await movingMeter()
      const ids = { meter, before, after }
      const tails = new MeterTails()
      const first = await commitMessages(
        t.db,
        [
          message(meter, [
            [T0 + HOUR, 110],
            [T0 + 2 * HOUR, 120],
            [T0 + 3 * HOUR, 130],
          ]),
          // A duplicate, a conflict and a regression against what the same group stored.
          message(meter, [
            [T0 + 2 * HOUR, 120],
            [T0 + 3 * HOUR, 131],
            [T0 + 4 * HOUR, 125],
          ]),
          message(meter, '{"readings": [ not json'),
        ],
        context(scripted, tails),
      )
      // A later group: the tails are known for in-order data; data before them needs the neighbours,
      // and data after the move belongs to the next household.
      const second = await commitMessages(
        t.db,
        [
          message(meter, [
            [T0, 100],
            [T0 + 5 * HOUR, 150],
          ]),
        ],
        context(scripted, tails),
      )
      // A new process (no tails): every neighbour comes from the database.
      const third = await commitMessages(t.db, [message(meter, [[T0 + 5 * HOUR, 150], [T0 + 6 * HOUR, 140], [T0 - HOUR, 90]])], context(scripted))
      seen.push({ first: anonymous(first, ids), second: anonymous(second, ids), third: anonymous(third, ids), stored: await stored(meter, ids) })
    }
    expect(seen[1]).toEqual(seen[0])
    // And it is what the rules say, not merely the same twice.
    const { stored: rows, first, third } = seen[0] as {
      stored: { readings: Array<{ ts: string; householdId: string }>; quarantine: Array<{ reason: string }> }
      first: { outcomes: Array<{ duplicates: number }> }
      third: { outcomes: Array<{ duplicates: number; quarantined: Array<{ reason: string }> }> }
    }
    expect(rows.readings.map((r) => [r.ts, r.householdId])).toEqual([
      ['2026-10-02T07:00:00.000Z', 'before'],
      ['2026-10-02T08:00:00.000Z', 'before'],
      ['2026-10-02T09:00:00.000Z', 'before'],
      ['2026-10-02T10:00:00.000Z', 'before'],
      ['2026-10-02T11:00:00.000Z', 'before'],
      ['2026-10-02T13:00:00.000Z', 'after'],
    ])
    expect(rows.quarantine.map((q) => q.reason).sort()).toEqual(['conflict', 'index_regression', 'index_regression', 'malformed_json'])
    expect(first.outcomes.map((o) => o.duplicates)).toEqual([0, 1, 0])
    expect(third.outcomes[0]!.duplicates).toBe(1)
  })

  for (const size of [1, COPY_READINGS_MIN]) {
    it(`leaves nothing of a group whose write fails (${size} datum${size > 1 ? 's, by COPY' : ''}), and the next group commits`, async () => {
      const { meter } = await movingMeter()
      const series = (from: number): Array<[number, number]> => Array.from({ length: size }, (_, i) => [T0 + (from + i) * HOUR, 100 + from + i])
      // A datum of this meter fails its row's insert (by the statement or by COPY): the whole group must go.
      const poison = newId('meter')
      await sql.raw(`CREATE OR REPLACE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'injected write failure'; END $$`).execute(t.db)
      await sql.raw(`CREATE TRIGGER test_poison AFTER INSERT ON readings FOR EACH ROW WHEN (NEW.meter_id = '${poison}') EXECUTE FUNCTION test_poison()`).execute(t.db)
      try {
        await expect(commitMessages(t.db, [message(meter, series(0)), message(poison, series(0))], context(true))).rejects.toThrow('injected write failure')
      } finally {
        await sql`DROP TRIGGER test_poison ON readings`.execute(t.db)
      }
      expect(await readingOwners(t.db, meter)).toEqual([])
      expect(await rollupsOf(t.db, meter)).toEqual([])
      const open = await sql<{ state: string }>`SELECT state FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`.execute(t.db)
      expect(open.rows).toEqual([])

      const result = await commitMessages(t.db, [message(meter, series(0))], context(true))
      expect(result.outcomes[0]!.stored).toHaveLength(size)
      expect(await readingOwners(t.db, meter)).toHaveLength(size)
    })
  }

  const tokenRows = async (): Promise<string[]> =>
    (await sql<{ token: string }>`SELECT token::text AS token FROM ingest_commit_tokens ORDER BY committed_at, token`.execute(t.db)).rows.map((r) => r.token)

  it('writes a commit token with each scripted commit, and deletes it in the next once its answer came; prunes the old', async () => {
    const { meter } = await movingMeter()
    await sql`DELETE FROM ingest_commit_tokens`.execute(t.db)
    const tokens = new CommitTokens()
    const scripted = { ...context(false), scripted: scriptedIngest(t.handle, tokens) }
    await commitMessages(t.db, [message(meter, [[T0 + HOUR, 110]])], scripted)
    const first = await tokenRows()
    expect(first).toHaveLength(1)
    await commitMessages(t.db, [message(meter, [[T0 + 2 * HOUR, 120]])], scripted)
    const second = await tokenRows()
    expect(second).toHaveLength(1)
    expect(second).not.toEqual(first)
    // Answered, so of no more use: the next commit deletes it.
    expect(tokens.take()).toEqual(second)
    // Through kysely (PGlite's way), no token.
    await commitMessages(t.db, [message(meter, [[T0 + 3 * HOUR, 130]])], context(false))
    expect(await tokenRows()).toEqual(second)

    // What no commit deleted goes after COMMIT_TOKEN_KEPT_DAYS, not before.
    await sql`INSERT INTO ingest_commit_tokens (token, committed_at) VALUES
      (1, now() - make_interval(days => ${COMMIT_TOKEN_KEPT_DAYS}) - interval '1 minute'),
      (2, now() - make_interval(days => ${COMMIT_TOKEN_KEPT_DAYS}) + interval '1 minute')`.execute(t.db)
    expect(await CommitTokens.prune(t.db)).toBe(1)
    expect((await tokenRows()).sort()).toEqual(['2', ...second].sort())
  })

  it('commits one meter\'s groups from two processes one after the other, each checked against what the other stored (brokers coupled)', async () => {
    for (const scripted of [true, false]) {
      const { meter, before } = await movingMeter()
      const one = await t.openAnother({ poolSize: 1 })
      const two = await t.openAnother({ poolSize: 1 })
      const blocker = await t.openAnother({ poolSize: 1 })
      try {
        // Two brokers' ingest: broker one knows the meter's tail; the meter, taken over, sends broker two later readings whose index is lower.
        const shared = (h: typeof one): IngestContext => ({
          dialect: 'postgres',
          datumDayOf: (ms) => datumDayOf(ms, TZ),
          tails: new MeterTails(),
          sharedMeters: true,
          ...(scripted ? { scripted: scriptedIngest(h) } : {}),
        })
        const first = shared(one)
        const second = shared(two)
        await commitMessages(one.db, [message(meter, [[T0 - 3 * HOUR, 50]])], first)
        const waiting = async (): Promise<number> =>
          Number((await sql<{ n: string }>`SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`.execute(t.db)).rows[0]!.n)
        // Both groups are held at their start, then let go at once: without a lock per meter both would read before either wrote.
        let release!: () => void
        const held = blocker.withConnection!(async (c) => {
          await c.script('BEGIN; LOCK TABLE occupancies IN EXCLUSIVE MODE')
          await new Promise<void>((r) => (release = r))
          await c.script('COMMIT')
        })
        while (release === undefined) await new Promise((r) => setTimeout(r, 5))
        const commits = [
          commitMessages(one.db, [message(meter, [[T0 - 2 * HOUR, 200_002], [T0 - HOUR, 200_003]])], first),
          commitMessages(two.db, [message(meter, [[T0 + HOUR, 100_001], [T0 + 2 * HOUR, 100_002]])], second),
        ]
        while ((await waiting()) < 2) await new Promise((r) => setTimeout(r, 10))
        release()
        await held
        await Promise.all(commits)
        const series = (await sql<{ ts: Date; wh: string }>`SELECT ts, values ->> ${IMPORT} AS wh FROM readings WHERE meter_id = ${meter} ORDER BY ts`.execute(t.db)).rows.map((r) => Number(r.wh))
        expect(series).toEqual([...series].sort((a, b) => a - b))
        const quarantined = (await sql<{ reason: string }>`SELECT reason FROM quarantine WHERE meter_id = ${meter}`.execute(t.db)).rows.map((r) => r.reason)
        // Whichever group went first is stored whole, the other quarantined whole.
        expect([series.length, quarantined]).toEqual([3, ['index_regression', 'index_regression']])
        expect((await readingOwners(t.db, meter)).every((r) => r.householdId === before)).toBe(true)
      } finally {
        await Promise.all([one.close(), two.close(), blocker.close()])
      }
    }
  })

  it('tells whether a commit whose answer was lost committed by its token: not yet while its transaction runs, then as it ended', async () => {
    const other = await t.openAnother({ poolSize: 1 })
    try {
      for (const [end, committed] of [
        ['COMMIT', true],
        ['ROLLBACK', false],
      ] as const) {
        const token = String(1_000 + Number(committed))
        const lost = new CommitOutcomeUnknownError(token, null, new Error('the answer was lost'))
        await other.withConnection!(async (c) => {
          // The transaction as a group's: the advisory lock on its token from its start, its row with its writes.
          await c.script(`BEGIN; SELECT pg_advisory_xact_lock(${token}); INSERT INTO ingest_commit_tokens (token) VALUES (${token})`)
          expect(await lost.committed(t.db)).toBeNull()
          await c.script(end)
        })
        expect(await lost.committed(t.db)).toBe(committed)
      }
      // A transaction that had not yet written its row when it ended (its lock gone with it).
      expect(await new CommitOutcomeUnknownError('1002', null, new Error('lost')).committed(t.db)).toBe(false)
    } finally {
      await other.close()
    }
  })
})
