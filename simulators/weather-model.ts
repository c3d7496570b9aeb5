import { daysInMonth } from './local-time.ts'
import { hash32, Rng } from './random.ts'

/**
 * The district's weather, shared by every meter of a fleet (neighbours see the same sun and
 * the same cold snap): a daily temperature for gas heating and a daily sunshine level for
 * photovoltaics. Each day's value depends only on the day, so any day can be computed alone.
 */

/** Mean daily temperature by month in tenths of °C (Paris area, 1991–2020 normals, rounded). */
export const MONTHLY_MEAN_TEMPERATURE_DECI_C: readonly number[] = [50, 60, 95, 125, 160, 195, 215, 210, 175, 135, 90, 60]

/** Heating stops above this daily mean temperature (French degree-day convention), tenths of °C. */
export const HEATING_BASE_TEMPERATURE_DECI_C = 180

/** Hot water and cooking, as a daily weight in the same unit as heating degree-days (tenths of K·day). */
export const GAS_BASE_WEIGHT_DECI_KD = 14

/** A day's temperature deviates from the monthly mean by at most this, tenths of K. */
export const TEMPERATURE_DEVIATION_DECI_K_MAX = 50

function dayDeviation(dayIndex: number): number {
  return new Rng(hash32('temperature', dayIndex)).int(-TEMPERATURE_DEVIATION_DECI_K_MAX, TEMPERATURE_DEVIATION_DECI_K_MAX)
}

/** Mean temperature of a day, tenths of °C: the month's mean plus a deviation smoothed over three days. */
export function dailyTemperatureDeciC(month: number, dayIndex: number): number {
  const deviation = Math.trunc((dayDeviation(dayIndex - 1) + 2 * dayDeviation(dayIndex) + dayDeviation(dayIndex + 1)) / 4)
  return MONTHLY_MEAN_TEMPERATURE_DECI_C[month - 1]! + deviation
}

/** Gas use of a day as a weight: base use plus heating degree-days, tenths of K·day. */
export function gasDayWeight(month: number, dayIndex: number): number {
  return GAS_BASE_WEIGHT_DECI_KD + Math.max(0, HEATING_BASE_TEMPERATURE_DECI_C - dailyTemperatureDeciC(month, dayIndex))
}

/** Sum of the gas weights of a typical (non-leap, mean-temperature) year: annual volume ↔ weight. */
export const GAS_WEIGHT_PER_YEAR: number = MONTHLY_MEAN_TEMPERATURE_DECI_C.reduce(
  (sum, t, i) => sum + daysInMonth(2025, i + 1) * (GAS_BASE_WEIGHT_DECI_KD + Math.max(0, HEATING_BASE_TEMPERATURE_DECI_C - t)),
  0,
)

/** Relative gas use by local hour (night set-back, morning and evening peaks). */
export const GAS_HOUR_WEIGHTS: readonly number[] = [4, 3, 3, 3, 4, 8, 14, 16, 12, 9, 8, 7, 7, 6, 6, 7, 9, 12, 14, 13, 11, 9, 7, 5]

/** Sunshine levels in per-mille of a month's average day, with their odds (mean close to 1,000). */
const SUN_LEVELS_PERMILLE: readonly (readonly [number, number])[] = [
  [300, 20],
  [750, 30],
  [1250, 30],
  [1600, 20],
]

/** How sunny a day is, per-mille of the month's average day. */
export function sunPermille(dayIndex: number): number {
  return new Rng(hash32('sun', dayIndex)).pick(SUN_LEVELS_PERMILLE)
}
