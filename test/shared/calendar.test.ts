import { describe, expect, it } from 'vitest'
import { addDays, addMonths, createDatumDayResolver, dayBounds, dayOf, datumDayOf, datumDayStartMs, daysInMonth, daysOfMonth, formatTimestamp, monthBounds, monthOf, parseRfc3339, startOfDayMs } from '../../shared/calendar.ts'

const PARIS = 'Europe/Paris'

describe('calendar', () => {
  it('cuts days in the configured zone', () => {
    expect(dayOf(Date.parse('2026-09-30T21:59:59Z'), PARIS)).toBe('2026-09-30')
    expect(dayOf(Date.parse('2026-09-30T22:00:00Z'), PARIS)).toBe('2026-10-01')
    expect(dayOf(Date.parse('2026-09-30T22:00:00Z'), 'UTC')).toBe('2026-09-30')
    expect(monthOf(Date.parse('2026-10-31T23:30:00Z'), PARIS)).toBe('2026-11')
  })

  it('gives a datum the day of the interval it ends: the reading at midnight closes the day before', () => {
    // Paris midnight of 1 October 2026 is 22:00Z on 30 September.
    expect(datumDayOf(Date.parse('2026-09-30T22:00:00Z'), PARIS)).toBe('2026-09-30')
    expect(datumDayOf(Date.parse('2026-09-30T22:00:00.001Z'), PARIS)).toBe('2026-10-01')
    expect(datumDayOf(Date.parse('2026-09-30T22:15:00Z'), PARIS)).toBe('2026-10-01')
    expect(datumDayOf(Date.parse('2026-10-01T21:45:00Z'), PARIS)).toBe('2026-10-01')
    expect(datumDayOf(Date.parse('2026-10-01T22:00:00Z'), PARIS)).toBe('2026-10-01')
    expect(datumDayStartMs('2026-10-01', PARIS)).toBe(Date.parse('2026-09-30T22:00:00.001Z'))
    // The last interval of October ends at midnight on 1 November: it is October's.
    expect(datumDayOf(Date.parse('2026-10-31T23:00:00Z'), PARIS)).toBe('2026-10-31')
  })

  it('knows a 25-hour and a 23-hour day around daylight saving time', () => {
    const autumn = dayBounds('2026-10-25', PARIS)
    expect(autumn.end.getTime() - autumn.start.getTime()).toBe(25 * 3_600_000)
    const spring = dayBounds('2026-03-29', PARIS)
    expect(spring.end.getTime() - spring.start.getTime()).toBe(23 * 3_600_000)
    expect(new Date(startOfDayMs('2026-10-25', PARIS)).toISOString()).toBe('2026-10-24T22:00:00.000Z')
  })

  it('finds the start of a day whose midnight does not exist', () => {
    // Santiago skipped 2024-09-08 00:00 (clocks jumped to 01:00).
    const start = startOfDayMs('2024-09-08', 'America/Santiago')
    expect(dayOf(start, 'America/Santiago')).toBe('2024-09-08')
    expect(dayOf(start - 1000, 'America/Santiago')).toBe('2024-09-07')
  })

  it('bounds months and does calendar arithmetic', () => {
    const m = monthBounds('2026-10', PARIS)
    expect(m.start.toISOString()).toBe('2026-09-30T22:00:00.000Z')
    expect(m.end.toISOString()).toBe('2026-10-31T23:00:00.000Z')
    expect(addMonths('2026-12', 1)).toBe('2027-01')
    expect(addMonths('2026-01', -1)).toBe('2025-12')
    expect(addDays('2028-02-28', 1)).toBe('2028-02-29')
    expect(daysOfMonth('2026-02')).toHaveLength(28)
  })

  it('resolves days from a memo that agrees with the plain function', () => {
    const resolve = createDatumDayResolver(PARIS)
    for (let t = Date.parse('2026-10-24T00:00:00Z'); t < Date.parse('2026-10-27T00:00:00Z'); t += 7 * 60_000) {
      expect(resolve(t)).toBe(datumDayOf(t, PARIS))
    }
    for (let t = Date.parse('2026-10-24T21:59:58Z'); t < Date.parse('2026-10-24T22:00:03Z'); t += 1) expect(resolve(t)).toBe(datumDayOf(t, PARIS))
  })

  it('parses RFC 3339 with an offset or Z only, and formats without zero milliseconds', () => {
    expect(parseRfc3339('2026-10-01T02:30:00+02:00')?.toISOString()).toBe('2026-10-01T00:30:00.000Z')
    expect(parseRfc3339('2026-10-01T00:30:00.123456Z')?.toISOString()).toBe('2026-10-01T00:30:00.123Z')
    for (const bad of ['2026-10-01T00:30:00', '2026-10-01', 'yesterday', '2026-13-01T00:00:00Z', '2026-10-01T25:00:00Z', '2026-02-30T00:00:00Z']) {
      expect(parseRfc3339(bad)).toBeNull()
    }
    // Second 60 only as a leap second, at 23:59 UTC (in any offset), read as the next second; elsewhere it never was.
    expect(parseRfc3339('2016-12-31T23:59:60Z')?.toISOString()).toBe('2017-01-01T00:00:00.000Z')
    expect(parseRfc3339('2017-01-01T00:59:60+01:00')?.toISOString()).toBe('2017-01-01T00:00:00.000Z')
    for (const bad of ['2026-11-16T09:00:60Z', '2016-12-31T23:59:60+01:00', '2026-10-01T00:00:61Z']) expect(parseRfc3339(bad), bad).toBeNull()
    // Years 0–99 are those years, not 1900–1999 (Date.UTC's reading of them).
    expect(parseRfc3339('0001-01-01T00:00:00Z')?.toISOString()).toBe('0001-01-01T00:00:00.000Z')
    expect(parseRfc3339('0099-03-01T01:00:00+01:00')?.toISOString()).toBe('0099-03-01T00:00:00.000Z')
    expect(parseRfc3339('0004-02-29T00:00:00Z')?.toISOString()).toBe('0004-02-29T00:00:00.000Z')
    expect(parseRfc3339('0001-02-29T00:00:00Z')).toBeNull()
    expect(addDays('0001-12-31', 1)).toBe('0002-01-01')
    // Month lengths of the Gregorian calendar, which the parser checks each day against.
    expect([[2000, 2], [1900, 2], [2024, 2], [2026, 2], [2026, 4], [2026, 12], [4, 2], [100, 2]].map(([y, m]) => daysInMonth(y!, m!))).toEqual([29, 28, 29, 28, 30, 31, 29, 28])
    expect(parseRfc3339('2000-02-29T00:00:00Z')).not.toBeNull()
    expect(parseRfc3339('2100-02-29T00:00:00Z')).toBeNull()
    expect(formatTimestamp(Date.parse('2026-10-01T00:30:00Z'))).toBe('2026-10-01T00:30:00Z')
    expect(formatTimestamp(Date.parse('2026-10-01T00:30:00.5Z'))).toBe('2026-10-01T00:30:00.500Z')
  })
})
