import { describe, expect, it } from 'vitest'
import { datumsPerConsent, pairKey, planCounts } from '../../../services/settlement/count-plan.ts'
import type { CountSpan } from '../../../services/settlement/release-spans.ts'

const span = (over: Partial<CountSpan>): CountSpan => ({
  kind: 'load_curve',
  consentId: 'cns_1',
  meterId: 'm1',
  householdId: 'hh_a',
  firstDay: '2026-10-01',
  lastDay: '2026-10-31',
  edges: [],
  storedBeforeMs: null,
  ...over,
})

describe('count plan', () => {
  it('reads a range shared by several consents once, and a piece of a day once', () => {
    const spans = [
      span({}),
      span({ consentId: 'cns_2', kind: 'daily' }),
      span({ consentId: 'cns_3', kind: 'monthly' }),
      span({ consentId: 'cns_4', firstDay: '2026-10-11', edges: [[1_000, 2_000]] }),
      span({ consentId: 'cns_5', firstDay: null, lastDay: null, edges: [[1_000, 2_000]] }),
    ]
    const plan = planCounts(spans)
    expect(plan.ranges).toEqual([
      { meterId: 'm1', householdId: 'hh_a', firstDay: '2026-10-01', lastDay: '2026-10-31' },
      { meterId: 'm1', householdId: 'hh_a', firstDay: '2026-10-11', lastDay: '2026-10-31' },
    ])
    expect(plan.pieces).toEqual([{ meterId: 'm1', householdId: 'hh_a', fromMs: 1_000, untilMs: 2_000, storedBeforeMs: null, storedFromMs: null }])
    expect(plan.spanRange).toEqual([0, 0, 0, 1, -1])
    expect(plan.spanPieces).toEqual([[], [], [], [0], [0]])
    // A piece counted only up to a storage instant (an ended consent) is a piece of its own.
    const bounded = planCounts([...spans, span({ consentId: 'cns_6', firstDay: null, lastDay: null, edges: [[1_000, 2_000]], storedBeforeMs: 5_000 })])
    expect(bounded.pieces.map((p) => p.storedBeforeMs)).toEqual([null, 5_000])

    const counts = datumsPerConsent(
      spans,
      plan,
      [
        { readings: 1_440n, days: 30n },
        { readings: 960n, days: 20n },
      ],
      [7n],
      new Map([['m1', 'pty_grid']]),
      new Set([pairKey('m1', 'hh_a')]),
    )
    expect(Object.fromEntries([...counts].map(([c, list]) => [c, list.map((m) => m.data)]))).toEqual({
      cns_1: [1_440n],
      cns_2: [30n],
      cns_3: [1n],
      cns_4: [967n],
      cns_5: [7n],
    })
    // A month that is not final (a day of it could still come or change) is no monthly datum yet.
    const notFinal = datumsPerConsent(spans, plan, [{ readings: 1_440n, days: 30n }, { readings: 960n, days: 20n }], [7n], new Map([['m1', 'pty_grid']]), new Set())
    expect(notFinal.get('cns_3')).toBeUndefined()
    expect(notFinal.get('cns_2')).toEqual([{ meterId: 'm1', operatorId: 'pty_grid', data: 30n }])
  })

  it("adds up a consent's spans per meter: one entry for each meter, in the order met", () => {
    const spans = [
      span({ firstDay: '2026-10-01', lastDay: '2026-10-10' }),
      span({ meterId: 'm2', firstDay: null, lastDay: null, edges: [[1_000, 2_000]] }),
      span({ firstDay: '2026-10-20', lastDay: '2026-10-31' }),
    ]
    const plan = planCounts(spans)
    const counts = datumsPerConsent(spans, plan, [{ readings: 10n, days: 10n }, { readings: 12n, days: 12n }], [5n], new Map([['m1', 'pty_grid'], ['m2', 'pty_gas']]), new Set())
    expect(counts.get('cns_1')).toEqual([
      { meterId: 'm1', operatorId: 'pty_grid', data: 22n },
      { meterId: 'm2', operatorId: 'pty_gas', data: 5n },
    ])
  })

  it('leaves out consents that released nothing, and a month without data has no monthly datum', () => {
    const spans = [span({ kind: 'monthly' }), span({ consentId: 'cns_2' })]
    const counts = datumsPerConsent(spans, planCounts(spans), [{ readings: 0n, days: 0n }], [], new Map([['m1', 'pty_grid']]), new Set([pairKey('m1', 'hh_a')]))
    expect(counts.size).toBe(0)
  })
})
