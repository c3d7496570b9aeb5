import fc from 'fast-check'
import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { isDayKeyText, isTimestampText } from '../../../shared/cursor.ts'
import { isTsKey } from '../../../services/metering/ts-key.ts'
import { describeDatabases } from '../../support/database.ts'

/** Texts near the timestamps PostgreSQL prints: every field at and past its bounds, and the offset forms. */
const digits = (n: number): fc.Arbitrary<string> => fc.stringMatching(new RegExp(`^\\d{${n}}$`))
const near = (n: number, ...edges: string[]): fc.Arbitrary<string> => fc.oneof({ weight: 1, arbitrary: digits(n) }, { weight: 6, arbitrary: fc.constantFrom(...edges) })
const timestampLike = fc
  .tuple(
    near(4, '0000', '0001', '9999', '2026'),
    near(2, '00', '01', '02', '12', '13'),
    near(2, '00', '01', '28', '29', '30', '31', '32'),
    fc.constantFrom(' ', 'T'),
    near(2, '00', '23', '24'),
    near(2, '00', '59', '60'),
    near(2, '00', '59', '60'),
    fc.oneof(fc.constant(''), fc.integer({ min: 1, max: 7 }).chain(digits).map((f) => '.' + f)),
    fc.oneof(
      fc.constantFrom('', 'Z', '+00', '-00', '+15:59:59', '-15:59:59', '+16', '+1559', '+15:5959'),
      fc.tuple(fc.constantFrom('+', '-'), near(2, '14', '15', '16'), fc.constantFrom('', ':', ':', ':'), near(2, '00', '59', '60'), fc.constantFrom('', ':', ':'), near(2, '00', '59', '60')).map((a) => a.join('')),
    ),
  )
  .map(([y, mo, d, sep, h, mi, s, frac, offset]) => `${y}-${mo}-${d}${sep}${h}:${mi}:${s}${frac}${offset}`)

describeDatabases('cursor keys', (t) => {
  it('takes a timestamp key only when the database casts it: a forged one is a 400, never a failing query', async () => {
    await fc.assert(
      fc.asyncProperty(timestampLike, async (text) => {
        fc.pre(isTimestampText(text))
        const cast = await sql`SELECT ${text}::timestamptz AS t`.execute(t.db).then(
          () => null,
          (err: unknown) => (err as Error).message,
        )
        expect(cast, text).toBeNull()
      }),
      { numRuns: 150 },
    )
  })

  it('takes a time key (exactTsKey) or a day key only when the database reads it', async () => {
    const tsKey = fc
      .tuple(near(4, '0000', '0001', '2026', '9999'), near(2, '00', '01', '12', '13'), near(2, '00', '01', '29', '31', '32'), near(2, '00', '23', '24'), near(2, '00', '59', '60'), near(2, '00', '59', '60'), digits(6))
      .map(([y, mo, d, h, mi, s, us]) => `${y}-${mo}-${d}T${h}:${mi}:${s}.${us}Z`)
    const dayKey = fc.tuple(near(4, '0000', '0001', '1969', '1970', '2026', '2999', '3000', '9999'), near(2, '00', '01', '02', '12', '13'), near(2, '00', '01', '28', '29', '30', '31', '32')).map((p) => p.join('-'))
    await fc.assert(
      fc.asyncProperty(fc.oneof(tsKey.map((k) => ['ts', k] as const), dayKey.map((k) => ['day', k] as const)), async ([kind, text]) => {
        fc.pre(kind === 'ts' ? isTsKey(text) : isDayKeyText(text))
        const cast = kind === 'ts' ? sql`SELECT ${text}::timestamptz AS t` : sql`SELECT ${text}::date AS d`
        const failure = await cast.execute(t.db).then(
          () => null,
          (err: unknown) => (err as Error).message,
        )
        expect(failure, text).toBeNull()
      }),
      { numRuns: 150 },
    )
  })
})

