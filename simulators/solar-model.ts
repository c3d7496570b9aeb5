import { floorDiv } from './integer.ts'
import { daysInMonth } from './local-time.ts'

/**
 * A simple photovoltaic generation model: a month's typical specific yield spread over its
 * daylight hours as a parabola centred on solar noon, scaled by the day's sunshine. Times are
 * UTC quarter-hours (the sun ignores daylight saving time); energies are integer mWh.
 */

/** Specific yield by month, kWh per kWp (south-facing roof in the Paris area, about 1,140 a year). */
export const PV_YIELD_KWH_PER_KWP: readonly number[] = [35, 55, 90, 120, 135, 140, 145, 130, 100, 70, 40, 30]

/** Daylight by month in quarter-hours (about 48.8° N: 8.5 h in January, 16 h in June). */
export const DAYLIGHT_QUARTER_HOURS: readonly number[] = [34, 40, 48, 54, 60, 64, 62, 57, 50, 43, 37, 33]

/** Solar noon in the Paris area is close to 12:00 UTC: quarter-hour boundary 48. */
const SOLAR_NOON_QUARTER_HOUR = 48

/** table[month - 1][utc quarter-hour] = mWh per kWp on a day of average sunshine. */
const SOLAR_TABLE_MWH_PER_KWP: readonly Int32Array[] = PV_YIELD_KWH_PER_KWP.map((yieldKwh, i) => {
  const daylight = DAYLIGHT_QUARTER_HOURS[i]!
  const rise2 = 2 * SOLAR_NOON_QUARTER_HOUR - daylight
  const set2 = 2 * SOLAR_NOON_QUARTER_HOUR + daylight
  // Doubled coordinates keep the parabola's midpoint weights integer for odd daylight lengths.
  const weights = Array.from({ length: 96 }, (_, q) => Math.max(0, (2 * q + 1 - rise2) * (set2 - 2 * q - 1)))
  const total = weights.reduce((a, b) => a + b, 0)
  const days = daysInMonth(2025, i + 1)
  return Int32Array.from(weights, (w) => floorDiv(yieldKwh * 1_000_000 * w, days * total))
})

/** A month's generation per kWp by UTC quarter-hour, mWh (multiply by peak W × sunshine ‰ / 1e6). */
export function solarColumnMwhPerKwp(month: number): Int32Array {
  const column = SOLAR_TABLE_MWH_PER_KWP[month - 1]
  if (column === undefined) throw new RangeError(`month: ${month}`)
  return column
}
