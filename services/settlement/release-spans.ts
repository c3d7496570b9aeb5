import { addDays, datumDayStartMs, daysOfMonth, startOfDayMs } from '../../shared/calendar.ts'
import { consentReleases, consentsEndOf, datumOwner, meterEndedAtMs, type ConsentFact, type OccupancyFact, type RuleDatum } from '../consent/release-rule.ts'

/**
 * Which datums of a month a consent released, as spans that the database can count from
 * the daily rollups. Pure: no I/O; the run's instant is passed in.
 *
 * Settlement charges a datum when the release rule (services/consent/release-rule.ts)
 * released it to the consent's recipient at the first moment it could be delivered: when it
 * was complete (a load-curve reading at its timestamp, a daily datum at the end of its day,
 * a monthly one at the end of its month) or, for history before the consent began, at the
 * consent's valid_from; and that moment is not after the run. So a datum stamped after the
 * consent ended (revoked, expired, or its meter ended by a move-out) is not charged, while
 * the history its data window reached back to is, once. The rule is evaluated here, never
 * re-implemented: on each stretch of time where none of its inputs changes (load curve), or
 * once per day or month.
 */

export type SpanKind = 'load_curve' | 'daily' | 'monthly'

/**
 * A stretch of one meter's data of one household released by one consent, cut for counting:
 * the local days it covers whole (`firstDay`..`lastDay`, none when null), counted from the
 * daily rollups, and for the load curve the pieces of days it covers in part (`edges`,
 * [from, until) instants; for an ended consent also the whole days stored after its end),
 * counted from the raw readings. Daily: one
 * datum per (meter, household, day) with data; monthly: one per (meter, household, month).
 */
export interface CountSpan {
  kind: SpanKind
  consentId: string
  meterId: string
  householdId: string
  firstDay: string | null
  lastDay: string | null
  edges: Array<[number, number]>
  /**
   * Counts only datums stored before this instant (epoch ms): the end of a consent that has ended.
   * A datum stored after it never reached the recipient. null: the consent is in force, so every
   * stored datum was stored while it was.
   */
  storedBeforeMs: number | null
  /**
   * Counts only datums stored at or after this instant (epoch ms), for `edges` only: where an earlier
   * consent of the same recipient, household and offer released the same stretch until it ended, the
   * datums stored before that end were charged under it (GroupCoverage). null: no such bound.
   */
  storedFromMs?: number | null
}

/**
 * What the consents of one (recipient, household, offer) group charged before, in the month: a datum
 * is charged to a recipient once under an offer, however often the household grants it again (a
 * revoked consent and its re-grant reaching back over the same history buy one licence to it, not
 * two). Filled by `settlementSpans` consent after consent, in the order of their grants.
 */
export interface GroupCoverage {
  /** Per meter, the load-curve instants [fromMs, untilMs) released, each with the end before which its datums had to be stored (null: any). */
  curve: Map<string, Array<{ fromMs: number; untilMs: number; storedBeforeMs: number | null }>>
  /** Per meter, the indexes of the month's days whose daily datum was charged. */
  days: Map<string, Set<number>>
  /** Meters whose monthly datum was charged. */
  months: Set<string>
}

export function emptyGroupCoverage(): GroupCoverage {
  return { curve: new Map(), days: new Map(), months: new Set() }
}

/** [fromMs, untilMs) cut where earlier stretches begin or end: each piece with the earlier stretches covering it. */
function piecesUnder(
  fromMs: number,
  untilMs: number,
  earlier: readonly { fromMs: number; untilMs: number; storedBeforeMs: number | null }[],
): Array<{ fromMs: number; untilMs: number; covering: Array<number | null> }> {
  const cuts = new Set([fromMs, untilMs])
  for (const e of earlier) for (const t of [e.fromMs, e.untilMs]) if (t > fromMs && t < untilMs) cuts.add(t)
  const points = [...cuts].sort((a, b) => a - b)
  const out: Array<{ fromMs: number; untilMs: number; covering: Array<number | null> }> = []
  for (let i = 0; i + 1 < points.length; i++) {
    const a = points[i]!
    const b = points[i + 1]!
    const covering = earlier.filter((e) => e.fromMs <= a && e.untilMs >= b).map((e) => e.storedBeforeMs)
    const last = out[out.length - 1]
    if (last !== undefined && last.covering.length === 0 && covering.length === 0) last.untilMs = b
    else out.push({ fromMs: a, untilMs: b, covering })
  }
  return out
}

/** When a consent ended (revoked, or its validity over) if that is not after `nowMs`; else null. */
export function consentEndedMs(consent: ConsentFact, nowMs: number): number | null {
  const end = consent.revokedAtMs === null ? consent.validUntilMs : Math.min(consent.revokedAtMs, consent.validUntilMs)
  return end <= nowMs ? end : null
}

/**
 * When a consent stopped releasing one meter's data, if that is not after `nowMs`: its own end, or the
 * household's move-out from the meter (`meterEndedAtMs`: when the move-out was registered, if after
 * it), the earlier; else null. Data of the meter stored after it never reached the recipient.
 */
export function consentMeterEndedMs(consent: ConsentFact, meterId: string, occupanciesOfMeter: readonly OccupancyFact[], nowMs: number): number | null {
  const ended = consentEndedMs(consent, nowMs)
  const left = meterEndedAtMs(consent, meterId, occupanciesOfMeter, nowMs)
  return ended === null ? left : left === null ? ended : Math.min(ended, left)
}

/** A month's local days and where each starts, computed once per run. */
export interface MonthCalendar {
  month: string
  days: readonly string[]
  /** Start of each day, then the end of the month (days.length + 1 instants): the days as periods. */
  dayStartsMs: readonly number[]
  /**
   * The first datum instant of each day, then the month's end's (`datumDayStartMs`): a datum ends its
   * interval, so day D holds the load-curve datums stamped in [datumStartsMs[D], datumStartsMs[D + 1]).
   */
  datumStartsMs: readonly number[]
}

export function monthCalendar(month: string, timeZone: string): MonthCalendar {
  const days = daysOfMonth(month)
  const dayStartsMs = days.map((d) => startOfDayMs(d, timeZone))
  dayStartsMs.push(startOfDayMs(addDays(days[days.length - 1]!, 1), timeZone))
  const datumStartsMs = [...days, addDays(days[days.length - 1]!, 1)].map((d) => datumDayStartMs(d, timeZone))
  return { month, days, dayStartsMs, datumStartsMs }
}

/** Index of the day of the month a datum instant inside it belongs to. */
function dayIndexAt(calendar: MonthCalendar, ms: number): number {
  let lo = 0
  let hi = calendar.days.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if (calendar.datumStartsMs[mid]! <= ms) lo = mid
    else hi = mid - 1
  }
  return lo
}

/** Cuts datum instants [fromMs, untilMs) into the days it covers whole and the parts of days at its ends. */
function cutByDays(calendar: MonthCalendar, fromMs: number, untilMs: number): { whole: [number, number] | null; edges: Array<[number, number]> } {
  const starts = calendar.datumStartsMs
  const first = dayIndexAt(calendar, fromMs)
  const last = dayIndexAt(calendar, untilMs - 1)
  const headCut = starts[first]! !== fromMs
  const tailCut = starts[last + 1]! !== untilMs
  if (first === last && (headCut || tailCut)) return { whole: null, edges: [[fromMs, untilMs]] }
  const edges: Array<[number, number]> = []
  if (headCut) edges.push([fromMs, starts[first + 1]!])
  if (tailCut) edges.push([starts[last]!, untilMs])
  const wholeFirst = headCut ? first + 1 : first
  const wholeLast = tailCut ? last - 1 : last
  return { whole: wholeFirst <= wholeLast ? [wholeFirst, wholeLast] : null, edges }
}

/** The moment a datum could first be delivered under a consent (see the file comment). */
function releaseMomentMs(consent: ConsentFact, completeMs: number): number {
  return Math.max(completeMs, consent.validFromMs)
}

function released(consent: ConsentFact, datum: RuleDatum, completeMs: number, occupancies: readonly OccupancyFact[], nowMs: number): boolean {
  const at = releaseMomentMs(consent, completeMs)
  if (at > nowMs) return false
  const owner = datumOwner(datum, occupancies)
  return owner === consent.householdId && consentReleases(consent, datum, owner, occupancies, at)
}

/**
 * Spans of the consent's own granularity (the offer prices that granularity) in `month`,
 * for every meter it names. `occupanciesByMeter` holds all occupancies of those meters.
 * `latestDataMs` gives the timestamp of a meter's latest stored datum (-Infinity when none), or of
 * its latest stored before an instant: a daily or monthly datum is complete, and so deliverable,
 * only once its meter has sent data stamped at or after the end of its day or month. That is when `daily/` publishes it and the
 * pull API lists it; a day a meter never got past (it stopped for good, or is still catching up)
 * is not charged, until data after it arrives and a later run counts it. With `group`, what earlier
 * consents of its group charged is left out, and what this one charges is added to it.
 */
export function settlementSpans(
  consent: ConsentFact,
  calendar: MonthCalendar,
  occupanciesByMeter: ReadonlyMap<string, readonly OccupancyFact[]>,
  nowMs: number,
  latestDataMs: (meterId: string, storedBeforeMs: number | null) => number,
  storedLateDays?: (meterId: string, householdId: string, storedBeforeMs: number) => ReadonlySet<string>,
  group?: GroupCoverage,
): CountSpan[] {
  const { days, dayStartsMs, datumStartsMs } = calendar
  const monthStartMs = dayStartsMs[0]!
  const monthEndMs = dayStartsMs[days.length]!
  const spans: CountSpan[] = []
  for (const meterId of consent.meterIds) {
    const occupancies = occupanciesByMeter.get(meterId) ?? []
    const storedBeforeMs = consentMeterEndedMs(consent, meterId, occupancies, nowMs)
    const consentId = consent.id
    const householdId = consent.householdId
    switch (consent.granularity) {
      case 'load_curve': {
        // The month's load curve: the datums stamped from its first datum instant to its end, inclusive.
        const stretches = loadCurveStretches(consent, meterId, occupancies, datumStartsMs[0]!, datumStartsMs[days.length]!, nowMs)
        const earlier = group?.curve.get(meterId) ?? []
        const pieces = stretches.flatMap(([fromMs, untilMs]) => piecesUnder(fromMs, untilMs, earlier))
        if (group !== undefined && stretches.length > 0) {
          group.curve.set(meterId, [...earlier, ...stretches.map(([fromMs, untilMs]) => ({ fromMs, untilMs, storedBeforeMs }))])
        }
        for (const { fromMs, untilMs, covering } of pieces) {
          if (covering.length > 0) {
            // Released before by an earlier consent of the group: its datums stored before that one ended were
            // charged under it (one in force charged them all); this one charges those stored since, from the raw readings.
            if (covering.includes(null)) continue
            const storedFromMs = Math.max(...(covering as number[]))
            if (storedBeforeMs !== null && storedBeforeMs <= storedFromMs) continue
            spans.push({ kind: 'load_curve', consentId, meterId, householdId, firstDay: null, lastDay: null, edges: [[fromMs, untilMs]], storedBeforeMs, storedFromMs })
            continue
          }
          if (storedBeforeMs !== null) {
            // An ended consent: what was stored after its end is not counted. The rollups do not say when a
            // datum was stored, only when their day last changed: days that changed after the end (or all of
            // them, when that is not known) are counted from the raw readings, by when those were stored.
            if (storedLateDays === undefined) {
              spans.push({ kind: 'load_curve', consentId, meterId, householdId, firstDay: null, lastDay: null, edges: [[fromMs, untilMs]], storedBeforeMs })
            } else {
              spans.push(...endedStretchSpans(calendar, consentId, meterId, householdId, fromMs, untilMs, storedBeforeMs, storedLateDays(meterId, householdId, storedBeforeMs)))
            }
            continue
          }
          const { whole, edges } = cutByDays(calendar, fromMs, untilMs)
          spans.push({
            kind: 'load_curve',
            consentId,
            meterId,
            householdId,
            firstDay: whole === null ? null : days[whole[0]]!,
            lastDay: whole === null ? null : days[whole[1]]!,
            edges,
            storedBeforeMs: null,
          })
        }
        break
      }
      case 'daily': {
        // Days complete by the meter's data: those that end at or before its latest datum (stored while the
        // consent was in force: a day completed after it ended never reached the recipient).
        const latestMs = latestDataMs(meterId, storedBeforeMs)
        let completeDays = 0
        while (completeDays < days.length && dayStartsMs[completeDays + 1]! <= latestMs) completeDays++
        // Days charged by an earlier consent of the group are not charged again.
        const charged = group?.days.get(meterId) ?? new Set<number>()
        for (const [first, last] of releasedDays(consent, meterId, occupancies, calendar, nowMs)) {
          if (first >= completeDays) break
          let runStart = -1
          for (let i = first; i <= Math.min(last, completeDays - 1) + 1; i++) {
            const free = i <= Math.min(last, completeDays - 1) && !charged.has(i)
            if (free && runStart < 0) runStart = i
            if (!free && runStart >= 0) {
              spans.push({ kind: 'daily', consentId, meterId, householdId, firstDay: days[runStart]!, lastDay: days[i - 1]!, edges: [], storedBeforeMs: null })
              for (let d = runStart; d < i; d++) charged.add(d)
              runStart = -1
            }
          }
        }
        if (group !== undefined && charged.size > 0) group.days.set(meterId, charged)
        break
      }
      case 'monthly': {
        const datum: RuleDatum = { meterId, granularity: 'monthly', atMs: monthStartMs, householdId: consent.householdId, endMs: monthEndMs }
        if (group?.months.has(meterId) === true) break
        if (latestDataMs(meterId, storedBeforeMs) >= monthEndMs && released(consent, datum, monthEndMs, occupancies, nowMs)) {
          spans.push({ kind: 'monthly', consentId, meterId, householdId, firstDay: days[0]!, lastDay: days[days.length - 1]!, edges: [], storedBeforeMs: null })
          group?.months.add(meterId)
        }
        break
      }
    }
  }
  return spans
}

/**
 * An ended consent's stretch of load curve: its whole days that did not change after the end
 * (`late` lacks them) from the rollups, in runs of consecutive days; the days that did, and the
 * parts of days at its ends, from the raw readings stored before the end.
 */
function endedStretchSpans(
  calendar: MonthCalendar,
  consentId: string,
  meterId: string,
  householdId: string,
  fromMs: number,
  untilMs: number,
  storedBeforeMs: number,
  late: ReadonlySet<string>,
): CountSpan[] {
  const { days, datumStartsMs } = calendar
  const { whole, edges } = cutByDays(calendar, fromMs, untilMs)
  const spans: CountSpan[] = []
  const raw: Array<[number, number]> = [...edges]
  if (whole !== null) {
    let runStart = -1
    for (let i = whole[0]; i <= whole[1] + 1; i++) {
      const onTime = i <= whole[1] && !late.has(days[i]!)
      if (onTime && runStart < 0) runStart = i
      if (!onTime && runStart >= 0) {
        spans.push({ kind: 'load_curve', consentId, meterId, householdId, firstDay: days[runStart]!, lastDay: days[i - 1]!, edges: [], storedBeforeMs: null })
        runStart = -1
      }
      if (i <= whole[1] && !onTime) raw.push([datumStartsMs[i]!, datumStartsMs[i + 1]!])
    }
  }
  if (raw.length > 0) spans.push({ kind: 'load_curve', consentId, meterId, householdId, firstDay: null, lastDay: null, edges: raw, storedBeforeMs })
  return spans
}

/**
 * Load-curve timestamps of the month released for one meter, as merged [from, until)
 * stretches. Every input of the rule changes only at one of the instants collected below,
 * so the answer is constant between two consecutive ones: the rule is asked once per stretch.
 */
function loadCurveStretches(
  consent: ConsentFact,
  meterId: string,
  occupancies: readonly OccupancyFact[],
  monthStartMs: number,
  monthEndMs: number,
  nowMs: number,
): Array<[number, number]> {
  const cuts = new Set<number>([monthStartMs, monthEndMs, consent.validFromMs, consent.validUntilMs, consent.dataFromMs, nowMs + 1])
  if (consent.dataUntilMs !== null) cuts.add(consent.dataUntilMs)
  if (consent.revokedAtMs !== null) cuts.add(consent.revokedAtMs)
  for (const o of occupancies) {
    cuts.add(o.fromMs)
    if (o.untilMs !== null) cuts.add(o.untilMs)
    const consentsEndMs = consentsEndOf(o)
    if (consentsEndMs !== null) cuts.add(consentsEndMs)
  }
  const points = [...cuts].filter((t) => t >= monthStartMs && t <= monthEndMs).sort((a, b) => a - b)
  const out: Array<[number, number]> = []
  for (let i = 0; i + 1 < points.length; i++) {
    const fromMs = points[i]!
    const untilMs = points[i + 1]!
    const datum: RuleDatum = { meterId, granularity: 'load_curve', atMs: fromMs, householdId: consent.householdId }
    if (!released(consent, datum, fromMs, occupancies, nowMs)) continue
    const last = out[out.length - 1]
    if (last !== undefined && last[1] === fromMs) last[1] = untilMs
    else out.push([fromMs, untilMs])
  }
  return out
}

/**
 * Indexes of the days whose daily datum was released, as merged [first, last] ranges. A
 * daily datum stands for its day's start (tested against the data window) and is released
 * at max(end of its day, valid_from) (tested for the rest). The rule's answer changes only
 * when one of those instants crosses one of the cut instants below, so it is asked on the
 * first day and again only on days where a cut was crossed since the day before.
 */
function releasedDays(
  consent: ConsentFact,
  meterId: string,
  occupancies: readonly OccupancyFact[],
  calendar: MonthCalendar,
  nowMs: number,
): Array<[number, number]> {
  const windowCuts = [consent.dataFromMs]
  if (consent.dataUntilMs !== null) windowCuts.push(consent.dataUntilMs)
  const momentCuts = [consent.validFromMs, consent.validUntilMs, nowMs + 1]
  if (consent.revokedAtMs !== null) momentCuts.push(consent.revokedAtMs)
  for (const o of occupancies) {
    momentCuts.push(o.fromMs)
    if (o.untilMs !== null) momentCuts.push(o.untilMs)
    const consentsEndMs = consentsEndOf(o)
    if (consentsEndMs !== null) momentCuts.push(consentsEndMs)
  }
  const crossed = (cuts: readonly number[], from: number, to: number) => cuts.some((c) => from < c && c <= to)
  const starts = calendar.dayStartsMs
  const out: Array<[number, number]> = []
  let isReleased = false
  for (let i = 0; i < calendar.days.length; i++) {
    const atMs = starts[i]!
    const momentMs = releaseMomentMs(consent, starts[i + 1]!)
    // The window holds the whole day [start, next start): the answer may change where a window cut falls in either.
    if (i === 0 || crossed(windowCuts, starts[i - 1]!, starts[i + 1]!) || crossed(momentCuts, releaseMomentMs(consent, atMs), momentMs)) {
      const datum: RuleDatum = { meterId, granularity: 'daily', atMs, householdId: consent.householdId, endMs: starts[i + 1]! }
      isReleased = released(consent, datum, starts[i + 1]!, occupancies, nowMs)
    }
    if (!isReleased) continue
    const last = out[out.length - 1]
    if (last !== undefined && last[1] === i - 1) last[1] = i
    else out.push([i, i])
  }
  return out
}
