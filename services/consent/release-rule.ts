import { addDays, addMonths, startOfDayMs } from '../../shared/calendar.ts'
import { GRANULARITY_RANK, type Granularity } from '../../shared/wire.ts'

/**
 * The release rule (DESIGN.md), the one implementation that live delivery, the pull API and
 * settlement call. Pure: no I/O, no clock; the caller passes the facts and `now`.
 *
 * A datum of meter m standing for instant t with granularity g is released to recipient r
 * iff t falls in an occupancy of m by household h (h owns the datum), and h holds a consent
 * for r that
 * - is active at now: valid_from ≤ now < valid_until and not revoked at or before now;
 * - covers m at now: m is among the consent's meters and h's occupancy of m has not ended
 *   since the consent was granted (a move-out ends the consent for that meter, for good);
 * - covers g: a finer granularity covers the coarser ones (load_curve ⊇ daily ⊇ monthly);
 * - has a data window [data_from, data_until) that contains t.
 *
 * A daily datum belongs to one (meter, household, local day) and stands for the start of its
 * day; a monthly datum likewise for the start of its month. Its owner is the household it
 * was attributed to (the group's household), so condition 1 holds by construction. It is in
 * the data window when its whole day or month is: an aggregate of readings outside the window
 * would let them out.
 */

export interface OccupancyFact {
  meterId: string
  householdId: string
  fromMs: number
  /** null: still there. */
  untilMs: number | null
  /**
   * When this end ends the household's consents for the meter: later than `untilMs` for a move-out
   * registered after the fact (at its registration), earlier for one moved later after it had
   * ended them. Absent: at `untilMs`.
   */
  consentsEndMs?: number | null | undefined
}

/** When an occupancy's end ends the household's consents for its meter; null while it has none. */
export function consentsEndOf(o: OccupancyFact): number | null {
  return o.untilMs === null ? null : (o.consentsEndMs ?? o.untilMs)
}

export interface ConsentFact {
  id: string
  householdId: string
  recipientId: string
  granularity: Granularity
  /** The meters the consent names (an "all meters" consent: those occupied at grant). */
  meterIds: readonly string[]
  validFromMs: number
  validUntilMs: number
  dataFromMs: number
  /** null: open-ended. */
  dataUntilMs: number | null
  revokedAtMs: number | null
}

/** A datum as the rule sees it. */
export interface RuleDatum {
  meterId: string
  granularity: Granularity
  /** The instant it stands for: its timestamp, or the start of its local day or month. */
  atMs: number
  /** The household it was attributed to; for load-curve data it must also be the occupant at atMs. */
  householdId?: string | undefined
  /** A daily or monthly datum: the end of its local day or month (`datumEndMs`). */
  endMs?: number | undefined
}

/** A datum as a caller names it: a load-curve timestamp (epoch ms), a local day or a month. */
export interface DatumRef {
  meterId: string
  granularity: Granularity
  ts?: number | undefined
  day?: string | undefined
  month?: string | undefined
  householdId?: string | undefined
}

/** The instant a datum stands for, cutting days and months in `timeZone`; null if the reference is incomplete. */
export function datumInstantMs(datum: DatumRef, timeZone: string): number | null {
  switch (datum.granularity) {
    case 'load_curve':
      return datum.ts ?? null
    case 'daily':
      return datum.day === undefined ? null : startOfDayMs(datum.day, timeZone)
    case 'monthly':
      return datum.month === undefined ? null : startOfDayMs(datum.month + '-01', timeZone)
  }
}

/** The end of a daily or monthly datum's local day or month; null for a load-curve datum or an incomplete reference. */
export function datumEndMs(datum: DatumRef, timeZone: string): number | null {
  switch (datum.granularity) {
    case 'load_curve':
      return null
    case 'daily':
      return datum.day === undefined ? null : startOfDayMs(addDays(datum.day, 1), timeZone)
    case 'monthly':
      return datum.month === undefined ? null : startOfDayMs(addMonths(datum.month, 1) + '-01', timeZone)
  }
}

/** Finer covers coarser. */
export function granularityCovers(consented: Granularity, datum: Granularity): boolean {
  return GRANULARITY_RANK[consented] <= GRANULARITY_RANK[datum]
}

/** The household occupying a meter at an instant, from that meter's occupancies. */
export function occupantAt(occupanciesOfMeter: readonly OccupancyFact[], atMs: number): string | null {
  for (const o of occupanciesOfMeter) {
    if (o.fromMs <= atMs && (o.untilMs === null || atMs < o.untilMs)) return o.householdId
  }
  return null
}

export function consentActiveAt(consent: ConsentFact, nowMs: number): boolean {
  return (
    consent.validFromMs <= nowMs &&
    nowMs < consent.validUntilMs &&
    (consent.revokedAtMs === null || nowMs < consent.revokedAtMs)
  )
}

/** Whether a datum at `atMs` (a day or month from `atMs` to `endMs`) lies in the consent's data window. */
export function inDataWindow(consent: ConsentFact, atMs: number, endMs?: number): boolean {
  return consent.dataFromMs <= atMs && (consent.dataUntilMs === null || (endMs ?? atMs + 1) <= consent.dataUntilMs)
}

/**
 * When a consent stopped covering one of its meters because the household left it: the
 * first moment in (valid_from, now] an end of the household's occupancy of that meter ended its
 * consents (`consentsEndOf`: the move-out, or its registration if later); valid_from itself when
 * the records say the household did not occupy the meter then (a move-out registered before the
 * grant, dated after it); null while the meter is still covered. Occupancies of `meterId` only.
 */
export function meterEndedAtMs(consent: ConsentFact, meterId: string, occupanciesOfMeter: readonly OccupancyFact[], nowMs: number): number | null {
  let endedMs: number | null = null
  let occupiedNow = false
  for (const o of occupanciesOfMeter) {
    if (o.meterId !== meterId || o.householdId !== consent.householdId) continue
    // A move-out ends the consents when it was registered, if that was after it (see `consentsEndOf`).
    const endMs = consentsEndOf(o)
    if (endMs !== null && consent.validFromMs < endMs && endMs <= nowMs) {
      if (endedMs === null || endMs < endedMs) endedMs = endMs
    }
    if (o.fromMs <= nowMs && (endMs === null || nowMs < endMs)) occupiedNow = true
  }
  if (endedMs !== null) return endedMs
  return occupiedNow ? null : consent.validFromMs
}

/** The consent names the meter and the household has not moved out of it since the grant. */
export function meterCovered(consent: ConsentFact, meterId: string, occupanciesOfMeter: readonly OccupancyFact[], nowMs: number): boolean {
  return consent.meterIds.includes(meterId) && meterEndedAtMs(consent, meterId, occupanciesOfMeter, nowMs) === null
}

/** The household that owns a datum: the attributed one (checked against the occupancy for load-curve data). */
export function datumOwner(datum: RuleDatum, occupanciesOfMeter: readonly OccupancyFact[]): string | null {
  if (datum.householdId !== undefined && datum.granularity !== 'load_curve') return datum.householdId
  const occupant = occupantAt(occupanciesOfMeter, datum.atMs)
  if (datum.householdId !== undefined && occupant !== datum.householdId) return null
  return occupant
}

/** Whether this one consent releases the datum of `owner` now. */
export function consentReleases(
  consent: ConsentFact,
  datum: RuleDatum,
  owner: string,
  occupanciesOfMeter: readonly OccupancyFact[],
  nowMs: number,
): boolean {
  return (
    consent.householdId === owner &&
    consentActiveAt(consent, nowMs) &&
    granularityCovers(consent.granularity, datum.granularity) &&
    inDataWindow(consent, datum.atMs, datum.endMs) &&
    meterCovered(consent, datum.meterId, occupanciesOfMeter, nowMs)
  )
}

/**
 * The rule: the owning household's id when the datum is released to the recipient now,
 * else null. `consents` may be all consents or any superset of those naming the recipient
 * and the meter; `occupanciesOfMeter` must hold every occupancy of the datum's meter.
 */
export function releasedTo(
  recipientId: string,
  datum: RuleDatum,
  consents: readonly ConsentFact[],
  occupanciesOfMeter: readonly OccupancyFact[],
  nowMs: number,
): string | null {
  const owner = datumOwner(datum, occupanciesOfMeter)
  if (owner === null) return null
  for (const c of consents) {
    if (c.recipientId === recipientId && consentReleases(c, datum, owner, occupanciesOfMeter, nowMs)) return owner
  }
  return null
}

/**
 * A span of one meter's data of one household released to a recipient now: datums of
 * granularity g whose instant lies in [fromMs, untilMs) and whose owner is `householdId`.
 * For load-curve data the span is already cut to the household's occupancies.
 */
export interface ReleaseWindow {
  meterId: string
  householdId: string
  fromMs: number
  untilMs: number | null
}

/**
 * Every span the rule releases to a recipient now for data of granularity `granularity`,
 * merged per (meter, household) and sorted by meter, household and start. The pull API
 * reads exactly these spans (and checks each datum with `releasedTo` again).
 */
export function releaseWindows(
  recipientId: string,
  granularity: Granularity,
  consents: readonly ConsentFact[],
  occupanciesByMeter: ReadonlyMap<string, readonly OccupancyFact[]>,
  nowMs: number,
): ReleaseWindow[] {
  const spans = new Map<string, ReleaseWindow[]>()
  for (const c of consents) {
    if (c.recipientId !== recipientId || !consentActiveAt(c, nowMs) || !granularityCovers(c.granularity, granularity)) continue
    for (const meterId of c.meterIds) {
      const occupancies = occupanciesByMeter.get(meterId) ?? []
      if (!meterCovered(c, meterId, occupancies, nowMs)) continue
      const key = meterId + '\u0000' + c.householdId
      let list = spans.get(key)
      if (list === undefined) spans.set(key, (list = []))
      if (granularity !== 'load_curve') {
        list.push({ meterId, householdId: c.householdId, fromMs: c.dataFromMs, untilMs: c.dataUntilMs })
        continue
      }
      for (const o of occupancies) {
        if (o.householdId !== c.householdId) continue
        const fromMs = Math.max(o.fromMs, c.dataFromMs)
        const untilMs = minUntil(o.untilMs, c.dataUntilMs)
        if (untilMs === null || fromMs < untilMs) list.push({ meterId, householdId: c.householdId, fromMs, untilMs })
      }
    }
  }
  const out: ReleaseWindow[] = []
  const keys = [...spans.keys()].sort()
  for (const key of keys) out.push(...mergeSpans(spans.get(key)!))
  return out
}

function minUntil(a: number | null, b: number | null): number | null {
  if (a === null) return b
  if (b === null) return a
  return Math.min(a, b)
}

/** Merges overlapping or touching spans of one (meter, household). */
function mergeSpans(spans: ReleaseWindow[]): ReleaseWindow[] {
  spans.sort((a, b) => a.fromMs - b.fromMs)
  const merged: ReleaseWindow[] = []
  for (const s of spans) {
    const last = merged[merged.length - 1]
    if (last !== undefined && (last.untilMs === null || s.fromMs <= last.untilMs)) {
      if (last.untilMs !== null) last.untilMs = s.untilMs === null ? null : Math.max(last.untilMs, s.untilMs)
      continue
    }
    merged.push({ ...s })
  }
  return merged
}
