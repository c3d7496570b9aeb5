import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InvalidInputError } from '../../shared/errors.ts'
import {
  BPS_TOTAL,
  divideRoundHalfEven,
  formatEur,
  formatEurLocale,
  formatMicros,
  parseMicros,
  splitByWeights,
  splitLargestRemainder,
  type SplitPart,
} from '../../shared/money.ts'

/** Random basis points summing to exactly 10,000 over 1..8 parts (cut points of 0..10000). */
const bpsParts = fc
  .array(fc.integer({ min: 0, max: BPS_TOTAL }), { minLength: 0, maxLength: 7 })
  .map((cuts) => {
    const points = [0, ...cuts.sort((a, b) => a - b), BPS_TOTAL]
    const parts: SplitPart[] = []
    for (let i = 1; i < points.length; i++) parts.push({ key: `p${i - 1}`, bps: points[i]! - points[i - 1]! })
    return parts
  })

const totals = fc.oneof(
  fc.constantFrom(0n, 1n, -1n, 2n, 9_999n, 10_000n, 10_001n, 5_000_000n, -5_000_000n),
  fc.bigInt({ min: -1_000_000_000n, max: 1_000_000_000n }),
  fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }),
)

describe('splitLargestRemainder', () => {
  it('gives parts that sum exactly to the total', () => {
    fc.assert(
      fc.property(totals, bpsParts, (total, parts) => {
        const split = splitLargestRemainder(total, parts)
        let sum = 0n
        for (const v of split.values()) sum += v
        expect(sum).toBe(total)
        expect([...split.keys()]).toEqual(parts.map((p) => p.key))
      }),
      { numRuns: 2_000 },
    )
  })

  it('keeps each part within one unit of its exact share', () => {
    fc.assert(
      fc.property(totals, bpsParts, (total, parts) => {
        const split = splitLargestRemainder(total, parts)
        for (const p of parts) {
          // |part × 10000 − total × bps| < 10000 ⇔ |part − exact| < 1
          const diff = split.get(p.key)! * 10_000n - total * BigInt(p.bps)
          expect(diff < 10_000n && diff > -10_000n).toBe(true)
        }
      }),
      { numRuns: 2_000 },
    )
  })

  it('is deterministic and splits a negative total as the negation of its absolute value', () => {
    fc.assert(
      fc.property(totals, bpsParts, (total, parts) => {
        const a = splitLargestRemainder(total, parts)
        const b = splitLargestRemainder(total, parts.map((p) => ({ ...p })))
        expect([...a]).toEqual([...b])
        const negated = splitLargestRemainder(-total, parts)
        for (const [k, v] of a) expect(negated.get(k)).toBe(-v)
      }),
      { numRuns: 1_000 },
    )
  })

  it('never gives a part with zero basis points anything, nor takes from it', () => {
    fc.assert(
      fc.property(totals, bpsParts, (total, parts) => {
        const split = splitLargestRemainder(total, parts)
        for (const p of parts) if (p.bps === 0) expect(split.get(p.key)).toBe(0n)
      }),
    )
  })

  it('breaks equal remainders in the order the parts are given', () => {
    const parts = [
      { key: 'household', bps: 3_334 },
      { key: 'operator', bps: 3_333 },
      { key: 'platform', bps: 3_333 },
    ]
    // 100 × (0.3334, 0.3333, 0.3333) = 33.34, 33.33, 33.33: one unit left, the largest remainder wins.
    expect([...splitLargestRemainder(100n, parts)]).toEqual([
      ['household', 34n],
      ['operator', 33n],
      ['platform', 33n],
    ])
    // Equal thirds: 10 = 3.33 + 3.33 + 3.33 with one unit left, to the first listed.
    const thirds = splitByWeights(10n, [
      { key: 'household', weight: 1n },
      { key: 'operator', weight: 1n },
      { key: 'platform', weight: 1n },
    ])
    expect([...thirds]).toEqual([
      ['household', 4n],
      ['operator', 3n],
      ['platform', 3n],
    ])
    const reordered = splitByWeights(10n, [
      { key: 'platform', weight: 1n },
      { key: 'household', weight: 1n },
      { key: 'operator', weight: 1n },
    ])
    expect(reordered.get('platform')).toBe(4n)
    expect(splitByWeights(-10n, [...thirds.keys()].map((key) => ({ key, weight: 1n }))).get('household')).toBe(-4n)
  })

  it('refuses basis points that do not sum to 10,000 and duplicate keys', () => {
    expect(() => splitLargestRemainder(10n, [{ key: 'a', bps: 9_999 }])).toThrow(/10000/)
    expect(() => splitLargestRemainder(10n, [{ key: 'a', bps: 10_001 }])).toThrow(/bps/)
    expect(() =>
      splitLargestRemainder(10n, [
        { key: 'a', bps: 5_000 },
        { key: 'a', bps: 5_000 },
      ]),
    ).toThrow(/duplicate/)
    expect(() => splitLargestRemainder(10n, [{ key: 'a', bps: 10_000.5 }])).toThrow(/integer/)
  })

  it('refuses fractional or negative basis points even when they sum to 10,000', () => {
    expect(() =>
      splitLargestRemainder(10n, [
        { key: 'a', bps: 0.5 },
        { key: 'b', bps: 9_999.5 },
      ]),
    ).toThrow(/bps of a must be an integer/)
    expect(() =>
      splitLargestRemainder(10n, [
        { key: 'a', bps: -1 },
        { key: 'b', bps: 5_001 },
        { key: 'c', bps: 5_000 },
      ]),
    ).toThrow(/bps of a must be an integer/)
  })
})

describe('splitByWeights', () => {
  it('gives parts that sum to the total, each within one unit of its exact share', () => {
    fc.assert(
      fc.property(
        totals,
        fc.array(fc.bigInt({ min: 0n, max: 10n ** 12n }), { minLength: 1, maxLength: 10 }).filter((ws) => ws.some((w) => w > 0n)),
        (total, weights) => {
          const parts = weights.map((weight, i) => ({ key: `k${i}`, weight }))
          const w = weights.reduce((a, b) => a + b, 0n)
          const split = splitByWeights(total, parts)
          let sum = 0n
          for (const p of parts) {
            const diff = split.get(p.key)! * w - total * p.weight
            expect(diff < w && diff > -w).toBe(true)
            sum += split.get(p.key)!
          }
          expect(sum).toBe(total)
        },
      ),
      { numRuns: 1_000 },
    )
  })

  it('splits zero among zero weights, and refuses to split anything else that way', () => {
    expect([...splitByWeights(0n, [{ key: 'a', weight: 0n }])]).toEqual([['a', 0n]])
    expect(() => splitByWeights(1n, [{ key: 'a', weight: 0n }])).toThrow(/positive weight/)
  })

  it('refuses a negative weight, even when the weights still sum to a positive one', () => {
    expect(() =>
      splitByWeights(10n, [
        { key: 'a', weight: -1n },
        { key: 'b', weight: 2n },
      ]),
    ).toThrow(/negative weight for a/)
  })
})

describe('amounts as strings', () => {
  it('parses integer micro-euros and names the field when the text is not one', () => {
    expect(parseMicros('1250000')).toBe(1_250_000n)
    expect(parseMicros('-3')).toBe(-3n)
    expect(parseMicros('0')).toBe(0n)
    // MICROS_STRING_LENGTH_MAX characters are taken, one more is not.
    expect(parseMicros('-' + '9'.repeat(30))).toBe(-(10n ** 30n - 1n))
    expect(() => parseMicros('-1' + '0'.repeat(30))).toThrow(InvalidInputError)
    for (const bad of ['', '1.5', '01', '-0', '1e6', ' 1', '+1', '9'.repeat(40)]) {
      expect(() => parseMicros(bad, 'priceMicrosPerDatum')).toThrow(InvalidInputError)
      expect(() => parseMicros(bad, 'priceMicrosPerDatum')).toThrow(/^priceMicrosPerDatum:/)
    }
  })

  it('names amountMicros when no field is given, and refuses a number that is not a string', () => {
    expect(() => parseMicros('1.5')).toThrow(/^amountMicros:/)
    // A JSON number that slipped past the schema: a regular expression would coerce it to text.
    expect(() => parseMicros(1_250_000 as unknown as string)).toThrow(InvalidInputError)
  })

  it('formats and parses back any amount unchanged', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 29n), max: 10n ** 29n }), (m) => {
        expect(parseMicros(formatMicros(m))).toBe(m)
      }),
    )
  })
})

describe('euros for display', () => {
  it('shows exactly two decimals, rounding half to even', () => {
    expect(formatEur(0n)).toBe('0.00')
    expect(formatEur(1_250_000n)).toBe('1.25')
    expect(formatEur(1_234_565n)).toBe('1.23')
    expect(formatEur(1_235_000n)).toBe('1.24')
    expect(formatEur(1_225_000n)).toBe('1.22')
    expect(formatEur(1_225_001n)).toBe('1.23')
    expect(formatEur(5_000n)).toBe('0.00')
    expect(formatEur(15_000n)).toBe('0.02')
    expect(formatEur(-15_000n)).toBe('-0.02')
    expect(formatEur(-5_000n)).toBe('0.00')
    expect(formatEur(-1_250_000n)).toBe('-1.25')
    expect(formatEur(123_456_789_012_345_678n)).toBe('123456789012.35')
  })

  it('divides only by a positive denominator', () => {
    expect(() => divideRoundHalfEven(5n, 0n)).toThrow(/positive denominator/)
    expect(() => divideRoundHalfEven(5n, -2n)).toThrow(/positive denominator/)
  })

  it('rounds like exact arithmetic on the decimal value', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 15n), max: 10n ** 15n }), (m) => {
        const cents = divideRoundHalfEven(m, 10_000n)
        // The rounding error is at most half a cent.
        const err = m - cents * 10_000n
        expect(err <= 5_000n && err >= -5_000n).toBe(true)
        expect(formatEur(m).replace('.', '').replace(/^(-?)0+(?=\d)/, '$1')).toBe(cents === 0n ? '0' : cents.toString())
      }),
    )
  })

  it('lays out euros in French and English without changing the rounded amount', () => {
    expect(formatEurLocale(1_234_567_890n, 'fr-FR').replace(/\s/g, ' ')).toBe('1 234,57 €')
    expect(formatEurLocale(1_234_567_890n, 'en-GB')).toBe('€1,234.57')
    expect(formatEurLocale(1_225_000n, 'en-GB')).toBe('€1.22')
    expect(formatEurLocale(10n ** 24n + 5_000n, 'en-GB')).toBe('€1,000,000,000,000,000,000.00')
  })
})
