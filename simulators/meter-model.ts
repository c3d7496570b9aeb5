import { floorDiv, floorDivUnchecked, mulDivFloor } from './integer.ts'
import { DYNAMISATION_SCALE, HOUSEHOLD_ANNUAL_KWH, loadProfile, PROFILE_REFERENCE_KWH, type ProfileName } from './load-profile.ts'
import { formatTs, MINUTE_MS, QUARTER_HOUR_MS } from './local-time.ts'
import {
  OBIS_EXPORT_ENERGY,
  OBIS_EXPORT_POWER,
  OBIS_GAS_VOLUME,
  OBIS_IMPORT_ENERGY,
  OBIS_IMPORT_POWER,
  type Commodity,
  type IntervalMinutes,
  type RegisterValues,
  type SimReading,
} from './meter-payload.ts'
import type { ModelCalendar, ModelDay } from './model-calendar.ts'
import { hash32, Rng } from './random.ts'
import { solarColumnMwhPerKwp } from './solar-model.ts'
import { GAS_HOUR_WEIGHTS, GAS_WEIGHT_PER_YEAR } from './weather-model.ts'

/**
 * One meter's consumption model. Every register is a pure function of time: the index at
 * the end of an interval is the index at the model's epoch plus the energy of every
 * quarter-hour since, computed in integers so that no energy is lost to rounding
 * (fractions carry over: each index is the floor of an exact cumulative sum).
 *
 * - Electricity, household: BDEW H25, dynamised, scaled to the household's annual kWh.
 * - Electricity with photovoltaics: import follows P25 (BDEW's net draw of PV households), scaled
 *   to the household's grid draw: its annual kWh less what it uses of its own generation (over the
 *   model's first year); export is generation minus the household's own load (H25) when generation
 *   exceeds it. So import + generation − export is the annual consumption.
 * - Gas: hot water and cooking plus heating degree-days, spread over the day by hour.
 * Within a day, quarter-hours get a seeded ±15 % jitter that moves energy between them
 * without changing the day's total.
 */

export type Persons = 1 | 2 | 3 | 4 | 5

/** What a meter is; optional fields are drawn from its seed when absent. */
export interface MeterSpec {
  meterId: string
  commodity: Commodity
  intervalMinutes: IntervalMinutes
  /** Household size, 1–5 (electricity: sets the annual consumption). */
  persons?: Persons
  /** Photovoltaics on the roof: P25 import profile and an export register `1-0:2.8.0`. */
  pv?: boolean
  /** Also send average power of the interval (`1-0:1.7.0`, and `1-0:2.7.0` with PV). */
  power?: boolean
  /** Seed of this meter's model (uint32); derived from the fleet seed and meter id when absent. */
  seed?: number
  /** Overrides of what the seed would draw. */
  annualKwh?: number
  pvPeakW?: number
  annualGasM3?: number
}

export interface ResolvedMeter {
  readonly meterId: string
  readonly commodity: Commodity
  readonly intervalMinutes: IntervalMinutes
  readonly seed: number
  readonly persons: Persons
  readonly pv: boolean
  readonly power: boolean
  readonly annualKwh: number
  readonly pvPeakW: number
  readonly annualGasDm3: number
  /** Register values at the model's epoch (MODEL_EPOCH_DAY, local midnight). */
  readonly epochImportWh: number
  readonly epochExportWh: number
  readonly epochGasDm3: number
}

export const ANNUAL_KWH_MIN = 100
export const ANNUAL_KWH_MAX = 50_000
export const PV_PEAK_W_MIN = 500
export const PV_PEAK_W_MAX = 30_000
export const ANNUAL_GAS_M3_MIN = 10
export const ANNUAL_GAS_M3_MAX = 10_000

/** Household sizes in France (INSEE, rounded), weights in percent. */
export const PERSONS_WEIGHTS: readonly (readonly [Persons, number])[] = [
  [1, 37],
  [2, 33],
  [3, 14],
  [4, 11],
  [5, 5],
]

/** Quarter-hour jitter bounds, per-mille of the profile value. */
const JITTER_PERMILLE_MIN = 850
const JITTER_PERMILLE_MAX = 1150
const GAS_JITTER_PERMILLE_MIN = 900
const GAS_JITTER_PERMILLE_MAX = 1100

function checkRange(field: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${field}: must be an integer from ${min} to ${max}, got ${value}`)
  }
  return value
}

/** The meter's seed: its own, or one derived from the fleet's seed and its id. */
export function meterSeed(spec: Pick<MeterSpec, 'meterId' | 'seed'>, fleetSeed: number): number {
  return spec.seed !== undefined ? spec.seed >>> 0 : hash32(fleetSeed, 'meter', spec.meterId)
}

/** Fills in what the spec leaves open, deterministically from the meter's seed. */
export function resolveMeter(spec: MeterSpec, fleetSeed = 0): ResolvedMeter {
  const seed = meterSeed(spec, fleetSeed)
  const rng = new Rng(hash32(seed, 'household'))
  // Draw every attribute whether or not it is given, so giving one does not shift the others.
  const persons = rng.pick(PERSONS_WEIGHTS)
  const consumptionPermille = rng.int(800, 1200)
  const peakW = rng.int(6, 18) * 500
  const gasM3 = rng.int(700, 1300)
  const epochImportWh = rng.int(500_000, 40_000_000)
  const epochExportWh = rng.int(0, 5_000_000)
  const epochGasDm3 = rng.int(100_000, 20_000_000)

  const p = spec.persons ?? persons
  checkRange('persons', p, 1, 5)
  const annualKwh = spec.annualKwh ?? Math.round((HOUSEHOLD_ANNUAL_KWH[p] * consumptionPermille) / 1000)
  const annualGasM3 = spec.annualGasM3 ?? gasM3 + 100 * p
  return {
    meterId: spec.meterId,
    commodity: spec.commodity,
    intervalMinutes: spec.intervalMinutes,
    seed,
    persons: p,
    pv: spec.commodity === 'electricity' && spec.pv === true,
    power: spec.commodity === 'electricity' && spec.power === true,
    annualKwh: checkRange('annualKwh', annualKwh, ANNUAL_KWH_MIN, ANNUAL_KWH_MAX),
    pvPeakW: checkRange('pvPeakW', spec.pvPeakW ?? peakW, PV_PEAK_W_MIN, PV_PEAK_W_MAX),
    annualGasDm3: checkRange('annualGasM3', annualGasM3, ANNUAL_GAS_M3_MIN, ANNUAL_GAS_M3_MAX) * 1000,
    epochImportWh,
    epochExportWh,
    epochGasDm3,
  }
}

/**
 * A profile value (thousandths of a kWh, i.e. Wh, per 1e6 kWh a year) × annual kWh ×
 * dynamisation (1e-4) is in units of 1e-10 Wh.
 */
const PROFILE_UNITS_PER_WH = PROFILE_REFERENCE_KWH * DYNAMISATION_SCALE
const PROFILE_UNITS_PER_MWH = PROFILE_UNITS_PER_WH / 1000
/** Export days accumulated between checkpoints. */
const EXPORT_CHECKPOINT_DAYS = 32

const MWH_PER_KWH = 1_000_000

/** Days of the model's first year (MODEL_EPOCH_DAY's 2024, a leap year), over which a PV household's self-consumption is summed. */
const SELF_CONSUMPTION_YEAR_DAYS = 366

interface DayState {
  index: number
  importStartWh: number
  importWh: number
  /** importWeights[k] = Σ of the jittered weights of the day's first k quarter-hours. */
  importWeights: Float64Array
  exportStartMwh: number
  /** exportMwh[k] = export of the day's first k quarter-hours, mWh. */
  exportMwh: Float64Array | null
  gasStartDm3: number
  gasDm3: number
  gasWeights: Float64Array | null
}

export class MeterModel {
  readonly meter: ResolvedMeter
  private readonly calendar: ModelCalendar
  private readonly profile: ProfileName
  /** Two days: a reading's interval may start on the day before its end. */
  private recent: DayState[] = []
  private readonly exportCheckpoints: number[] = [0]
  /** The annual kWh the import profile is scaled to (its grid draw); found on first use with photovoltaics. */
  private importAnnualKwhFound: number | null = null

  constructor(meter: ResolvedMeter, calendar: ModelCalendar) {
    this.meter = meter
    this.calendar = calendar
    this.profile = meter.pv ? 'P25' : 'H25'
  }

  /**
   * The household's grid draw a year, kWh: its consumption, less, with photovoltaics, what it uses of
   * its own generation in a year (P25 is a profile of the grid draw, not of the consumption).
   */
  private get importAnnualKwh(): number {
    if (this.importAnnualKwhFound === null) {
      let selfConsumedMwh = 0
      if (this.meter.pv) for (let i = 0; i < SELF_CONSUMPTION_YEAR_DAYS; i++) selfConsumedMwh += this.pvOfDay(this.calendar.dayByIndex(i), null).selfConsumedMwh
      this.importAnnualKwhFound = Math.max(0, this.meter.annualKwh - floorDiv(selfConsumedMwh, MWH_PER_KWH))
    }
    return this.importAnnualKwhFound
  }

  get intervalMs(): number {
    return this.meter.intervalMinutes * MINUTE_MS
  }

  /** Cumulative registers at an instant on the quarter-hour grid. */
  registersAt(ms: number): RegisterValues {
    if (ms % QUARTER_HOUR_MS !== 0) throw new RangeError(`registers are defined on quarter-hours, not at ${new Date(ms).toISOString()}`)
    const day = this.calendar.dayAt(ms)
    const s = this.dayState(day)
    const k = (ms - day.startMs) / QUARTER_HOUR_MS
    const m = this.meter
    if (m.commodity === 'gas') {
      const gasWeights = s.gasWeights!
      return { [OBIS_GAS_VOLUME]: s.gasStartDm3 + floorDiv(s.gasDm3 * gasWeights[k]!, gasWeights[gasWeights.length - 1]!) }
    }
    const w = s.importWeights
    const values: RegisterValues = {
      [OBIS_IMPORT_ENERGY]: s.importStartWh + floorDiv(s.importWh * w[k]!, w[w.length - 1]!),
    }
    if (m.pv) values[OBIS_EXPORT_ENERGY] = m.epochExportWh + floorDiv(s.exportStartMwh + s.exportMwh![k]!, 1000)
    return values
  }

  /** The reading for the interval that ends at `endMs` (on the meter's interval grid). */
  readingAt(endMs: number): SimReading {
    const intervalMs = this.intervalMs
    if (endMs % intervalMs !== 0) throw new RangeError(`${new Date(endMs).toISOString()} does not end a ${this.meter.intervalMinutes}-minute interval`)
    const values = this.registersAt(endMs)
    if (this.meter.power) {
      const before = this.registersAt(endMs - intervalMs)
      const perHour = 60 / this.meter.intervalMinutes
      values[OBIS_IMPORT_POWER] = (values[OBIS_IMPORT_ENERGY]! - before[OBIS_IMPORT_ENERGY]!) * perHour
      if (this.meter.pv) values[OBIS_EXPORT_POWER] = (values[OBIS_EXPORT_ENERGY]! - before[OBIS_EXPORT_ENERGY]!) * perHour
    }
    return { ts: formatTs(endMs), values }
  }

  private dayState(day: ModelDay): DayState {
    for (const s of this.recent) if (s.index === day.index) return s
    const s = this.buildDayState(day)
    this.recent = [s, ...this.recent.slice(0, 1)]
    return s
  }

  private importStartWh(index: number): number {
    return this.meter.epochImportWh + mulDivFloor(this.importAnnualKwh, this.calendar.profilePrefix(this.profile, index), PROFILE_UNITS_PER_WH)
  }

  private gasStartDm3(index: number): number {
    return this.meter.epochGasDm3 + floorDiv(this.meter.annualGasDm3 * this.calendar.gasWeightPrefix(index), GAS_WEIGHT_PER_YEAR)
  }

  private buildDayState(day: ModelDay): DayState {
    const n = day.rows.length
    const m = this.meter
    const rng = new Rng(hash32(m.seed, 'day', day.index))
    if (m.commodity === 'gas') {
      const gasWeights = new Float64Array(n + 1)
      for (let k = 0; k < n; k++) {
        gasWeights[k + 1] = gasWeights[k]! + GAS_HOUR_WEIGHTS[day.rows[k]! >> 2]! * rng.int(GAS_JITTER_PERMILLE_MIN, GAS_JITTER_PERMILLE_MAX)
      }
      const gasStartDm3 = this.gasStartDm3(day.index)
      return {
        index: day.index,
        importStartWh: 0,
        importWh: 0,
        importWeights: new Float64Array(1),
        exportStartMwh: 0,
        exportMwh: null,
        gasStartDm3,
        gasDm3: this.gasStartDm3(day.index + 1) - gasStartDm3,
        gasWeights,
      }
    }
    const column = loadProfile(this.profile).column(day.month, day.type)
    const importWeights = new Float64Array(n + 1)
    for (let k = 0; k < n; k++) {
      importWeights[k + 1] = importWeights[k]! + column[day.rows[k]!]! * rng.int(JITTER_PERMILLE_MIN, JITTER_PERMILLE_MAX)
    }
    const importStartWh = this.importStartWh(day.index)
    let exportStartMwh = 0
    let exportMwh: Float64Array | null = null
    if (m.pv) {
      exportStartMwh = this.exportStartMwh(day.index)
      exportMwh = new Float64Array(n + 1)
      this.exportOfDay(day, exportMwh)
    }
    return {
      index: day.index,
      importStartWh,
      importWh: this.importStartWh(day.index + 1) - importStartWh,
      importWeights,
      exportStartMwh,
      exportMwh,
      gasStartDm3: 0,
      gasDm3: 0,
      gasWeights: null,
    }
  }

  /** Export of a day, mWh (pvOfDay). With `out`, also the running total after each quarter-hour. */
  private exportOfDay(day: ModelDay, out: Float64Array | null): number {
    return this.pvOfDay(day, out).exportedMwh
  }

  /**
   * A day's generation split, mWh: in each quarter-hour, what generation has beyond the household's
   * own load (H25, dynamised) is exported, and the rest of it used at home. With `out`, the running
   * export after each quarter-hour.
   */
  private pvOfDay(day: ModelDay, out: Float64Array | null): { exportedMwh: number; selfConsumedMwh: number } {
    const load = loadProfile('H25').column(day.month, day.type)
    const sun = solarColumnMwhPerKwp(day.month)
    // Bounded by the validated inputs: 3e5 mWh/kWp × 3e4 W × 1,600 ‰ and 65,554 × 5e4 kWh × 1.3e4 stay below 2^53.
    const generationScale = this.meter.pvPeakW * day.sunPermille
    const loadScale = this.meter.annualKwh * day.dynamisationE4
    const rows = day.rows
    const sunQuarterHours = day.sunQuarterHours
    let sum = 0
    let selfConsumed = 0
    for (let k = 0; k < rows.length; k++) {
      const perKwp = sun[sunQuarterHours[k]!]!
      if (perKwp !== 0) {
        const generated = floorDivUnchecked(perKwp * generationScale, 1_000_000)
        const consumed = floorDivUnchecked(load[rows[k]!]! * loadScale, PROFILE_UNITS_PER_MWH)
        if (generated > consumed) {
          sum += generated - consumed
          selfConsumed += consumed
        } else selfConsumed += generated
      }
      if (out !== null) out[k + 1] = sum
    }
    return { exportedMwh: sum, selfConsumedMwh: selfConsumed }
  }

  /** Export since the epoch up to the start of day `index`, mWh (checkpoints every 32 days). */
  private exportStartMwh(index: number): number {
    const c = Math.floor(index / EXPORT_CHECKPOINT_DAYS)
    while (this.exportCheckpoints.length <= c) {
      const first = (this.exportCheckpoints.length - 1) * EXPORT_CHECKPOINT_DAYS
      this.exportCheckpoints.push(this.exportCheckpoints[this.exportCheckpoints.length - 1]! + this.exportOfDays(first, first + EXPORT_CHECKPOINT_DAYS))
    }
    return this.exportCheckpoints[c]! + this.exportOfDays(c * EXPORT_CHECKPOINT_DAYS, index)
  }

  private exportOfDays(fromIndex: number, toIndex: number): number {
    let sum = 0
    for (let i = fromIndex; i < toIndex; i++) sum += this.exportOfDay(this.calendar.dayByIndex(i), null)
    return sum
  }
}
