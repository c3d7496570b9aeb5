import type { Logger } from 'pino'
import type { IngestLimits } from '../shared/config.ts'
import type { Metrics } from '../shared/metrics.ts'
import type { CommitResult, MessageOutcome } from '../services/metering/ingest-service.ts'
import type { ValidatedMessage } from '../services/metering/ingest-validation.ts'
import type { HoldAlarm } from '../shared/db/hold-alarm.ts'
import { isDiskFull, type StorageAlarm } from '../shared/db/storage.ts'
import { isDatabaseUnreachable, type DatabaseAlarm } from '../shared/db/unreachable.ts'

/**
 * The ordered ingest queue with group commit. Messages from every client go into one FIFO;
 * groups of what has accumulated (up to `flushReadingsMax`) are committed one after the other,
 * and only then are their publishers answered — in arrival order, so each client's PUBACKs
 * keep its publish order [MQTT-4.6.0-2] even though aedes runs hook calls concurrently.
 *
 * Pacing: a group starts once its oldest message has waited `flushIntervalMs` (or at once when
 * it is full). Under load a commit outlasts that wait, so what arrived during one commit starts
 * the moment it ends, back to back; under light load the wait gathers publishes that would
 * otherwise each pay a transaction (3,000 paced msg/s on PostgreSQL, back to back: 1.5 cores
 * for broker and database, p99 73–115 ms; waiting 15 ms: 0.7–1.1 cores, p99 58–76 ms). A
 * second group is handed to the committer while one commits (`commitsInFlightMax` 2, the
 * ingest thread) only when `pipelineReadingsMin` readings wait: a big backlog is worth
 * overlapping, a small one is cheaper joined to the next group.
 *
 * Bounds: a client has at most `inflightPerClientMax` messages admitted to the FIFO (the
 * rest wait in its own line, so one flooding client cannot fill a batch), and the FIFO
 * holds at most `queueReadingsMax` datums. A client's own line holds at most
 * `publishesWaitingPerClientMax`. The broker reads on from a client whose publishes wait (each TCP
 * segment that arrives lets it read one more chunk), so while commits are held nothing else bounds
 * it but the client's own window (measured with the database server stopped: 4 meters publishing
 * every 50 ms had ~200 publishes each in flight after 10 s; docs/operations.md, "If the database
 * goes away"). A reader that asks hasRoom before each publish stops reading the client at a full
 * line and is told (whenRoom) once it is down to half: the meter is slowed down by its own TCP
 * window, never cut off (meter-publishes.ts). A publish enqueued into a full line all the same is
 * refused (IngestBacklogError), which disconnects its client.
 */

type Job = {
  /** performance.now() when the message was received (its PUBACK's latency counts from here). */
  receivedAt: number
  /** performance.now() when the job entered the FIFO. */
  admittedAt: number
  clientKey: string
  message: ValidatedMessage
  weight: number
  done: IngestCallback
  /** The connection it came on (aedes' client), which abandon() matches; null when the publisher gave none. */
  connection: object | null
}

/**
 * Told once what became of a message: an error (not committed), or its outcome once committed.
 * A callback rather than a promise, and the publisher's own (aedes' `authorizePublish` callback)
 * rather than a closure around it: a broker holds thousands of publishes in flight, and each
 * object alive until the commit is heap that every young-generation collection meanwhile copies.
 */
export type IngestCallback = (err: Error | null, outcome?: MessageOutcome) => void

interface ClientLine {
  admitted: number
  waiting: Job[]
  /** A publish of it was refused for a full line (said once). */
  refused?: boolean
  /** Told once its line is down to ROOM_AGAIN_FRACTION of full (whenRoom). */
  onRoom?: Array<() => void>
}

/**
 * A line that was full has room again, for whenRoom, once it is down to this part of
 * `publishesWaitingPerClientMax` (a half: a reader stopped at a full line reads on for a while,
 * not one publish at a time).
 */
const ROOM_AGAIN_FRACTION = 0.5

export class IngestClosedError extends Error {
  readonly code = 'INGEST_CLOSED'
  constructor() {
    super('the ingest queue is closed')
  }
}

/** A client's line of publishes waiting for admission is full (`publishesWaitingPerClientMax`): refused, which disconnects it. */
export class IngestBacklogError extends Error {
  readonly code = 'INGEST_BACKLOG'
  constructor(max: number) {
    super(`more than ${max} publishes of this client wait for their commit`)
  }
}

export interface IngestQueueOptions {
  limits: Pick<
    IngestLimits,
    | 'flushReadingsMax'
    | 'flushIntervalMs'
    | 'pipelineReadingsMin'
    | 'inflightPerClientMax'
    | 'publishesWaitingPerClientMax'
    | 'queueReadingsMax'
    | 'commitAttemptsMax'
    | 'commitRetryDelayMsMax'
  > & {
    /** Groups handed to the committer before the previous one is answered (1: strictly one at a time). */
    commitsInFlightMax: number
  }
  commit: (messages: ValidatedMessage[]) => Promise<CommitResult>
  /** Called after each successful commit, before the publishers are answered. */
  onCommitted: (messages: ValidatedMessage[], result: CommitResult) => void
  metrics: Metrics
  log: Logger
  /** Told when a commit fails for lack of space and when one succeeds again (shared by a broker's lanes). */
  storage?: StorageAlarm
  /** Told when a commit fails for want of the database server and when one succeeds again (shared by a broker's lanes). */
  database?: DatabaseAlarm
}

export class IngestQueue {
  private readonly fifo: Job[] = []
  private fifoWeight = 0
  private readonly lines = new Map<string, ClientLine>()
  /** Clients with messages waiting for admission, in the order they started waiting. */
  private readonly blocked = new Set<string>()
  /** Commits handed to the database and not yet answered. */
  private inFlight = 0
  /** Batches committed (or failed) whose publishers are not answered yet. */
  private unresolved = 0
  /** Publishers are answered batch after batch, in the order the batches were formed. */
  private answered: Promise<void> = Promise.resolve()
  private timer: NodeJS.Timeout | null = null
  private closed = false
  private idleWaiters: Array<() => void> = []

  constructor(private readonly opts: IngestQueueOptions) {}

  /**
   * Tells `done` once what became of the message: synchronously with IngestClosedError when the
   * queue is closed, else once its group is committed (its outcome) or has failed for good.
   * `receivedAt` (performance.now()) starts the latency that `metershare_ingest_ack_seconds` records;
   * `connection`, when given, is what abandon() names.
   */
  enqueue(clientKey: string, message: ValidatedMessage, done: IngestCallback, receivedAt = performance.now(), connection: object | null = null): void {
    if (this.closed) return done(new IngestClosedError())
    const weight = message.deferred?.readingsEstimate ?? Math.max(1, message.datums.length + message.rejects.length)
    const job: Job = { receivedAt, admittedAt: 0, clientKey, message, weight, done, connection }
    let line = this.lines.get(clientKey)
    if (line === undefined) {
      line = { admitted: 0, waiting: [] }
      this.lines.set(clientKey, line)
    }
    if (line.waiting.length === 0 && this.canAdmit(line, job)) this.admit(line, job)
    else if (line.waiting.length >= this.opts.limits.publishesWaitingPerClientMax) {
      // Said once per line: the refusal disconnects the client, but aedes may read a few more publishes first.
      if (!line.refused) this.opts.log.warn({ clientKey, publishesWaitingPerClientMax: this.opts.limits.publishesWaitingPerClientMax }, 'publish refused: too many of its client wait for their commit (disconnecting it)')
      line.refused = true
      return done(new IngestBacklogError(this.opts.limits.publishesWaitingPerClientMax))
    } else {
      line.waiting.push(job)
      this.blocked.add(clientKey)
    }
    this.schedule()
  }

  /**
   * Whether `clientKey`'s line takes another publish now: false once `publishesWaitingPerClientMax` of
   * its publishes wait for admission, when enqueue would refuse the next. A reader that asks before
   * each publish, and stops reading the client while there is no room (whenRoom), never has one of
   * its publishes refused: the client is slowed down by its own TCP window, not disconnected.
   */
  hasRoom(clientKey: string): boolean {
    const line = this.lines.get(clientKey)
    return line === undefined || line.waiting.length < this.opts.limits.publishesWaitingPerClientMax
  }

  /**
   * Calls `resume` once `clientKey`'s line is down to ROOM_AGAIN_FRACTION of full (at once, in a
   * microtask, when it is already): the moment to read its client again.
   */
  whenRoom(clientKey: string, resume: () => void): void {
    const line = this.lines.get(clientKey)
    if (line === undefined || line.waiting.length <= this.roomAgainAt) {
      queueMicrotask(resume)
      return
    }
    ;(line.onRoom ??= []).push(resume)
  }

  private get roomAgainAt(): number {
    return Math.floor(this.opts.limits.publishesWaitingPerClientMax * ROOM_AGAIN_FRACTION)
  }

  /**
   * Forgets the publishes of `connection` still waiting in `clientKey`'s line (not yet admitted to the
   * FIFO), without answering them: the connection is gone, so no PUBACK could reach it, and its
   * publisher resends them on its next connection. Only for a persistent session, whose client must
   * resend what was not acknowledged [MQTT-4.4.0-1]. Committed all the same, they would hold the
   * line (a meter refused for a full line found it still full when it came back, and was refused
   * again) and their memory for as long as commits are held, then be stored only to be found
   * duplicates of the resends. What is admitted stays: it may already be in a group. Returns how
   * many were forgotten.
   */
  abandon(clientKey: string, connection: object): number {
    const line = this.lines.get(clientKey)
    if (line === undefined || line.waiting.length === 0) return 0
    const kept = line.waiting.filter((j) => j.connection !== connection)
    const forgotten = line.waiting.length - kept.length
    if (forgotten === 0) return 0
    line.waiting = kept
    // The next connection's refusal, if it comes to that, is its own to be said.
    line.refused = false
    if (kept.length <= this.roomAgainAt) this.tellRoom(line)
    // A line waits only behind its own admitted publishes or a full FIFO, so the queue is not idle now;
    // behind a full FIFO alone it has none admitted, and nothing else would remove it.
    if (kept.length === 0) {
      this.blocked.delete(clientKey)
      if (line.admitted === 0) this.lines.delete(clientKey)
    }
    return forgotten
  }

  get pendingReadings(): number {
    let waiting = 0
    for (const key of this.blocked) for (const j of this.lines.get(key)!.waiting) waiting += j.weight
    return this.fifoWeight + waiting
  }

  /** Commits everything submitted so far; resolves when the queue is empty. */
  async drain(): Promise<void> {
    if (this.isIdle()) return
    if (this.timer !== null) {
      clearTimeout(this.timer)
      this.timer = null
      this.flush()
    }
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
  }

  /** Refuses new messages, commits those already submitted. */
  async close(): Promise<void> {
    this.closed = true
    await this.drain()
  }

  private canAdmit(line: ClientLine, job: Job): boolean {
    if (line.admitted >= this.opts.limits.inflightPerClientMax) return false
    // An empty FIFO always takes a message, however large, so nothing can wait forever.
    return this.fifo.length === 0 || this.fifoWeight + job.weight <= this.opts.limits.queueReadingsMax
  }

  private admit(line: ClientLine, job: Job): void {
    job.admittedAt = performance.now()
    line.admitted++
    this.fifo.push(job)
    this.fifoWeight += job.weight
    // Changes, not totals: the lanes of a broker share the gauge.
    this.opts.metrics.ingestQueueReadings.inc(job.weight)
  }

  private admitWaiting(): void {
    let roomAgain: ClientLine[] | null = null
    for (const key of this.blocked) {
      const line = this.lines.get(key)!
      while (line.waiting.length > 0 && this.canAdmit(line, line.waiting[0]!)) this.admit(line, line.waiting.shift()!)
      if (line.waiting.length === 0) this.blocked.delete(key)
      if (line.onRoom !== undefined && line.waiting.length <= this.roomAgainAt) (roomAgain ??= []).push(line)
    }
    // Once the books are straight: a reader told there is room reads on, and its publishes come back here.
    if (roomAgain !== null) for (const line of roomAgain) this.tellRoom(line)
  }

  private tellRoom(line: ClientLine): void {
    const waiters = line.onRoom
    if (waiters === undefined) return
    delete line.onRoom
    for (const resume of waiters) {
      try {
        resume()
      } catch (err) {
        this.opts.log.error({ err }, 'a reader told its line has room failed')
      }
    }
  }

  private schedule(): void {
    if (this.inFlight >= this.opts.limits.commitsInFlightMax || this.fifo.length === 0) return
    const { flushReadingsMax, flushIntervalMs, pipelineReadingsMin } = this.opts.limits
    const waitedMs = performance.now() - this.fifo[0]!.admittedAt
    const start =
      this.fifoWeight >= flushReadingsMax || (this.inFlight === 0 ? waitedMs >= flushIntervalMs : this.fifoWeight >= pipelineReadingsMin)
    if (start) {
      if (this.timer !== null) {
        clearTimeout(this.timer)
        this.timer = null
      }
      this.flush()
      return
    }
    // With a commit in flight, its end calls here again; otherwise wake when the oldest has waited enough.
    if (this.inFlight === 0) {
      this.timer ??= setTimeout(() => {
        this.timer = null
        this.flush()
      }, flushIntervalMs - waitedMs)
    }
  }

  /**
   * Hands the next group to the database. Up to `commitsInFlightMax` groups may be committing at
   * once (the committer runs them one after the other, in order, so each sees the previous one's
   * data); their publishers are still answered group after group, in order.
   */
  private flush(): void {
    if (this.inFlight >= this.opts.limits.commitsInFlightMax || this.fifo.length === 0) return
    const batch: Job[] = []
    let weight = 0
    while (this.fifo.length > 0 && (batch.length === 0 || weight + this.fifo[0]!.weight <= this.opts.limits.flushReadingsMax)) {
      const job = this.fifo.shift()!
      weight += job.weight
      batch.push(job)
    }
    this.fifoWeight -= weight
    this.opts.metrics.ingestQueueReadings.dec(weight)
    this.inFlight++
    this.unresolved++
    const committed = this.commitWithRetry(batch, weight).finally(() => {
      this.inFlight--
      this.schedule()
    })
    const previous = this.answered
    this.answered = (async () => {
      const outcome = await committed
      await previous
      this.answer(batch, outcome)
    })()
  }

  private answer(batch: Job[], outcome: { result: CommitResult } | { error: Error }): void {
    if ('result' in outcome) {
      try {
        this.opts.onCommitted(batch.map((j) => j.message), outcome.result)
      } catch (err) {
        this.opts.log.error({ err }, 'post-commit handler failed')
      }
    }
    // The queue's own books first: a callback may publish again (aedes reads on) and re-enter the
    // queue, which then finds the room this group leaves.
    for (const job of batch) {
      const line = this.lines.get(job.clientKey)!
      line.admitted--
      if (line.admitted === 0 && line.waiting.length === 0) this.lines.delete(job.clientKey)
    }
    this.unresolved--
    this.admitWaiting()
    this.schedule()
    // In FIFO order: each client's answers leave in its publish order.
    if ('result' in outcome) {
      for (let i = 0; i < batch.length; i++) {
        const job = batch[i]!
        // Each at its own answer: a large group takes milliseconds to answer.
        this.opts.metrics.ingestAckSeconds.observe((performance.now() - job.receivedAt) / 1000)
        answerJob(job, null, outcome.result.outcomes[i]!, this.opts.log)
      }
    } else {
      // Not committed: no PUBACK. A broker's publishers are disconnected by the error and resend on reconnect.
      this.opts.log.warn({ err: outcome.error, messages: batch.length }, 'group not committed: its publishers are answered with the error')
      for (const job of batch) answerJob(job, outcome.error, undefined, this.opts.log)
    }
    if (this.isIdle()) {
      const waiters = this.idleWaiters
      this.idleWaiters = []
      for (const w of waiters) w()
    }
  }

  /**
   * A group that fails for a cause no number of attempts cures, only time (a full disk: SQLSTATE 53100,
   * or StorageFullError on PGlite; a database server stopped, crashed or restarting: unreachable.ts),
   * is retried every `commitRetryDelayMsMax` for as long as the cause lasts, without counting against
   * `commitAttemptsMax` and without answering its publishers: no PUBACK (nothing is durable), and no
   * error either, which would cut the meters off to reconnect and resend into the same full disk or
   * absent server (whose sign-ins fail too), every few seconds, for as long as it lasts. What a held
   * meter sends meanwhile waits in its line, unacknowledged (its keep-alive is still answered); a
   * meter that gives up on its own resends on its next connection and the datum is stored once. Once the queue is closing, a full disk counts as any other failure, so a stop is not held forever, and an unreachable server ends the group's tries at once.
   */
  private async commitWithRetry(batch: Job[], weight: number): Promise<{ result: CommitResult } | { error: Error }> {
    const messages = batch.map((j) => j.message)
    const { commitAttemptsMax, commitRetryDelayMsMax } = this.opts.limits
    /** The alarm this group is held under, if any. */
    let heldBy: HoldAlarm | undefined
    for (let attempt = 1; ; attempt++) {
      const started = process.hrtime.bigint()
      try {
        const result = await this.opts.commit(messages)
        this.opts.metrics.ingestCommitSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9)
        this.opts.metrics.ingestBatchReadings.observe(weight)
        heldBy?.release()
        return { result }
      } catch (err) {
        this.opts.metrics.ingestCommitFailures.inc()
        const alarm = this.closed ? undefined : isDiskFull(err) ? this.opts.storage : isDatabaseUnreachable(err) ? this.opts.database : undefined
        if (alarm !== undefined) {
          // Logged by the alarm: once, then at most once a minute, not once per attempt of every group.
          if (heldBy !== alarm) heldBy?.release()
          alarm.raise(err, heldBy !== alarm, this.pendingReadings + weight, commitRetryDelayMsMax)
          heldBy = alarm
          attempt = 0
          await sleep(commitRetryDelayMsMax)
          // Closing meanwhile: a server that cannot be reached is not tried again (below).
          if (!(this.closed && alarm === this.opts.database)) continue
        }
        // Closing: given up (the cause may last); otherwise the cause is over, and this is another failure.
        heldBy?.release(this.closed)
        heldBy = undefined
        // Closing, a server that cannot be reached is not tried again: each try can wait a connection's
        // opening (connectTimeoutMs, server-watch.ts) on a server that does not answer, and 8 of them
        // would outlast a supervisor's stop timeout (Docker's 10 s). Its meters resend to the next process.
        const last = attempt >= commitAttemptsMax || (this.closed && isDatabaseUnreachable(err))
        this.opts.log.warn({ err, attempt, messages: batch.length, willRetry: !last }, 'ingest commit failed')
        if (last) return { error: err as Error }
        await sleep(Math.min(commitRetryDelayMsMax, 10 * 2 ** attempt))
      }
    }
  }

  private isIdle(): boolean {
    return this.inFlight === 0 && this.unresolved === 0 && this.fifo.length === 0 && this.blocked.size === 0
  }
}

/** A publisher's callback throwing must not leave the rest of its group unanswered. */
function answerJob(job: Job, err: Error | null, outcome: MessageOutcome | undefined, log: Logger): void {
  try {
    job.done(err, outcome)
  } catch (e) {
    log.error({ err: e }, 'ingest callback failed')
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
