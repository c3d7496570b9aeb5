/**
 * Days and months are cut in the configured time zone (`METERSHARE_TIMEZONE`); everything
 * else is UTC. A datum's `ts` is the end of the interval it measures (CONTRACT.md), so a datum
 * belongs to the day that interval lies in: day D holds the datums with `ts` in
 * (D 00:00, D+1 00:00] local time, and the reading at midnight closes the day before it
 * (`datumDayOf`); month M likewise. Who owns a datum, and whether a window holds it, is read
 * at its instant (`[from, until)`). Pure: no clock.
 */

const DAY_RE = /^(\d{4})-(\d{2})-(\d{2})$/
const MONTH_RE = /^(\d{4})-(\d{2})$/
const MS_PER_DAY = 86_400_000

/**
 * `Date.UTC` for any year: `Date.UTC` reads years 0–99 as 1900–1999, so `0001-01-01` would become
 * 1901. Month and day overflow as with `Date.UTC` (day 0 is the last day of the month before).
 */
export function utcMs(year: number, monthIndex: number, day = 1, hours = 0, minutes = 0, seconds = 0): number {
  // Date.UTC itself for the years it reads right: it allocates nothing, and every datum's timestamp comes here.
  if (year >= 100) return Date.UTC(year, monthIndex, day, hours, minutes, seconds)
  const d = new Date(0)
  d.setUTCFullYear(year, monthIndex, day)
  d.setUTCHours(hours, minutes, seconds, 0)
  return d.getTime()
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/** Days in a month (1–12) of the proleptic Gregorian calendar. */
export function daysInMonth(year: number, month: number): number {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  return month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!
}

const formatters = new Map<string, Intl.DateTimeFormat>()

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone)
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    })
    formatters.set(timeZone, f)
  }
  return f
}

/** Local wall-clock fields of an instant in a zone. */
function wallClock(ms: number, timeZone: string): { y: number; mo: number; d: number; h: number; mi: number; s: number } {
  const parts = formatter(timeZone).formatToParts(ms)
  const get = (type: Intl.DateTimeFormatPartTypes): number => Number(parts.find((p) => p.type === type)!.value)
  return { y: get('year'), mo: get('month'), d: get('day'), h: get('hour'), mi: get('minute'), s: get('second') }
}

/**
 * The days the system's interfaces take, from the Unix epoch to the end of 2999: the API's times and
 * days (services/api/validation.ts), the days in listing cursors, the months settlement takes. Earlier
 * ones name no reading, the local days of year 1 reach into year 0, which PostgreSQL does not have,
 * and the day after 9999-12-31 has no YYYY-MM-DD.
 */
export const INTERFACE_DAY_MIN = '1970-01-01'
export const INTERFACE_DAY_MAX = '2999-12-31'

/** Offset of the zone from UTC at an instant, in ms (Paris in summer: +7,200,000). */
export function zoneOffsetMs(ms: number, timeZone: string): number {
  const w = wallClock(ms, timeZone)
  const asUtc = utcMs(w.y, w.mo - 1, w.d, w.h, w.mi, w.s)
  return asUtc - (ms - (((ms % 1000) + 1000) % 1000))
}

function pad2(n: number): string {
  return n < 10 ? '0' + n : String(n)
}

function formatDay(y: number, mo: number, d: number): string {
  return `${String(y).padStart(4, '0')}-${pad2(mo)}-${pad2(d)}`
}

export function isDay(s: string): boolean {
  const m = DAY_RE.exec(s)
  if (m === null) return false
  const t = utcMs(Number(m[1]), Number(m[2]) - 1, Number(m[3]))
  return new Date(t).toISOString().slice(0, 10) === s
}

export function isMonth(s: string): boolean {
  const m = MONTH_RE.exec(s)
  return m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 12
}

/** The local calendar day (YYYY-MM-DD) an instant falls in. */
export function dayOf(ts: Date | number, timeZone: string): string {
  const w = wallClock(typeof ts === 'number' ? ts : ts.getTime(), timeZone)
  return formatDay(w.y, w.mo, w.d)
}

/**
 * The local day a datum stamped `ts` belongs to: the day of the interval ending at `ts`, so a
 * reading at local midnight belongs to the day that ends there. Timestamps are whole
 * milliseconds, so that is the day of the millisecond before.
 */
export function datumDayOf(ts: Date | number, timeZone: string): string {
  return dayOf((typeof ts === 'number' ? ts : ts.getTime()) - 1, timeZone)
}

/**
 * The first datum instant of a local day (epoch ms): its start plus a millisecond, the first
 * timestamp `datumDayOf` gives to it. Day D's datums are those in [datumDayStartMs(D),
 * datumDayStartMs(D+1)).
 */
export function datumDayStartMs(day: string, timeZone: string): number {
  return startOfDayMs(day, timeZone) + 1
}

/** The local calendar month (YYYY-MM) an instant falls in. */
export function monthOf(ts: Date | number, timeZone: string): string {
  return dayOf(ts, timeZone).slice(0, 7)
}

/** The first instant of a local day, as UTC epoch ms (handles DST changes, even at midnight). */
export function startOfDayMs(day: string, timeZone: string): number {
  const m = DAY_RE.exec(day)
  if (m === null) throw new RangeError(`not a day: ${day}`)
  const wall = utcMs(Number(m[1]), Number(m[2]) - 1, Number(m[3]))
  // Two passes settle the offset; a third catches a midnight that a DST jump skipped. Offsets and
  // their changes fall on whole seconds, so t does, and the searches below step by whole seconds to
  // land on the change itself (halving to within a second had left up to 999 ms of the day to the one before).
  let t = wall - zoneOffsetMs(wall, timeZone)
  t = wall - zoneOffsetMs(t, timeZone)
  if (dayOf(t, timeZone) !== day) {
    // Local midnight does not exist (clocks jumped forward at 00:00): the day starts at the jump.
    let lo = t
    let hi = t + 3 * 3_600_000
    while (hi - lo > 1000) {
      const mid = lo + Math.floor((hi - lo) / 2000) * 1000
      if (dayOf(mid, timeZone) === day) hi = mid
      else lo = mid
    }
    t = hi
  } else if (dayOf(t - 1000, timeZone) === day) {
    // Ambiguous repeated hour at midnight: take the earliest instant of the day.
    let lo = t - 3 * 3_600_000
    let hi = t
    while (hi - lo > 1000) {
      const mid = lo + Math.floor((hi - lo) / 2000) * 1000
      if (dayOf(mid, timeZone) === day) hi = mid
      else lo = mid
    }
    t = hi
  }
  return t
}

/** Calendar arithmetic on YYYY-MM-DD strings. */
export function addDays(day: string, days: number): string {
  const m = DAY_RE.exec(day)
  if (m === null) throw new RangeError(`not a day: ${day}`)
  const t = utcMs(Number(m[1]), Number(m[2]) - 1, Number(m[3])) + days * MS_PER_DAY
  return new Date(t).toISOString().slice(0, 10)
}

export function addMonths(month: string, months: number): string {
  const m = MONTH_RE.exec(month)
  if (m === null) throw new RangeError(`not a month: ${month}`)
  const index = Number(m[1]) * 12 + (Number(m[2]) - 1) + months
  return `${String(Math.floor(index / 12)).padStart(4, '0')}-${pad2((index % 12) + 1)}`
}

/** [start, end) of a local day as UTC instants. */
export function dayBounds(day: string, timeZone: string): { start: Date; end: Date } {
  return { start: new Date(startOfDayMs(day, timeZone)), end: new Date(startOfDayMs(addDays(day, 1), timeZone)) }
}

/** [start, end) of a local month as UTC instants. */
export function monthBounds(month: string, timeZone: string): { start: Date; end: Date } {
  if (!isMonth(month)) throw new RangeError(`not a month: ${month}`)
  return {
    start: new Date(startOfDayMs(month + '-01', timeZone)),
    end: new Date(startOfDayMs(addMonths(month, 1) + '-01', timeZone)),
  }
}

/** Days of a month, in order. */
export function daysOfMonth(month: string): string[] {
  const days: string[] = []
  const next = addMonths(month, 1) + '-01'
  for (let d = month + '-01'; d !== next; d = addDays(d, 1)) days.push(d)
  return days
}

const RFC3339_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/

/** Parses an RFC 3339 timestamp that carries an offset or Z; null when it is not one. */
export function parseRfc3339(s: string): Date | null {
  const ms = parseRfc3339Ms(s)
  return ms === null ? null : new Date(ms)
}

/**
 * Whether a timestamp (already read) has digits other than 0 past the millisecond. Times are kept to the
 * millisecond, so two readings 100 ns apart would become one datum and the second a `conflict`, and a
 * boundary given to the API would move without a word: such a time is refused instead, saying why.
 */
export function finerThanMillisecond(ts: string): boolean {
  const dot = ts.indexOf('.')
  if (dot < 0) return false
  // Only the fraction's own digits count: a fraction shorter than three digits ends before dot + 4, where the offset begins.
  for (let i = dot + 1; i < ts.length; i++) {
    const c = ts.charCodeAt(i)
    if (c < 0x30 || c > 0x39) return false
    if (i >= dot + 4 && c !== 0x30) return true
  }
  return false
}

/** The same, as epoch milliseconds (fractions beyond the millisecond are cut). */
export function parseRfc3339Ms(s: string): number | null {
  const m = RFC3339_RE.exec(s)
  if (m === null) return null
  const y = Number(m[1])
  const mo = Number(m[2])
  const d = Number(m[3])
  const h = Number(m[4])
  const mi = Number(m[5])
  const sec = Number(m[6])
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 60) return null
  if (d > daysInMonth(y, mo)) return null
  const frac = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'))
  let offsetMin = 0
  if (m[8] === undefined) {
    const oh = Number(m[10])
    const om = Number(m[11])
    if (oh > 23 || om > 59) return null
    offsetMin = (m[9] === '-' ? -1 : 1) * (oh * 60 + om)
  }
  const minuteMs = utcMs(y, mo - 1, d, h, mi) - offsetMin * 60_000
  // Second 60 exists only as a leap second, at 23:59 UTC (RFC 3339 §5.7); it is read as the next
  // second, as Date.parse does. Anywhere else it names a time that never was.
  if (sec === 60 && (((minuteMs % 86_400_000) + 86_400_000) % 86_400_000) !== 86_340_000) return null
  return minuteMs + sec * 1_000 + frac
}

/** RFC 3339 in UTC, milliseconds only when present: `2026-10-01T00:30:00Z`. Live and pulled data use it alike. */
export function formatTimestamp(ts: Date | number): string {
  const iso = new Date(ts).toISOString()
  return iso.endsWith('.000Z') ? iso.slice(0, 19) + 'Z' : iso
}

/** An instant to the minute, in UTC, for people: `2026-10-01 00:30Z`. */
export function formatMinuteUtc(ts: Date | number): string {
  return new Date(ts).toISOString().slice(0, 16).replace('T', ' ') + 'Z'
}

/**
 * `datumDayOf` for hot paths: UTC offsets and DST changes fall on quarter hours, so every instant of
 * one UTC quarter hour lies in the same local day. Memoised per quarter hour, bounded in size.
 */
export function createDatumDayResolver(timeZone: string, entriesMax = 50_000): (ms: number) => string {
  const QUARTER_HOUR_MS = 900_000
  const cache = new Map<number, string>()
  return (ms: number): string => {
    const key = Math.floor((ms - 1) / QUARTER_HOUR_MS)
    let day = cache.get(key)
    if (day === undefined) {
      day = dayOf(key * QUARTER_HOUR_MS, timeZone)
      if (cache.size >= entriesMax) cache.clear()
      cache.set(key, day)
    }
    return day
  }
}
