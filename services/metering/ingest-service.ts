import type { Kysely } from 'kysely'
import type { DatabaseHandle, DialectName } from '../../shared/db/database.ts'
import { ensureReadingsPartitions, partitionMonthOf } from '../../shared/db/partitions.ts'
import type { Database } from '../../shared/db/schema.ts'
import { isCumulative } from '../../shared/obis.ts'
import type { RegisterValues } from '../../shared/wire.ts'
import { formatTimestamp } from '../../shared/calendar.ts'
import { assert } from '../../shared/errors.ts'
import * as repo from './ingest-repository.ts'
import { datumBytes, type CandidateDatum, type QuarantineItem, type ValidatedMessage } from './ingest-validation.ts'

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
  /**
   * How many datums were stored, when `stored` lists only some of them: a broker's ingest thread
   * sends back the values of the datums of meters someone follows, and counts the others.
   */
  storedCount?: number
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
  /**
   * The rollup groups the batch wrote to whose day may have completed: a day completes when a
   * meter starts a new one (a created group) or when data lands in an earlier day; more data in
   * a meter's latest day completes nothing (and needs no query to publish).
   */
  touched: TouchedDay[]
}

export interface IngestContext {
  dialect: DialectName
  /** The local day a datum stamped at an instant belongs to, in the configured zone (a memoised `datumDayOf`). */
  datumDayOf: (ms: number) => string
  /** Each meter's latest datum as this process stored it; spares the neighbour lookup for in-order data. */
  tails: MeterTails
  /**
   * PostgreSQL (scriptedIngest): the group's transaction goes as scripts, two or three round trips
   * instead of six or seven, a group of at least COPY_READINGS_MIN datums is stored with COPY, and
   * the commit carries a token that tells whether it committed if its answer is lost
   * (repo.inScriptedTransaction). Without it, through kysely.
   */
  scripted?: ScriptedIngest
  /** The group's previous attempt, whose commit outcome could not be learned (UnresolvedCommitError): asked first. */
  prior?: repo.CommitOutcomeUnknownError<CommitResult>
  /**
   * Other processes may store the same meters' data (brokers coupled through Redis): each group
   * locks its meters' rows first and checks the tails against the readings (repo.SharedMeters).
   */
  sharedMeters?: boolean
}

/** How a process's groups go as scripts: the connections to run them on, and its commit tokens (repo.CommitTokens). */
export interface ScriptedIngest {
  withConnection: NonNullable<DatabaseHandle['withConnection']>
  tokens: repo.CommitTokens
}

/** Scripted ingest on a PostgreSQL handle (null on PGlite), with commit tokens of its own unless given. */
export function scriptedIngest(handle: DatabaseHandle, tokens = new repo.CommitTokens()): ScriptedIngest | undefined {
  return handle.withConnection === null ? undefined : { withConnection: handle.withConnection, tokens }
}

/**
 * The latest stored datum of each meter, as this process committed it, with the latest value of
 * each cumulative register that datum lacks (a datum may carry only some registers). A batch whose
 * datums for a meter all come after its tail needs no neighbour lookup: in-order live data never
 * reads the readings table. The tail can be stale only if another process stored data for
 * the same meter meanwhile (a meter moving between brokers); a duplicate key then fails the
 * commit, the caller clears the tails, and the retry looks the neighbours up.
 */
export class MeterTails {
  private readonly tails = new Map<string, MeterTail>()

  constructor(private readonly entriesMax = 100_000) {}

  get(meterId: string): MeterTail | undefined {
    return this.tails.get(meterId)
  }

  advance(meterId: string, tsMs: number, values: RegisterValues): void {
    const known = this.tails.get(meterId)
    if (known !== undefined && known.tsMs >= tsMs) return
    const older = known === undefined ? NO_ENTRIES : carriedOver(values, known)
    this.tails.delete(meterId)
    if (this.tails.size >= this.entriesMax) this.tails.delete(this.tails.keys().next().value!)
    this.tails.set(meterId, { tsMs, values, older })
  }

  /** Advances through a message's stored datums (one meter's). */
  advanceTo(stored: readonly StoredDatum[]): void {
    let last: StoredDatum | undefined
    for (const s of stored) if (last === undefined || s.tsMs > last.tsMs) last = s
    if (last === undefined) return
    // Usually the latest datum carries every register the others do: one step.
    if (stored.every((s) => s === last || coversCumulative(last.values, s.values))) return this.advance(last.meterId, last.tsMs, last.values)
    for (const s of [...stored].sort((a, b) => a.tsMs - b.tsMs)) this.advance(s.meterId, s.tsMs, s.values)
  }

  clear(): void {
    this.tails.clear()
  }
}

/** A meter's latest stored datum, and before it the latest value of each cumulative register it lacks (newest first). */
export interface MeterTail {
  tsMs: number
  values: RegisterValues
  older: readonly Entry[]
}

const NO_ENTRIES: readonly Entry[] = []

/** The latest value of each cumulative register `values` lacks, from a tail, as entries holding those registers only. */
function carriedOver(values: RegisterValues, tail: MeterTail): readonly Entry[] {
  // Usually every datum carries the same registers: nothing to carry, nothing allocated.
  if (tail.older.length === 0 && coversCumulative(values, tail.values)) return NO_ENTRIES
  const out: Entry[] = []
  const kept = new Set<string>()
  for (const e of [tail, ...tail.older]) {
    let part: RegisterValues | null = null
    for (const code in e.values) {
      if (values[code] !== undefined || !isCumulative(code) || kept.has(code)) continue
      kept.add(code)
      ;(part ??= {})[code] = e.values[code]!
    }
    if (part !== null) out.push({ tsMs: e.tsMs, values: part })
  }
  return out
}

/** Whether `values` holds every cumulative register `earlier` holds. */
function coversCumulative(values: RegisterValues, earlier: RegisterValues): boolean {
  for (const code in earlier) if (values[code] === undefined && isCumulative(code)) return false
  return true
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
    for (const code in values) {
      if (!isCumulative(code)) continue
      const value = values[code]!
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
  for (const m of messages) assert(m.deferred === undefined, 'a message is validated before it is committed')
  const spans = new Map<string, repo.MeterSpan>()
  const months = new MonthSet()
  for (const m of messages) {
    for (const d of m.datums) {
      let span = spans.get(m.meterId)
      if (span === undefined) spans.set(m.meterId, (span = { meterId: m.meterId, minTsMs: d.tsMs, maxTsMs: d.tsMs, codes: [] }))
      else {
        if (d.tsMs < span.minTsMs) span.minTsMs = d.tsMs
        if (d.tsMs > span.maxTsMs) span.maxTsMs = d.tsMs
      }
      for (const code in d.values) if (isCumulative(code) && !span.codes.includes(code)) span.codes.push(code)
      months.add(d.tsMs)
    }
  }
  // DDL outside the data transaction: a partition created once serves every later batch.
  await ensureReadingsPartitions(db, months.months)

  const resolve = (group: repo.GroupTransaction): Promise<CommitResult> => resolveGroup(group, messages, spans, ctx)
  const result = ctx.scripted !== undefined ? await scriptedCommit(db, ctx.scripted, resolve, ctx.prior) : await repo.inKyselyTransaction(db, ctx.dialect === 'postgres', resolve)
  for (const o of result.outcomes) ctx.tails.advanceTo(o.stored)
  return { outcomes: result.outcomes, touched: mayCompleteDay(result.touched, ctx.tails, ctx.datumDayOf) }
}

/**
 * The group's transaction as scripts on a connection. When the script ending in COMMIT fails, the
 * server is asked, on another connection, whether the transaction committed (by its commit token,
 * repo.CommitOutcomeUnknownError.committed): one whose answer was
 * lost with its connection (the server committed, then the connection broke) is the group's
 * success. Retried instead, its datums, stored by then, would be taken for duplicates (acknowledged,
 * but not forwarded live) and its quarantined items recorded twice. When the server cannot answer
 * (down: a crash as it committed is the likeliest way to lose the answer), UnresolvedCommitError
 * carries the question to the group's next attempt (`prior`), which asks it before anything else.
 * Any other failure is thrown, for the caller to retry.
 */
async function scriptedCommit(
  db: Kysely<Database>,
  scripted: ScriptedIngest,
  resolve: (group: repo.GroupTransaction) => Promise<CommitResult>,
  prior: repo.CommitOutcomeUnknownError<CommitResult> | undefined,
): Promise<CommitResult> {
  if (prior !== undefined) {
    const committed = await askCommitted(db, prior)
    if (committed) return prior.result
  }
  try {
    return await scripted.withConnection((c) => repo.inScriptedTransaction(c, db, scripted.tokens, resolve))
  } catch (err) {
    if (!(err instanceof repo.CommitOutcomeUnknownError)) throw err
    if (await askCommitted(db, err)) return err.result as CommitResult
    throw err.cause
  }
}

/** Whether a group whose answer was lost committed: true or false, or UnresolvedCommitError when the server cannot tell now. */
async function askCommitted<T>(db: Kysely<Database>, unknown: repo.CommitOutcomeUnknownError<T>): Promise<boolean> {
  let committed: boolean | null
  try {
    committed = await unknown.committed(db)
  } catch (asked) {
    throw new repo.UnresolvedCommitError(unknown, asked)
  }
  if (committed === null) throw new repo.UnresolvedCommitError(unknown, null)
  return committed
}

/**
 * Dedupe, conflicts, regressions, attribution and rollups of a group, inside its transaction.
 * Its `touched` lists every rollup group written to; commitMessages keeps those whose day may have completed.
 */
async function resolveGroup(
  group: repo.GroupTransaction,
  messages: ValidatedMessage[],
  spans: Map<string, repo.MeterSpan>,
  ctx: IngestContext,
): Promise<CommitResult> {
  const timelines = new Map<string, MeterTimeline>()
  const unknown: repo.MeterSpan[] = []
  const known: repo.SharedMeters['known'] = []
  for (const span of spans.values()) {
    const timeline = new MeterTimeline()
    timelines.set(span.meterId, timeline)
    const tail = ctx.tails.get(span.meterId)
    if (tail !== undefined && tail.tsMs < span.minTsMs) {
      timeline.add({ tsMs: tail.tsMs, values: tail.values })
      for (const e of tail.older) timeline.add(e)
      if (ctx.sharedMeters === true) known.push({ meterId: span.meterId, tsMs: tail.tsMs })
    } else unknown.push(span)
  }
  const { occupancies, neighbours, stale } = await group.read([...spans.values()], unknown, ctx.sharedMeters === true ? { known } : undefined)
  // A stale tail's meter is read as an unknown one is: its neighbours as stored, not the tail.
  for (const meterId of stale) timelines.set(meterId, new MeterTimeline())
  for (const r of neighbours) timelines.get(r.meterId)!.add({ tsMs: r.tsMs, values: r.values })
  const occupants = new Occupants(occupancies)

  const outcomes: MessageOutcome[] = []
  const toInsert: repo.NewReading[] = []
  const quarantine: QuarantineItem[] = []
  const rollups = new Map<string, repo.RollupDelta>()
  for (const m of messages) {
    const outcome: MessageOutcome = { stored: [], quarantined: [...m.rejects], duplicates: 0 }
    const timeline = timelines.get(m.meterId)
    let rollup: repo.RollupDelta | null = null
    for (const d of m.datums) {
      const existing = timeline!.get(d.tsMs)
      if (existing !== undefined) {
        if (sameValues(existing.values, d.values)) outcome.duplicates++
        else quarantineDatum(outcome, m, d, 'conflict', `a datum with other values is already stored for ${formatTimestamp(d.tsMs)}; the first is kept`)
        continue
      }
      const why = timeline!.regression(d.tsMs, d.values)
      if (why !== null) {
        quarantineDatum(outcome, m, d, 'index_regression', why)
        continue
      }
      timeline!.add({ tsMs: d.tsMs, values: d.values })
      const stored: StoredDatum = { meterId: m.meterId, tsMs: d.tsMs, values: d.values, householdId: occupants.at(m.meterId, d.tsMs) }
      toInsert.push(stored)
      outcome.stored.push(stored)
      // The datums of a message mostly share a household and a day: their rollup is found once.
      const day = ctx.datumDayOf(d.tsMs)
      if (rollup === null || rollup.day !== day || rollup.householdId !== stored.householdId) rollup = rollupOf(rollups, stored, day)
      addToRollup(rollup, stored)
    }
    quarantine.push(...outcome.quarantined)
    outcomes.push(outcome)
  }

  if (toInsert.length + quarantine.length === 0) return { outcomes, touched: [] }
  const created = await group.write(toInsert, [...rollups.values()], quarantine)
  const createdKeys = new Set(created.map((c) => rollupKey(c.meterId, c.householdId, c.day)))
  const touched: TouchedDay[] = []
  for (const [key, r] of rollups) touched.push({ meterId: r.meterId, householdId: r.householdId, day: r.day, created: createdKeys.has(key) })
  return { outcomes, touched }
}

/**
 * The groups of `touched` whose day may have completed, given the meters' tails once they are stored:
 * a day is complete once its meter has a datum stamped at or after its end (the reading at midnight
 * closes it), i.e. once the tail lies past the day's last datum instant.
 */
function mayCompleteDay(touched: readonly TouchedDay[], tails: MeterTails, datumDayOf: (ms: number) => string): TouchedDay[] {
  return touched.filter((g) => {
    const tail = tails.get(g.meterId)
    // The tail is the meter's latest datum: its day is g's or later. Its instant one millisecond on
    // lies in a later day exactly when the tail closes g's day or lies beyond it.
    return g.created || tail === undefined || datumDayOf(tail.tsMs + 1) !== g.day
  })
}

function quarantineDatum(outcome: MessageOutcome, m: ValidatedMessage, d: CandidateDatum, reason: QuarantineItem['reason'], detail: string): void {
  const payload = datumBytes(m, d)
  outcome.quarantined.push({ meterId: m.meterId, receivedAtMs: m.receivedAtMs, reason, tsMs: d.tsMs, payload, payloadBytes: payload.length, detail })
}

/** The UTC months of a batch's datums; an instant is turned into its month only when it leaves the previous one's. */
class MonthSet {
  readonly months = new Set<string>()
  private fromMs = 0
  private untilMs = 0

  add(tsMs: number): void {
    if (tsMs >= this.fromMs && tsMs < this.untilMs) return
    const month = partitionMonthOf(tsMs)
    this.months.add(month)
    const d = new Date(tsMs)
    this.fromMs = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)
    this.untilMs = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)
  }
}

/** Who occupied each meter when, from the occupancies read in the batch's transaction. */
class Occupants {
  private readonly byMeter = new Map<string, repo.OccupancySpan[]>()

  constructor(occupancies: repo.OccupancySpan[]) {
    for (const o of occupancies) {
      const list = this.byMeter.get(o.meterId)
      if (list === undefined) this.byMeter.set(o.meterId, [o])
      else list.push(o)
    }
  }

  /** The household occupying the meter at this instant ([from, until)), or null. */
  at(meterId: string, tsMs: number): string | null {
    for (const o of this.byMeter.get(meterId) ?? []) {
      if (o.fromMs <= tsMs && (o.untilMs === null || tsMs < o.untilMs)) return o.householdId
    }
    return null
  }
}

function rollupKey(meterId: string, householdId: string | null, day: string): string {
  return `${meterId}\u0000${householdId ?? ''}\u0000${day}`
}

function rollupOf(rollups: Map<string, repo.RollupDelta>, s: StoredDatum, day: string): repo.RollupDelta {
  const key = rollupKey(s.meterId, s.householdId, day)
  let r = rollups.get(key)
  if (r === undefined) {
    r = { meterId: s.meterId, householdId: s.householdId, day, count: 0, firstTsMs: s.tsMs, lastTsMs: s.tsMs, indexMin: {}, indexMax: {} }
    rollups.set(key, r)
  }
  return r
}

function addToRollup(r: repo.RollupDelta, s: StoredDatum): void {
  r.count++
  if (s.tsMs < r.firstTsMs) r.firstTsMs = s.tsMs
  if (s.tsMs > r.lastTsMs) r.lastTsMs = s.tsMs
  for (const code in s.values) {
    if (!isCumulative(code)) continue
    const v = s.values[code]!
    const lo = r.indexMin[code]
    const hi = r.indexMax[code]
    if (lo === undefined || v < lo) r.indexMin[code] = v
    if (hi === undefined || v > hi) r.indexMax[code] = v
  }
}
