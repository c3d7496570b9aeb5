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
}

/** Counts what was released, per recipient, household, meter, day and channel. */
export interface ReleaseRecorder {
  record(recipientId: string, householdId: string, meterId: string, day: string, channel: 'mqtt' | 'http', datums: number): void
}

const metaByPayload = new WeakMap<Buffer, EgressMeta>()

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

/**
 * Daily datums remembered as last published, per (meter, household, day): a day is found complete
 * after each commit that could complete it, and two commits of one meter close together both find
 * it, with the same values. Published again only when its values changed (late data).
 */
export const DAILY_PUBLISHED_REMEMBERED_MAX = 50_000

/** Longest a stopping broker waits for its egress publications to be handed on (to Redis, with several brokers). */
export const EGRESS_DRAIN_MS_MAX = 5_000

export class Egress {
  /** The payload last published for each (meter, household, day), oldest first. */
  private readonly lastDaily = new Map<string, string>()
  /** Publications not yet handed on, and who waits for there to be none. */
  private inFlight = 0
  private readonly idle: Array<() => void> = []

  constructor(
    private readonly aedes: Aedes,
    private readonly log: Logger,
    /** Whether anyone could receive a topic; datums nobody subscribes to are not published. */
    readonly interest: EgressInterest,
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

  publishDaily(datums: Array<DailyDatum & { householdId: string }>): void {
    for (const d of datums) {
      if (!this.interest.wants('daily', d.meterId)) continue
      const body: DailyDatum = { meterId: d.meterId, day: d.day, granularity: 'daily', values: d.values }
      const text = JSON.stringify(body)
      const key = `${d.meterId}\u0000${d.householdId}\u0000${d.day}`
      if (this.lastDaily.get(key) === text) continue
      this.lastDaily.delete(key)
      if (this.lastDaily.size >= DAILY_PUBLISHED_REMEMBERED_MAX) this.lastDaily.delete(this.lastDaily.keys().next().value!)
      this.lastDaily.set(key, text)
      const payload = Buffer.from(text)
      metaByPayload.set(payload, { meterId: d.meterId, granularity: 'daily', day: d.day, householdId: d.householdId })
      this.publish(egressTopic('daily', d.meterId), payload)
    }
  }

  publishStatus(items: QuarantineItem[]): void {
    for (const q of items) {
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
    if (this.inFlight === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, EGRESS_DRAIN_MS_MAX)
      this.idle.push(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  private publish(topic: string, payload: Buffer): void {
    this.inFlight++
    this.aedes.publish({ cmd: 'publish', topic, payload, qos: 1, retain: false, dup: false }, (err) => {
      if (--this.inFlight === 0) for (const wake of this.idle.splice(0)) wake()
      if (err) this.log.warn({ err, topic }, 'egress publish failed')
    })
  }
}
