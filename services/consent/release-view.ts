import { addDays, addMonths, startOfDayMs } from '../../shared/calendar.ts'
import type { DatabaseHandle } from '../../shared/db/database.ts'
import { logDatabaseFailure } from '../../shared/db/unreachable.ts'
import { log } from '../../shared/logger.ts'
import type { Metrics } from '../../shared/metrics.ts'
import { CHANGES_CHANNEL } from '../metering/occupancy-repository.ts'
import { loadConsentFacts, loadOccupancyFacts, occupanciesByMeter } from './release-facts-repository.ts'
import {
  consentActiveAt,
  datumOwner,
  occupantAt,
  releasedTo as ruleReleasedTo,
  type ConsentFact,
  type DatumRef,
  type OccupancyFact,
  type RuleDatum,
} from './release-rule.ts'

/**
 * The release rule's facts held in memory for the broker, whose forward hook must decide
 * synchronously for every datum and subscriber. Built from the database at start (active
 * consents and every occupancy), then kept in step by the change channel (LISTEN/NOTIFY
 * between processes on PostgreSQL, in-process on PGlite): a consent or occupancy change is
 * re-read on its notice, and a full reload every `refreshIntervalMs` repairs anything a
 * lost notice left behind. Decisions are the rule's own (`release-rule.ts`), on the
 * consents of one (meter, recipient) and the occupancies of one meter.
 */

export const RELEASE_VIEW_REFRESH_INTERVAL_MS = 60_000
/** Local days whose start instant is remembered (a year of days for a few dozen meters' lag). */
export const DAY_START_CACHE_ENTRIES_MAX = 4_096

export interface ReleaseViewOptions {
  /** IANA zone where days and months are cut. */
  timeZone: string
  refreshIntervalMs?: number | undefined
  /** Epoch ms; for the `metershare_consents_active` gauge and activeConsentsCount's default. */
  clock?: (() => number) | undefined
  /** When given, metershare_consents_active is kept up to date. */
  metrics?: Metrics | undefined
}

const NO_OCCUPANCIES: readonly OccupancyFact[] = []
/** Consents of one meter kept in a plain list up to this many; beyond, indexed by recipient. */
export const METER_CONSENTS_LIST_MAX = 8

/**
 * The consents naming one meter: a short list scanned by recipient (most meters have a
 * handful, and a Map per meter would cost more memory than it saves time), or, past
 * METER_CONSENTS_LIST_MAX, a map by recipient.
 */
type MeterConsents = ConsentFact[] | Map<string, ConsentFact[]>

type Notice = { kind?: unknown; id?: unknown; meterId?: unknown }

/** A change to the rule's facts: a consent, or the occupancies of one meter. */
export type ReleaseChange = { kind: 'consent'; id: string } | { kind: 'occupancy'; meterId: string }

export class ReleaseView {
  private consentsById = new Map<string, ConsentFact>()
  private consentsByMeter = new Map<string, MeterConsents>()
  private occupancies = new Map<string, OccupancyFact[]>()
  private readonly dayStarts = new Map<string, number>()
  private queue: Promise<void> = Promise.resolve()
  private unlisten: (() => Promise<void>) | null = null
  private timer: NodeJS.Timeout | null = null
  private closed = false
  private readonly clock: () => number
  /**
   * Since when (epoch ms) the view may be behind the database: its changes channel was lost, and the
   * full reload after it is back has not completed. Null while the view hears every change.
   */
  private behindSince: number | null = null
  /** Whether the changes channel is up (false from its loss until it is back). */
  private hearing = true
  /** Losses of the changes channel so far: a reload clears `behindSince` only if none came since it began. */
  private losses = 0

  private constructor(
    private readonly handle: DatabaseHandle,
    private readonly options: ReleaseViewOptions,
  ) {
    this.clock = options.clock ?? Date.now
  }

  /** Listens first, then loads, so that no change between the two is missed. */
  static async open(handle: DatabaseHandle, options: ReleaseViewOptions): Promise<ReleaseView> {
    const view = new ReleaseView(handle, options)
    view.unlisten = await handle.listen(CHANGES_CHANNEL, (payload) => view.onNotice(payload), () => view.onChannelLost())
    try {
      await view.refresh()
    } catch (err) {
      await view.close()
      throw err
    }
    view.timer = setInterval(() => {
      view.refresh().catch((err: unknown) => logDatabaseFailure(log.consent, 'warn', err, {}, 'release view refresh failed'))
    }, options.refreshIntervalMs ?? RELEASE_VIEW_REFRESH_INTERVAL_MS)
    view.timer.unref()
    return view
  }

  /**
   * Whether the view may be behind the database now: from the loss of its changes channel until it is
   * back and reloaded. Meanwhile it releases nothing: a revocation or a move-out made meanwhile in
   * another process would go unheard, and a datum it stops is in the pull API (found by probing: a
   * broker whose LISTEN connection was lost forwarded a datum 105-172 ms after a revocation's 204).
   */
  get behind(): boolean {
    return this.behindSince !== null
  }

  /** The owning household's id when the datum is released to this recipient now, else null. */
  releasedTo(recipientPartyId: string, datum: DatumRef, nowMs: number): string | null {
    if (this.behindSince !== null) return null
    const ofMeter = this.consentsByMeter.get(datum.meterId)
    if (ofMeter === undefined) return null
    let consents: readonly ConsentFact[] | undefined
    if (Array.isArray(ofMeter)) {
      if (!ofMeter.some((c) => c.recipientId === recipientPartyId)) return null
      consents = ofMeter
    } else {
      consents = ofMeter.get(recipientPartyId)
      if (consents === undefined) return null
    }
    const ruleDatum = this.ruleDatum(datum)
    if (ruleDatum === null) return null
    return ruleReleasedTo(recipientPartyId, ruleDatum, consents, this.occupancies.get(datum.meterId) ?? NO_OCCUPANCIES, nowMs)
  }

  /** Whether the datum is this household's own. */
  householdOwns(householdId: string, datum: DatumRef, _nowMs: number): boolean {
    if (this.behindSince !== null) return false
    const ruleDatum = this.ruleDatum(datum)
    if (ruleDatum === null) return false
    return datumOwner(ruleDatum, this.occupancies.get(datum.meterId) ?? NO_OCCUPANCIES) === householdId
  }

  /** A household may follow `readings/{meterId}` live while it occupies the meter. */
  householdMayFollow(householdId: string, meterId: string, nowMs: number): boolean {
    if (this.behindSince !== null) return false
    return occupantAt(this.occupancies.get(meterId) ?? NO_OCCUPANCIES, nowMs) === householdId
  }

  /** Consents active at `nowMs` (default: the clock). */
  activeConsentsCount(nowMs: number = this.clock()): number {
    let n = 0
    for (const c of this.consentsById.values()) if (consentActiveAt(c, nowMs)) n++
    return n
  }

  /** Resolves once every change heard so far has been applied. */
  settled(): Promise<void> {
    return this.queue
  }

  /** Reloads everything (also run every refreshIntervalMs). */
  refresh(): Promise<void> {
    return this.enqueue(async () => {
      // A reload that began while the channel was up, with no loss since, leaves the view current.
      const current = this.hearing
      const losses = this.losses
      const db = this.handle.db
      const [consents, occupancies] = await Promise.all([
        loadConsentFacts(db, { statuses: ['active'] }),
        loadOccupancyFacts(db),
      ])
      const intern = new Interner()
      const byId = new Map<string, ConsentFact>()
      const byMeter = new Map<string, MeterConsents>()
      for (const c of consents) {
        const fact = intern.consent(c)
        byId.set(fact.id, fact)
        indexConsent(byMeter, fact)
      }
      this.consentsById = byId
      this.consentsByMeter = byMeter
      this.occupancies = occupanciesByMeter(occupancies.map((o) => intern.occupancy(o)))
      if (current && losses === this.losses && this.behindSince !== null) {
        log.consent.info({ behindMs: this.clock() - this.behindSince }, 'release view current again: live delivery resumes')
        this.behindSince = null
      }
    })
  }

  private onChannelLost(): void {
    this.hearing = false
    this.losses++
    if (this.behindSince !== null) return
    this.behindSince = this.clock()
    log.consent.warn('release view: its changes channel was lost; nothing is released live until it is back and the view reloaded')
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.timer !== null) clearInterval(this.timer)
    const unlisten = this.unlisten
    this.unlisten = null
    await this.queue.catch(() => undefined)
    if (unlisten !== null) await unlisten()
  }

  private ruleDatum(datum: DatumRef): RuleDatum | null {
    let atMs: number
    if (datum.granularity === 'load_curve') {
      if (datum.ts === undefined) return null
      atMs = datum.ts
    } else {
      const day = datum.granularity === 'daily' ? datum.day : datum.month === undefined ? undefined : datum.month + '-01'
      if (day === undefined) return null
      const cached = this.dayStarts.get(day)
      if (cached !== undefined) atMs = cached
      else {
        try {
          atMs = startOfDayMs(day, this.options.timeZone)
        } catch {
          return null
        }
        if (this.dayStarts.size >= DAY_START_CACHE_ENTRIES_MAX) this.dayStarts.clear()
        this.dayStarts.set(day, atMs)
      }
    }
    if (datum.granularity === 'load_curve') return { meterId: datum.meterId, granularity: datum.granularity, atMs, householdId: datum.householdId }
    const endMs = this.periodEndMs(datum)
    // A daily or monthly datum read back from its payload alone (a persistent session's queue kept in
    // Redis) comes without its owner. Taken from the occupant at the period's start it would be wrong on
    // a moving day: such a datum is withheld.
    if (datum.householdId === undefined && !this.oneOccupantThroughout(datum, atMs, endMs)) return null
    return { meterId: datum.meterId, granularity: datum.granularity, atMs, householdId: datum.householdId, endMs }
  }

  /** The end of a daily or monthly datum's day or month: the start of the next, cached like the starts. */
  private periodEndMs(datum: DatumRef): number {
    const next = datum.granularity === 'daily' ? addDays(datum.day!, 1) : addMonths(datum.month!, 1) + '-01'
    const cached = this.dayStarts.get(next)
    if (cached !== undefined) return cached
    const endMs = startOfDayMs(next, this.options.timeZone)
    if (this.dayStarts.size >= DAY_START_CACHE_ENTRIES_MAX) this.dayStarts.clear()
    this.dayStarts.set(next, endMs)
    return endMs
  }

  private oneOccupantThroughout(datum: DatumRef, startMs: number, endMs: number): boolean {
    const overlapping = (this.occupancies.get(datum.meterId) ?? NO_OCCUPANCIES).filter(
      (o) => o.fromMs < endMs && (o.untilMs === null || o.untilMs > startMs),
    )
    const only = overlapping[0]
    return overlapping.length === 1 && only!.fromMs <= startMs && (only!.untilMs === null || only!.untilMs >= endMs)
  }

  private enqueue(work: () => Promise<void>): Promise<void> {
    const run = this.queue.catch(() => undefined).then(async () => {
      if (this.closed) return
      await work()
      this.updateGauge()
    })
    this.queue = run
    return run
  }

  private updateGauge(): void {
    this.options.metrics?.consentsActive.set(this.activeConsentsCount())
  }

  /**
   * Applies a change this process has just committed, without waiting for its notice: resolves once
   * the view decides by it (a failed update reloads the whole view instead, and resolves after).
   */
  async apply(change: ReleaseChange): Promise<void> {
    try {
      await (change.kind === 'consent' ? this.reloadConsent(change.id) : this.reloadMeter(change.meterId))
    } catch (err) {
      log.consent.warn({ err, kind: change.kind }, 'release view update failed; reloading')
      await this.refresh().catch(() => undefined)
    }
  }

  private onNotice(payload: string): void {
    let notice: Notice
    try {
      notice = JSON.parse(payload) as Notice
    } catch {
      notice = {}
    }
    if (notice.kind === 'offer') return
    if (notice.kind === 'listen_resumed') this.hearing = true
    if (notice.kind === 'consent' && typeof notice.id === 'string') void this.apply({ kind: 'consent', id: notice.id })
    else if (notice.kind === 'occupancy' && typeof notice.meterId === 'string') void this.apply({ kind: 'occupancy', meterId: notice.meterId })
    else this.refresh().catch((err: unknown) => logDatabaseFailure(log.consent, 'warn', err, {}, 'release view refresh failed'))
  }

  private reloadConsent(id: string): Promise<void> {
    return this.enqueue(async () => {
      const [fact] = await loadConsentFacts(this.handle.db, { ids: [id], statuses: ['active'] })
      const old = this.consentsById.get(id)
      if (old !== undefined) {
        unindexConsent(this.consentsByMeter, old)
        this.consentsById.delete(id)
      }
      if (fact !== undefined) {
        this.consentsById.set(id, fact)
        indexConsent(this.consentsByMeter, fact)
      }
    })
  }

  private reloadMeter(meterId: string): Promise<void> {
    return this.enqueue(async () => {
      const facts = await loadOccupancyFacts(this.handle.db, { meterIds: [meterId] })
      if (facts.length === 0) this.occupancies.delete(meterId)
      else this.occupancies.set(meterId, facts)
    })
  }
}

function indexConsent(byMeter: Map<string, MeterConsents>, c: ConsentFact): void {
  for (const meterId of c.meterIds) {
    const ofMeter = byMeter.get(meterId)
    if (ofMeter === undefined) byMeter.set(meterId, [c])
    else if (!Array.isArray(ofMeter)) addTo(ofMeter, c)
    else if (ofMeter.length < METER_CONSENTS_LIST_MAX) ofMeter.push(c)
    else {
      const map = new Map<string, ConsentFact[]>()
      for (const x of ofMeter) addTo(map, x)
      addTo(map, c)
      byMeter.set(meterId, map)
    }
  }
}

function addTo(map: Map<string, ConsentFact[]>, c: ConsentFact): void {
  const list = map.get(c.recipientId)
  if (list === undefined) map.set(c.recipientId, [c])
  else list.push(c)
}

function unindexConsent(byMeter: Map<string, MeterConsents>, c: ConsentFact): void {
  for (const meterId of c.meterIds) {
    const ofMeter = byMeter.get(meterId)
    if (ofMeter === undefined) continue
    if (Array.isArray(ofMeter)) {
      const rest = ofMeter.filter((x) => x.id !== c.id)
      if (rest.length > 0) byMeter.set(meterId, rest)
      else byMeter.delete(meterId)
      continue
    }
    const rest = (ofMeter.get(c.recipientId) ?? []).filter((x) => x.id !== c.id)
    if (rest.length > 0) ofMeter.set(c.recipientId, rest)
    else ofMeter.delete(c.recipientId)
    if (ofMeter.size === 0) byMeter.delete(meterId)
  }
}

/** One copy of each id string however many rows repeat it: a large view holds far less. */
class Interner {
  private readonly strings = new Map<string, string>()

  string(s: string): string {
    const known = this.strings.get(s)
    if (known !== undefined) return known
    this.strings.set(s, s)
    return s
  }

  consent(c: ConsentFact): ConsentFact {
    return {
      ...c,
      householdId: this.string(c.householdId),
      recipientId: this.string(c.recipientId),
      granularity: this.string(c.granularity) as ConsentFact['granularity'],
      meterIds: c.meterIds.map((m) => this.string(m)),
    }
  }

  occupancy(o: OccupancyFact): OccupancyFact {
    return { ...o, meterId: this.string(o.meterId), householdId: this.string(o.householdId) }
  }
}

/** Opens the view (listening, then loading). */
export function openReleaseView(handle: DatabaseHandle, options: ReleaseViewOptions): Promise<ReleaseView> {
  return ReleaseView.open(handle, options)
}
