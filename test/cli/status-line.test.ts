import { describe, expect, it } from 'vitest'
import { simulatorLine } from '../../cli/status-line.ts'

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
