import { dayType, type DayType } from './day-type.ts'
import { DYNAMIC_PROFILES, DYNAMISATION_SCALE, dynamisationFactorE4, loadProfile, QUARTER_HOURS_PER_DAY, type LoadProfile, type ProfileName } from './load-profile.ts'
import {
  assertTimeZone,
  dayFromNumber,
  dayNumber,
  dayOfYear,
  localDayOf,
  QUARTER_HOUR_MS,
  DAY_MS,
  standardOffsetMs,
  startOfLocalDay,
  wallClock,
  zoneOffsetMs,
} from './local-time.ts'
import { sunQuarterHourShift } from './solar-model.ts'
import { gasDayWeight, sunPermille } from './weather-model.ts'

/**
 * Meter indexes are a pure function of time: the index at an instant is the meter's index at
 * the model's epoch plus all energy since. A run started on any date therefore continues the
 * indexes of an earlier run of the same meters exactly. The calendar holds what every meter
 * of a fleet shares: local days, their day types and quarter-hours, and running sums since
 * the epoch.
 */
export const MODEL_EPOCH_DAY = '2024-01-01'
const EPOCH_DAY_NUMBER = dayNumber(MODEL_EPOCH_DAY)

/** Days kept in the day cache before it is emptied (a run walks forward, so misses are rare). */
export const DAY_CACHE_DAYS_MAX = 4000

/** What a day is, without its instants (cheap: no time-zone lookups). */
export interface DayFacts {
  readonly day: string
  /** Days since MODEL_EPOCH_DAY. */
  readonly index: number
  readonly month: number
  readonly dayOfYear: number
  readonly type: DayType
  /** Dynamisation factor of the day, units of 1e-4. */
  readonly dynamisationE4: number
  readonly sunPermille: number
  readonly gasWeight: number
}

export interface ModelDay extends DayFacts {
  readonly startMs: number
  readonly endMs: number
  /** Local profile row (0–95) of each quarter-hour of the day: 92, 96 or 100 of them. */
  readonly rows: Uint8Array
  /** Quarter-hour of the sun's day (0–95, solar-model.ts) of each quarter-hour. */
  readonly sunQuarterHours: Uint8Array
}

export function dayFacts(index: number): DayFacts {
  if (!Number.isInteger(index) || index < 0) throw new RangeError(`day ${index} is before the model's epoch ${MODEL_EPOCH_DAY}`)
  const day = dayFromNumber(EPOCH_DAY_NUMBER + index)
  const month = Number(day.slice(5, 7))
  const doy = dayOfYear(day)
  return {
    day,
    index,
    month,
    dayOfYear: doy,
    type: dayType(day),
    dynamisationE4: dynamisationFactorE4(doy),
    sunPermille: sunPermille(index),
    gasWeight: gasDayWeight(month, index),
  }
}

export class ModelCalendar {
  readonly timeZone: string
  readonly epochMs: number
  /** Added to a UTC quarter-hour of the day to read the sun's table (solar-model.ts). */
  readonly sunShift: number
  private readonly days = new Map<number, ModelDay>()
  private last: ModelDay | undefined
  private readonly profilePrefixes = new Map<ProfileName, number[]>()
  private readonly gasPrefix: number[] = [0]
  private readonly noonOffsets = new Map<number, number>()

  constructor(timeZone: string) {
    assertTimeZone(timeZone)
    this.timeZone = timeZone
    this.epochMs = startOfLocalDay(MODEL_EPOCH_DAY, timeZone)
    this.sunShift = sunQuarterHourShift(timeZone, standardOffsetMs(timeZone))
  }

  dayByIndex(index: number): ModelDay {
    if (!Number.isInteger(index) || index < 0) throw new RangeError(`day ${index} is before the model's epoch ${MODEL_EPOCH_DAY}`)
    let d = this.days.get(index)
    if (d === undefined) {
      if (this.days.size >= DAY_CACHE_DAYS_MAX) this.days.clear()
      d = this.buildDay(index)
      this.days.set(index, d)
    }
    return d
  }

  /** The local day that contains the instant `ms`. */
  dayAt(ms: number): ModelDay {
    if (ms < this.epochMs) throw new RangeError(`${new Date(ms).toISOString()} is before the model's epoch ${MODEL_EPOCH_DAY}`)
    const last = this.last
    if (last !== undefined) {
      if (ms >= last.startMs && ms < last.endMs) return last
      if (ms >= last.endMs && ms < last.endMs + DAY_MS) {
        const next = this.dayByIndex(last.index + 1)
        if (ms < next.endMs) return (this.last = next)
      }
    }
    const d = this.dayByIndex(dayNumber(localDayOf(ms, this.timeZone)) - EPOCH_DAY_NUMBER)
    this.last = d
    return d
  }

  /**
   * Σ over the days before `index` of the profile's values of the day's quarter-hours ×
   * dynamisation (thousandths × 1e-4). The values are those of the local quarter-hours the day
   * has, as BDEW applies its profiles in legal time: the day the clocks go forward lacks the
   * skipped hour's values (02:00–03:00 in Europe), the day they go back has that hour's twice.
   */
  profilePrefix(profile: ProfileName, index: number): number {
    let prefix = this.profilePrefixes.get(profile)
    if (prefix === undefined) {
      prefix = [0]
      this.profilePrefixes.set(profile, prefix)
    }
    const p = loadProfile(profile)
    while (prefix.length <= index) {
      const d = this.dayByIndex(prefix.length - 1)
      const factor = DYNAMIC_PROFILES.has(profile) ? d.dynamisationE4 : DYNAMISATION_SCALE
      prefix.push(prefix[prefix.length - 1]! + this.profileDaySum(p, d) * factor)
    }
    return prefix[index]!
  }

  /** The profile's values summed over the day's quarter-hours, in thousandths. */
  private profileDaySum(p: LoadProfile, d: ModelDay): number {
    // 96 quarter-hours are the profile's 96 rows in order: a clock change makes a day shorter or longer.
    if (d.rows.length === QUARTER_HOURS_PER_DAY) return p.daySum(d.month, d.type)
    const column = p.column(d.month, d.type)
    let sum = 0
    for (const row of d.rows) sum += column[row]!
    return sum
  }

  /** Σ over the days before `index` of the gas day weights. */
  gasWeightPrefix(index: number): number {
    while (this.gasPrefix.length <= index) {
      this.gasPrefix.push(this.gasPrefix[this.gasPrefix.length - 1]! + dayFacts(this.gasPrefix.length - 1).gasWeight)
    }
    return this.gasPrefix[index]!
  }

  /** The zone's offset at 12:00 UTC of a day (time-zone lookups are slow: one per day, cached). */
  private noonOffsetMs(index: number): number {
    let offset = this.noonOffsets.get(index)
    if (offset === undefined) {
      if (this.noonOffsets.size >= DAY_CACHE_DAYS_MAX) this.noonOffsets.clear()
      offset = zoneOffsetMs((EPOCH_DAY_NUMBER + index) * DAY_MS + DAY_MS / 2, this.timeZone)
      this.noonOffsets.set(index, offset)
    }
    return offset
  }

  private buildDay(index: number): ModelDay {
    const facts = dayFacts(index)
    const day = facts.day
    const wallStart = (EPOCH_DAY_NUMBER + index) * DAY_MS
    const offset = this.noonOffsetMs(index)
    // The same offset from noon the day before to noon the day after: no clock change between
    // the day's two midnights (for offsets within ±12 h, where local midnight lies between them).
    const steady = Math.abs(offset) < DAY_MS / 2 && this.noonOffsetMs(index - 1) === offset && this.noonOffsetMs(index + 1) === offset
    const startMs = steady ? wallStart - offset : startOfLocalDay(day, this.timeZone)
    const endMs = steady ? wallStart + DAY_MS - offset : startOfLocalDay(dayFromNumber(EPOCH_DAY_NUMBER + index + 1), this.timeZone)
    const n = (endMs - startMs) / QUARTER_HOUR_MS
    const rows = new Uint8Array(n)
    const sun = new Uint8Array(n)
    for (let k = 0; k < n; k++) {
      const t = startMs + k * QUARTER_HOUR_MS
      if (steady) {
        rows[k] = k
      } else {
        const w = wallClock(t, this.timeZone)
        rows[k] = w.hour * 4 + Math.floor(w.minute / 15)
      }
      sun[k] = (Math.floor((t - Math.floor(t / DAY_MS) * DAY_MS) / QUARTER_HOUR_MS) + this.sunShift) % QUARTER_HOURS_PER_DAY
    }
    return { ...facts, startMs, endMs, rows, sunQuarterHours: sun }
  }
}
