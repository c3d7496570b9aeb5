import { assert } from '../../shared/errors.ts'
import { isCumulative } from '../../shared/obis.ts'
import type { RegisterValues } from '../../shared/wire.ts'

/**
 * Energy derived from cumulative indexes (Wh for electricity, dm³ for gas). Pure: no I/O,
 * no clock. A daily rollup group is one (meter, household, local day); its daily energy per
 * cumulative code is index_max(g) − index_max(p), p = the closest earlier group of the same
 * meter (by last_ts) having that code, when p belongs to the same household (or both to
 * nobody) and g is not `straddled`; else index_max(g) − index_min(g). Energy measured across a change of owner (a
 * move, or a stretch that fell outside every occupancy) belongs to neither side: a household
 * moving in is never given what was used before it lived there, however long the gap.
 */

export interface RollupGroup {
  meterId: string
  householdId: string | null
  day: string
  /** Its latest datum's timestamp: groups follow one another in this order (rollup-repository's groupBefore). */
  lastTs: Date
  /**
   * Another group of its day (nobody's: only the readings outside every occupancy can come back on a
   * day) began before it and ended after it, so the datum before its first is nobody's whatever group
   * comes before it by last_ts (rollup-repository's loadRollupContexts). Absent: it is not.
   */
  straddled?: boolean
  indexMin: RegisterValues
  indexMax: RegisterValues
  /** Whether the group is a daily datum (rollup-repository's isDailyDatum); absent: it is. */
  datum?: boolean
  /** Whether its energy is final, so that it may be released to recipients (rollup-repository's isFinalDay); absent: it is. */
  final?: boolean
}

export interface GroupEnergy {
  meterId: string
  householdId: string | null
  day: string
  values: RegisterValues
}

export interface MonthlyEnergy {
  meterId: string
  householdId: string | null
  month: string
  values: RegisterValues
}

export interface IntervalEnergy {
  ts: string
  values: RegisterValues
}

/** A code's highest index in a group, and whose group it was. */
export interface BaselineIndex {
  value: number
  householdId: string | null
}

/**
 * Daily energy of each group of one meter, given in last_ts order. `baseline` holds, per
 * code, index_max of the closest group before the first one given that has the code, and that
 * group's household (the groups may be a window of a longer history); codes absent from it have
 * no predecessor.
 */
export function dailyEnergies(groups: readonly RollupGroup[], baseline: Readonly<Record<string, BaselineIndex>> = {}): GroupEnergy[] {
  const last = new Map<string, BaselineIndex>(Object.entries(baseline))
  const out: GroupEnergy[] = []
  let previous: RollupGroup | undefined
  for (const g of groups) {
    if (previous !== undefined) {
      assert(g.meterId === previous.meterId, 'dailyEnergies takes the groups of one meter')
      assert(g.lastTs.getTime() > previous.lastTs.getTime(), 'dailyEnergies takes groups ordered by last_ts')
    }
    const values: RegisterValues = {}
    for (const [code, max] of Object.entries(g.indexMax)) {
      const before = g.straddled === true ? undefined : last.get(code)
      const from = before !== undefined && before.householdId === g.householdId ? before.value : (g.indexMin[code] ?? max)
      values[code] = max - from
      last.set(code, { value: max, householdId: g.householdId })
    }
    out.push({ meterId: g.meterId, householdId: g.householdId, day: g.day, values })
    previous = g
  }
  return out
}

/** Sum of the daily energies per (meter, household, month), in order of first appearance. */
export function monthlyEnergies(daily: readonly GroupEnergy[]): MonthlyEnergy[] {
  const byKey = new Map<string, MonthlyEnergy>()
  for (const d of daily) {
    const month = d.day.slice(0, 7)
    const key = JSON.stringify([d.meterId, d.householdId, month])
    let m = byKey.get(key)
    if (m === undefined) {
      m = { meterId: d.meterId, householdId: d.householdId, month, values: {} }
      byKey.set(key, m)
    }
    for (const [code, energy] of Object.entries(d.values)) m.values[code] = (m.values[code] ?? 0) + energy
  }
  return [...byKey.values()]
}

/**
 * Interval energy of a sequence of readings of one meter, ordered by ts: each reading's
 * energy per cumulative code is its value minus the last earlier value of that code
 * (`previous` seeds the values seen before the first reading). A code without an earlier
 * value has no energy, so the first reading usually has none. Instantaneous codes (power)
 * are not energy and are left out.
 */
export function intervalEnergies(
  readings: readonly { ts: string; values: Readonly<RegisterValues> }[],
  previous: Readonly<RegisterValues> = {},
): IntervalEnergy[] {
  const last = new Map<string, number>(Object.entries(previous))
  return readings.map((r) => {
    const values: RegisterValues = {}
    for (const [code, value] of Object.entries(r.values)) {
      if (!isCumulative(code)) continue
      const before = last.get(code)
      if (before !== undefined) values[code] = value - before
      last.set(code, value)
    }
    return { ts: r.ts, values }
  })
}
