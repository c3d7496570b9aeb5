import { addDays, addMonths, dayOf, monthOf, startOfDayMs } from '../../shared/calendar.ts'

/**
 * Which local days and months an instant range selects. A day (or month) is in [from, to)
 * when its start is; it lies inside a window [from, until) when all of it does.
 */

/** The first day that starts at or after `t`. */
export function firstDayStartingAtOrAfter(t: Date, timeZone: string): string {
  const day = dayOf(t, timeZone)
  return startOfDayMs(day, timeZone) === t.getTime() ? day : addDays(day, 1)
}

/** The last day that starts before `t`. */
export function lastDayStartingBefore(t: Date, timeZone: string): string {
  return dayOf(t.getTime() - 1, timeZone)
}

/** The last day that ends at or before `t`. */
export function lastDayEndingBy(t: Date, timeZone: string): string {
  return addDays(dayOf(t, timeZone), -1)
}

export function firstMonthStartingAtOrAfter(t: Date, timeZone: string): string {
  const month = monthOf(t, timeZone)
  return startOfDayMs(month + '-01', timeZone) === t.getTime() ? month : addMonths(month, 1)
}

export function lastMonthStartingBefore(t: Date, timeZone: string): string {
  return monthOf(t.getTime() - 1, timeZone)
}

export function firstDayOfMonth(month: string): string {
  return month + '-01'
}

export function lastDayOfMonth(month: string): string {
  return addDays(addMonths(month, 1) + '-01', -1)
}
