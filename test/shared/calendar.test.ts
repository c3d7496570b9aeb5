import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  addDays,
  addMonths,
  createDatumDayResolver,
  dayBounds,
  dayOf,
  datumDayOf,
  datumDayStartMs,
  daysInMonth,
  daysOfMonth,
  formatMinuteUtc,
  formatTimestamp,
  isDay,
  isMonth,
  monthBounds,
  monthOf,
  parseRfc3339,
  parseRfc3339Ms,
  startOfDayMs,
  utcMs,
  zoneOffsetMs,
} from '../../shared/calendar.ts'

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

  it('starts a day whose midnight was skipped or came twice at the very millisecond of the change', () => {
    // The clocks change on a whole second; a search to the nearest second had left 438 ms of the day to the one before.
    expect(new Date(startOfDayMs('2024-09-08', 'America/Santiago')).toISOString()).toBe('2024-09-08T04:00:00.000Z')
    expect(new Date(startOfDayMs('2026-03-08', 'America/Havana')).toISOString()).toBe('2026-03-08T05:00:00.000Z')
    // Amman set its clocks back from 01:00 to 00:00 on 2021-10-29: the day began at the first midnight, 21:00Z.
    expect(new Date(startOfDayMs('2021-10-29', 'Asia/Amman')).toISOString()).toBe('2021-10-28T21:00:00.000Z')
    for (const [day, zone] of [['2024-09-08', 'America/Santiago'], ['2021-10-29', 'Asia/Amman']] as const) {
      const start = startOfDayMs(day, zone)
      expect(dayOf(start, zone)).toBe(day)
      expect(dayOf(start - 1, zone)).toBe(addDays(day, -1))
    }
  })

  it('starts a day whose midnight comes twice at the first one', () => {
    // Havana set its clocks back from 01:00 to 00:00 on 2025-11-02: 00:00 came at 04:00Z, then at 05:00Z.
    expect(new Date(startOfDayMs('2025-11-02', 'America/Havana')).toISOString()).toBe('2025-11-02T04:00:00.000Z')
    const day = dayBounds('2025-11-02', 'America/Havana')
    expect(day.end.getTime() - day.start.getTime()).toBe(25 * 3_600_000)
  })

  it('reads the offset of a zone at an instant that is not a whole second, before 1970 too', () => {
    expect(zoneOffsetMs(Date.UTC(2026, 6, 1, 12, 0, 0, 123), PARIS)).toBe(7_200_000)
    expect(zoneOffsetMs(Date.UTC(2026, 0, 1, 12, 0, 0, 999), PARIS)).toBe(3_600_000)
    expect(zoneOffsetMs(-1, 'UTC')).toBe(0)
    expect(zoneOffsetMs(Date.UTC(1969, 6, 1, 0, 0, 0, 1), 'UTC')).toBe(0)
  })

  it('writes and takes years before 1000 with four digits, and years before 100 as themselves', () => {
    expect(dayOf(utcMs(999, 0, 1), 'UTC')).toBe('0999-01-01')
    expect(new Date(utcMs(99, 0, 1)).getUTCFullYear()).toBe(99)
    expect(addMonths('0999-12', 1)).toBe('1000-01')
    expect(addMonths('1000-01', -1)).toBe('0999-12')
    expect(addMonths('0999-01', 1)).toBe('0999-02')
  })

  it('takes only whole days and months, and says what it refuses', () => {
    expect(['2026-10-01', '2028-02-29'].map(isDay)).toEqual([true, true])
    expect(['2026-02-29', '2026-13-01', '2026-10-1', 'x2026-10-01', '2026-10-01x', '2026-10-00'].map(isDay)).toEqual([false, false, false, false, false, false])
    expect(['2026-01', '2026-12'].map(isMonth)).toEqual([true, true])
    expect(['2026-00', '2026-13', 'x2026-01', '2026-01x', '2026-1'].map(isMonth)).toEqual([false, false, false, false, false])
    expect(() => startOfDayMs('2026-10-01x', PARIS)).toThrow(/^not a day: 2026-10-01x$/)
    expect(() => addDays('x2026-10-01', 1)).toThrow(/^not a day: x2026-10-01$/)
    expect(() => addMonths('2026-10x', 1)).toThrow(/^not a month: 2026-10x$/)
    expect(() => monthBounds('2026-13', PARIS)).toThrow(/^not a month: 2026-13$/)
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

  it('reads offsets on both sides of UTC, minutes included, and each field at its bounds', () => {
    expect(parseRfc3339Ms('2026-10-01T00:30:00-01:30')).toBe(Date.UTC(2026, 9, 1, 2, 0))
    expect(parseRfc3339Ms('2026-10-01T00:30:00+01:30')).toBe(Date.UTC(2026, 8, 30, 23, 0))
    expect(parseRfc3339Ms('2026-10-01T00:30:00+23:59')).toBe(Date.UTC(2026, 8, 30, 0, 31))
    expect(parseRfc3339Ms('2026-10-01T00:30:00+00:60')).toBeNull()
    expect(parseRfc3339Ms('2026-10-00T00:30:00Z')).toBeNull()
    expect(parseRfc3339Ms('2026-00-10T00:30:00Z')).toBeNull()
    expect(parseRfc3339Ms('2026-10-01T00:60:00Z')).toBeNull()
    expect(parseRfc3339Ms('2026-10-01T00:30:00.5Z')).toBe(Date.UTC(2026, 9, 1, 0, 30, 0, 500))
    expect(parseRfc3339Ms('2026-10-01T00:30:00.05Z')).toBe(Date.UTC(2026, 9, 1, 0, 30, 0, 50))
    expect(parseRfc3339Ms('x2026-10-01T00:30:00Z')).toBeNull()
    expect(parseRfc3339Ms('2026-10-01T00:30:00Zx')).toBeNull()
  })

  it('writes an instant to the minute for people', () => {
    expect(formatMinuteUtc(Date.UTC(2026, 9, 1, 0, 30, 59, 999))).toBe('2026-10-01 00:30Z')
    expect(formatMinuteUtc(new Date(Date.UTC(2026, 9, 1, 0, 30)))).toBe('2026-10-01 00:30Z')
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

  it('reads any number of fraction digits, as RFC 3339 allows (time-secfrac = "." 1*DIGIT), to the millisecond', () => {
    expect(parseRfc3339Ms('2026-10-01T00:30:00.1234567891Z')).toBe(Date.parse('2026-10-01T00:30:00.123Z'))
    expect(parseRfc3339Ms('2026-10-01T00:30:00.000000000000000000Z')).toBe(Date.parse('2026-10-01T00:30:00Z'))
  })

  it('accepts exactly the timestamps of the RFC 3339 grammar, at the instant a reference reading of it gives', () => {
    fc.assert(
      fc.property(fc.oneof({ weight: 9, arbitrary: rfc3339Like }, { weight: 1, arbitrary: fc.string({ maxLength: 40 }) }), (s) => {
        expect(parseRfc3339Ms(s), s).toBe(referenceRfc3339Ms(s))
      }),
      { numRuns: 5_000 },
    )
  })
})

/**
 * RFC 3339 §5.6 read field by field, written from the grammar alone: `T` and `Z` in either case and
 * a space for `T` (the note of §5.6), second 60 only at 23:59 UTC (a leap second, read as the next).
 */
function referenceRfc3339Ms(s: string): number | null {
  let i = 0
  const digits = (n: number): number | null => {
    let v = 0
    for (let k = 0; k < n; k++, i++) {
      const c = s.charCodeAt(i)
      if (!(c >= 48 && c <= 57)) return null
      v = v * 10 + (c - 48)
    }
    return v
  }
  const take = (chars: string): boolean => (i < s.length && chars.includes(s[i]!) ? (i++, true) : false)
  const y = digits(4)
  if (y === null || !take('-')) return null
  const mo = digits(2)
  if (mo === null || !take('-')) return null
  const d = digits(2)
  if (d === null || !take('Tt ')) return null
  const h = digits(2)
  if (h === null || !take(':')) return null
  const mi = digits(2)
  if (mi === null || !take(':')) return null
  const sec = digits(2)
  if (sec === null) return null
  let frac = 0
  if (take('.')) {
    const start = i
    while (i < s.length && s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) i++
    if (i === start) return null
    frac = Number(s.slice(start, Math.min(i, start + 3)).padEnd(3, '0'))
  }
  let offsetMin = 0
  if (!take('Zz')) {
    const sign = s[i++]
    if (sign !== '+' && sign !== '-') return null
    const oh = digits(2)
    if (oh === null || !take(':')) return null
    const om = digits(2)
    if (om === null || oh > 23 || om > 59) return null
    offsetMin = (sign === '-' ? -1 : 1) * (oh * 60 + om)
  }
  if (i !== s.length) return null
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0)
  const monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
  if (mo < 1 || mo > 12 || d < 1 || d > monthDays[mo - 1]! || h > 23 || mi > 59 || sec > 60) return null
  // Days since 1970-01-01 of the proleptic Gregorian calendar (civil-from-days, inverted).
  const yy = mo <= 2 ? y - 1 : y
  const era = Math.floor(yy / 400)
  const yearOfEra = yy - era * 400
  const dayOfYear = Math.floor((153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5) + d - 1
  const days = era * 146_097 + yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear - 719_468
  const minuteMs = (days * 1440 + h * 60 + mi - offsetMin) * 60_000
  if (sec === 60 && ((minuteMs % 86_400_000) + 86_400_000) % 86_400_000 !== 86_340_000) return null
  return minuteMs + sec * 1000 + frac
}

const digitString = (n: number): fc.Arbitrary<string> => fc.stringMatching(new RegExp(`^\\d{${n}}$`))
const field = (n: number, ...edges: string[]): fc.Arbitrary<string> =>
  fc.oneof({ weight: 12, arbitrary: digitString(n) }, { weight: 6, arbitrary: fc.constantFrom(...edges) }, { weight: 1, arbitrary: fc.string({ maxLength: n + 1 }) })
/** Strings near RFC 3339 timestamps: every field at and past its bounds, separators right and wrong. */
const rfc3339Like = fc
  .tuple(
    field(4, '0000', '0001', '0099', '1900', '2000', '2100', '9999'),
    fc.constantFrom('-', '-', '-', '-', '/'),
    field(2, '00', '01', '02', '12', '13'),
    fc.constantFrom('-', '-', '-', '-', '_'),
    field(2, '00', '01', '28', '29', '30', '31', '32'),
    fc.constantFrom('T', 'T', 'T', 't', ' ', 'x', ''),
    field(2, '00', '23', '24'),
    fc.constantFrom(':', ':', ':', ':', ''),
    field(2, '00', '59', '60'),
    fc.constantFrom(':', ':', ':', ':', ''),
    field(2, '00', '59', '60', '61'),
    fc.oneof(fc.constant(''), fc.constant('.'), fc.integer({ min: 1, max: 14 }).chain(digitString).map((f) => '.' + f)),
    fc.oneof(
      fc.constantFrom('Z', 'z', '', 'UTC', '+00:00', '-00:00', '+23:59', '+24:00', '+00:60', '+0100', '+01'),
      fc.tuple(fc.constantFrom('+', '-'), digitString(2), fc.constantFrom(':', ':', ':', ':', ''), digitString(2)).map((a) => a.join('')),
    ),
    fc.constantFrom('', '', '', '', '', '', '\n', ' ', 'Z'),
  )
  .map((parts) => parts.join(''))
