import type { CountSpan } from './release-spans.ts'
import type { MeterCount } from './settlement-calculation.ts'

/**
 * How a run counts the datums of its spans, and how the counts add up per consent and
 * meter. Pure: no I/O. Spans sharing a (meter, household, days) range read it once:
 * consents of one household to several recipients usually cover the same whole days.
 */

/** Whole days of one meter's data of one household: [firstDay, lastDay]. */
export interface RollupRange {
  meterId: string
  householdId: string
  firstDay: string
  lastDay: string
}

/** Part of one day of one meter's data of one household: [fromMs, untilMs). */
export interface ReadingsPiece {
  meterId: string
  householdId: string
  fromMs: number
  untilMs: number
  /** Only readings stored before this instant (epoch ms); null: all. */
  storedBeforeMs: number | null
  /** Only readings stored at or after this instant (epoch ms); null: all. */
  storedFromMs: number | null
}

/** Key of a (meter, household) pair in maps. */
export function pairKey(meterId: string, householdId: string): string {
  return meterId + '\u0000' + householdId
}

export interface RangeCount {
  /** Σ readings_count of the range's rollups. */
  readings: bigint
  /** Rollups (days with data) in the range. */
  days: bigint
  /** Whether the household's month is final (isFinalMonth), when counted with the whole month (findMonthRollupTotals). */
  monthFinal?: boolean
}

export interface CountPlan {
  ranges: RollupRange[]
  pieces: ReadingsPiece[]
  /** For each span, its range's index, or -1 when it covers no whole day. */
  spanRange: number[]
  /** For each span, its pieces' indexes. */
  spanPieces: number[][]
}

export function planCounts(spans: readonly CountSpan[]): CountPlan {
  const plan: CountPlan = { ranges: [], pieces: [], spanRange: [], spanPieces: [] }
  const rangeIndex = new Map<string, number>()
  const pieceIndex = new Map<string, number>()
  for (const span of spans) {
    let r = -1
    if (span.firstDay !== null && span.lastDay !== null) {
      const key = `${span.meterId}\u0000${span.householdId}\u0000${span.firstDay}\u0000${span.lastDay}`
      r = rangeIndex.get(key) ?? -1
      if (r < 0) {
        r = plan.ranges.push({ meterId: span.meterId, householdId: span.householdId, firstDay: span.firstDay, lastDay: span.lastDay }) - 1
        rangeIndex.set(key, r)
      }
    }
    plan.spanRange.push(r)
    plan.spanPieces.push(
      span.edges.map(([fromMs, untilMs]) => {
        const storedFromMs = span.storedFromMs ?? null
        const key = `${span.meterId}\u0000${span.householdId}\u0000${fromMs}\u0000${untilMs}\u0000${span.storedBeforeMs}\u0000${storedFromMs}`
        let p = pieceIndex.get(key)
        if (p === undefined) {
          p = plan.pieces.push({ meterId: span.meterId, householdId: span.householdId, fromMs, untilMs, storedBeforeMs: span.storedBeforeMs, storedFromMs }) - 1
          pieceIndex.set(key, p)
        }
        return p
      }),
    )
  }
  return plan
}

/**
 * Datums per consent and meter, from the counts of the plan's ranges and pieces: a load
 * curve counts readings, a daily span one datum per day with data, a monthly span one datum
 * if the month has data and is final (`finalMonths`, by pairKey).
 * Consents and meters without datums are left out.
 */
export function datumsPerConsent(
  spans: readonly CountSpan[],
  plan: CountPlan,
  rangeCounts: readonly RangeCount[],
  pieceCounts: readonly bigint[],
  operators: ReadonlyMap<string, string>,
  finalMonths: ReadonlySet<string>,
): Map<string, MeterCount[]> {
  const none: RangeCount = { readings: 0n, days: 0n }
  const out = new Map<string, MeterCount[]>()
  spans.forEach((span, s) => {
    const r = plan.spanRange[s]!
    const range = r < 0 ? none : rangeCounts[r]!
    let n: bigint
    if (span.kind === 'load_curve') n = plan.spanPieces[s]!.reduce((acc, p) => acc + pieceCounts[p]!, range.readings)
    else if (span.kind === 'daily') n = range.days
    else n = range.days > 0n && finalMonths.has(pairKey(span.meterId, span.householdId)) ? 1n : 0n
    if (n === 0n) return
    let list = out.get(span.consentId)
    if (list === undefined) out.set(span.consentId, (list = []))
    const existing = list.find((m) => m.meterId === span.meterId)
    if (existing !== undefined) existing.data += n
    else list.push({ meterId: span.meterId, operatorId: operators.get(span.meterId)!, data: n })
  })
  return out
}
