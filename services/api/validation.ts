import { z } from 'zod'
import { INTERFACE_DAY_MAX, INTERFACE_DAY_MIN, dayOf, finerThanMillisecond, isDay, parseRfc3339 } from '../../shared/calendar.ts'
import { InvalidInputError } from '../../shared/errors.ts'
import { DISPLAY_UNSAFE_RE, hasUnstorableText, shownName } from '../../shared/text.ts'

/**
 * Input validation at the HTTP boundary: one zod schema per part of a request, parsed
 * before any side effect; the first issue becomes an InvalidInputError whose message
 * starts with the field it is about (`kind: expected one of utility, third_party`).
 */

export type InputLocation = 'params' | 'query' | 'body'

/** Default wording of zod issues; a message given in a schema (`.min(1, '…')`) wins over it. */
function issueMessage(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.input === undefined && (issue.code === 'invalid_type' || issue.code === 'invalid_value' || issue.code === 'invalid_union')) return 'required'
  switch (issue.code) {
    case 'invalid_type':
      if (issue.expected === 'object') return 'expected an object'
      if (issue.expected === 'array') return 'expected an array'
      return `expected ${issue.expected === 'int' ? 'an integer' : `a ${issue.expected}`}`
    case 'invalid_value':
      return issue.values.length === 1
        ? `expected ${String(issue.values[0])}`
        : `expected one of ${issue.values.map((v) => String(v)).join(', ')}`
    case 'too_small':
      return boundMessage('at least', issue.origin, issue.minimum, issue.inclusive !== false)
    case 'too_big':
      return boundMessage('at most', issue.origin, issue.maximum, issue.inclusive !== false)
    case 'invalid_format':
      return issue.format === 'regex' ? 'has an invalid format' : `expected ${issue.format}`
    case 'unrecognized_keys':
      return issue.keys.length === 1 ? 'unknown field' : `unknown fields ${listedNames(issue.keys)}`
    case 'not_multiple_of':
      return `must be a multiple of ${String(issue.divisor)}`
    case 'invalid_union':
      return 'matches none of the allowed forms'
    default:
      return undefined
  }
}

function boundMessage(word: string, origin: string, bound: number | bigint, inclusive: boolean): string {
  const value = inclusive ? String(bound) : `${word === 'at least' ? 'more' : 'less'} than ${String(bound)}`
  const prefix = inclusive ? `must be ${word} ` : 'must be '
  switch (origin) {
    case 'string':
      return `${prefix}${value} ${bound === 1 && inclusive ? 'character' : 'characters'} long`
    case 'array':
    case 'set':
      return `${prefix}${value} ${bound === 1 && inclusive ? 'item' : 'items'}`
    default:
      return `${prefix}${value}`
  }
}

/** Names of unknown fields a message lists; past them, how many more. */
const LISTED_NAMES_MAX = 5

/** `a, b, c and 7 more`: names a client sent, each as shownName shows it. */
function listedNames(names: readonly string[]): string {
  const listed = names.slice(0, LISTED_NAMES_MAX).map((n) => shownName(n)).join(', ')
  return names.length > LISTED_NAMES_MAX ? `${listed} and ${names.length - LISTED_NAMES_MAX} more` : listed
}

/** `split.thirdParties[0].partyId`, each key as shownName shows it; the location's name when the issue is about the whole part. */
export function fieldName(path: readonly PropertyKey[], location: InputLocation): string {
  if (path.length === 0) return location
  let name = ''
  for (const key of path) {
    if (typeof key === 'number') name += `[${key}]`
    else name += name === '' ? shownName(String(key)) : `.${shownName(String(key))}`
  }
  return name
}

/**
 * The first key or string value in `value` that PostgreSQL cannot store (see shared/text.ts): the
 * path of the value, or of the object whose key it is. JSON bodies nest JSON_NESTING_MAX levels at most.
 */
function unstorableAt(value: unknown, path: PropertyKey[] = []): { path: PropertyKey[]; inKey: boolean } | null {
  if (typeof value === 'string') return hasUnstorableText(value) ? { path, inKey: false } : null
  if (typeof value !== 'object' || value === null) return null
  for (const [key, item] of Object.entries(value)) {
    if (!Array.isArray(value) && hasUnstorableText(key)) return { path, inKey: true }
    const found = unstorableAt(item, Array.isArray(value) ? [...path, Number(key)] : [...path, key])
    if (found !== null) return found
  }
  return null
}

/** Issues that say a value is of a kind its field does not take (a number for a name or a choice of words), or is no field. */
const MISPLACED_ISSUES = new Set<string>(['invalid_type', 'invalid_value', 'unrecognized_keys'])

/** Parses one part of a request or throws InvalidInputError naming the first bad field. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, location: InputLocation): z.output<S> {
  // No field of ours holds U+0000 or half a UTF-16 pair; either would fail the statement storing or looking it up.
  const unstorable = unstorableAt(value)
  if (unstorable !== null) {
    const field = fieldName(unstorable.path, location)
    const what = unstorable.inKey ? 'a key of it must' : 'must'
    throw new InvalidInputError(`${field}: ${what} not contain U+0000 or a lone UTF-16 surrogate`, field)
  }
  // A parameter given twice (`?limit=10&limit=20`) arrives as an array: say so, not that it is not a string.
  if (location === 'query' && typeof value === 'object' && value !== null) {
    const repeated = Object.entries(value).find(([, v]) => Array.isArray(v))
    if (repeated !== undefined) {
      throw new InvalidInputError(`${shownName(repeated[0])}: given ${(repeated[1] as unknown[]).length} times; give it once`, repeated[0])
    }
  }
  const result = schema.safeParse(value, { error: issueMessage })
  if (result.success) return result.data
  // An unknown key first: a misspelt field (`untill`) is named as what it is, not by the required one it misses.
  const issue = result.error.issues.find((i) => i.code === 'unrecognized_keys') ?? result.error.issues[0]!
  // An unknown key is reported under its own name, not under its parent's.
  const path = issue.code === 'unrecognized_keys' && issue.keys.length === 1 ? [...issue.path, issue.keys[0]!] : issue.path
  const field = fieldName(path, location)
  const message = issue.code === 'unrecognized_keys' && issue.keys.length === 1 ? 'unknown field' : issue.message
  throw new InvalidInputError(`${field}: ${message}`, field, { misplaced: MISPLACED_ISSUES.has(issue.code) })
}

const RFC3339_MESSAGE = 'expected an RFC 3339 time with an offset, e.g. 2026-10-01T00:00:00Z'
const RFC3339_EXAMPLE = '2026-10-01T00:00:00Z'

/** The instants and days the API takes: those of INTERFACE_DAY_MIN to INTERFACE_DAY_MAX (meters' data starts in 2000). */
export const API_TIME_MIN = `${INTERFACE_DAY_MIN}T00:00:00Z`
export const API_TIME_MAX = `${INTERFACE_DAY_MAX}T23:59:59Z`
export const API_DAY_MIN = API_TIME_MIN.slice(0, 10)
export const API_DAY_MAX = API_TIME_MAX.slice(0, 10)
const API_TIME_MIN_MS = Date.parse(API_TIME_MIN)
const API_TIME_MAX_MS = Date.parse(API_TIME_MAX) + 999
const RANGE_MESSAGE = `expected a time from ${API_TIME_MIN} to ${API_TIME_MAX}`

/** A time parsed from a request, or an issue saying what is wrong with it. */
function apiTime(s: string, ctx: z.RefinementCtx): Date {
  if (finerThanMillisecond(s)) {
    // Found by probing: `.123456789Z` was cut to `.123Z`, and a move-out moved without a word.
    ctx.addIssue({ code: 'custom', message: 'finer than a millisecond: times are kept to the millisecond', input: s })
    return z.NEVER as never
  }
  const date = parseRfc3339(s)
  if (date === null || date.getTime() < API_TIME_MIN_MS || date.getTime() > API_TIME_MAX_MS) {
    ctx.addIssue({ code: 'custom', message: date === null ? RFC3339_MESSAGE : RANGE_MESSAGE, input: s })
    return z.NEVER as never
  }
  return date
}

/** Why a day (YYYY-MM-DD) is outside the days the API takes, or null. */
export function dayOutOfRange(day: string): string | null {
  return day < API_DAY_MIN || day > API_DAY_MAX ? `expected a day from ${API_DAY_MIN} to ${API_DAY_MAX}` : null
}

/** A local day in a request: YYYY-MM-DD, from the first day of 1970 to the last of 2999. */
export const dayInput = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'expected a day, YYYY-MM-DD')
  .refine((d) => isDay(d), 'expected a day, YYYY-MM-DD')
  .refine((d) => dayOutOfRange(d) === null, `expected a day from ${API_DAY_MIN} to ${API_DAY_MAX}`)

/** An RFC 3339 time with an offset or Z, parsed to a Date. */
export const rfc3339Time = z
  .string()
  .max(64)
  .meta({ format: 'date-time', examples: [RFC3339_EXAMPLE] })
  .transform((s, ctx) => apiTime(s, ctx))

/** A time from a query string with the `+` of its offset given back (sent unencoded, it arrives as a space). */
function queryTimeText(s: string): string {
  return s.replace(/ (\d{2}:\d{2})$/, '+$1')
}

/**
 * The same in a query string, where an unencoded `+` of the offset arrives as a space
 * (`from=2026-10-01T00:00:00+02:00` typed by hand): that space is read as the `+` it was.
 */
export const rfc3339QueryTime = z
  .string()
  .max(64)
  .meta({ format: 'date-time', examples: [RFC3339_EXAMPLE] })
  .transform((s, ctx) => apiTime(queryTimeText(s), ctx))

/**
 * A local day in a query: YYYY-MM-DD, or an RFC 3339 time standing for the local day (in `timezone`)
 * it falls in, since the contract gives every time as RFC 3339 (`from=2026-10-01T00:00:00Z`).
 */
export function queryDayInput(timezone: string) {
  return z
    .string()
    .max(64)
    .meta({ description: 'a day, YYYY-MM-DD, or an RFC 3339 time: the local day it falls in', examples: ['2026-10-01'] })
    .transform((s, ctx) => {
      if (/^\d{4}-\d{2}-\d{2}$/.test(s)) {
        const day = dayInput.safeParse(s)
        if (!day.success) ctx.addIssue({ code: 'custom', message: day.error.issues[0]!.message, input: s })
        return day.success ? day.data : (z.NEVER as never)
      }
      const time = parseRfc3339(queryTimeText(s))
      if (time === null) {
        ctx.addIssue({ code: 'custom', message: `expected a day, YYYY-MM-DD, or an RFC 3339 time (${RFC3339_EXAMPLE})`, input: s })
        return z.NEVER as never
      }
      const day = dayOf(time, timezone)
      if (dayOutOfRange(day) !== null) {
        ctx.addIssue({ code: 'custom', message: RANGE_MESSAGE, input: s })
        return z.NEVER as never
      }
      return day
    })
}

/** A non-empty trimmed name of at most `max` characters, without control or text-reordering characters (found by probing: a party named "x\u202Eevil"). */
export function nameString(max: number) {
  return z
    .string()
    .trim()
    .min(1, 'must not be empty')
    .max(max)
    .refine((s) => !DISPLAY_UNSAFE_RE.test(s), 'must not hold control characters (a line break, a tab), line or paragraph separators, nor invisible ones or ones that reorder text (U+061C, U+200B, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069, U+FEFF)')
}

/** Page size and opaque cursor of every paginated list; the maximum comes from config. */
export function pageQueryShape(pageItemsMax: number) {
  return {
    cursor: z.string().min(1).max(512).optional().meta({ description: 'the `nextCursor` of the previous page' }),
    // Digits only: `0x10`, `1e1` or ` 5` are no page size (Number() would take them).
    limit: z
      .string()
      .regex(/^[0-9]+$/, 'expected a whole number')
      .transform(Number)
      .pipe(z.number().min(1).max(pageItemsMax))
      .default(Math.min(100, pageItemsMax))
      .meta({ description: `items per page, at most ${pageItemsMax}` }),
  }
}

/** The answer of a paginated list. */
export function pageAnswer<T extends z.ZodType>(item: T) {
  return z.object({
    items: z.array(item),
    nextCursor: z.string().nullable().meta({ description: 'pass as `cursor` for the next page; null on the last page' }),
  })
}

/** A time in an answer: RFC 3339 in UTC (`formatTimestamp`). */
export const timeOutput = z.string().meta({ format: 'date-time', examples: ['2026-10-01T00:00:00Z'] })

/** Money on the wire: a string of integer micro-euros (`"1250000"` = 1.25 EUR). */
export const microsOutput = z.string().regex(/^-?\d+$/).meta({ description: 'integer micro-euros', examples: ['1250000'] })

/** Error answers as documented in the OpenAPI description. */
export const errorBodySchema = z.object({
  error: z.object({
    code: z.string().meta({ description: 'stable machine code in SNAKE_CASE', examples: ['INVALID_INPUT'] }),
    message: z.string().meta({
      description: 'for people; for 400 it starts with the field',
      examples: ['kind: expected one of utility, third_party'],
    }),
  }),
})

/**
 * Largest body of a portal form (URL-encoded): the sign-in's email and password, or the account's
 * three passwords of up to PASSWORD_LENGTH_MAX characters, each of which may take 9 bytes encoded.
 */
export const PORTAL_FORM_BYTES_MAX = 8 * 1024

/** How many times a header (lowercase name) is in a request's raw headers (name, value, name, value…). */
export function headerCount(rawHeaders: readonly string[], name: string): number {
  let n = 0
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === name) n++
  return n
}
