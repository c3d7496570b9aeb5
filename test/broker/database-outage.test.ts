import type { MqttClient } from 'mqtt'
import { sql } from 'kysely'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { openDatabase, type DatabaseHandle } from '../../shared/db/database.ts'
import { migrateToLatest } from '../../shared/db/migrator.ts'
import { formatTimestamp } from '../../shared/calendar.ts'
import { CommitOutcomeUnknownError, CommitTokens, inScriptedTransaction } from '../../services/metering/ingest-repository.ts'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { connectMeter, endClient, startTestBroker, waitFor, type TestBroker } from '../support/broker.ts'
import { describePrivatePostgres } from '../support/private-postgres.ts'
import { createTestHousehold, createTestMeter, createUtility, insertOccupancy, quarantineOf, readingsOf, type TestMeter } from '../support/world.ts'

/**
 * The PostgreSQL server itself goes away while meters publish QoS 1, and comes back: stopped
 * (`pg_ctl stop -m fast`: sessions terminated, a checkpoint) for a while, or crashed (`-m
 * immediate`: crash recovery at the next start). A real broker on a socket, real MQTT.js meters,
 * a private server of this file's own (the shared one is never stopped).
 */
const T0 = Date.parse('2026-10-01T00:00:00Z')
/** The i-th reading of a meter: a minute apart, its index growing. */
const reading = (i: number): string => JSON.stringify({ ts: formatTimestamp(T0 + i * 60_000), values: { '1-0:1.8.0': 1_000 + i } })
/** How long the server stays away in the stop test, and how often each meter publishes. */
const OUTAGE_MS = 10_000
const PUBLISH_EVERY_MS = 50
const METERS = 4
const RECOVERY_MS_MAX = 60_000

/** A meter publishing QoS 1 on its own timer, keeping track of what was acknowledged. */
interface PublishingMeter {
  meter: TestMeter
  client: MqttClient
  /** The readings acknowledged (their numbers). */
  acked: Set<number>
  sent: number
  closes: number
  /** Stops the timer; what is unacknowledged is still published again if its client fails it. */
  stop(): void
  /** Before its client is ended: a publish failed from then on is not published again. */
  ending: boolean
}

async function startPublishing(url: string, meter: TestMeter): Promise<PublishingMeter> {
  // A device's session: what is in flight is resent on the next connection (MQTT.js keeps it).
  const client = await connectMeter(url, meter, { clean: false, reconnectPeriod: 300 })
  const m: PublishingMeter = { meter, client, acked: new Set(), sent: 0, closes: 0, ending: false, stop: () => clearInterval(timer) }
  client.on('close', () => m.closes++)
  // MQTT.js fails ("Connection closed") and forgets a publish made while it resends its session's
  // unacknowledged ones, if the connection closes meanwhile (its store-processing queue): the
  // datum never reached it, so the device publishes it again.
  const publish = (n: number): void => {
    client.publish(meterReadingsTopic(meter.id), reading(n), { qos: 1 }, (err) => {
      if (err === undefined || err === null) m.acked.add(n)
      else if (!m.ending) setTimeout(() => publish(n), PUBLISH_EVERY_MS)
    })
  }
  const timer = setInterval(() => publish(++m.sent), PUBLISH_EVERY_MS)
  return m
}

const ackedTotal = (meters: PublishingMeter[]): number => meters.reduce((n, m) => n + m.acked.size, 0)

describePrivatePostgres('ingest while the database server goes away and comes back', (server) => {
  let handle: DatabaseHandle
  let tb: TestBroker | undefined
  let meters: PublishingMeter[] = []

  beforeAll(async () => {
    handle = await openDatabase({ databaseUrl: server().url, pgliteDir: null, pgliteFsync: false, poolSize: 5 })
    await migrateToLatest(handle.db)
  }, 60_000)

  afterEach(async () => {
    for (const m of meters) {
      m.stop()
      m.ending = true
    }
    for (const m of meters) await endClient(m.client)
    meters = []
    await tb?.close()
    tb = undefined
    if (!server().running) await server().start()
  })

  afterAll(async () => {
    await handle?.close()
  })

  async function meterWorld(count: number): Promise<TestMeter[]> {
    const utility = await createUtility(handle.db)
    const made: TestMeter[] = []
    for (let i = 0; i < count; i++) {
      const m = await createTestMeter(handle.db, utility.id)
      await insertOccupancy(handle.db, m.id, (await createTestHousehold(handle.db)).id, new Date(T0))
      made.push(m)
    }
    return made
  }

  /** Stops publishing, then waits until every meter's every reading is acknowledged. */
  async function finish(): Promise<void> {
    for (const m of meters) m.stop()
    await waitFor(() => meters.every((m) => m.acked.size === m.sent), RECOVERY_MS_MAX, 'every reading acknowledged')
  }

  /** Every reading of every meter stored once, with its values; nothing quarantined. */
  async function expectStoredOnce(): Promise<void> {
    for (const m of meters) {
      const rows = await readingsOf(handle.db, m.meter.id)
      expect(rows.map((r) => r.values['1-0:1.8.0'])).toEqual(Array.from({ length: m.sent }, (_, i) => 1_001 + i))
      expect(await quarantineOf(handle.db, m.meter.id)).toEqual([])
    }
  }

  it('holds the meters’ publishes unacknowledged and their connections open while the server is stopped, and stores each once when it is back', async () => {
    tb = await startTestBroker(handle)
    const broker = tb.broker
    for (const m of await meterWorld(METERS)) meters.push(await startPublishing(tb.url, m))
    await waitFor(() => meters.every((m) => m.acked.size >= 10), 10_000, 'meters publishing')

    await server().stop('fast')
    const stoppedAt = Date.now()
    // What was committed before the stop may still be answered for a moment; then nothing is.
    await waitFor(async () => (await tb!.metrics.databaseUnreachable.get()).values[0]?.value === 1, 10_000, 'ingest held')
    // PUBACKs of groups committed before the stop may still be on their way for a moment.
    await new Promise((r) => setTimeout(r, 1_000))
    const ackedWhenHeld = ackedTotal(meters)
    let pendingMax = 0
    let heapMaxBytes = 0
    const heapBefore = process.memoryUsage().heapUsed
    while (Date.now() - stoppedAt < OUTAGE_MS) {
      pendingMax = Math.max(pendingMax, broker.ingest.pendingReadings)
      heapMaxBytes = Math.max(heapMaxBytes, process.memoryUsage().heapUsed)
      await new Promise((r) => setTimeout(r, 200))
    }
    // Nothing acknowledged while nothing can be committed; no meter cut off.
    expect(ackedTotal(meters)).toBe(ackedWhenHeld)
    expect(meters.map((m) => m.closes)).toEqual(meters.map(() => 0))
    expect(await broker.databaseAnswers()).toBe(false)
    const sentInOutage = meters.reduce((n, m) => n + m.sent, 0) - ackedWhenHeld

    const startedAt = Date.now()
    await server().start()
    await waitFor(() => ackedTotal(meters) > ackedWhenHeld, RECOVERY_MS_MAX, 'acknowledgements again')
    const resumedMs = Date.now() - startedAt
    await finish()
    await expectStoredOnce()
    expect(meters.map((m) => m.closes)).toEqual(meters.map(() => 0))
    expect((await tb.metrics.databaseUnreachable.get()).values[0]!.value).toBe(0)
    expect(await broker.databaseAnswers()).toBe(true)
    // The broker's LISTEN connection (credentials, here) is open again by itself.
    await waitFor(
      async () => (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE '%:listen'`.execute(handle.db)).rows[0]!.n >= 1,
      RECOVERY_MS_MAX,
      'the LISTEN connection re-opened',
    )
    console.info(
      `database stopped ${OUTAGE_MS} ms under ${METERS} meters: ${sentInOutage} publishes held unacknowledged, at most ${pendingMax} readings waiting in the ingest queue, ` +
        `heap +${((heapMaxBytes - heapBefore) / 1024 / 1024).toFixed(1)} MB at most; first acknowledgement ${resumedMs} ms after pg_ctl start returned`,
    )
  }, 120_000)

  it('holds the meters’ publishes unacknowledged while the server does not answer (SIGSTOP), and stores each once when it answers again', async () => {
    // The broker's own handle, with short waits (its ingest thread's lanes take them too).
    const waits = { connectTimeoutMs: 1_000, answerWaitMs: 1_000 }
    const brokerHandle = await openDatabase({ databaseUrl: server().url, pgliteDir: null, pgliteFsync: false, poolSize: 5, serverWait: waits })
    try {
      tb = await startTestBroker(brokerHandle)
      const broker = tb.broker
      for (const m of await meterWorld(METERS)) meters.push(await startPublishing(tb.url, m))
      await waitFor(() => meters.every((m) => m.acked.size >= 10), 10_000, 'meters publishing')

      // Commits in flight as it freezes: their connections wait for answers that do not come.
      server().freeze()
      const frozenAt = Date.now()
      await waitFor(async () => (await tb!.metrics.databaseUnreachable.get()).values[0]?.value === 1, 30_000, 'ingest held')
      const heldMs = Date.now() - frozenAt
      await new Promise((r) => setTimeout(r, 1_000))
      const ackedWhenHeld = ackedTotal(meters)
      while (Date.now() - frozenAt < OUTAGE_MS / 2) await new Promise((r) => setTimeout(r, 200))
      expect(ackedTotal(meters)).toBe(ackedWhenHeld)
      expect(meters.map((m) => m.closes)).toEqual(meters.map(() => 0))
      expect(await broker.databaseAnswers()).toBe(false)
      const sentMeanwhile = meters.reduce((n, m) => n + m.sent, 0) - ackedWhenHeld

      const thawedAt = Date.now()
      server().thaw()
      await waitFor(() => ackedTotal(meters) > ackedWhenHeld, RECOVERY_MS_MAX, 'acknowledgements again')
      const resumedMs = Date.now() - thawedAt
      await finish()
      await expectStoredOnce()
      expect(meters.map((m) => m.closes)).toEqual(meters.map(() => 0))
      expect((await tb.metrics.databaseUnreachable.get()).values[0]!.value).toBe(0)
      console.info(
        `database frozen (SIGSTOP) ${OUTAGE_MS / 2} ms under ${METERS} meters: ingest held ${heldMs} ms after the freeze, ${sentMeanwhile} publishes held unacknowledged; ` +
          `first acknowledgement ${resumedMs} ms after SIGCONT`,
      )
    } finally {
      server().thaw()
      for (const m of meters) m.stop()
      for (const m of meters) await endClient(m.client)
      meters = []
      await tb?.close()
      tb = undefined
      await brokerHandle.close()
    }
  }, 120_000)

  it('reads no more of a meter that sends past publishesWaitingPerClientMax while held, keeps it connected, and stores its every reading once when the server is back', async () => {
    const admittedMax = 10
    const waitingMax = 20
    tb = await startTestBroker(handle, { overrides: { ingest: { inflightPerClientMax: admittedMax, publishesWaitingPerClientMax: waitingMax } } })
    const broker = tb.broker
    // A meter without a window of its own: MQTT.js sends every publish at once, acknowledged or not.
    for (const m of await meterWorld(1)) meters.push(await startPublishing(tb.url, m))
    await waitFor(() => meters[0]!.acked.size >= 10, 10_000, 'the meter publishing')
    await server().stop('fast')
    let pendingMax = 0
    const stoppedAt = Date.now()
    while (Date.now() - stoppedAt < OUTAGE_MS / 2) {
      pendingMax = Math.max(pendingMax, broker.ingest.pendingReadings)
      await new Promise((r) => setTimeout(r, 50))
    }
    const ackedWhenBack = meters[0]!.acked.size
    const sentWhenBack = meters[0]!.sent
    // It sent far more than its line holds; the broker held no more of it than the line, read
    // nothing further (its TCP window slows it down), and neither refused it nor cut it off.
    expect(sentWhenBack - ackedWhenBack).toBeGreaterThan(2 * (admittedMax + waitingMax))
    expect(pendingMax).toBeGreaterThan(0)
    expect(pendingMax).toBeLessThanOrEqual(admittedMax + waitingMax)
    expect(meters[0]!.closes).toBe(0)
    await server().start()
    await finish()
    await expectStoredOnce()
    expect(meters[0]!.closes).toBe(0)
    console.info(
      `database stopped ${OUTAGE_MS / 2} ms under a meter sending without a window (line ${admittedMax} admitted + ${waitingMax} waiting): ` +
        `${sentWhenBack - ackedWhenBack} publishes unacknowledged, at most ${pendingMax} held by the broker, connection kept`,
    )
  }, 120_000)

  it('keeps every datum it acknowledged before the server crashed, and stores each once after crash recovery', async () => {
    tb = await startTestBroker(handle)
    for (const m of await meterWorld(METERS)) meters.push(await startPublishing(tb.url, m))
    await waitFor(() => meters.every((m) => m.acked.size >= 20), 10_000, 'meters publishing')
    // A crash in the middle of the traffic: no checkpoint, sessions gone; the WAL replayed at the start.
    await server().stop('immediate')
    const ackedBeforeCrash = meters.map((m) => [...m.acked])
    await new Promise((r) => setTimeout(r, 2_000))
    await server().start()
    for (const [k, m] of meters.entries()) {
      const stored = new Set((await readingsOf(handle.db, m.meter.id)).map((r) => r.values['1-0:1.8.0']! - 1_000))
      expect(ackedBeforeCrash[k]!.filter((n) => !stored.has(n))).toEqual([])
    }
    await finish()
    await expectStoredOnce()
  }, 120_000)

  it('takes a group whose transaction a crash undid for not committed, though the crash hands its transaction id to one that commits', async () => {
    const [meter] = await meterWorld(1)
    let xid = ''
    const attempt = handle.withConnection!((c) =>
      inScriptedTransaction(c, handle.db, new CommitTokens(), async (group) => {
        await group.read([], [])
        xid = ((await c.script('SELECT pg_current_xact_id()::text AS xid'))[0]![0] as { xid: string }).xid
        // Nothing of the transaction is in the WAL yet: after crash recovery the server hands its id out again.
        await server().stop('immediate')
        await server().start()
        const other = await openDatabase({ databaseUrl: server().url, pgliteDir: null, pgliteFsync: false, poolSize: 1 })
        try {
          for (let i = 0; i < 1_000; i++) {
            const { rows } = await other.db.transaction().execute((trx) => sql<{ xid: string }>`SELECT pg_current_xact_id()::text AS xid`.execute(trx))
            if (BigInt(rows[0]!.xid) >= BigInt(xid)) break
          }
          // The trap: asked by its id, the server says the undone transaction committed.
          expect((await sql<{ s: string }>`SELECT pg_xact_status(${xid}::xid8) AS s`.execute(other.db)).rows[0]!.s).toBe('committed')
        } finally {
          await other.close()
        }
        return group.write([{ meterId: meter!.id, tsMs: T0 + 60_000, householdId: null, values: { '1-0:1.8.0': 1_001 } }], [], [])
      }),
    )
    const lost = await attempt.then(
      () => null,
      (err: unknown) => err,
    )
    expect(lost).toBeInstanceOf(CommitOutcomeUnknownError)
    expect(await (lost as CommitOutcomeUnknownError<unknown>).committed(handle.db)).toBe(false)
    expect(await readingsOf(handle.db, meter!.id)).toEqual([])
  }, 120_000)
})
