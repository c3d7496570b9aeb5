import type { Aedes } from 'aedes'
import type { Logger } from 'pino'
import { formatTimestamp } from '../shared/calendar.ts'
import { egressTopic, meterStatusTopic } from '../shared/topics.ts'
import type { DailyDatum, Granularity, LoadCurveDatum, MeterStatusMessage } from '../shared/wire.ts'
import type { StoredDatum } from '../services/metering/ingest-service.ts'
import type { QuarantineItem } from '../services/metering/ingest-validation.ts'
import type { EgressInterest } from './egress-interest.ts'

/**
 * What the broker publishes after a commit: each accepted datum on `readings/{meterId}`,
 * each completed day on `daily/{meterId}`, and each quarantined item on the meter's status
 * topic. Who receives a datum is decided per subscriber in authorizeForward, from the
 * datum's description kept beside its payload (in-process) or read back from the payload.
 */

/** What authorizeForward needs to know about an egress datum. */
export interface EgressMeta {
  meterId: string
  granularity: Granularity
  /** load_curve: the datum's timestamp, epoch ms. */
  ts?: number
  /** daily: the local day. */
  day?: string
  /** The owning household when known (always, for datums published by this process). */
  householdId?: string
}

/** The release decisions the broker asks for; the consent service's in-memory view implements them. */
export interface EgressPolicy {
  /** The owning household's id when the datum is released to this recipient now, else null. */
  releasedTo(recipientPartyId: string, datum: EgressMeta, nowMs: number): string | null
  householdOwns(householdId: string, datum: EgressMeta, nowMs: number): boolean
  householdMayFollow(householdId: string, meterId: string, nowMs: number): boolean
  /** Resolves once every change to the facts heard so far decides (the release view's queue); absent: at once. */
  settled?(): Promise<void>
}

/** Counts what was released, per recipient, household, meter, day and channel. */
export interface ReleaseRecorder {
  record(recipientId: string, householdId: string, meterId: string, day: string, channel: 'mqtt' | 'http', datums: number): void
}

const metaByPayload = new WeakMap<Buffer, EgressMeta>()

/** The description noted beside this payload in this process, if any (not parsed from it). */
export function notedEgressMeta(payload: unknown): EgressMeta | undefined {
  return Buffer.isBuffer(payload) ? metaByPayload.get(payload) : undefined
}

/** Notes a datum's description beside a payload that came back from Redis decoded anew. */
export function noteEgressMeta(payload: unknown, meta: EgressMeta): void {
  if (Buffer.isBuffer(payload)) metaByPayload.set(payload, meta)
}

/** The datum a payload describes: from this process's own note, or parsed from the payload. */
export function egressMetaOf(payload: Buffer, granularity: Granularity): EgressMeta | null {
  const known = metaByPayload.get(payload)
  if (known !== undefined) return known
  try {
    const doc = JSON.parse(payload.toString('utf8')) as { meterId?: unknown; granularity?: unknown; ts?: unknown; day?: unknown }
    if (typeof doc.meterId !== 'string' || doc.granularity !== granularity) return null
    if (granularity === 'load_curve' && typeof doc.ts === 'string') {
      const ts = Date.parse(doc.ts)
      return Number.isNaN(ts) ? null : { meterId: doc.meterId, granularity, ts }
    }
    if (granularity === 'daily' && typeof doc.day === 'string') return { meterId: doc.meterId, granularity, day: doc.day }
    return null
  } catch {
    return null
  }
}

/** The field under which a datum's description crosses to the other brokers beside its publication; never sent to a client. */
const EGRESS_META_FIELD = 'metershareEgressMeta'

type EmittedMessage = { payload?: unknown; [EGRESS_META_FIELD]?: EgressMeta }

interface CoupledEmitter {
  emit(msg: EmittedMessage, done?: (err?: Error) => void): unknown
  /** mqemitter-redis: delivers a publication that came from Redis to this process's listeners. */
  _emit?(msg: EmittedMessage, done?: (err?: Error) => void): unknown
}

/**
 * Coupled brokers hear every publication, their own too, back from Redis as a payload decoded anew,
 * so the description noted beside the payload in the publishing process was lost on the way: a
 * daily datum then reached the subscribers of every broker without its owner, which each broker took
 * from its own release view. That view may not have heard yet of the occupancy change that made the
 * day due (each hears it from PostgreSQL on its own), and withheld the day from its subscribers for
 * good. The description now travels with the publication (Redis is ours: its word is trusted) and is
 * noted beside the decoded payload, as for a datum published here.
 */
export function carryEgressMetaThrough(mq: unknown): void {
  const emitter = mq as CoupledEmitter
  if (typeof emitter._emit !== 'function') return
  const emit = emitter.emit.bind(emitter)
  const deliver = emitter._emit.bind(emitter)
  emitter.emit = (msg, done) => {
    const meta = notedEgressMeta(msg.payload)
    return emit(meta === undefined ? msg : { ...msg, [EGRESS_META_FIELD]: meta }, done)
  }
  emitter._emit = (msg, done) => {
    const carried = msg[EGRESS_META_FIELD]
    if (carried !== undefined) {
      delete msg[EGRESS_META_FIELD]
      noteEgressMeta(msg.payload, carried)
    }
    return deliver(msg, done)
  }
}

/**
 * Daily datums remembered as last published, per (meter, household, day): a day is found complete
 * after each commit that could complete it, and two commits of one meter close together both find
 * it, with the same values. Published again only when its values changed (late data).
 */
export const DAILY_PUBLISHED_REMEMBERED_MAX = 50_000

/** Longest a stopping broker waits for its egress publications to be handed on (to Redis, with several brokers). */
export const EGRESS_DRAIN_MS_MAX = 5_000

/**
 * Egress publications handed to aedes at once; the others wait in this class's queue, in order. Below
 * the emitter's concurrency (AEDES_EMITTER_CONCURRENCY), past which mqemitter queues publications in
 * an array taken from with `shift()`, a cost that grows with its length, and completes them
 * recursively: with every datum of a catch-up storm handed over at once (100,000 queued), forwarding
 * fell to ~100 datums/s and stalled the event loop, and when the last subscriber left, the
 * publications completing at once overflowed the stack and killed the process. High enough to keep
 * the hand-over as quick as before (with 64, a persistent session reconnecting just after a burst met
 * datums of it still being handed on, and was sent some twice).
 */
export const EGRESS_PUBLISHES_IN_FLIGHT_MAX = 512
/** The broker's emitter runs this many publications at once (aedes' `concurrency`, 100 by default). */
export const AEDES_EMITTER_CONCURRENCY = 1_024
/**
 * Egress publications waiting to be handed to aedes, at most. Past it the oldest waiting is not
 * published live (`metershare_egress_dropped_total` counts them, as it counts publications aedes could
 * not complete, Redis away; the log says so once a minute): the
 * datum is stored, and recipients find it in the pull API. So a storm that stores faster than the
 * subscribers take grows no queue without bound, and never slows the meters' acknowledgements.
 */
export const EGRESS_QUEUE_MAX = 200_000
const EGRESS_DROP_LOG_INTERVAL_MS = 60_000

interface Publication {
  topic: string
  payload: Buffer
}

/** A FIFO of pending publications: amortised O(1) at both ends (an array with a moving head, compacted as it empties). */
class PublicationQueue {
  private items: Array<Publication | undefined> = []
  private head = 0

  get length(): number {
    return this.items.length - this.head
  }

  push(item: Publication): void {
    this.items.push(item)
  }

  clear(): void {
    this.items = []
    this.head = 0
  }

  shift(): Publication | undefined {
    if (this.head === this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head++] = undefined
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head >= 1_024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }
}

/** What the egress reports to /metrics. */
export interface EgressMetrics {
  egressQueued: { set(value: number): void }
  egressDropped: { inc(value?: number): void }
}

export class Egress {
  /** The payload last published for each (meter, household, day), oldest first. */
  private readonly lastDaily = new Map<string, string>()
  /** Daily datums complete before their day is over, by (meter, household, day), and when to publish them. */
  private readonly heldDaily = new Map<string, DailyDatum & { householdId: string }>()
  private heldTimer: NodeJS.Timeout | null = null
  private dayOver: { dayEndMs(day: string): number; clock(): number } | null = null
  /** Publications handed to aedes and not completed, those waiting for their turn, and who waits for there to be none. */
  private inFlight = 0
  private readonly waiting = new PublicationQueue()
  private pumping = false
  private closed = false
  private readonly idle: Array<() => void> = []
  private dropped = 0
  private lastDropLogMs = -Infinity
  private lastFailLogMs = -Infinity
  private failedSinceLog = 0

  constructor(
    private readonly aedes: Aedes,
    private readonly log: Logger,
    /** Whether anyone could receive a topic; datums nobody subscribes to are not published. */
    readonly interest: EgressInterest,
    private readonly metrics: EgressMetrics | null = null,
    /** EGRESS_QUEUE_MAX, but for tests. */
    private readonly queueMax = EGRESS_QUEUE_MAX,
  ) {}

  publishReadings(stored: StoredDatum[]): void {
    for (const s of stored) {
      // Nobody's data is released to nobody: not even published.
      if (s.householdId === null || !this.interest.wants('readings', s.meterId)) continue
      const body: LoadCurveDatum = { meterId: s.meterId, ts: formatTimestamp(s.tsMs), granularity: 'load_curve', values: s.values }
      const payload = Buffer.from(JSON.stringify(body))
      metaByPayload.set(payload, { meterId: s.meterId, granularity: 'load_curve', ts: s.tsMs, householdId: s.householdId })
      this.publish(egressTopic('readings', s.meterId), payload)
    }
  }

  /**
   * Holds from now on each daily datum whose day is not over by `clock` (its end, `dayEndMs`, still to
   * come) until that end, then publishes it with the latest values given for it meanwhile. A day is
   * complete once its meter sent a datum stamped at its end, which a meter whose clock is fast sends
   * early (up to the future tolerance): published then, it went out before the day was over, while the
   * pull API releases it only after (found by probing: 4.5 minutes early).
   */
  holdDaysUntilOver(dayEndMs: (day: string) => number, clock: () => number): void {
    this.dayOver = { dayEndMs, clock }
  }

  publishDaily(datums: Array<DailyDatum & { householdId: string }>): void {
    const now = this.dayOver?.clock() ?? 0
    for (const d of datums) {
      if (!this.interest.wants('daily', d.meterId)) continue
      const key = `${d.meterId}\u0000${d.householdId}\u0000${d.day}`
      this.heldDaily.delete(key)
      if (this.dayOver !== null && this.dayOver.dayEndMs(d.day) > now) {
        // One a (meter, household, day), held at most the future tolerance: ts further ahead is quarantined.
        this.heldDaily.set(key, d)
        continue
      }
      const body: DailyDatum = { meterId: d.meterId, day: d.day, granularity: 'daily', values: d.values }
      const text = JSON.stringify(body)
      if (this.lastDaily.get(key) === text) continue
      this.lastDaily.delete(key)
      if (this.lastDaily.size >= DAILY_PUBLISHED_REMEMBERED_MAX) this.lastDaily.delete(this.lastDaily.keys().next().value!)
      this.lastDaily.set(key, text)
      const payload = Buffer.from(text)
      metaByPayload.set(payload, { meterId: d.meterId, granularity: 'daily', day: d.day, householdId: d.householdId })
      this.publish(egressTopic('daily', d.meterId), payload)
    }
    this.armHeldDaily()
  }

  /** Publishes the held days at the earliest of their ends. */
  private armHeldDaily(): void {
    const dayOver = this.dayOver
    if (dayOver === null || this.heldTimer !== null || this.heldDaily.size === 0 || this.closed) return
    let earliest = Infinity
    for (const d of this.heldDaily.values()) earliest = Math.min(earliest, dayOver.dayEndMs(d.day))
    this.heldTimer = setTimeout(() => {
      this.heldTimer = null
      const now = dayOver.clock()
      this.publishDaily([...this.heldDaily.values()].filter((d) => dayOver.dayEndMs(d.day) <= now))
      this.armHeldDaily()
    }, Math.max(1, earliest - dayOver.clock()))
    this.heldTimer.unref()
  }

  publishStatus(items: QuarantineItem[]): void {
    for (const q of items) {
      // Said to the meter only if it listens (a meter flushing bad data would otherwise fill the queue).
      if (!this.interest.wants('status', q.meterId)) continue
      const body: MeterStatusMessage = {
        status: 'quarantined',
        reason: q.reason,
        detail: q.detail,
        ...(q.tsMs !== null ? { ts: formatTimestamp(q.tsMs) } : {}),
        receivedAt: formatTimestamp(q.receivedAtMs),
      }
      this.publish(meterStatusTopic(q.meterId), Buffer.from(JSON.stringify(body)))
    }
  }

  /**
   * Resolves once every publication made so far has been handed on (at most EGRESS_DRAIN_MS_MAX): a
   * stopping broker waits for it before it closes the emitter, or the datums it acknowledged last
   * would never reach the subscribers of the other brokers.
   */
  drained(): Promise<void> {
    if (this.inFlight === 0 && this.waiting.length === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, EGRESS_DRAIN_MS_MAX)
      this.idle.push(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  /** Publications waiting for their turn (not yet handed to aedes). */
  get queued(): number {
    return this.waiting.length
  }

  /**
   * Publishes nothing more (the broker is closing aedes): what still waits is counted as dropped and
   * logged once, rather than handed, one by one, to a closed emitter.
   */
  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.heldTimer !== null) clearTimeout(this.heldTimer)
    const left = this.waiting.length + this.heldDaily.size
    this.heldDaily.clear()
    this.waiting.clear()
    this.metrics?.egressQueued.set(0)
    if (left > 0) {
      this.countDropped(left)
      this.log.warn({ notPublished: left }, 'broker closing: egress datums still waiting are not published live (they are stored, and in the pull API)')
    }
  }

  private publish(topic: string, payload: Buffer): void {
    if (this.closed) return this.countDropped(1)
    if (this.waiting.length >= this.queueMax) {
      this.waiting.shift()
      this.countDropped(1)
      this.logDropped()
    }
    this.waiting.push({ topic, payload })
    this.pump()
  }

  /**
   * Hands waiting publications to aedes while fewer than EGRESS_PUBLISHES_IN_FLIGHT_MAX are in flight.
   * A loop, not a recursion: a publication nobody receives completes within `aedes.publish`, and its
   * completion then only counts down, for this loop to go on.
   */
  private pump(): void {
    if (this.pumping) return
    this.pumping = true
    try {
      while (this.inFlight < EGRESS_PUBLISHES_IN_FLIGHT_MAX) {
        const next = this.waiting.shift()
        if (next === undefined) break
        this.inFlight++
        this.aedes.publish({ cmd: 'publish', topic: next.topic, payload: next.payload, qos: 1, retain: false, dup: false }, (err) => {
          this.inFlight--
          if (err && !this.closed) this.publishFailed(err)
          if (this.inFlight === 0 && this.waiting.length === 0) for (const wake of this.idle.splice(0)) wake()
          else this.pump()
        })
      }
    } finally {
      this.pumping = false
      this.metrics?.egressQueued.set(this.waiting.length)
    }
  }

  private countDropped(n: number): void {
    this.dropped += n
    this.metrics?.egressDropped.inc(n)
  }

  /**
   * A publication aedes could not complete (with Redis away, its emitter or the offline sessions' queue
   * fail): the datum did not reach the subscribers, on this broker nor the others. Counted as dropped and
   * logged once an EGRESS_DROP_LOG_INTERVAL_MS with the count (found by probing: a line per datum, 52 in
   * 7 ms, and the counter said 0).
   */
  private publishFailed(err: Error): void {
    this.countDropped(1)
    this.failedSinceLog++
    const now = Date.now()
    if (now - this.lastFailLogMs < EGRESS_DROP_LOG_INTERVAL_MS) return
    this.lastFailLogMs = now
    this.log.warn({ err, failed: this.failedSinceLog }, 'egress publish failed: datums not published live (they are stored, and in the pull API)')
    this.failedSinceLog = 0
  }

  private logDropped(): void {
    const now = Date.now()
    if (now - this.lastDropLogMs < EGRESS_DROP_LOG_INTERVAL_MS) return
    this.lastDropLogMs = now
    this.log.warn(
      { dropped: this.dropped, egressQueueMax: this.queueMax },
      'egress queue full: the oldest datums waiting are not published live (they are stored, and in the pull API)',
    )
  }
}
