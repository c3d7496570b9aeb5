import { describe, expect, it } from 'vitest'
import { dailyEnergies, intervalEnergies, monthlyEnergies, type BaselineIndex, type GroupEnergy, type RollupGroup } from '../../../services/metering/daily-energy.ts'

const IMPORT = '1-0:1.8.0'
const EXPORT = '1-0:2.8.0'
const GAS = '7-0:3.0.0'

function group(day: string, lastTs: string, householdId: string | null, min: Record<string, number>, max: Record<string, number>): RollupGroup {
  return { meterId: 'mtr_1', householdId, day, lastTs: new Date(lastTs), indexMin: min, indexMax: max }
}

describe('dailyEnergies', () => {
  const cases: { name: string; groups: RollupGroup[]; baseline?: Record<string, BaselineIndex>; expected: Record<string, number>[] }[] = [
    {
      name: 'a group with no predecessor counts from its own lowest index',
      groups: [group('2026-10-01', '2026-09-30T22:15:00Z', 'hh_a', { [IMPORT]: 1000 }, { [IMPORT]: 1240 })],
      expected: [{ [IMPORT]: 240 }],
    },
    {
      name: 'a later group counts from the highest index of the group before it',
      groups: [
        group('2026-10-01', '2026-09-30T22:15:00Z', 'hh_a', { [IMPORT]: 1000 }, { [IMPORT]: 1240 }),
        group('2026-10-02', '2026-10-01T22:15:00Z', 'hh_a', { [IMPORT]: 1250 }, { [IMPORT]: 1500 }),
      ],
      expected: [{ [IMPORT]: 240 }, { [IMPORT]: 260 }],
    },
    {
      name: 'a move-out mid-day splits the day at the change: what was measured across it belongs to neither household',
      groups: [
        group('2026-10-01', '2026-09-30T22:15:00Z', 'hh_a', { [IMPORT]: 1000 }, { [IMPORT]: 1240 }),
        group('2026-10-02', '2026-10-01T22:15:00Z', 'hh_a', { [IMPORT]: 1250 }, { [IMPORT]: 1300 }),
        group('2026-10-02', '2026-10-02T10:00:00Z', 'hh_b', { [IMPORT]: 1310 }, { [IMPORT]: 1420 }),
      ],
      expected: [{ [IMPORT]: 240 }, { [IMPORT]: 60 }, { [IMPORT]: 110 }],
    },
    {
      name: 'a predecessor that belongs to nobody is no baseline for a household, however recent',
      groups: [
        group('2026-10-01', '2026-09-30T22:15:00Z', null, { [IMPORT]: 1000 }, { [IMPORT]: 1100 }),
        group('2026-10-01', '2026-10-01T08:00:00Z', 'hh_a', { [IMPORT]: 1110 }, { [IMPORT]: 1200 }),
      ],
      expected: [{ [IMPORT]: 100 }, { [IMPORT]: 90 }],
    },
    {
      name: 'a household back after a stay within one day, nobody there before and after it that day, counts neither the vacant hours nor its own earlier index',
      groups: [
        group('2026-10-24', '2026-10-24T20:00:00Z', 'hh_a', { [IMPORT]: 1200 }, { [IMPORT]: 1250 }),
        // Nobody's readings of 25 October stop for hh_a's stay (06:30) and resume after it, in one group that ends last.
        { ...group('2026-10-25', '2026-10-25T05:30:00Z', 'hh_a', { [IMPORT]: 1300 }, { [IMPORT]: 1300 }), straddled: true },
        group('2026-10-25', '2026-10-25T23:00:00Z', null, { [IMPORT]: 1000 }, { [IMPORT]: 8000 }),
        group('2026-10-26', '2026-10-25T23:30:00Z', 'hh_a', { [IMPORT]: 8100 }, { [IMPORT]: 8100 }),
      ],
      expected: [{ [IMPORT]: 50 }, { [IMPORT]: 0 }, { [IMPORT]: 7000 }, { [IMPORT]: 0 }],
    },
    {
      name: 'a household back after another one lived there does not count from its own earlier index',
      groups: [
        group('2026-09-01', '2026-08-31T22:15:00Z', 'hh_a', { [IMPORT]: 1000 }, { [IMPORT]: 1100 }),
        group('2026-10-01', '2026-09-30T22:15:00Z', 'hh_b', { [IMPORT]: 5000 }, { [IMPORT]: 5100 }),
        group('2026-11-01', '2026-10-31T23:15:00Z', 'hh_a', { [IMPORT]: 9000 }, { [IMPORT]: 9100 }),
      ],
      expected: [{ [IMPORT]: 100 }, { [IMPORT]: 100 }, { [IMPORT]: 100 }],
    },
    {
      name: 'a gap in one household’s data is that household’s energy, counted on the day after it',
      groups: [
        group('2026-10-01', '2026-09-30T22:15:00Z', 'hh_a', { [IMPORT]: 1000 }, { [IMPORT]: 1100 }),
        group('2026-10-09', '2026-10-08T22:15:00Z', 'hh_a', { [IMPORT]: 1900 }, { [IMPORT]: 2000 }),
      ],
      expected: [{ [IMPORT]: 100 }, { [IMPORT]: 900 }],
    },
    {
      name: 'a code missing from the previous group is counted from the closest group that has it',
      groups: [
        group('2026-10-01', '2026-09-30T22:15:00Z', 'hh_a', { [IMPORT]: 1000, [EXPORT]: 50 }, { [IMPORT]: 1200, [EXPORT]: 80 }),
        group('2026-10-02', '2026-10-01T22:15:00Z', 'hh_a', { [IMPORT]: 1210 }, { [IMPORT]: 1400 }),
        group('2026-10-03', '2026-10-02T22:15:00Z', 'hh_a', { [IMPORT]: 1410, [EXPORT]: 95 }, { [IMPORT]: 1600, [EXPORT]: 110 }),
      ],
      expected: [{ [IMPORT]: 200, [EXPORT]: 30 }, { [IMPORT]: 200 }, { [IMPORT]: 200, [EXPORT]: 30 }],
    },
    {
      name: 'a code first seen in a later group counts from its own lowest index there',
      groups: [
        group('2026-10-01', '2026-09-30T22:15:00Z', 'hh_a', { [IMPORT]: 1000 }, { [IMPORT]: 1200 }),
        group('2026-10-02', '2026-10-01T22:15:00Z', 'hh_a', { [IMPORT]: 1210, [EXPORT]: 7 }, { [IMPORT]: 1400, [EXPORT]: 19 }),
      ],
      expected: [{ [IMPORT]: 200 }, { [IMPORT]: 200, [EXPORT]: 12 }],
    },
    {
      name: 'a gas meter counts its volume index in dm³ the same way',
      groups: [
        group('2026-10-01', '2026-09-30T23:00:00Z', 'hh_a', { [GAS]: 500_000 }, { [GAS]: 503_250 }),
        group('2026-10-02', '2026-10-01T23:00:00Z', 'hh_a', { [GAS]: 503_300 }, { [GAS]: 507_000 }),
      ],
      expected: [{ [GAS]: 3250 }, { [GAS]: 3750 }],
    },
    {
      name: 'a baseline stands for the groups before the window given',
      groups: [group('2026-10-02', '2026-10-01T22:15:00Z', 'hh_a', { [IMPORT]: 1250, [EXPORT]: 5 }, { [IMPORT]: 1500, [EXPORT]: 9 })],
      baseline: { [IMPORT]: { value: 1240, householdId: 'hh_a' } },
      expected: [{ [IMPORT]: 260, [EXPORT]: 4 }],
    },
    {
      name: "a baseline of another household's group is not one",
      groups: [group('2026-10-02', '2026-10-01T22:15:00Z', 'hh_a', { [IMPORT]: 1250 }, { [IMPORT]: 1500 })],
      baseline: { [IMPORT]: { value: 1240, householdId: 'hh_b' } },
      expected: [{ [IMPORT]: 250 }],
    },
    {
      name: 'a group with only instantaneous registers has no energy',
      groups: [group('2026-10-01', '2026-09-30T22:15:00Z', 'hh_a', {}, {})],
      expected: [{}],
    },
  ]

  for (const c of cases) {
    it(c.name, () => {
      const out = dailyEnergies(c.groups, c.baseline)
      expect(out.map((e) => e.values)).toEqual(c.expected)
      expect(out.map((e) => [e.day, e.householdId])).toEqual(c.groups.map((g) => [g.day, g.householdId]))
    })
  }

  it('refuses groups out of last_ts order', () => {
    const a = group('2026-10-02', '2026-10-01T22:15:00Z', 'hh_a', { [IMPORT]: 1 }, { [IMPORT]: 2 })
    const b = group('2026-10-01', '2026-09-30T22:15:00Z', 'hh_a', { [IMPORT]: 0 }, { [IMPORT]: 1 })
    expect(() => dailyEnergies([a, b])).toThrow(/last_ts/)
    // Two groups cannot end at one reading: a meter's readings have distinct timestamps.
    const c = group('2026-10-02', '2026-10-01T22:15:00Z', 'hh_b', { [IMPORT]: 1 }, { [IMPORT]: 2 })
    expect(() => dailyEnergies([a, c])).toThrow(/last_ts/)
  })

  it('refuses groups of two meters', () => {
    const a = group('2026-10-01', '2026-09-30T22:15:00Z', 'hh_a', { [IMPORT]: 0 }, { [IMPORT]: 1 })
    const b = { ...group('2026-10-02', '2026-10-01T22:15:00Z', 'hh_a', { [IMPORT]: 1 }, { [IMPORT]: 2 }), meterId: 'mtr_2' }
    expect(() => dailyEnergies([a, b])).toThrow(/one meter/)
  })
})

describe('monthlyEnergies', () => {
  it('sums the daily energies of each household per month', () => {
    const daily: GroupEnergy[] = [
      { meterId: 'mtr_1', householdId: 'hh_a', day: '2026-09-30', values: { [IMPORT]: 100 } },
      { meterId: 'mtr_1', householdId: 'hh_a', day: '2026-10-01', values: { [IMPORT]: 200, [EXPORT]: 3 } },
      { meterId: 'mtr_1', householdId: 'hh_a', day: '2026-10-02', values: { [IMPORT]: 50 } },
      { meterId: 'mtr_1', householdId: 'hh_b', day: '2026-10-02', values: { [IMPORT]: 70 } },
      { meterId: 'mtr_1', householdId: 'hh_b', day: '2026-10-03', values: { [IMPORT]: 80, [EXPORT]: 1 } },
    ]
    expect(monthlyEnergies(daily)).toEqual([
      { meterId: 'mtr_1', householdId: 'hh_a', month: '2026-09', values: { [IMPORT]: 100 } },
      { meterId: 'mtr_1', householdId: 'hh_a', month: '2026-10', values: { [IMPORT]: 250, [EXPORT]: 3 } },
      { meterId: 'mtr_1', householdId: 'hh_b', month: '2026-10', values: { [IMPORT]: 150, [EXPORT]: 1 } },
    ])
  })

  it('gives nothing for no days', () => {
    expect(monthlyEnergies([])).toEqual([])
  })
})

describe('intervalEnergies', () => {
  const cases: {
    name: string
    readings: { ts: string; values: Record<string, number> }[]
    previous?: Record<string, number>
    expected: Record<string, number>[]
  }[] = [
    {
      name: 'the first reading has no energy and each next one the difference of indexes',
      readings: [
        { ts: '2026-10-01T00:15:00Z', values: { [IMPORT]: 1000 } },
        { ts: '2026-10-01T00:30:00Z', values: { [IMPORT]: 1012 } },
        { ts: '2026-10-01T00:45:00Z', values: { [IMPORT]: 1030 } },
      ],
      expected: [{}, { [IMPORT]: 12 }, { [IMPORT]: 18 }],
    },
    {
      name: 'a previous reading gives the first one its energy',
      readings: [{ ts: '2026-10-01T00:15:00Z', values: { [IMPORT]: 1000 } }],
      previous: { [IMPORT]: 990 },
      expected: [{ [IMPORT]: 10 }],
    },
    {
      name: 'power is not energy and is left out',
      readings: [
        { ts: '2026-10-01T00:15:00Z', values: { [IMPORT]: 1000, '1-0:1.7.0': 800 } },
        { ts: '2026-10-01T00:30:00Z', values: { [IMPORT]: 1012, '1-0:1.7.0': 900 } },
      ],
      expected: [{}, { [IMPORT]: 12 }],
    },
    {
      name: 'a code missing from a reading is counted from the last reading that had it',
      readings: [
        { ts: '2026-10-01T00:15:00Z', values: { [IMPORT]: 1000, [EXPORT]: 5 } },
        { ts: '2026-10-01T00:30:00Z', values: { [IMPORT]: 1012 } },
        { ts: '2026-10-01T00:45:00Z', values: { [IMPORT]: 1020, [EXPORT]: 9 } },
      ],
      expected: [{}, { [IMPORT]: 12 }, { [IMPORT]: 8, [EXPORT]: 4 }],
    },
    {
      name: 'gas volume is an index too',
      readings: [
        { ts: '2026-10-01T01:00:00Z', values: { [GAS]: 503_250 } },
        { ts: '2026-10-01T02:00:00Z', values: { [GAS]: 503_400 } },
      ],
      expected: [{}, { [GAS]: 150 }],
    },
  ]

  for (const c of cases) {
    it(c.name, () => {
      const out = intervalEnergies(c.readings, c.previous)
      expect(out.map((e) => e.values)).toEqual(c.expected)
      expect(out.map((e) => e.ts)).toEqual(c.readings.map((r) => r.ts))
    })
  }
})
