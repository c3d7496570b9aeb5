import { InvalidInputError, assert } from './errors.ts'

/**
 * Money is an integer number of micro-euros (1e-6 EUR) held in a `bigint`; no floating
 * point ever touches it. On the wire it is a string of that integer (`"1250000"` =
 * 1.25 EUR). Shares of an amount are cut with the largest-remainder method, so the parts
 * always add up to the whole, to the micro-euro. Pure: no I/O.
 */

export const MICROS_PER_EUR = 1_000_000n
export const MICROS_PER_CENT = 10_000n
/** Basis points of a whole split: 10,000 bps = 100 %. */
export const BPS_TOTAL = 10_000

/** Longest amount string we parse (a sign and 30 digits: far beyond any real amount). */
export const MICROS_STRING_LENGTH_MAX = 31

const MICROS_RE = /^-?(0|[1-9]\d*)$/

/** Parses a string of integer micro-euros ("1250000", "-3", "0"); the error names the field. */
export function parseMicros(text: string, field = 'amountMicros'): bigint {
  if (typeof text !== 'string' || text.length > MICROS_STRING_LENGTH_MAX || !MICROS_RE.test(text) || text === '-0') {
    throw new InvalidInputError(`${field}: must be a string of integer micro-euros, like "1250000"`, field)
  }
  return BigInt(text)
}

/** The wire form of an amount: the integer as a decimal string. */
export function formatMicros(micros: bigint): string {
  return micros.toString()
}

/**
 * Divides and rounds half to even (banker's rounding): exact halves go to the even
 * neighbour, so rounding many amounts does not drift in one direction. Works for either sign.
 */
export function divideRoundHalfEven(numerator: bigint, denominator: bigint): bigint {
  assert(denominator > 0n, 'divideRoundHalfEven: positive denominator')
  const negative = numerator < 0n
  const n = negative ? -numerator : numerator
  let q = n / denominator
  const twice = (n % denominator) * 2n
  if (twice > denominator || (twice === denominator && q % 2n === 1n)) q += 1n
  return negative ? -q : q
}

/** Whole cents of an amount, rounded half to even. */
export function microsToCents(micros: bigint): bigint {
  return divideRoundHalfEven(micros, MICROS_PER_CENT)
}

/**
 * Plain decimal euros with exactly two decimals, rounded half to even: 1234565n → "1.23",
 * 1235000n → "1.24", -5000n → "0.00" (a rounded zero carries no sign).
 */
export function formatEur(micros: bigint): string {
  const cents = microsToCents(micros)
  const negative = cents < 0n
  const digits = (negative ? -cents : cents).toString().padStart(3, '0')
  return `${negative ? '-' : ''}${digits.slice(0, -2)}.${digits.slice(-2)}`
}

const eurFormatters = new Map<string, Intl.NumberFormat>()

/**
 * Euros for people to read, in a locale ("fr-FR" → "1 234,57 €", "en-GB" → "€1,234.57").
 * The amount is first rounded to cents half to even by `formatEur`; Intl then only lays out
 * that exact decimal string (Node formats decimal strings exactly, without a float).
 */
export function formatEurLocale(micros: bigint, locale: string): string {
  let f = eurFormatters.get(locale)
  if (f === undefined) {
    f = new Intl.NumberFormat(locale, { style: 'currency', currency: 'EUR', minimumFractionDigits: 2, maximumFractionDigits: 2 })
    eurFormatters.set(locale, f)
  }
  // Intl's TypeScript types predate exact decimal strings; the runtime accepts them.
  return f.format(formatEur(micros) as unknown as number)
}

export interface SplitPart {
  key: string
  bps: number
}

export interface WeightedPart {
  key: string
  weight: bigint
}

/**
 * Splits `total` among parts in proportion to their integer weights, exactly: each part
 * gets the floor of its exact share `total × weight / Σweights`, then the units left over
 * go one each to the parts with the largest fractional remainders; equal remainders are
 * served in the order the parts are given (the stable tie-break is the caller's order).
 * So the parts sum to `total` and each is within one unit of its exact share.
 *
 * A negative total (an adjustment taking money back) is split as the exact negation of
 * the split of its absolute value: split(−x) = −split(x), part by part, so reversing an
 * amount reverses each share exactly. A total of zero gives zeros. With all weights zero
 * only a zero total can be split.
 */
export function splitByWeights(total: bigint, parts: readonly WeightedPart[]): Map<string, bigint> {
  const keys = new Set<string>()
  let weightTotal = 0n
  for (const p of parts) {
    assert(!keys.has(p.key), `split: duplicate key ${p.key}`)
    assert(p.weight >= 0n, `split: negative weight for ${p.key}`)
    keys.add(p.key)
    weightTotal += p.weight
  }
  const result = new Map<string, bigint>()
  if (total === 0n) {
    for (const p of parts) result.set(p.key, 0n)
    return result
  }
  assert(weightTotal > 0n, 'split: a non-zero total needs a positive weight')
  const negative = total < 0n
  const magnitude = negative ? -total : total
  const remainders: { index: number; remainder: bigint }[] = []
  let given = 0n
  for (let i = 0; i < parts.length; i++) {
    const exact = magnitude * parts[i]!.weight
    const floor = exact / weightTotal
    result.set(parts[i]!.key, floor)
    given += floor
    remainders.push({ index: i, remainder: exact % weightTotal })
  }
  let left = magnitude - given
  // Fewer units are left than parts with a non-zero remainder, so each gets at most one.
  remainders.sort((a, b) => (a.remainder === b.remainder ? a.index - b.index : a.remainder > b.remainder ? -1 : 1))
  for (const r of remainders) {
    if (left === 0n) break
    const key = parts[r.index]!.key
    result.set(key, result.get(key)! + 1n)
    left -= 1n
  }
  assert(left === 0n, 'split: units left over')
  if (negative) for (const [k, v] of result) result.set(k, -v)
  return result
}

/**
 * Splits `total` by basis points that sum to exactly 10,000 (see `splitByWeights`). Parts
 * are listed in the tie-break order, which settlement fixes as: household, operator,
 * platform, then third parties by party id.
 */
export function splitLargestRemainder(total: bigint, parts: readonly SplitPart[]): Map<string, bigint> {
  let sum = 0
  for (const p of parts) {
    assert(Number.isInteger(p.bps) && p.bps >= 0 && p.bps <= BPS_TOTAL, `split: bps of ${p.key} must be an integer in 0..10000`)
    sum += p.bps
  }
  assert(sum === BPS_TOTAL, `split: basis points sum to ${sum}, not ${BPS_TOTAL}`)
  return splitByWeights(
    total,
    parts.map((p) => ({ key: p.key, weight: BigInt(p.bps) })),
  )
}
