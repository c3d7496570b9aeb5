import { readFileSync } from 'node:fs'
import type { DayType } from './day-type.ts'

/**
 * BDEW 2025 standard load profiles (load-profiles/README.md). Values are kept as integer
 * thousandths of a kWh per quarter-hour for a consumer of 1,000,000 kWh a year, so that
 * for a household of A kWh a year one profile value v is exactly v × A / 1e6 Wh.
 */
export type ProfileName = 'H25' | 'P25' | 'S25' | 'G25'

export const PROFILE_FILES: Readonly<Record<ProfileName, string>> = {
  H25: 'bdew-h25.csv',
  P25: 'bdew-p25.csv',
  S25: 'bdew-s25.csv',
  G25: 'bdew-g25.csv',
}

/** Profiles scaled by the dynamisation factor day by day; G25 is static. */
export const DYNAMIC_PROFILES: ReadonlySet<ProfileName> = new Set(['H25', 'P25', 'S25'])

export const QUARTER_HOURS_PER_DAY = 96
const DAY_TYPES: readonly DayType[] = ['SA', 'FT', 'WT']
const COLUMNS = 12 * DAY_TYPES.length

/** The profile's own reference consumption: values are for 1,000,000 kWh a year. */
export const PROFILE_REFERENCE_KWH = 1_000_000

/** Typical annual household consumption by persons (BDEW figures, README). */
export const HOUSEHOLD_ANNUAL_KWH: Readonly<Record<1 | 2 | 3 | 4 | 5, number>> = {
  1: 1900,
  2: 2890,
  3: 3720,
  4: 4085,
  5: 5430,
}

export interface LoadProfile {
  readonly name: ProfileName
  /** Thousandths of a kWh (per 1e6 kWh a year) in quarter-hour `row` (0 = 00:00–00:15 local). */
  thousandths(month: number, type: DayType, row: number): number
  /** Sum of the 96 quarter-hours of a (month, day type), in thousandths. */
  daySum(month: number, type: DayType): number
  /** The 96 values of a (month, day type), by row (for loops over a whole day). */
  column(month: number, type: DayType): Int32Array
}

function columnOf(month: number, type: DayType): number {
  if (!Number.isInteger(month) || month < 1 || month > 12) throw new RangeError(`month: ${month}`)
  return (month - 1) * DAY_TYPES.length + DAY_TYPES.indexOf(type)
}

/** "22.152" → 22152, without going through a float. */
function parseThousandths(cell: string, where: string): number {
  const m = /^(\d+)(?:\.(\d{1,3}))?$/.exec(cell.trim())
  if (m === null) throw new Error(`${where}: '${cell}' is not a non-negative decimal with at most 3 decimals`)
  return Number(m[1]) * 1000 + Number((m[2] ?? '').padEnd(3, '0'))
}

export function parseLoadProfileCsv(name: ProfileName, text: string): LoadProfile {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '')
  if (lines.length !== 2 + QUARTER_HOURS_PER_DAY) {
    throw new Error(`${name}: expected 2 header rows and ${QUARTER_HOURS_PER_DAY} quarter-hours, got ${lines.length} rows`)
  }
  const types = lines[1]!.split(',').slice(1)
  for (let c = 0; c < COLUMNS; c++) {
    if (types[c] !== DAY_TYPES[c % DAY_TYPES.length]) throw new Error(`${name}: column ${c + 1} is '${types[c]}', expected ${DAY_TYPES[c % 3]}`)
  }
  // values[column * 96 + row]
  const values = new Int32Array(COLUMNS * QUARTER_HOURS_PER_DAY)
  const sums = new Array<number>(COLUMNS).fill(0)
  for (let row = 0; row < QUARTER_HOURS_PER_DAY; row++) {
    const cells = lines[2 + row]!.split(',')
    if (cells.length !== 1 + COLUMNS) throw new Error(`${name}: row ${row + 1} has ${cells.length - 1} values, expected ${COLUMNS}`)
    for (let c = 0; c < COLUMNS; c++) {
      const v = parseThousandths(cells[1 + c]!, `${name} row ${row + 1} column ${c + 1}`)
      values[c * QUARTER_HOURS_PER_DAY + row] = v
      sums[c]! += v
    }
  }
  return {
    name,
    thousandths(month, type, row) {
      if (!Number.isInteger(row) || row < 0 || row >= QUARTER_HOURS_PER_DAY) throw new RangeError(`row: ${row}`)
      return values[columnOf(month, type) * QUARTER_HOURS_PER_DAY + row]!
    },
    daySum(month, type) {
      return sums[columnOf(month, type)]!
    },
    column(month, type) {
      const c = columnOf(month, type)
      return values.subarray(c * QUARTER_HOURS_PER_DAY, (c + 1) * QUARTER_HOURS_PER_DAY)
    },
  }
}

const cache = new Map<ProfileName, LoadProfile>()

export function loadProfile(name: ProfileName): LoadProfile {
  let profile = cache.get(name)
  if (profile === undefined) {
    const text = readFileSync(new URL(`./load-profiles/${PROFILE_FILES[name]}`, import.meta.url), 'utf8')
    profile = parseLoadProfileCsv(name, text)
    cache.set(name, profile)
  }
  return profile
}

/** Scale of the dynamisation factor: factors are kept as integers in units of 1e-4. */
export const DYNAMISATION_SCALE = 10_000

/**
 * BDEW dynamisation factor of day `t` of the year (1 on 1 January), rounded to four
 * decimals as BDEW publishes it, as an integer in units of 1e-4 (1.24 → 12400).
 */
export function dynamisationFactorE4(t: number): number {
  const f = -3.916649251e-10 * t * t * t * t + 3.2e-7 * t * t * t - 7.02e-5 * t * t + 2.1e-3 * t + 1.24
  return Math.round(f * DYNAMISATION_SCALE)
}
