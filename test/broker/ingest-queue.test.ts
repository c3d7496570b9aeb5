import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { IngestBacklogError, IngestClosedError, IngestQueue } from '../../broker/ingest-queue.ts'
import type { CommitResult, MessageOutcome } from '../../services/metering/ingest-service.ts'
import type { CandidateDatum, ValidatedMessage } from '../../services/metering/ingest-validation.ts'
import { DEFAULT_INGEST_LIMITS } from '../../shared/config.ts'
import { createMetrics } from '../../shared/metrics.ts'
import { DISK_FULL_SQLSTATE, StorageAlarm } from '../../shared/db/storage.ts'
import { DatabaseAlarm } from '../../shared/db/unreachable.ts'
import { waitFor } from '../support/tools.ts'

/**
 * The queue's pacing, with a committer the test holds: which groups are handed over, and when.
 * (The queue meets the real database in the broker tests; here only its decisions are watched.)
 */

const WAIT_MS = 40

function message(meterId: string, readings: number): ValidatedMessage {
  const datums = Array.from({ length: readings }, (_, i) => ({ tsMs: i, values: {} }) as unknown as CandidateDatum)
  return { meterId, receivedAtMs: 0, payload: Buffer.alloc(0), datums, rejects: [] }
}

/** A one-datum message whose datum's tsMs is `seq`. */
function numbered(meterId: string, seq: number): ValidatedMessage {
  const datums = [{ tsMs: seq, values: {} } as unknown as CandidateDatum]
  return { meterId, receivedAtMs: 0, payload: Buffer.alloc(0), datums, rejects: [] }
}

function harness(limits: { flushReadingsMax: number; pipelineReadingsMin: number; inflightPerClientMax?: number; publishesWaitingPerClientMax?: number }) {
  const groups: Array<{ meters: string[]; startedAt: number; finish: () => void }> = []
  const queue = new IngestQueue({
    limits: { ...DEFAULT_INGEST_LIMITS, flushIntervalMs: WAIT_MS, commitsInFlightMax: 2, ...limits },
    commit: (messages) =>
      new Promise<CommitResult>((resolve) => {
        groups.push({
          meters: messages.map((m) => m.meterId),
          startedAt: performance.now(),
          // Each outcome names its message (by its first datum's tsMs), so answers can be matched to publishes.
          finish: () => resolve({ outcomes: messages.map((m) => ({ stored: [], quarantined: [], duplicates: m.datums[0]?.tsMs ?? -1 })), touched: [] }),
        })
      }),
    onCommitted: () => undefined,
    metrics: createMetrics(),
    log: pino({ level: 'silent' }),
  })
  return { queue, groups }
}

/** The queue's callback as a promise. */
function submit(queue: IngestQueue, clientKey: string, m: ValidatedMessage): Promise<MessageOutcome> {
  return new Promise((resolve, reject) => queue.enqueue(clientKey, m, (err, outcome) => (err !== null ? reject(err) : resolve(outcome!))))
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const turn = () => new Promise((r) => setImmediate(r))

describe('ingest queue pacing', () => {
  it('starts a group once its oldest message has waited flushIntervalMs, gathering what comes meanwhile', async () => {
    const { queue, groups } = harness({ flushReadingsMax: 100, pipelineReadingsMin: 50 })
    const submittedAt = performance.now()
    const answered = [submit(queue, 'a', message('a', 1))]
    await turn()
    expect(groups).toHaveLength(0)
    answered.push(submit(queue, 'b', message('b', 1)))
    await sleep(WAIT_MS * 3)
    expect(groups.map((g) => g.meters)).toEqual([['a', 'b']])
    expect(groups[0]!.startedAt - submittedAt).toBeGreaterThanOrEqual(WAIT_MS - 1)
    groups[0]!.finish()
    await Promise.all(answered)
  })

  it('starts a full group at once', async () => {
    const { queue, groups } = harness({ flushReadingsMax: 10, pipelineReadingsMin: 50 })
    const answered = submit(queue, 'a', message('a', 10))
    await turn()
    expect(groups.map((g) => g.meters)).toEqual([['a']])
    groups[0]!.finish()
    await answered
  })

  it('hands a second group over while one commits only when pipelineReadingsMin readings wait', async () => {
    const { queue, groups } = harness({ flushReadingsMax: 100, pipelineReadingsMin: 5 })
    const answered = [submit(queue, 'a', message('a', 100))]
    await turn()
    expect(groups).toHaveLength(1)

    // A small backlog waits for the commit in flight, however long it takes.
    answered.push(submit(queue, 'b', message('b', 2)), submit(queue, 'c', message('c', 2)))
    await sleep(WAIT_MS * 3)
    expect(groups).toHaveLength(1)

    // Enough readings waiting: the next group goes to the committer beside the one in flight.
    answered.push(submit(queue, 'd', message('d', 1)))
    await turn()
    expect(groups.map((g) => g.meters)).toEqual([['a'], ['b', 'c', 'd']])
    groups[0]!.finish()
    groups[1]!.finish()
    await Promise.all(answered)
  })

  it('after a commit, starts what waited during it at once (back to back under load)', async () => {
    const { queue, groups } = harness({ flushReadingsMax: 100, pipelineReadingsMin: 50 })
    const answered = [submit(queue, 'a', message('a', 100))]
    await turn()
    answered.push(submit(queue, 'b', message('b', 1)))
    await sleep(WAIT_MS * 2)
    expect(groups).toHaveLength(1)
    groups[0]!.finish()
    await answered[0]
    // No timer has had its turn yet: the group started on the commit's end, not after a wait of its own.
    await turn()
    expect(groups.map((g) => g.meters)).toEqual([['a'], ['b']])
    groups[1]!.finish()
    await Promise.all(answered)
  })
})

describe('ingest queue answers', () => {
  it('answers a closed queue at once with IngestClosedError', async () => {
    const { queue } = harness({ flushReadingsMax: 100, pipelineReadingsMin: 50 })
    await queue.close()
    const told: Array<Error | null> = []
    queue.enqueue('a', message('a', 1), (err) => told.push(err))
    expect(told).toHaveLength(1)
    expect(told[0]).toBeInstanceOf(IngestClosedError)
    await expect(submit(queue, 'a', message('a', 1))).rejects.toBeInstanceOf(IngestClosedError)
  })

  it("keeps a client's order when its callback publishes again from inside the answer (as aedes reads on)", async () => {
    const { queue, groups } = harness({ flushReadingsMax: 2, pipelineReadingsMin: 1, inflightPerClientMax: 2 })
    const COUNT = 9
    const answers: number[] = []
    const send = (seq: number): void =>
      queue.enqueue('a', numbered('a', seq), (err, outcome?: MessageOutcome) => {
        expect(err).toBeNull()
        answers.push(outcome!.duplicates)
        // An answer frees a slot: the client publishes its next message at once, re-entering the queue mid-answer.
        if (seq + 3 < COUNT) send(seq + 3)
      })
    send(0)
    send(1)
    send(2) // beyond inflightPerClientMax: waits in the client's line
    let finished = 0
    // A group that is not full starts after flushIntervalMs: wait for it rather than spin.
    for (let round = 0; answers.length < COUNT && round < 50; round++) {
      if (finished < groups.length) groups[finished++]!.finish()
      else await sleep(WAIT_MS / 4)
      await turn()
    }
    expect(answers).toEqual(Array.from({ length: COUNT }, (_, i) => i))
    await queue.drain()
  })

  it("refuses a client's publish past publishesWaitingPerClientMax waiting, and only that client's, keeping what it sent before", async () => {
    // Commits held (as while the database server is away): nothing is answered meanwhile.
    const { queue, groups } = harness({ flushReadingsMax: 100, pipelineReadingsMin: 50, inflightPerClientMax: 2, publishesWaitingPerClientMax: 3 })
    const told = new Map<string, Array<Error | null>>()
    const send = (client: string, seq: number): void =>
      queue.enqueue(client, numbered(client, seq), (err) => told.set(`${client}${seq}`, [...(told.get(`${client}${seq}`) ?? []), err]))
    for (let seq = 0; seq < 7; seq++) send('a', seq)
    send('b', 0)
    // Two admitted, three waiting: the sixth and seventh are refused at once.
    expect([...told.keys()]).toEqual(['a5', 'a6'])
    expect(told.get('a5')![0]).toBeInstanceOf(IngestBacklogError)
    expect((told.get('a5')![0] as IngestBacklogError).code).toBe('INGEST_BACKLOG')
    for (let round = 0; told.size < 8 && round < 50; round++) {
      for (const g of groups.splice(0)) g.finish()
      await sleep(WAIT_MS)
    }
    expect([...told.entries()].filter(([, errs]) => errs[0] === null).map(([k]) => k).sort()).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'b0'])
    await queue.drain()
  })

  it('forgets what of a closed connection still waits for admission, never answering it, and keeps what it admitted and what the next connection sends', async () => {
    // Commits held: the first connection's line fills (two admitted, three waiting), then it is closed.
    const { queue, groups } = harness({ flushReadingsMax: 100, pipelineReadingsMin: 50, inflightPerClientMax: 2, publishesWaitingPerClientMax: 3 })
    const told = new Map<string, Error | null>()
    const first = {}
    const next = {}
    const send = (connection: object, name: string, seq: number, client = 'a'): void =>
      queue.enqueue(client, numbered(client, seq), (err) => told.set(`${name}${seq}`, err), performance.now(), connection)
    for (let seq = 0; seq < 5; seq++) send(first, 'first', seq)
    send({}, 'b', 0, 'b')
    expect(queue.pendingReadings).toBe(6)
    expect(queue.abandon('a', next)).toBe(0)
    expect(queue.abandon('a', first)).toBe(3)
    expect(queue.abandon('a', first)).toBe(0)
    expect(queue.pendingReadings).toBe(3)
    // The next connection resends: where none of its publishes would have found room, three do again.
    for (let seq = 2; seq < 5; seq++) send(next, 'next', seq)
    expect(told.size).toBe(0)
    for (let round = 0; told.size < 6 && round < 50; round++) {
      for (const g of groups.splice(0)) g.finish()
      await sleep(WAIT_MS)
    }
    await queue.drain()
    // The two admitted before the close were committed (their answers went nowhere); the three forgotten, never answered.
    expect([...told.entries()].filter(([, err]) => err === null).map(([k]) => k).sort()).toEqual(['b0', 'first0', 'first1', 'next2', 'next3', 'next4'])
    expect(told.size).toBe(6)
    expect(queue.pendingReadings).toBe(0)
  })

  it('has no room for a client once publishesWaitingPerClientMax of it wait, and tells its reader once, when its line is down to half', async () => {
    // Commits held: two admitted, four waiting; the line is full, another client's is not.
    const { queue, groups } = harness({ flushReadingsMax: 100, pipelineReadingsMin: 50, inflightPerClientMax: 2, publishesWaitingPerClientMax: 4 })
    const answered: number[] = []
    for (let seq = 0; seq < 5; seq++) queue.enqueue('a', numbered('a', seq), () => answered.push(seq))
    expect(queue.hasRoom('a')).toBe(true)
    queue.enqueue('a', numbered('a', 5), () => answered.push(5))
    expect(queue.hasRoom('a')).toBe(false)
    expect(queue.hasRoom('b')).toBe(true)
    let told = 0
    queue.whenRoom('a', () => told++)
    await turn()
    expect(told).toBe(0)
    // The first group commits: two more admitted, two still waiting, the half of four: room again.
    await waitFor(() => groups.length === 1, 2_000, 'the first group')
    groups.shift()!.finish()
    await waitFor(() => told === 1, 2_000, 'the reader told')
    expect(queue.hasRoom('a')).toBe(true)
    for (let round = 0; answered.length < 6 && round < 50; round++) {
      for (const g of groups.splice(0)) g.finish()
      await sleep(WAIT_MS)
    }
    expect(answered).toEqual([0, 1, 2, 3, 4, 5])
    expect(told).toBe(1)
    // A line with room tells at once (in a microtask), and a client without a line has room.
    queue.whenRoom('a', () => told++)
    queue.whenRoom('c', () => told++)
    expect(told).toBe(1)
    await turn()
    expect(told).toBe(3)
    await queue.drain()
  })

  it("tells a full line's reader when a closed connection's waiting publishes are forgotten", async () => {
    const { queue, groups } = harness({ flushReadingsMax: 100, pipelineReadingsMin: 50, inflightPerClientMax: 2, publishesWaitingPerClientMax: 4 })
    const first = {}
    const answered: number[] = []
    for (let seq = 0; seq < 6; seq++) queue.enqueue('a', numbered('a', seq), () => answered.push(seq), performance.now(), first)
    let told = 0
    queue.whenRoom('a', () => told++)
    expect(queue.abandon('a', first)).toBe(4)
    expect(told).toBe(1)
    for (let round = 0; answered.length < 2 && round < 50; round++) {
      for (const g of groups.splice(0)) g.finish()
      await sleep(WAIT_MS)
    }
    await queue.drain()
    expect(answered).toEqual([0, 1])
    expect(told).toBe(1)
  })

  it('answers the rest of a group when one callback throws', async () => {
    const { queue, groups } = harness({ flushReadingsMax: 3, pipelineReadingsMin: 50 })
    const answered: string[] = []
    queue.enqueue('a', message('a', 1), () => {
      answered.push('a')
      throw new Error('a broken publisher')
    })
    queue.enqueue('b', message('b', 1), () => answered.push('b'))
    queue.enqueue('c', message('c', 1), () => answered.push('c'))
    await turn()
    expect(groups.map((g) => g.meters)).toEqual([['a', 'b', 'c']])
    groups[0]!.finish()
    await queue.drain()
    expect(answered).toEqual(['a', 'b', 'c'])
  })
})

describe('ingest queue on a full disk', () => {
  /** A committer failing with SQLSTATE 53100 (disk_full) `failures` times, then storing. */
  function fullDisk(failures: number, opts: { commitAttemptsMax?: number } = {}) {
    let attempts = 0
    const lines: Array<{ level: number; msg: string }> = []
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as { level: number; msg: string }) })
    const metrics = createMetrics()
    const storage = new StorageAlarm(log, (full) => metrics.storageFull.set(full ? 1 : 0))
    const queue = new IngestQueue({
      limits: { ...DEFAULT_INGEST_LIMITS, flushIntervalMs: 1, commitsInFlightMax: 1, commitRetryDelayMsMax: 5, commitAttemptsMax: opts.commitAttemptsMax ?? 3 },
      commit: async (messages) => {
        if (++attempts <= failures) throw Object.assign(new Error('could not extend file "base/5/1": No space left on device'), { code: DISK_FULL_SQLSTATE })
        return { outcomes: messages.map(() => ({ stored: [], quarantined: [], duplicates: 0 })), touched: [] }
      },
      onCommitted: () => undefined,
      metrics,
      log,
      storage,
    })
    return { queue, lines, metrics, storage, attempts: () => attempts }
  }

  it('holds a group past commitAttemptsMax without answering, says so once, and answers once it commits', async () => {
    const { queue, lines, metrics, storage, attempts } = fullDisk(20, { commitAttemptsMax: 3 })
    let answer: { err: Error | null } | undefined
    queue.enqueue('a', numbered('a', 1), (err) => (answer = { err }))
    await waitFor(() => attempts() >= 6, 5_000, 'retries past commitAttemptsMax')
    // Held: neither acknowledged nor refused (a refusal would disconnect the meter).
    expect(answer).toBeUndefined()
    expect(storage.full).toBe(true)
    expect((await metrics.storageFull.get()).values[0]!.value).toBe(1)
    await waitFor(() => answer !== undefined, 5_000, 'the answer once space is back')
    expect(answer!.err).toBeNull()
    expect(attempts()).toBe(21)
    expect(storage.full).toBe(false)
    expect((await metrics.storageFull.get()).values[0]!.value).toBe(0)
    // One line when it starts, one when it ends: not one per attempt.
    expect(lines.map((l) => l.msg)).toEqual([
      expect.stringMatching(/^database storage full \(no space left on device\)/),
      'database storage available again: ingest resumed',
    ])
  })

  it('gives a held group up after commitAttemptsMax once the queue is closing', async () => {
    const { queue, attempts, lines, storage } = fullDisk(Number.POSITIVE_INFINITY, { commitAttemptsMax: 3 })
    let answer: { err: Error | null } | undefined
    queue.enqueue('a', numbered('a', 1), (err) => (answer = { err }))
    await waitFor(() => attempts() >= 5, 5_000, 'retries past commitAttemptsMax')
    expect(answer).toBeUndefined()
    await queue.close()
    expect(answer!.err?.message).toMatch(/No space left on device/)
    expect(storage.full).toBe(false)
    // Not "available again": the disk is still full, ingest gave up as it closed.
    expect(lines.map((l) => l.msg).filter((m) => !m.startsWith('ingest commit failed'))).toEqual([
      expect.stringMatching(/^database storage full \(no space left on device\)/),
      'ingest closing with publishes held for lack of space: they are not acknowledged (their meters send them again)',
      'group not committed: its publishers are answered with the error',
    ])
  })
})

describe('ingest queue while the database server is away', () => {
  it('holds a group past commitAttemptsMax without answering while the server cannot be reached, says so once, and answers once it commits', async () => {
    // Stopped (57P01 under a statement), refusing connections, then starting up (57P03).
    const failures = [
      Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }),
      ...Array.from({ length: 6 }, () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })),
      Object.assign(new Error('the database system is starting up'), { code: '57P03' }),
    ]
    let attempts = 0
    const lines: Array<{ level: number; msg: string }> = []
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as { level: number; msg: string }) })
    const metrics = createMetrics()
    const database = new DatabaseAlarm(log, (down) => metrics.databaseUnreachable.set(down ? 1 : 0))
    const queue = new IngestQueue({
      limits: { ...DEFAULT_INGEST_LIMITS, flushIntervalMs: 1, commitsInFlightMax: 1, commitRetryDelayMsMax: 5, commitAttemptsMax: 3 },
      commit: async (messages) => {
        const failure = failures[attempts++]
        if (failure !== undefined) throw failure
        return { outcomes: messages.map(() => ({ stored: [], quarantined: [], duplicates: 0 })), touched: [] }
      },
      onCommitted: () => undefined,
      metrics,
      log,
      database,
    })
    let answer: { err: Error | null } | undefined
    queue.enqueue('a', numbered('a', 1), (err) => (answer = { err }))
    await waitFor(() => attempts >= 5, 5_000, 'retries past commitAttemptsMax')
    // Held: neither acknowledged nor refused (a refusal would disconnect the meter into CONNACK 3).
    expect(answer).toBeUndefined()
    expect(database.down).toBe(true)
    expect((await metrics.databaseUnreachable.get()).values[0]!.value).toBe(1)
    await waitFor(() => answer !== undefined, 5_000, 'the answer once the server is back')
    expect(answer!.err).toBeNull()
    expect(attempts).toBe(failures.length + 1)
    expect(database.down).toBe(false)
    expect((await metrics.databaseUnreachable.get()).values[0]!.value).toBe(0)
    expect(lines.map((l) => l.msg)).toEqual([expect.stringMatching(/^database unreachable: ingest holds publishes unacknowledged/), 'database reachable again: ingest resumed'])
  })

  it('gives up as before on an error the server itself answers (the meter is disconnected and resends)', async () => {
    let attempts = 0
    const queue = new IngestQueue({
      limits: { ...DEFAULT_INGEST_LIMITS, flushIntervalMs: 1, commitsInFlightMax: 1, commitRetryDelayMsMax: 5, commitAttemptsMax: 3 },
      commit: async () => {
        attempts++
        throw Object.assign(new Error('injected'), { code: 'P0001' })
      },
      onCommitted: () => undefined,
      metrics: createMetrics(),
      log: pino({ level: 'silent' }),
      database: new DatabaseAlarm(pino({ level: 'silent' })),
    })
    const answer = await new Promise<Error | null>((resolve) => queue.enqueue('a', numbered('a', 1), (err) => resolve(err)))
    expect(answer?.message).toBe('injected')
    expect(attempts).toBe(3)
  })

  it('gives a group held for the server up once the queue is closing, without commitAttemptsMax more tries', async () => {
    // A server that does not answer: each try waits out a connection's opening (server-watch.ts).
    let attempts = 0
    const lines: Array<{ level: number; msg: string }> = []
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as { level: number; msg: string }) })
    const queue = new IngestQueue({
      limits: { ...DEFAULT_INGEST_LIMITS, flushIntervalMs: 1, commitsInFlightMax: 1, commitRetryDelayMsMax: 5, commitAttemptsMax: 8 },
      commit: async () => {
        attempts++
        throw new Error('timeout expired')
      },
      onCommitted: () => undefined,
      metrics: createMetrics(),
      log,
      database: new DatabaseAlarm(log),
    })
    let answer: { err: Error | null } | undefined
    queue.enqueue('a', numbered('a', 1), (err) => (answer = { err }))
    await waitFor(() => attempts >= 3, 5_000, 'held')
    expect(answer).toBeUndefined()
    const closedAt = attempts
    await queue.close()
    expect(answer!.err?.message).toBe('timeout expired')
    expect(attempts).toBeLessThanOrEqual(closedAt + 1)
    expect(lines.map((l) => l.msg)).toContain('ingest closing with publishes held for the database: they are not acknowledged (their meters send them again)')
  })
})
