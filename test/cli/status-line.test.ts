import { describe, expect, it } from 'vitest'
import { fitStatusLine, simulatorLine } from '../../cli/status-line.ts'

const DAY_MS = 86_400_000
const WORLD_FROM_MS = Date.parse('2026-09-01T00:00:00Z')

describe("the banner's simulator line", () => {
  const line = (fromMs: number, nowMs: number): string =>
    simulatorLine({ meters: 23, fromMs, worldFromMs: WORLD_FROM_MS, nowMs, speed: 21_600, firstDay: '2026-09-01' })

  it('says where a new fleet starts and how fast it replays', () => {
    expect(line(WORLD_FROM_MS, WORLD_FROM_MS + 60 * DAY_MS)).toBe('23 meters from 2026-09-01 at 21600x (a month in about 2 minutes), then in real time')
  })

  it('says a fleet started again resumes at the replay speed while it has a backlog', () => {
    const from = Date.parse('2026-10-12T06:00:00Z')
    expect(line(from, from + 2 * DAY_MS)).toBe('23 meters resuming at 2026-10-12 06:00Z at 21600x (a month in about 2 minutes), then in real time')
  })

  it('says a fleet with nothing left to replay resumes in real time', () => {
    const from = Date.parse('2026-11-29T08:00:00Z')
    expect(line(from, from + 15 * 60_000)).toBe('23 meters resuming at 2026-11-29 08:00Z in real time')
    // Under a second of replay at 21,600x is 6 hours of backlog.
    expect(line(from, from + 6 * 3_600_000 + 21_600)).toMatch(/at 21600x/)
  })
})

describe('the live status line on a terminal', () => {
  const parts = ['60/60 meters connected', '1,234 readings/s', '1,234,567 stored', '12 quarantined', '89,012 released this run', 'simulated 2026-10-12 06:00Z']

  it('keeps to the terminal’s width, less its last column, dropping the parts at its end first (a wrapped line gained a row a second)', () => {
    const whole = parts.join(' · ')
    expect(fitStatusLine(parts, undefined)).toBe(whole)
    expect(fitStatusLine(parts, whole.length + 1)).toBe(whole)
    expect(fitStatusLine(parts, whole.length)).toBe(parts.slice(0, -1).join(' · '))
    expect(fitStatusLine(parts, 80)).toBe('60/60 meters connected · 1,234 readings/s · 1,234,567 stored · 12 quarantined')
    for (let columns = 1; columns <= whole.length + 2; columns++) expect(fitStatusLine(parts, columns).length, `${columns} columns`).toBeLessThanOrEqual(Math.max(1, columns - 1))
  })

  it('cuts the first part, an alarm say, rather than show nothing', () => {
    const alarm = 'DATABASE UNREACHABLE: readings held, not acknowledged (see the log)'
    expect(fitStatusLine([alarm, ...parts], 40)).toBe(alarm.slice(0, 38) + '…')
    expect(fitStatusLine([alarm, ...parts], 70)).toBe(alarm)
  })
})
