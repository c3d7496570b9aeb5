import { sql, type Kysely } from 'kysely'
import type { MqttClient } from 'mqtt'
import { afterEach, beforeEach, expect, it } from 'vitest'
import type { Database } from '../../shared/db/schema.ts'
import { egressTopic, meterReadingsTopic } from '../../shared/topics.ts'
import { connectClient, connectMeter, endClient, ownerOnlyPolicy, publishAcked, startTestBroker, subscribeCollect, waitFor, type TestBroker } from '../support/broker.ts'
import { startCommitAnswerCutter } from '../support/commit-answer-cutter.ts'
import { laneOf } from '../../broker/ingest-lanes.ts'
import { INGEST_THREAD_YOUNG_GENERATION_MB } from '../../broker/ingest-thread.ts'
import { COMMIT_PROVES_DATABASE_MS } from '../../broker/broker.ts'
import { HEALTH_PROBE_TIMEOUT_MS, openDatabase } from '../../shared/db/database.ts'
import { describeDatabases, describePostgres, holdConnection, type HeldConnection } from '../support/database.ts'
import { createOccupiedMeter, createTestHousehold, createTestMeter, createUtility, insertOccupancy, readingsOf, type TestMeter } from '../support/world.ts'
import { formatTimestamp } from '../../shared/calendar.ts'

const T0 = Date.parse('2026-10-01T00:00:00Z')
const reading = (ms: number, index: number): string => JSON.stringify({ ts: formatTimestamp(ms), values: { '1-0:1.8.0': index } })

/** Removes the trigger (and its function) a test put on readings to fail or slow its commits. */
async function dropInjectedFault(db: Kysely<Database>): Promise<void> {
  await sql`DROP TRIGGER IF EXISTS test_fault ON readings`.execute(db)
  await sql`DROP FUNCTION IF EXISTS test_fault()`.execute(db)
}

describeDatabases('ingest when the database fails or is slow', (t) => {
  let tb: TestBroker | undefined
  let meter: TestMeter
  const clients: MqttClient[] = []

  beforeEach(async () => {
    ;({ meter } = await createOccupiedMeter(t.db, new Date(T0)))
  })

  afterEach(async () => {
    for (const c of clients.splice(0)) await endClient(c)
    await tb?.close()
    tb = undefined
    await dropInjectedFault(t.db)
    await sql`DROP SEQUENCE IF EXISTS test_fault_seq`.execute(t.db)
    await sql`DROP TABLE IF EXISTS test_overlap`.execute(t.db)
  })

  /** Makes the next `failures` ingest statements fail (a sequence survives the rollbacks it causes). */
  async function injectFailures(failures: number): Promise<void> {
    await sql`CREATE SEQUENCE test_fault_seq`.execute(t.db)
    await sql.raw(`CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF nextval('test_fault_seq') <= ${failures} THEN RAISE EXCEPTION 'injected commit failure'; END IF;
        RETURN NULL;
      END $$`).execute(t.db)
    await sql`CREATE TRIGGER test_fault AFTER INSERT ON readings FOR EACH STATEMENT EXECUTE FUNCTION test_fault()`.execute(t.db)
  }

  it('retries a failed commit and acknowledges only once the datum is stored', async () => {
    tb = await startTestBroker(t.handle, { overrides: { ingest: { commitRetryDelayMsMax: 20 } } })
    await injectFailures(2)
    const client = await connectMeter(tb.url, meter)
    clients.push(client)
    await publishAcked(client, meterReadingsTopic(meter.id), reading(T0 + 900_000, 7))
    expect(await readingsOf(t.db, meter.id)).toHaveLength(1)
    expect((await tb.metrics.ingestCommitFailures.get()).values[0]!.value).toBe(2)
  })

  it('does not acknowledge a publish whose commit fails; the meter resends and the datum is stored once', async () => {
    tb = await startTestBroker(t.handle, { overrides: { ingest: { commitAttemptsMax: 2, commitRetryDelayMsMax: 20 } } })
    await injectFailures(2)
    const events: string[] = []
    const client = await connectMeter(tb.url, meter, { reconnectPeriod: 100, clean: false })
    clients.push(client)
    client.on('close', () => events.push('close'))
    const acked = new Promise<void>((resolve, reject) =>
      client.publish(meterReadingsTopic(meter.id), reading(T0 + 900_000, 7), { qos: 1 }, (err) => {
        if (err) return reject(err)
        events.push('puback')
        resolve()
      }),
    )
    await acked
    // The first connection was cut without a PUBACK; the resend on the next one was acknowledged.
    expect(events[0]).toBe('close')
    expect(events).toContain('puback')
    const rows = await readingsOf(t.db, meter.id)
    expect(rows).toHaveLength(1)
    expect(rows[0]!.values).toEqual({ '1-0:1.8.0': 7 })
  })

  it('keeps each meter’s order when commits are slow', async () => {
    tb = await startTestBroker(t.handle)
    await sql.raw(`CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_sleep(0.02 + random() * 0.03); RETURN NULL; END $$`).execute(t.db)
    await sql`CREATE TRIGGER test_fault AFTER INSERT ON readings FOR EACH STATEMENT EXECUTE FUNCTION test_fault()`.execute(t.db)
    const utility = await createUtility(t.db, 'Second')
    const meters = [meter, await createTestMeter(t.db, utility.id), await createTestMeter(t.db, utility.id)]
    const perMeter = 60
    const results = await Promise.all(
      meters.map(async (m) => {
        const client = await connectMeter(tb!.url, m)
        clients.push(client)
        const acks: number[] = []
        await Promise.all(
          Array.from({ length: perMeter }, (_, i) =>
            new Promise<void>((resolve, reject) =>
              client.publish(meterReadingsTopic(m.id), reading(T0 + (i + 1) * 60_000, 100 + i), { qos: 1 }, (err) => {
                if (err) return reject(err)
                acks.push(i)
                resolve()
              }),
            ),
          ),
        )
        return acks
      }),
    )
    for (const acks of results) expect(acks).toEqual(Array.from({ length: perMeter }, (_, i) => i))
    for (const m of meters) {
      const rows = await readingsOf(t.db, m.id)
      expect(rows.map((r) => r.values['1-0:1.8.0'])).toEqual(Array.from({ length: perMeter }, (_, i) => 100 + i))
    }
  })

  it('commits meters of different lanes side by side on PostgreSQL, each meter in its order', async () => {
    tb = await startTestBroker(t.handle)
    if (t.dialect === 'pglite') {
      // One connection in this process: one lane, one group at a time.
      expect(tb.broker.ingest.count).toBe(1)
      return
    }
    const lanes = tb.broker.ingest.count
    expect(lanes).toBe(tb.config.ingest.commitLanes)
    expect(lanes).toBeGreaterThanOrEqual(2)
    // Each group's statement notes how many ingest transactions were running at that moment.
    await sql`CREATE TABLE test_overlap (running integer NOT NULL)`.execute(t.db)
    await sql.raw(`CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO test_overlap SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND application_name LIKE 'metershare:ingest:%' AND state = 'active';
        PERFORM pg_sleep(0.15);
        RETURN NULL;
      END $$`).execute(t.db)
    await sql`CREATE TRIGGER test_fault AFTER INSERT ON readings FOR EACH STATEMENT EXECUTE FUNCTION test_fault()`.execute(t.db)
    const utility = await createUtility(t.db, 'Lanes')
    const byLane = new Map<number, TestMeter>([[laneOf(meter.id, lanes), meter]])
    while (byLane.size < 2) {
      const m = await createTestMeter(t.db, utility.id)
      byLane.set(laneOf(m.id, lanes), m)
    }
    const meters = [...byLane.values()]
    const perMeter = 20
    await Promise.all(
      meters.map(async (m) => {
        const client = await connectMeter(tb!.url, m)
        clients.push(client)
        for (let round = 0; round < 2; round++) {
          await Promise.all(
            Array.from({ length: perMeter / 2 }, (_, j) => {
              const i = round * (perMeter / 2) + j
              return publishAcked(client, meterReadingsTopic(m.id), reading(T0 + (i + 1) * 60_000, 100 + i))
            }),
          )
        }
      }),
    )
    const { rows } = await sql<{ most: number }>`SELECT max(running)::int AS most FROM test_overlap`.execute(t.db)
    expect(rows[0]!.most).toBe(2)
    for (const m of meters) {
      const stored = await readingsOf(t.db, m.id)
      expect(stored.map((r) => r.values['1-0:1.8.0'])).toEqual(Array.from({ length: perMeter }, (_, i) => 100 + i))
    }
  })

  it('reports the database up from a recent commit when a probe could not answer in time, and probes once that is old', async () => {
    // The broker's own connections: one, held below as a storm's starved event loop would hold the probe.
    const handle = t.dialect === 'pglite' ? t.handle : await t.openAnother({ poolSize: 1 })
    let offsetMs = 0
    let held: HeldConnection | undefined
    try {
      tb = await startTestBroker(handle, { deps: { clock: () => Date.now() + offsetMs } })
      const client = await connectMeter(tb.url, meter)
      clients.push(client)
      await publishAcked(client, meterReadingsTopic(meter.id), reading(T0 + 900_000, 7))
      held = await holdConnection(handle.db, 'transaction')
      expect(await tb.broker.databaseAnswers()).toBe(true)
      offsetMs = COMMIT_PROVES_DATABASE_MS + 1
      expect(await tb.broker.databaseAnswers()).toBe(false)
      held.release()
      await held.done
      expect(await tb.broker.databaseAnswers()).toBe(true)
    } finally {
      held?.release()
      await held?.done
      if (handle !== t.handle) {
        await tb?.close()
        tb = undefined
        await handle.close()
      }
    }
  }, HEALTH_PROBE_TIMEOUT_MS + 30_000)
})

describePostgres('ingest when its database connections are cut', (t) => {
  let tb: TestBroker | undefined
  let client: MqttClient | undefined

  afterEach(async () => {
    if (client !== undefined) await endClient(client)
    client = undefined
    await tb?.close()
    tb = undefined
    await dropInjectedFault(t.db)
  })

  it('acknowledges a publish whose commit lost its connection only once a new one has stored it, once', async () => {
    const { meter } = await createOccupiedMeter(t.db, new Date(T0))
    tb = await startTestBroker(t.handle, { overrides: { ingest: { commitRetryDelayMsMax: 20 } } })
    // Holds each group's transaction open long enough to cut its connection under it.
    await sql.raw(`CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$`).execute(t.db)
    await sql`CREATE TRIGGER test_fault AFTER INSERT ON readings FOR EACH STATEMENT EXECUTE FUNCTION test_fault()`.execute(t.db)
    client = await connectMeter(tb.url, meter)
    // One reading (the group's INSERT statement), then a batch large enough for COPY.
    const batch = JSON.stringify({
      readings: Array.from({ length: 48 }, (_, i) => ({ ts: formatTimestamp(T0 + (i + 2) * 900_000), values: { '1-0:1.8.0': 200 + i } })),
    })
    for (const payload of [reading(T0 + 900_000, 100), batch]) {
      let acked = false
      const ack = publishAcked(client, meterReadingsTopic(meter.id), payload).then(() => (acked = true))
      const cut = await waitFor(async () => {
        const { rows } = await sql<{ n: number }>`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND application_name LIKE 'metershare:ingest:%' AND wait_event = 'PgSleep'`.execute(t.db)
        return rows[0]!.n > 0 ? rows[0]!.n : undefined
      }, 10_000, 'a group commit to cut')
      expect(cut).toBe(1)
      expect(acked).toBe(false)
      await ack
    }
    const rows = await readingsOf(t.db, meter.id)
    expect(rows.map((r) => r.values['1-0:1.8.0'])).toEqual([100, ...Array.from({ length: 48 }, (_, i) => 200 + i)])
    expect((await tb.metrics.ingestCommitFailures.get()).values[0]!.value).toBe(2)
  })

  /**
   * A meter publishes a reading and an item for quarantine while the server commits the ingest
   * thread's next COMMIT and the thread never hears so, the server then out of reach for `outageMs`;
   * checks that the group stands, once: stored, quarantined once, forwarded live. Resolves with the
   * time the PUBACK took.
   */
  async function publishThroughLostCommitAnswer(outageMs: number): Promise<number> {
    const utility = await createUtility(t.db)
    const meter = await createTestMeter(t.db, utility.id)
    const household = await createTestHousehold(t.db)
    await insertOccupancy(t.db, meter.id, household.id, new Date(T0))
    const cutter = await startCommitAnswerCutter(t.handle.url!)
    const handle = await openDatabase({ databaseUrl: cutter.url, pgliteDir: null, pgliteFsync: false, poolSize: 2 })
    try {
      tb = await startTestBroker(handle, { overrides: { ingest: { commitRetryDelayMsMax: 50 } }, policy: { ...ownerOnlyPolicy, householdMayFollow: () => true } })
      const follower = await connectClient(tb.url, { clientId: 'follower', username: household.id, password: household.apiKey })
      const live = await subscribeCollect(follower, egressTopic('readings', meter.id))
      client = await connectMeter(tb.url, meter)
      cutter.arm('metershare:ingest:', outageMs)
      const started = Date.now()
      const batch = { readings: [{ ts: formatTimestamp(T0 + 900_000), values: { '1-0:1.8.0': 100 } }, { ts: formatTimestamp(T0 + 1_800_000), values: { '9-9:9.9.9': 1 } }] }
      await publishAcked(client, meterReadingsTopic(meter.id), JSON.stringify(batch))
      const ackMs = Date.now() - started
      expect(cutter.cut).toBe(1)
      expect((await readingsOf(t.db, meter.id)).map((r) => r.values['1-0:1.8.0'])).toEqual([100])
      const quarantined = await t.db.selectFrom('quarantine').select('reason').where('meter_id', '=', meter.id).execute()
      expect(quarantined.map((q) => q.reason)).toEqual(['unknown_obis'])
      await waitFor(() => live.messages.length >= 1, 5_000, 'the datum forwarded live')
      expect(live.messages.map((m) => (m.payload as { values: Record<string, number> }).values)).toEqual([{ '1-0:1.8.0': 100 }])
      await endClient(follower)
      return ackMs
    } finally {
      await endClient(client!)
      client = undefined
      await tb?.close()
      tb = undefined
      await handle.close()
      await cutter.close()
    }
  }

  it("takes a commit whose answer was lost for what the server says it was: stored, forwarded live and its quarantine recorded once", async () => {
    // The server answers at once: asked on a new connection, it says the transaction committed.
    await publishThroughLostCommitAnswer(0)
  })

  it("asks again, once the server is back, about a commit whose answer was lost as the server went away: stored, forwarded live and its quarantine recorded once", async () => {
    // Out of reach for 1.5 s after it committed (as in a crash after its WAL was flushed): the thread
    // can neither hear the answer nor ask about it, and acknowledges once the server says it committed.
    expect(await publishThroughLostCommitAnswer(1_500)).toBeGreaterThanOrEqual(1_500)
  })

  it('acknowledges what it commits while it closes, though the meter publishes again meanwhile', async () => {
    const utility = await createUtility(t.db)
    const meter = await createTestMeter(t.db, utility.id)
    await insertOccupancy(t.db, meter.id, (await createTestHousehold(t.db)).id, new Date(T0))
    tb = await startTestBroker(t.handle)
    // Each group's commit waits for an advisory lock this test holds on a connection of its own.
    await sql.raw(`CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_advisory_lock(4242); PERFORM pg_advisory_unlock(4242); RETURN NULL; END $$`).execute(t.db)
    await sql`CREATE TRIGGER test_fault AFTER INSERT ON readings FOR EACH STATEMENT EXECUTE FUNCTION test_fault()`.execute(t.db)
    const other = await t.openAnother({ poolSize: 1 })
    const lock = await holdConnection(
      other.db,
      'session',
      (conn) => sql`SELECT pg_advisory_lock(4242)`.execute(conn),
      (conn) => sql`SELECT pg_advisory_unlock(4242)`.execute(conn),
    )
    try {
      client = await connectMeter(tb.url, meter)
      const first = publishAcked(client, meterReadingsTopic(meter.id), reading(T0 + 900_000, 100))
      await waitFor(async () => {
        const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND application_name LIKE 'metershare:ingest:%' AND wait_event = 'advisory'`.execute(t.db)
        return rows[0]!.n > 0 ? true : undefined
      }, 10_000, 'a group commit waiting for the lock')
      // A SIGTERM: intake stops, what was received is committed. The meter, unaware, publishes again.
      const closed = tb.broker.close()
      await new Promise((r) => setTimeout(r, 300))
      client.publish(meterReadingsTopic(meter.id), reading(T0 + 1_800_000, 101), { qos: 1 })
      await new Promise((r) => setTimeout(r, 300))
      lock.release()
      // The first was committed: its PUBACK reaches the meter (the second's error had disconnected it first).
      await first
      await closed
      expect((await readingsOf(t.db, meter.id)).map((r) => r.values['1-0:1.8.0'])).toEqual([100])
    } finally {
      // The second publish is never acknowledged: a graceful end would wait for it.
      await new Promise<void>((r) => (client === undefined ? r() : client.end(true, {}, () => r())))
      client = undefined
      lock.release()
      await lock.done
      await other.close()
    }
  })

  it('acknowledges a publish whose ingest thread died mid-commit only once a new thread has stored it, once', async () => {
    const utility = await createUtility(t.db)
    const meter = await createTestMeter(t.db, utility.id)
    await insertOccupancy(t.db, meter.id, (await createTestHousehold(t.db)).id, new Date(T0))
    tb = await startTestBroker(t.handle, { overrides: { ingest: { commitRetryDelayMsMax: 20 } } })
    const thread = tb.broker.ingestThread!
    const first = thread.worker
    expect(first.resourceLimits?.maxYoungGenerationSizeMb).toBe(INGEST_THREAD_YOUNG_GENERATION_MB)
    await sql.raw(`CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$`).execute(t.db)
    await sql`CREATE TRIGGER test_fault AFTER INSERT ON readings FOR EACH STATEMENT EXECUTE FUNCTION test_fault()`.execute(t.db)
    client = await connectMeter(tb.url, meter)
    let acked = false
    const ack = publishAcked(client, meterReadingsTopic(meter.id), reading(T0 + 900_000, 100)).then(() => (acked = true))
    await waitFor(async () => {
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name LIKE 'metershare:ingest:%' AND wait_event = 'PgSleep'`.execute(t.db)
      return rows[0]!.n > 0 ? true : undefined
    }, 10_000, 'a group commit in progress')
    // As a crash would: the thread ends with its transaction open and its answer never sent.
    expect(await first.terminate()).toBe(1)
    expect(acked).toBe(false)
    await ack
    expect(thread.worker).not.toBe(first)
    expect(thread.worker.threadId).not.toBe(first.threadId)
    expect(thread.worker.resourceLimits?.maxYoungGenerationSizeMb).toBe(INGEST_THREAD_YOUNG_GENERATION_MB)
    // The new thread serves what comes next too.
    await publishAcked(client, meterReadingsTopic(meter.id), reading(T0 + 1_800_000, 101))
    const rows = await readingsOf(t.db, meter.id)
    expect(rows.map((r) => r.values['1-0:1.8.0'])).toEqual([100, 101])
    expect((await tb.metrics.ingestCommitFailures.get()).values[0]!.value).toBe(1)
  })
})
