import { describe, expect, it } from 'vitest'
import { dayType, easterSunday, frenchPublicHolidays, isFrenchPublicHoliday } from '../../simulators/day-type.ts'
import { addDays, dayOfYear, startOfLocalDay, wallClock, weekday } from '../../simulators/local-time.ts'
import { ModelCalendar } from '../../simulators/model-calendar.ts'

describe('day types of the load profiles, with French public holidays', () => {
  it('finds Easter Sunday by the Gregorian computus', () => {
    expect(easterSunday(2024)).toBe('2024-03-31')
    expect(easterSunday(2025)).toBe('2025-04-20')
    expect(easterSunday(2026)).toBe('2026-04-05')
    expect(easterSunday(2027)).toBe('2027-03-28')
    expect(easterSunday(2038)).toBe('2038-04-25')
    expect(easterSunday(2285)).toBe('2285-03-22')
  })

  it('lists the eleven national holidays of 2026', () => {
    expect([...frenchPublicHolidays(2026).keys()].sort()).toEqual([
      '2026-01-01',
      '2026-04-06',
      '2026-05-01',
      '2026-05-08',
      '2026-05-14',
      '2026-05-25',
      '2026-07-14',
      '2026-08-15',
      '2026-11-01',
      '2026-11-11',
      '2026-12-25',
    ])
    expect(isFrenchPublicHoliday('2026-12-26')).toBe(false)
    expect(isFrenchPublicHoliday('2026-04-03')).toBe(false)
  })

  it('counts Saturdays as SA, Sundays and holidays as FT, other days as WT', () => {
    expect(dayType('2026-10-03')).toBe('SA')
    expect(dayType('2026-10-04')).toBe('FT')
    expect(dayType('2026-10-05')).toBe('WT')
    // Ascension Thursday and Whit Monday are holidays.
    expect(dayType('2026-05-14')).toBe('FT')
    expect(dayType('2026-05-25')).toBe('FT')
    // Bastille Day on a Tuesday; Assumption on a Saturday counts as a holiday.
    expect(dayType('2026-07-14')).toBe('FT')
    expect(dayType('2026-08-15')).toBe('FT')
    expect(dayType('2026-11-11')).toBe('FT')
    expect(dayType('2026-11-12')).toBe('WT')
  })

  it('counts Christmas Eve and New Year\'s Eve as SA, as BDEW does, unless they fall on a Sunday', () => {
    // 2026: a Thursday each; 2025: Wednesdays; 2028: Sundays, which stay FT.
    expect(dayType('2026-12-24')).toBe('SA')
    expect(dayType('2026-12-31')).toBe('SA')
    expect(dayType('2025-12-24')).toBe('SA')
    expect(dayType('2025-12-31')).toBe('SA')
    expect(dayType('2028-12-24')).toBe('FT')
    expect(dayType('2028-12-31')).toBe('FT')
    expect(dayType('2026-12-23')).toBe('WT')
    expect(dayType('2027-01-01')).toBe('FT')
  })

  it('counts the day types of a whole year', () => {
    const counts = { SA: 0, FT: 0, WT: 0 }
    for (let d = '2026-01-01'; d < '2027-01-01'; d = addDays(d, 1)) counts[dayType(d)]++
    // 2026: 52 Saturdays (15 August among them, a holiday), 52 Sundays (1 November among them),
    // so 10 holidays fall outside Sundays; 24 and 31 December, Thursdays, count as Saturdays.
    expect(counts).toEqual({ SA: 51 + 2, FT: 52 + 10, WT: 365 - 53 - 62 })
  })

  it('does calendar arithmetic on plain days', () => {
    expect(weekday('2026-10-01')).toBe(4)
    expect(dayOfYear('2026-01-01')).toBe(1)
    expect(dayOfYear('2024-12-31')).toBe(366)
    expect(addDays('2026-02-28', 1)).toBe('2026-03-01')
    expect(new Date(startOfLocalDay('2026-10-01', 'Europe/Paris')).toISOString()).toBe('2026-09-30T22:00:00.000Z')
    expect(new Date(startOfLocalDay('2026-01-01', 'Europe/Paris')).toISOString()).toBe('2025-12-31T23:00:00.000Z')
    // Santiago's clocks jump from 00:00 to 01:00 on 2026-09-06: the day starts at 01:00 local.
    expect(new Date(startOfLocalDay('2026-09-06', 'America/Santiago')).toISOString()).toBe('2026-09-06T04:00:00.000Z')
  })
})

describe('model calendar', () => {
  it('cuts every local day at its midnight and lists its quarter-hours in local rows, across clock changes', () => {
    for (const tz of ['Europe/Paris', 'America/New_York', 'America/Santiago', 'Asia/Kolkata', 'Australia/Lord_Howe', 'UTC']) {
      const calendar = new ModelCalendar(tz)
      for (let index = 0; index < 2 * 366; index++) {
        const d = calendar.dayByIndex(index)
        expect(d.startMs, `${tz} ${d.day}`).toBe(startOfLocalDay(d.day, tz))
        expect(d.endMs, `${tz} ${d.day}`).toBe(startOfLocalDay(addDays(d.day, 1), tz))
        expect(d.rows.length).toBe((d.endMs - d.startMs) / (15 * 60_000))
        // Rows are the local quarter-hour of each instant: check the first, the last and one in the middle.
        for (const k of [0, Math.floor(d.rows.length / 2), d.rows.length - 1]) {
          const w = wallClock(d.startMs + k * 15 * 60_000, tz)
          expect(d.rows[k], `${tz} ${d.day} #${k}`).toBe(w.hour * 4 + Math.floor(w.minute / 15))
        }
      }
    }
  })
})
