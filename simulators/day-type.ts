import { addDays, formatDay, weekday } from './local-time.ts'

/**
 * Day types of the BDEW profiles, with French public holidays: `SA` Saturday, `FT` Sunday
 * or public holiday, `WT` working day. A holiday falling on a Saturday counts as `FT`. As BDEW
 * applies its profiles, 24 and 31 December count as `SA` unless they fall on a Sunday.
 */
export type DayType = 'SA' | 'FT' | 'WT'

/** Easter Sunday of a Gregorian year (the anonymous Gregorian computus). */
export function easterSunday(year: number): string {
  const a = year % 19
  const b = Math.floor(year / 100)
  const c = year % 100
  const d = Math.floor(b / 4)
  const e = b % 4
  const f = Math.floor((b + 8) / 25)
  const g = Math.floor((b - f + 1) / 3)
  const h = (19 * a + b - d - g + 15) % 30
  const i = Math.floor(c / 4)
  const k = c % 4
  const l = (32 + 2 * e + 2 * i - h - k) % 7
  const m = Math.floor((a + 11 * h + 22 * l) / 451)
  const month = Math.floor((h + l - 7 * m + 114) / 31)
  const day = ((h + l - 7 * m + 114) % 31) + 1
  return formatDay(year, month, day)
}

const holidayCache = new Map<number, ReadonlyMap<string, string>>()

/**
 * The eleven national public holidays of metropolitan France (Code du travail, L3133-1),
 * by day. Alsace-Moselle's two extra days are left out.
 */
export function frenchPublicHolidays(year: number): ReadonlyMap<string, string> {
  let holidays = holidayCache.get(year)
  if (holidays === undefined) {
    const easter = easterSunday(year)
    holidays = new Map([
      [formatDay(year, 1, 1), "Jour de l'an"],
      [addDays(easter, 1), 'Lundi de Pâques'],
      [formatDay(year, 5, 1), 'Fête du Travail'],
      [formatDay(year, 5, 8), 'Victoire 1945'],
      [addDays(easter, 39), 'Ascension'],
      [addDays(easter, 50), 'Lundi de Pentecôte'],
      [formatDay(year, 7, 14), 'Fête nationale'],
      [formatDay(year, 8, 15), 'Assomption'],
      [formatDay(year, 11, 1), 'Toussaint'],
      [formatDay(year, 11, 11), 'Armistice 1918'],
      [formatDay(year, 12, 25), 'Noël'],
    ])
    holidayCache.set(year, holidays)
  }
  return holidays
}

export function isFrenchPublicHoliday(day: string): boolean {
  return frenchPublicHolidays(Number(day.slice(0, 4))).has(day)
}

/** Christmas Eve and New Year's Eve, which BDEW's profiles treat as Saturdays. */
const SATURDAY_LIKE_MONTH_DAYS: ReadonlySet<string> = new Set(['12-24', '12-31'])

export function dayType(day: string): DayType {
  const wd = weekday(day)
  if (wd === 0 || isFrenchPublicHoliday(day)) return 'FT'
  if (wd === 6 || SATURDAY_LIKE_MONTH_DAYS.has(day.slice(5))) return 'SA'
  return 'WT'
}
