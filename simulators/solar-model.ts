import { floorDiv } from './integer.ts'
import { QUARTER_HOURS_PER_DAY } from './load-profile.ts'
import { daysInMonth, QUARTER_HOUR_MS } from './local-time.ts'

/**
 * A simple photovoltaic generation model: a month's typical specific yield spread over its
 * daylight hours as a parabola centred on solar noon, scaled by the day's sunshine. Times are
 * quarter-hours of the sun's day, whose boundary 48 is solar noon (the sun ignores daylight
 * saving time; `sunQuarterHourShift` places it in a zone); energies are integer mWh.
 */

/** Specific yield by month, kWh per kWp (south-facing roof in the Paris area, about 1,140 a year). */
export const PV_YIELD_KWH_PER_KWP: readonly number[] = [35, 55, 90, 120, 135, 140, 145, 130, 100, 70, 40, 30]

/** Daylight by month in quarter-hours (about 48.8° N: 8.5 h in January, 16 h in June). */
export const DAYLIGHT_QUARTER_HOURS: readonly number[] = [34, 40, 48, 54, 60, 64, 62, 57, 50, 43, 37, 33]

/** Solar noon in the Paris area is close to 12:00 UTC (11:51): quarter-hour boundary 48. */
const SOLAR_NOON_QUARTER_HOUR = 48

/** The zone whose climate the model is, where the sun keeps the Paris area's solar noon. */
export const SOLAR_HOME_ZONE = 'Europe/Paris'

/**
 * What to add to a UTC quarter-hour of the day (mod 96) to read the sun's table in a zone. In the
 * model's home zone, nothing: solar noon is the Paris area's, 12:00 UTC. Elsewhere the zone says
 * nothing of the longitude but its standard offset, so the house stands on its zone's meridian:
 * solar noon at 12:00 standard time (London 12:00 UTC, New York 17:00 UTC, Tokyo 03:00 UTC), not at
 * Paris's UTC hours, which would put the sun at night on another continent.
 */
export function sunQuarterHourShift(timeZone: string, standardOffsetMs: number): number {
  if (timeZone === SOLAR_HOME_ZONE) return 0
  const shift = standardOffsetMs / QUARTER_HOUR_MS
  if (!Number.isInteger(shift)) throw new RangeError(`${timeZone}: standard offset ${standardOffsetMs} ms is not whole quarter-hours`)
  return ((shift % QUARTER_HOURS_PER_DAY) + QUARTER_HOURS_PER_DAY) % QUARTER_HOURS_PER_DAY
}

/** table[month - 1][sun quarter-hour] = mWh per kWp on a day of average sunshine. */
const SOLAR_TABLE_MWH_PER_KWP: readonly Int32Array[] = PV_YIELD_KWH_PER_KWP.map((yieldKwh, i) => {
  const daylight = DAYLIGHT_QUARTER_HOURS[i]!
  const rise2 = 2 * SOLAR_NOON_QUARTER_HOUR - daylight
  const set2 = 2 * SOLAR_NOON_QUARTER_HOUR + daylight
  // Doubled coordinates keep the parabola's midpoint weights integer for odd daylight lengths.
  const weights = Array.from({ length: QUARTER_HOURS_PER_DAY }, (_, q) => Math.max(0, (2 * q + 1 - rise2) * (set2 - 2 * q - 1)))
  const total = weights.reduce((a, b) => a + b, 0)
  const days = daysInMonth(2025, i + 1)
  return Int32Array.from(weights, (w) => floorDiv(yieldKwh * 1_000_000 * w, days * total))
})

/** A month's generation per kWp by quarter-hour of the sun's day, mWh (multiply by peak W × sunshine ‰ / 1e6). */
export function solarColumnMwhPerKwp(month: number): Int32Array {
  const column = SOLAR_TABLE_MWH_PER_KWP[month - 1]
  if (column === undefined) throw new RangeError(`month: ${month}`)
  return column
}
