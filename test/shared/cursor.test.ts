import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CURSOR_CHARS_MAX, CURSOR_NOT_OF_LISTING, CURSOR_NOT_RETURNED, cursorListing, isBigintText, isDayKeyText, isTimestampText } from '../../shared/cursor.ts'
import { InvalidInputError } from '../../shared/errors.ts'

const made = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url')

function refusal(decode: () => unknown): { message: string; field: string | undefined } {
  try {
    decode()
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidInputError)
    return { message: (e as InvalidInputError).message, field: (e as InvalidInputError).field }
  }
  throw new Error('the cursor was accepted')
}

describe('cursorListing', () => {
  const pairs = cursorListing('pairs', ['string', 'string?'])

  it('gives back the key it encoded, nulls included, in URL-safe characters', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), fc.option(fc.string({ maxLength: 100 })), (a, b) => {
        const cursor = pairs.encode([a, b])
        expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/)
        expect(pairs.decode(cursor)).toEqual([a, b])
      }),
    )
  })

  it('refuses the cursor of another listing, a key of the wrong shape and what is not a cursor, naming the field', () => {
    const other = cursorListing('others', ['string', 'string?'])
    const cases = [
      other.encode(['a', null]),
      made(['pairs', 'a']),
      made(['pairs', 'a', null, 'c']),
      made(['pairs', null, 'b']),
      made(['pairs', 'a', 1]),
      // A key PostgreSQL could not hold was never encoded: it would fail the query (500), not page.
      made(['pairs', 'a\u0000b', 'c']),
      made(['pairs', 'a', '\ud800']),
      made({ listing: 'pairs', key: ['a', 'b'] }),
      made('pairs'),
      'not a cursor',
      '',
      Buffer.from('["pairs",', 'utf8').toString('base64url'),
      'A'.repeat(CURSOR_CHARS_MAX + 1),
    ]
    for (const cursor of cases) {
      expect(refusal(() => pairs.decode(cursor)), cursor).toEqual({ message: CURSOR_NOT_OF_LISTING, field: 'cursor' })
    }
  })

  it('refuses a key its listing does not accept, with the refusal the listing chose', () => {
    const days = cursorListing('days', ['string'], { accepts: ([day]) => /^\d{4}-\d{2}-\d{2}$/.test(day), refusal: CURSOR_NOT_RETURNED })
    expect(days.decode(days.encode(['2026-10-01']))).toEqual(['2026-10-01'])
    expect(refusal(() => days.decode(days.encode(['October'])))).toEqual({ message: CURSOR_NOT_RETURNED, field: 'cursor' })
    expect(refusal(() => days.decode('%%%'))).toEqual({ message: CURSOR_NOT_RETURNED, field: 'cursor' })
  })

  it('takes a cursor of its length limit, and refuses a longer one', () => {
    const long = cursorListing('long', ['string'])
    // ["long","…"] is 11 bytes around the key; 3 bytes make 4 characters.
    const key = 'x'.repeat((CURSOR_CHARS_MAX * 3) / 4 - 11)
    const cursor = long.encode([key])
    expect(cursor).toHaveLength(CURSOR_CHARS_MAX)
    expect(long.decode(cursor)).toEqual([key])
    expect(refusal(() => long.decode(long.encode([key + 'x'])))).toEqual({ message: CURSOR_NOT_OF_LISTING, field: 'cursor' })
  })
})

describe('cursor key checks', () => {
  it('accept the timestamps PostgreSQL prints and refuse anything a cast would fail on', () => {
    for (const ok of ['2026-10-01 00:30:00+00', '2026-10-01 00:30:00.123456+02', '2026-10-01T00:30:00Z', '2026-02-28 23:59:59-05:30']) expect(isTimestampText(ok)).toBe(true)
    for (const bad of ['x', '2026-02-30 00:00:00+00', '2026-10-01 24:00:00+00', '2026-10-01', "2026-10-01 00:00:00+00'; --"]) expect(isTimestampText(bad)).toBe(false)
    // What PostgreSQL's cast refuses: year 0, offsets beyond 15:59:59, minutes or seconds of 60 in an offset.
    for (const ok of ['0001-01-01 00:00:00+00', '9999-12-31 23:59:59-15:59:59', '2026-10-01 00:30:00+15:59', '2026-10-01 00:30:00+05:30:15']) expect(isTimestampText(ok), ok).toBe(true)
    for (const bad of ['0000-01-01 00:00:00+00', '2026-10-01 00:30:00+16', '2026-10-01 00:30:00+99', '2026-10-01 00:30:00+00:60', '2026-10-01 00:30:00+00:00:60', '2026-10-01 00:30:00+155959']) {
      expect(isTimestampText(bad), bad).toBe(false)
    }
    expect(isBigintText('9223372036854775807')).toBe(true)
    expect(isBigintText('9223372036854775808')).toBe(false)
    expect(isBigintText('-1')).toBe(false)
  })

  it('refuses text around a timestamp or a number, which a cast would fail on', () => {
    for (const bad of ['x2026-10-01 00:30:00+00', '2026-10-01 00:30:00+00x']) expect(isTimestampText(bad), bad).toBe(false)
    // Without an offset the cast reads it in the session's zone: taken.
    expect(isTimestampText('2026-10-01 00:30:00')).toBe(true)
    for (const bad of ['1x', 'x1', '']) expect(isBigintText(bad), bad).toBe(false)
  })

  it('take days in keys from INTERFACE_DAY_MIN to INTERFACE_DAY_MAX', () => {
    expect(['1970-01-01', '2999-12-31', '2026-10-01'].map(isDayKeyText)).toEqual([true, true, true])
    expect(['1969-12-31', '3000-01-01', '0000-01-01', '2026-02-30'].map(isDayKeyText)).toEqual([false, false, false, false])
  })
})

describe('cursor listings, misused', () => {
  it('refuse a cursor with characters around its base64url, which decoding would skip', () => {
    const pairs = cursorListing('pairs', ['string', 'string?'])
    const cursor = pairs.encode(['a', null])
    for (const bad of [`!${cursor}`, `${cursor}!`, `${cursor}=`]) expect(refusal(() => pairs.decode(bad)), bad).toEqual({ message: CURSOR_NOT_OF_LISTING, field: 'cursor' })
  })

  it('assert that a key has its parts and that a refusal names the field', () => {
    const pairs = cursorListing('pairs', ['string', 'string?'])
    expect(() => pairs.encode(['a'] as unknown as [string, string | null])).toThrow(/a pairs cursor has 2 parts/)
    expect(() => cursorListing('x', ['string'], { refusal: 'not a cursor' })).toThrow(/names the field/)
    expect(CURSOR_NOT_OF_LISTING).toBe('cursor: not a cursor of this listing')
  })
})
