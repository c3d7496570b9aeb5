/**
 * The little calendar arithmetic the simulators need: local days in the meters' time zone
 * (load profiles are in local wall-clock time) and plain date arithmetic on YYYY-MM-DD.
 * Simulators do not import the product, so this does not reuse `shared/calendar.ts`.
 */

export const MINUTE_MS = 60_000
export const QUARTER_HOUR_MS = 15 * MINUTE_MS
export const HOUR_MS = 60 * MINUTE_MS
export const DAY_MS = 24 * HOUR_MS

const DAY_RE = /^(\d{4})-(\d{2})-(\d{2})$/

export interface WallClock {
  year: number
  month: number
  day: number
  hour: number
  minute: number
}

const formatters = new Map<string, Intl.DateTimeFormat>()

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone)
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
    })
    formatters.set(timeZone, f)
  }
  return f
}

/** Throws a RangeError naming the zone when it is not an IANA time zone. */
export function assertTimeZone(timeZone: string): void {
  try {
    formatter(timeZone)
  } catch {
    throw new RangeError(`timeZone: '${timeZone}' is not an IANA time zone`)
  }
}

export function wallClock(ms: number, timeZone: string): WallClock {
  const w: WallClock = { year: 0, month: 0, day: 0, hour: 0, minute: 0 }
  for (const p of formatter(timeZone).formatToParts(ms)) {
    if (p.type === 'year') w.year = Number(p.value)
    else if (p.type === 'month') w.month = Number(p.value)
    else if (p.type === 'day') w.day = Number(p.value)
    else if (p.type === 'hour') w.hour = Number(p.value)
    else if (p.type === 'minute') w.minute = Number(p.value)
  }
  return w
}

function pad2(n: number): string {
  return n < 10 ? '0' + n : String(n)
}

export function formatDay(year: number, month: number, day: number): string {
  return `${String(year).padStart(4, '0')}-${pad2(month)}-${pad2(day)}`
}

export function isDay(s: string): boolean {
  const m = DAY_RE.exec(s)
  return m !== null && new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))).toISOString().slice(0, 10) === s
}

function dayParts(day: string): [number, number, number] {
  const m = DAY_RE.exec(day)
  if (m === null) throw new RangeError(`not a day: ${day}`)
  return [Number(m[1]), Number(m[2]), Number(m[3])]
}

/** Days since 1970-01-01 of a calendar day (no zone involved). */
export function dayNumber(day: string): number {
  const [y, mo, d] = dayParts(day)
  return Date.UTC(y, mo - 1, d) / DAY_MS
}

export function dayFromNumber(n: number): string {
  return new Date(n * DAY_MS).toISOString().slice(0, 10)
}

export function addDays(day: string, days: number): string {
  return dayFromNumber(dayNumber(day) + days)
}

/** 0 = Sunday … 6 = Saturday. */
export function weekday(day: string): number {
  return (((dayNumber(day) + 4) % 7) + 7) % 7
}

/** 1 on 1 January. */
export function dayOfYear(day: string): number {
  return dayNumber(day) - dayNumber(day.slice(0, 4) + '-01-01') + 1
}

export function monthOfDay(day: string): number {
  return dayParts(day)[1]
}

export function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate()
}

/** The local day an instant falls in. */
export function localDayOf(ms: number, timeZone: string): string {
  const w = wallClock(ms, timeZone)
  return formatDay(w.year, w.month, w.day)
}

/** Offset of local wall-clock time from UTC at an instant, in ms, to the minute. */
export function zoneOffsetMs(ms: number, timeZone: string): number {
  const w = wallClock(ms, timeZone)
  const wallMs = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute)
  return wallMs - Math.floor(ms / MINUTE_MS) * MINUTE_MS
}

/**
 * The zone's standard offset from UTC, ms: the smaller of its offsets in mid-January and
 * mid-July 2025 (daylight saving time adds to it, in either hemisphere).
 */
export function standardOffsetMs(timeZone: string): number {
  return Math.min(zoneOffsetMs(Date.UTC(2025, 0, 15, 12), timeZone), zoneOffsetMs(Date.UTC(2025, 6, 15, 12), timeZone))
}

/**
 * The first instant of a local day. Where midnight does not exist (a DST jump at 00:00),
 * the day starts at the first quarter-hour that belongs to it.
 */
export function startOfLocalDay(day: string, timeZone: string): number {
  const wall = dayNumber(day) * DAY_MS
  let t = wall - zoneOffsetMs(wall, timeZone)
  t = wall - zoneOffsetMs(t, timeZone)
  // Settle to the earliest quarter-hour of the day (repeated or skipped midnights).
  while (localDayOf(t - QUARTER_HOUR_MS, timeZone) === day) t -= QUARTER_HOUR_MS
  while (localDayOf(t, timeZone) !== day) t += QUARTER_HOUR_MS
  return t
}

/**
 * `YYYY-MM-DD` (local midnight in the zone) or RFC 3339 with an offset or Z, to epoch ms;
 * null when it is neither.
 */
export function parseInstant(s: string, timeZone: string): number | null {
  if (isDay(s)) return startOfLocalDay(s, timeZone)
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/.test(s)) return null
  const ms = Date.parse(s)
  return Number.isNaN(ms) ? null : ms
}

/** RFC 3339 in UTC without fractional seconds, as meters stamp readings: 2026-10-01T00:30:00Z. */
export function formatTs(ms: number): string {
  const iso = new Date(ms).toISOString()
  return ms % 1000 === 0 ? iso.slice(0, 19) + 'Z' : iso
}
