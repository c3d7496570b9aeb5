import type { Kysely } from 'kysely'
import type { DialectName } from '../../shared/db/database.ts'
import { ensureReadingsPartitions, partitionMonthOf } from '../../shared/db/partitions.ts'
import type { Database } from '../../shared/db/schema.ts'
import { isCumulative } from '../../shared/obis.ts'
import type { RegisterValues } from '../../shared/wire.ts'
import { formatTimestamp } from '../../shared/calendar.ts'
import * as repo from './ingest-repository.ts'
import type { QuarantineItem, ValidatedMessage } from './ingest-validation.ts'

/**
 * The rules of the ingest transaction: dedupe, conflicts, index regressions, attribution,
 * daily rollups, quarantine. One call commits many messages from many meters at once
 * (group commit); messages are resolved in the order given, so the first datum for a
 * (meter, ts) wins, as it would one message at a time.
 */

export interface StoredDatum {
  meterId: string
  tsMs: number
  values: RegisterValues
  householdId: string | null
}

export interface MessageOutcome {
  stored: StoredDatum[]
  quarantined: QuarantineItem[]
  duplicates: number
}

/** A (meter, household, day) rollup group the batch wrote to; `created` when the batch inserted it. */
export interface TouchedDay {
  meterId: string
  householdId: string | null
  day: string
  created: boolean
}

export interface CommitResult {
  outcomes: MessageOutcome[]
  touched: TouchedDay[]
}

export interface IngestContext {
  dialect: DialectName
  /** Local day of an instant in the configured zone (a memoised `dayOf`). */
  dayOf: (ms: number) => string
}

interface Entry {
  tsMs: number
  values: RegisterValues
}

/** A meter's known datums in ts order: stored neighbours plus those accepted in this batch. */
class MeterTimeline {
  private readonly entries: Entry[] = []
  private readonly byTs = new Map<number, Entry>()

  add(e: Entry): void {
    this.byTs.set(e.tsMs, e)
    const list = this.entries
    if (list.length === 0 || list[list.length - 1]!.tsMs < e.tsMs) {
      list.push(e)
      return
    }
    list.splice(this.indexAfter(e.tsMs), 0, e)
  }

  get(tsMs: number): Entry | undefined {
    return this.byTs.get(tsMs)
  }

  /** Why this datum would break the monotony of a cumulative register, or null. */
  regression(tsMs: number, values: RegisterValues): string | null {
    const at = this.indexAfter(tsMs)
    for (const [code, value] of Object.entries(values)) {
      if (!isCumulative(code)) continue
      for (let i = at - 1; i >= 0; i--) {
        const earlier = this.entries[i]!.values[code]
        if (earlier === undefined) continue
        if (value < earlier) return `${code}: ${value} is lower than ${earlier} at ${formatTimestamp(this.entries[i]!.tsMs)}`
        break
      }
      for (let i = at; i < this.entries.length; i++) {
        const later = this.entries[i]!.values[code]
        if (later === undefined) continue
        if (value > later) return `${code}: ${value} is higher than ${later} at the later ${formatTimestamp(this.entries[i]!.tsMs)}`
        break
      }
    }
    return null
  }

  /** First index whose ts is greater than tsMs. */
  private indexAfter(tsMs: number): number {
    let lo = 0
    let hi = this.entries.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.entries[mid]!.tsMs <= tsMs) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

export function sameValues(a: RegisterValues, b: RegisterValues): boolean {
  const ka = Object.keys(a)
  if (ka.length !== Object.keys(b).length) return false
  for (const k of ka) if (a[k] !== b[k]) return false
  return true
}

export async function commitMessages(db: Kysely<Database>, messages: ValidatedMessage[], ctx: IngestContext): Promise<CommitResult> {
  const spans = new Map<string, repo.MeterSpan>()
  const months = new Set<string>()
  for (const m of messages) {
    for (const d of m.datums) {
      const span = spans.get(m.meterId)
      if (span === undefined) spans.set(m.meterId, { meterId: m.meterId, minTsMs: d.tsMs, maxTsMs: d.tsMs })
      else {
        if (d.tsMs < span.minTsMs) span.minTsMs = d.tsMs
        if (d.tsMs > span.maxTsMs) span.maxTsMs = d.tsMs
      }
      months.add(partitionMonthOf(d.tsMs))
    }
  }
  // DDL outside the data transaction: a partition created once serves every later batch.
  await ensureReadingsPartitions(db, months)

  return db.transaction().execute(async (trx) => {
    if (ctx.dialect === 'postgres') await repo.lockOccupanciesForIngest(trx)

    const timelines = new Map<string, MeterTimeline>()
    for (const meterId of spans.keys()) timelines.set(meterId, new MeterTimeline())
    for (const r of await repo.fetchNeighbourhood(trx, [...spans.values()])) {
      timelines.get(r.meterId)!.add({ tsMs: r.tsMs, values: r.values })
    }

    const outcomes: MessageOutcome[] = []
    const toInsert: repo.NewReading[] = []
    const quarantine: QuarantineItem[] = []
    for (const m of messages) {
      const outcome: MessageOutcome = { stored: [], quarantined: [...m.rejects], duplicates: 0 }
      const timeline = timelines.get(m.meterId)
      for (const d of m.datums) {
        const reject = (reason: QuarantineItem['reason'], detail: string): void => {
          const payload = Buffer.from(d.raw)
          outcome.quarantined.push({
            meterId: m.meterId,
            receivedAtMs: m.receivedAtMs,
            reason,
            tsMs: d.tsMs,
            payload,
            payloadBytes: payload.length,
            detail,
          })
        }
        const existing = timeline!.get(d.tsMs)
        if (existing !== undefined) {
          if (sameValues(existing.values, d.values)) outcome.duplicates++
          else reject('conflict', `a datum with other values is already stored for ${formatTimestamp(d.tsMs)}; the first is kept`)
          continue
        }
        const why = timeline!.regression(d.tsMs, d.values)
        if (why !== null) {
          reject('index_regression', why)
          continue
        }
        timeline!.add({ tsMs: d.tsMs, values: d.values })
        toInsert.push({ meterId: m.meterId, tsMs: d.tsMs, values: d.values })
        outcome.stored.push({ meterId: m.meterId, tsMs: d.tsMs, values: d.values, householdId: null })
      }
      quarantine.push(...outcome.quarantined)
      outcomes.push(outcome)
    }

    const owners = new Map<string, string | null>()
    for (const r of await repo.insertReadings(trx, toInsert)) owners.set(r.meterId + '\u0000' + r.tsMs, r.householdId)

    const rollups = new Map<string, repo.RollupDelta>()
    for (const o of outcomes) {
      for (const s of o.stored) {
        const owner = owners.get(s.meterId + '\u0000' + s.tsMs)
        if (owner === undefined) throw new Error(`assertion failed: inserted datum ${s.meterId} ${s.tsMs} not returned`)
        s.householdId = owner
        addToRollup(rollups, s, ctx.dayOf(s.tsMs))
      }
    }
    const upserted = await repo.upsertRollups(trx, [...rollups.values()])
    await repo.insertQuarantine(trx, quarantine)

    return { outcomes, touched: upserted }
  })
}

function addToRollup(rollups: Map<string, repo.RollupDelta>, s: StoredDatum, day: string): void {
  const key = `${s.meterId}\u0000${s.householdId ?? ''}\u0000${day}`
  let r = rollups.get(key)
  if (r === undefined) {
    r = { meterId: s.meterId, householdId: s.householdId, day, count: 0, firstTsMs: s.tsMs, lastTsMs: s.tsMs, indexMin: {}, indexMax: {} }
    rollups.set(key, r)
  }
  r.count++
  if (s.tsMs < r.firstTsMs) r.firstTsMs = s.tsMs
  if (s.tsMs > r.lastTsMs) r.lastTsMs = s.tsMs
  for (const [code, v] of Object.entries(s.values)) {
    if (!isCumulative(code)) continue
    const lo = r.indexMin[code]
    const hi = r.indexMax[code]
    if (lo === undefined || v < lo) r.indexMin[code] = v
    if (hi === undefined || v > hi) r.indexMax[code] = v
  }
}
