import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { startOfDayMs } from '../../../shared/calendar.ts'
import { consentReleases, datumOwner, type ConsentFact, type OccupancyFact } from '../../../services/consent/release-rule.ts'
import { emptyGroupCoverage, monthCalendar, settlementSpans, type CountSpan } from '../../../services/settlement/release-spans.ts'

/**
 * Which datums of a month settlement charges for, from the release rule, cut into whole days
 * (counted from rollups) and pieces of days (counted from raw readings). October 2026 in
 * Paris: 31 days, the 25th has 25 hours.
 */

const TZ = 'Europe/Paris'
const HOUR = 3_600_000
const at = (day: string, hour = 0, minute = 0) => startOfDayMs(day, TZ) + hour * HOUR + minute * 60_000
const OCT = monthCalendar('2026-10', TZ)
const AFTER = at('2026-11-05')
/** Every meter has data after the month: its days and the month are complete. */
const COMPLETE = (): number => Infinity

function fact(overrides: Partial<ConsentFact> = {}): ConsentFact {
  return {
    id: 'cns_1',
    householdId: 'hh_a',
    recipientId: 'pty_r',
    granularity: 'load_curve',
    meterIds: ['m1'],
    validFromMs: at('2026-09-01'),
    validUntilMs: at('2027-09-01'),
    dataFromMs: at('2026-09-01'),
    dataUntilMs: null,
    revokedAtMs: null,
    ...overrides,
  }
}

const livesThere: OccupancyFact[] = [{ meterId: 'm1', householdId: 'hh_a', fromMs: at('2026-08-01'), untilMs: null }]
const occupancies = (list: OccupancyFact[] = livesThere) => new Map([['m1', list]])

function shape(spans: CountSpan[]) {
  return spans.map((s) => ({
    kind: s.kind,
    days: s.firstDay === null ? null : `${s.firstDay}..${s.lastDay}`,
    edges: s.edges.map(([f, u]) => `${new Date(f).toISOString()}..${new Date(u).toISOString()}`),
  }))
}

describe('settlement spans', () => {
  it('covers the whole month in whole days when the consent covers it all', () => {
    expect(shape(settlementSpans(fact(), OCT, occupancies(), AFTER, COMPLETE))).toEqual([{ kind: 'load_curve', days: '2026-10-01..2026-10-31', edges: [] }])
    expect(shape(settlementSpans(fact({ granularity: 'daily' }), OCT, occupancies(), AFTER, COMPLETE))).toEqual([
      { kind: 'daily', days: '2026-10-01..2026-10-31', edges: [] },
    ])
    expect(shape(settlementSpans(fact({ granularity: 'monthly' }), OCT, occupancies(), AFTER, COMPLETE))).toEqual([
      { kind: 'monthly', days: '2026-10-01..2026-10-31', edges: [] },
    ])
  })

  it('counts a day cut by the data window from its raw readings, and the rest from whole days', () => {
    const spans = settlementSpans(fact({ dataFromMs: at('2026-10-10', 12, 30), dataUntilMs: at('2026-10-25', 2) }), OCT, occupancies(), AFTER, COMPLETE)
    // A day's datums end its intervals: stamped after its midnight, through the next (…00:00:00.001Z on).
    expect(shape(spans)).toEqual([
      {
        kind: 'load_curve',
        days: '2026-10-11..2026-10-24',
        edges: [`${new Date(at('2026-10-10', 12, 30)).toISOString()}..2026-10-10T22:00:00.001Z`, `2026-10-24T22:00:00.001Z..2026-10-25T00:00:00.000Z`],
      },
    ])
  })

  it('charges the reading at a month\'s closing midnight in that month, and the one at its opening midnight in the month before', () => {
    const spans = settlementSpans(fact({ dataFromMs: at('2026-10-01'), dataUntilMs: at('2026-10-01', 0, 15) }), OCT, occupancies(), AFTER, COMPLETE)
    // The window holds the readings stamped 00:00 and 00:00:00.001–00:14:59.999 on 1 October: only the second piece is October's.
    expect(shape(spans)).toEqual([{ kind: 'load_curve', days: null, edges: ['2026-09-30T22:00:00.001Z..2026-09-30T22:15:00.000Z'] }])
    const closing = settlementSpans(fact({ dataFromMs: at('2026-11-01'), dataUntilMs: at('2026-11-01', 0, 15) }), OCT, occupancies(), AFTER, COMPLETE)
    expect(shape(closing)).toEqual([{ kind: 'load_curve', days: null, edges: ['2026-10-31T23:00:00.000Z..2026-10-31T23:00:00.001Z'] }])
  })

  it('keeps a window inside one day as a single piece', () => {
    const spans = settlementSpans(fact({ dataFromMs: at('2026-10-25', 1), dataUntilMs: at('2026-10-25', 4) }), OCT, occupancies(), AFTER, COMPLETE)
    expect(shape(spans)).toEqual([{ kind: 'load_curve', days: null, edges: ['2026-10-24T23:00:00.000Z..2026-10-25T02:00:00.000Z'] }])
  })

  it('stops at a revocation: no datum stamped after it, no daily datum of a day not complete before it', () => {
    const revoked = fact({ revokedAtMs: at('2026-10-20', 9) })
    // The load curve of an ended consent is counted from raw readings, those stored before its end only.
    const curve = settlementSpans(revoked, OCT, occupancies(), AFTER, COMPLETE)
    expect(shape(curve)).toEqual([{ kind: 'load_curve', days: null, edges: ['2026-09-30T22:00:00.001Z..2026-10-20T07:00:00.000Z'] }])
    expect(curve.map((s) => s.storedBeforeMs)).toEqual([at('2026-10-20', 9)])
    // In force at the run: everything stored counts, from the rollups.
    expect(settlementSpans(fact(), OCT, occupancies(), AFTER, COMPLETE).map((s) => s.storedBeforeMs)).toEqual([null])
    expect(shape(settlementSpans({ ...revoked, granularity: 'daily' }, OCT, occupancies(), AFTER, COMPLETE))).toEqual([
      { kind: 'daily', days: '2026-10-01..2026-10-19', edges: [] },
    ])
    // A monthly datum is complete at the month's end, after the revocation: never released.
    expect(settlementSpans({ ...revoked, granularity: 'monthly' }, OCT, occupancies(), AFTER, COMPLETE)).toEqual([])
  })

  it('charges history a consent reaches back to, once it has begun', () => {
    const later = fact({ validFromMs: at('2026-10-15'), dataFromMs: at('2026-10-01'), granularity: 'daily' })
    expect(shape(settlementSpans(later, OCT, occupancies(), AFTER, COMPLETE))).toEqual([{ kind: 'daily', days: '2026-10-01..2026-10-31', edges: [] }])
    // Run before the consent began: nothing released yet.
    expect(settlementSpans(later, OCT, occupancies(), at('2026-10-14'), COMPLETE)).toEqual([])
  })

  it("counts an ended consent's load curve from the rollups on days unchanged since its end, from raw readings on the others", () => {
    const revoked = fact({ revokedAtMs: at('2026-10-20', 9) })
    const changed = (m: string, h: string, since: number): ReadonlySet<string> => {
      expect([m, h, since]).toEqual(['m1', 'hh_a', at('2026-10-20', 9)])
      return new Set(['2026-10-05'])
    }
    const spans = settlementSpans(revoked, OCT, occupancies(), AFTER, COMPLETE, changed)
    expect(spans.map((s) => ({ ...shape([s])[0], storedBeforeMs: s.storedBeforeMs }))).toEqual([
      { kind: 'load_curve', days: '2026-10-01..2026-10-04', edges: [], storedBeforeMs: null },
      { kind: 'load_curve', days: '2026-10-06..2026-10-19', edges: [], storedBeforeMs: null },
      {
        kind: 'load_curve',
        days: null,
        edges: ['2026-10-19T22:00:00.001Z..2026-10-20T07:00:00.000Z', '2026-10-04T22:00:00.001Z..2026-10-05T22:00:00.001Z'],
        storedBeforeMs: at('2026-10-20', 9),
      },
    ])
  })

  it('charges an ended consent only the days complete by data stored before its end', () => {
    const revoked = fact({ granularity: 'daily', revokedAtMs: at('2026-10-20', 9) })
    const asked: Array<number | null> = []
    const latest = (_m: string, before: number | null): number => {
      asked.push(before)
      // What was stored before the revocation reaches 10 October 00:00 only (the meter was behind).
      return before === null ? Infinity : at('2026-10-10')
    }
    expect(shape(settlementSpans(revoked, OCT, occupancies(), AFTER, latest))).toEqual([{ kind: 'daily', days: '2026-10-01..2026-10-09', edges: [] }])
    expect(asked).toEqual([at('2026-10-20', 9)])
  })

  it('charges a day or a month only once its meter has sent data stamped at or after its end, as daily/ and the pull API release it', () => {
    const daily = fact({ granularity: 'daily' })
    // The latest datum closes 14 October (stamped 15 October 00:00): the 15th is still filling in.
    const upTo15th = (): number => at('2026-10-15')
    expect(shape(settlementSpans(daily, OCT, occupancies(), AFTER, upTo15th))).toEqual([{ kind: 'daily', days: '2026-10-01..2026-10-14', edges: [] }])
    expect(shape(settlementSpans(daily, OCT, occupancies(), AFTER, () => at('2026-10-15') - 1))).toEqual([{ kind: 'daily', days: '2026-10-01..2026-10-13', edges: [] }])
    expect(settlementSpans(daily, OCT, occupancies(), AFTER, () => -Infinity)).toEqual([])
    // The month: complete with a datum stamped at its end, not before.
    const monthly = fact({ granularity: 'monthly' })
    expect(settlementSpans(monthly, OCT, occupancies(), AFTER, () => at('2026-11-01') - 1)).toEqual([])
    expect(shape(settlementSpans(monthly, OCT, occupancies(), AFTER, () => at('2026-11-01')))).toEqual([{ kind: 'monthly', days: '2026-10-01..2026-10-31', edges: [] }])
    // The load curve is complete reading by reading.
    expect(shape(settlementSpans(fact(), OCT, occupancies(), AFTER, () => -Infinity))).toEqual([{ kind: 'load_curve', days: '2026-10-01..2026-10-31', edges: [] }])
  })

  it('ends a meter at the move-out, for good, even if the household comes back', () => {
    const moves: OccupancyFact[] = [
      { meterId: 'm1', householdId: 'hh_a', fromMs: at('2026-08-01'), untilMs: at('2026-10-12') },
      { meterId: 'm1', householdId: 'hh_b', fromMs: at('2026-10-12'), untilMs: at('2026-10-20') },
      { meterId: 'm1', householdId: 'hh_a', fromMs: at('2026-10-20'), untilMs: null },
    ]
    // What was stored after the move-out never reached the recipient: counted from raw readings stored before it.
    const spans = settlementSpans(fact(), OCT, occupancies(moves), AFTER, COMPLETE)
    expect(shape(spans)).toEqual([{ kind: 'load_curve', days: null, edges: ['2026-09-30T22:00:00.001Z..2026-10-11T22:00:00.000Z'] }])
    expect(spans.map((s) => s.storedBeforeMs)).toEqual([at('2026-10-12')])
  })

  it('counts, for a consent a late-registered move-out ended, only what was stored and complete before the registration', () => {
    // Moved out on 15 October at noon, registered on 29 November: the consents ended then, not before.
    const registeredMs = at('2026-11-29', 14)
    const moves: OccupancyFact[] = [
      { meterId: 'm1', householdId: 'hh_a', fromMs: at('2026-08-01'), untilMs: at('2026-10-15', 12), consentsEndMs: registeredMs },
      { meterId: 'm1', householdId: 'hh_b', fromMs: at('2026-10-15', 12), untilMs: null },
    ]
    const late = at('2026-12-05')
    // The meter's data as stored by the registration reached 20 October; October's end came later.
    const latest = (meterId: string, storedBeforeMs: number | null): number => {
      expect(meterId).toBe('m1')
      return storedBeforeMs === registeredMs ? at('2026-10-20') : at('2026-12-01')
    }
    expect(settlementSpans(fact({ granularity: 'monthly' }), OCT, occupancies(moves), late, latest)).toEqual([])
    // Days complete by what was stored before the registration: to the 19th (its rollups, which are counted, end on the 15th).
    expect(shape(settlementSpans(fact({ granularity: 'daily' }), OCT, occupancies(moves), late, latest))).toEqual([
      { kind: 'daily', days: '2026-10-01..2026-10-19', edges: [] },
    ])
    const curve = settlementSpans(fact(), OCT, occupancies(moves), late, latest)
    expect(shape(curve)).toEqual([{ kind: 'load_curve', days: null, edges: ['2026-09-30T22:00:00.001Z..2026-10-15T10:00:00.000Z'] }])
    expect(curve.map((s) => s.storedBeforeMs)).toEqual([registeredMs])
  })

  it('releases nothing of another household, nor of meters the consent does not name', () => {
    const other: OccupancyFact[] = [{ meterId: 'm1', householdId: 'hh_b', fromMs: at('2026-08-01'), untilMs: null }]
    expect(settlementSpans(fact(), OCT, occupancies(other), AFTER, COMPLETE)).toEqual([])
    expect(settlementSpans(fact({ meterIds: [] }), OCT, occupancies(), AFTER, COMPLETE)).toEqual([])
  })

  it('cuts days at local midnight across the clock change', () => {
    expect(OCT.days).toHaveLength(31)
    expect(OCT.dayStartsMs[25]! - OCT.dayStartsMs[24]!).toBe(25 * HOUR)
    expect(OCT.dayStartsMs[31]).toBe(at('2026-11-01'))
  })
})

describe('settlement spans against the rule asked datum by datum', () => {
  const MONTH_START = at('2026-10-01')
  const MONTH_END = at('2026-11-01')
  // Quarter-hours, and often exactly a local midnight, where days are cut.
  const instant = fc.oneof(
    fc.integer({ min: at('2026-09-20'), max: at('2026-11-10') }).map((ms) => Math.floor(ms / (15 * 60_000)) * 15 * 60_000),
    fc.integer({ min: 0, max: 50 }).map((d) => startOfDayMs(new Date(Date.UTC(2026, 8, 20 + d)).toISOString().slice(0, 10), TZ)),
  )
  const scenario = fc.record({
    validFrom: instant,
    validFor: fc.integer({ min: 1, max: 60 * 24 * 4 }).map((q) => q * 15 * 60_000),
    dataFrom: instant,
    dataFor: fc.option(fc.integer({ min: 1, max: 60 * 24 * 4 }).map((q) => q * 15 * 60_000)),
    revokedAt: fc.option(instant),
    moves: fc.array(instant, { maxLength: 3 }),
    // Moves registered late: each end ends the consents this long after it (0: in time).
    registeredAfter: fc.array(fc.integer({ min: 0, max: 24 * 20 }).map((q) => q * 15 * 60_000), { minLength: 3, maxLength: 3 }),
    now: instant,
  })

  /** Occupancies of m1 alternating between hh_a and hh_b at the given instants. */
  function occupanciesOf(moves: number[]): OccupancyFact[] {
    const cuts = [...new Set(moves)].sort((a, b) => a - b)
    const bounds = [at('2026-08-01'), ...cuts]
    return bounds.map((fromMs, i) => ({ meterId: 'm1', householdId: i % 2 === 0 ? 'hh_a' : 'hh_b', fromMs, untilMs: bounds[i + 1] ?? null }))
  }

  function naiveReleased(c: ConsentFact, datum: { granularity: 'load_curve' | 'daily' | 'monthly'; atMs: number }, completeMs: number, occ: OccupancyFact[], nowMs: number): boolean {
    const moment = Math.max(completeMs, c.validFromMs)
    if (moment > nowMs) return false
    // A day or month is in the data window whole: it ends when it is complete.
    const d = { meterId: 'm1', granularity: datum.granularity, atMs: datum.atMs, householdId: c.householdId, endMs: datum.granularity === 'load_curve' ? undefined : completeMs }
    const owner = datumOwner(d, occ)
    return owner === c.householdId && consentReleases(c, d, owner, occ, moment)
  }

  it('release exactly the days and quarter-hours the rule releases one by one', () => {
    fc.assert(
      fc.property(scenario, (sc) => {
        const revokedAtMs = sc.revokedAt !== null && sc.revokedAt > sc.validFrom ? sc.revokedAt : null
        const base = fact({
          validFromMs: sc.validFrom,
          validUntilMs: sc.validFrom + sc.validFor,
          dataFromMs: sc.dataFrom,
          dataUntilMs: sc.dataFor === null ? null : sc.dataFrom + sc.dataFor,
          revokedAtMs,
        })
        const occ = occupanciesOf(sc.moves).map((o, i) => (o.untilMs === null ? o : { ...o, consentsEndMs: o.untilMs + sc.registeredAfter[i % 3]! }))
        const map = new Map([['m1', occ]])

        const daily = settlementSpans({ ...base, granularity: 'daily' }, OCT, map, sc.now, COMPLETE)
        const days = new Set(daily.flatMap((s) => OCT.days.slice(OCT.days.indexOf(s.firstDay!), OCT.days.indexOf(s.lastDay!) + 1)))
        OCT.days.forEach((day, i) => {
          expect(days.has(day)).toBe(naiveReleased(base, { granularity: 'daily', atMs: OCT.dayStartsMs[i]! }, OCT.dayStartsMs[i + 1]!, occ, sc.now))
        })

        const monthly = settlementSpans({ ...base, granularity: 'monthly' }, OCT, map, sc.now, COMPLETE)
        expect(monthly.length === 1).toBe(naiveReleased(base, { granularity: 'monthly', atMs: MONTH_START }, MONTH_END, occ, sc.now))

        const curve = settlementSpans(base, OCT, map, sc.now, COMPLETE)
        const inSpans = (t: number) =>
          curve.some((s) => {
            // A day's datums: stamped after its midnight, through the next.
            const whole = s.firstDay !== null && t > at(s.firstDay) && t <= OCT.dayStartsMs[OCT.days.indexOf(s.lastDay!) + 1]!
            return whole || s.edges.some(([f, u]) => t >= f && t < u)
          })
        // The month's datums: stamped after its first midnight, through its last.
        for (let t = MONTH_START + 15 * 60_000; t <= MONTH_END; t += 15 * 60_000) {
          expect(inSpans(t)).toBe(naiveReleased(base, { granularity: 'load_curve', atMs: t }, t, occ, sc.now))
        }
      }),
      { numRuns: 300 },
    )
    // 300 scenarios of 2,976 quarter-hours each: about 25 s on an idle machine, past vitest's 30 s when it is busy.
  }, 180_000)
})

describe('settlement spans of one recipient, household and offer', () => {
  it('charge the history a revoked consent released once: its re-grant gets only what was stored after the end', () => {
    const group = emptyGroupCoverage()
    const first = fact({ id: 'cns_1', revokedAtMs: at('2026-10-20', 9) })
    const again = fact({ id: 'cns_2', validFromMs: at('2026-10-21'), dataFromMs: at('2026-09-01') })
    expect(shape(settlementSpans(first, OCT, occupancies(), AFTER, COMPLETE, undefined, group))).toEqual([
      { kind: 'load_curve', days: null, edges: ['2026-09-30T22:00:00.001Z..2026-10-20T07:00:00.000Z'] },
    ])
    const spans = settlementSpans(again, OCT, occupancies(), AFTER, COMPLETE, undefined, group)
    expect(spans.map((s) => ({ ...shape([s])[0], storedBeforeMs: s.storedBeforeMs, storedFromMs: s.storedFromMs ?? null }))).toEqual([
      // What the first released: only the datums stored after it ended.
      { kind: 'load_curve', days: null, edges: ['2026-09-30T22:00:00.001Z..2026-10-20T07:00:00.000Z'], storedBeforeMs: null, storedFromMs: at('2026-10-20', 9) },
      { kind: 'load_curve', days: '2026-10-21..2026-10-31', edges: ['2026-10-20T07:00:00.000Z..2026-10-20T22:00:00.001Z'], storedBeforeMs: null, storedFromMs: null },
    ])
  })

  it('charge a daily or monthly datum once', () => {
    const group = emptyGroupCoverage()
    const first = fact({ id: 'cns_1', granularity: 'daily', revokedAtMs: at('2026-10-20', 9) })
    const again = fact({ id: 'cns_2', granularity: 'daily', validFromMs: at('2026-10-21'), dataFromMs: at('2026-09-01') })
    expect(shape(settlementSpans(first, OCT, occupancies(), AFTER, COMPLETE, undefined, group))).toEqual([{ kind: 'daily', days: '2026-10-01..2026-10-19', edges: [] }])
    expect(shape(settlementSpans(again, OCT, occupancies(), AFTER, COMPLETE, undefined, group))).toEqual([{ kind: 'daily', days: '2026-10-20..2026-10-31', edges: [] }])
    const months = emptyGroupCoverage()
    expect(settlementSpans(fact({ id: 'cns_3', granularity: 'monthly' }), OCT, occupancies(), AFTER, COMPLETE, undefined, months)).toHaveLength(1)
    expect(settlementSpans(fact({ id: 'cns_4', granularity: 'monthly', validFromMs: at('2026-11-02') }), OCT, occupancies(), AFTER, COMPLETE, undefined, months)).toEqual([])
  })

  it('charge each datum released by any of them exactly once, whenever it was stored', () => {
    const instant = fc.integer({ min: 0, max: 48 * 4 }).map((q) => at('2026-10-10') + q * 15 * 60_000)
    const grantOf = fc.record({ validFrom: instant, revokedAfter: fc.option(fc.integer({ min: 1, max: 24 * 4 }).map((q) => q * 15 * 60_000)), dataFrom: instant })
    fc.assert(
      fc.property(fc.array(grantOf, { minLength: 2, maxLength: 4 }), fc.array(fc.integer({ min: 0, max: 96 * 4 }), { minLength: 20, maxLength: 20 }), (grants, storeDelays) => {
        const consents = grants
          .map((g, i) =>
            fact({ id: `cns_${i}`, validFromMs: g.validFrom, revokedAtMs: g.revokedAfter === null ? null : g.validFrom + g.revokedAfter, dataFromMs: g.dataFrom }),
          )
          .sort((a, b) => a.validFromMs - b.validFromMs || (a.id < b.id ? -1 : 1))
        const nowMs = at('2026-11-05')
        const group = emptyGroupCoverage()
        const grouped = consents.map((c) => settlementSpans(c, OCT, occupancies(), nowMs, COMPLETE, undefined, group))
        const alone = consents.map((c) => settlementSpans(c, OCT, occupancies(), nowMs, COMPLETE))
        const charges = (spans: CountSpan[], t: number, storedAt: number): boolean =>
          spans.some((s) => {
            const dayStart = (d: string) => OCT.datumStartsMs[OCT.days.indexOf(d)]!
            if (s.firstDay !== null && t >= dayStart(s.firstDay) && t < OCT.datumStartsMs[OCT.days.indexOf(s.lastDay!) + 1]!) return true
            return s.edges.some(([f, u]) => t >= f && t < u && (s.storedBeforeMs === null || storedAt < s.storedBeforeMs) && (s.storedFromMs == null || storedAt >= s.storedFromMs))
          })
        // Quarter-hours of the 9th to the 13th, each stored some time after it was measured.
        for (let k = 0; k < 4 * 96; k++) {
          const t = at('2026-10-09') + (k + 1) * 15 * 60_000
          const storedAt = t + storeDelays[k % storeDelays.length]! * 15 * 60_000
          const times = grouped.filter((spans) => charges(spans, t, storedAt)).length
          expect(times).toBeLessThanOrEqual(1)
          expect(times === 1).toBe(alone.some((spans) => charges(spans, t, storedAt)))
        }
      }),
      { numRuns: 200 },
    )
  })
})
