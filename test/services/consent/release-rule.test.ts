import { describe, expect, it } from 'vitest'
import {
  consentActiveAt,
  datumEndMs,
  datumInstantMs,
  datumOwner,
  granularityCovers,
  meterEndedAtMs,
  releasedTo,
  releaseWindows,
  type ConsentFact,
  type OccupancyFact,
  type RuleDatum,
} from '../../../services/consent/release-rule.ts'
import type { Granularity } from '../../../shared/wire.ts'

const T = (iso: string): number => Date.parse(iso)
const TZ = 'Europe/Paris'

// Meter m1: household h1 from Jan 1 to Apr 1, then h2 from Apr 1 on.
const OCC: OccupancyFact[] = [
  { meterId: 'm1', householdId: 'h1', fromMs: T('2026-01-01T00:00:00Z'), untilMs: T('2026-04-01T00:00:00Z') },
  { meterId: 'm1', householdId: 'h2', fromMs: T('2026-04-01T00:00:00Z'), untilMs: null },
]
// Meter m2: h1 throughout.
const OCC_M2: OccupancyFact[] = [{ meterId: 'm2', householdId: 'h1', fromMs: T('2025-01-01T00:00:00Z'), untilMs: null }]

const BASE: ConsentFact = {
  id: 'c1',
  householdId: 'h1',
  recipientId: 'r1',
  granularity: 'load_curve',
  meterIds: ['m1'],
  validFromMs: T('2026-02-01T00:00:00Z'),
  validUntilMs: T('2027-02-01T00:00:00Z'),
  dataFromMs: T('2026-01-15T00:00:00Z'),
  dataUntilMs: T('2026-03-15T00:00:00Z'),
  revokedAtMs: null,
}

const datum = (iso: string, granularity: Granularity = 'load_curve', extra: Partial<RuleDatum> = {}): RuleDatum => ({
  meterId: 'm1',
  granularity,
  atMs: T(iso),
  ...extra,
})

interface Case {
  name: string
  consent?: Partial<ConsentFact>
  datum: RuleDatum
  recipient?: string
  now: string
  occupancies?: OccupancyFact[]
  expected: string | null
}

const NOW = '2026-03-01T12:00:00Z'

const CASES: Case[] = [
  { name: 'a datum inside everything is released to the owner', datum: datum('2026-02-10T10:00:00Z'), now: NOW, expected: 'h1' },
  // occupancy edges: [from, until)
  {
    name: 'occupancy start is included',
    consent: { dataFromMs: T('2025-12-01T00:00:00Z') },
    datum: datum('2026-01-01T00:00:00Z'),
    now: NOW,
    expected: 'h1',
  },
  {
    name: 'one millisecond before the occupancy is nobody’s',
    consent: { dataFromMs: T('2025-12-01T00:00:00Z') },
    datum: datum('2025-12-31T23:59:59.999Z'),
    now: NOW,
    expected: null,
  },
  {
    name: 'occupancy end is excluded (the datum belongs to the next household)',
    consent: { dataUntilMs: null },
    datum: datum('2026-04-01T00:00:00Z'),
    now: NOW,
    expected: null,
  },
  {
    name: 'the last instant of the occupancy is included',
    consent: { dataUntilMs: null },
    datum: datum('2026-03-31T23:59:59.999Z'),
    now: NOW,
    expected: 'h1',
  },
  // data-window edges: [dataFrom, dataUntil)
  { name: 'data window start is included', datum: datum('2026-01-15T00:00:00Z'), now: NOW, expected: 'h1' },
  { name: 'just before the data window is not released', datum: datum('2026-01-14T23:59:59.999Z'), now: NOW, expected: null },
  { name: 'data window end is excluded', datum: datum('2026-03-15T00:00:00Z'), now: NOW, expected: null },
  { name: 'the last instant of the data window is released', datum: datum('2026-03-14T23:59:59.999Z'), now: NOW, expected: 'h1' },
  // granularity coverage: finer covers coarser
  ...(
    [
      ['load_curve', 'load_curve', 'h1'],
      ['load_curve', 'daily', 'h1'],
      ['load_curve', 'monthly', 'h1'],
      ['daily', 'load_curve', null],
      ['daily', 'daily', 'h1'],
      ['daily', 'monthly', 'h1'],
      ['monthly', 'load_curve', null],
      ['monthly', 'daily', null],
      ['monthly', 'monthly', 'h1'],
    ] as const
  ).map(
    ([consented, data, expected]): Case => ({
      name: `a ${consented} consent ${expected === null ? 'does not cover' : 'covers'} ${data} data`,
      consent: { granularity: consented },
      datum: datum('2026-02-01T00:00:00Z', data, data === 'load_curve' ? {} : { householdId: 'h1' }),
      now: NOW,
      expected,
    }),
  ),
  // validity and revocation
  { name: 'a revoked consent releases nothing', consent: { revokedAtMs: T(NOW) }, datum: datum('2026-02-10T10:00:00Z'), now: NOW, expected: null },
  {
    name: 'a consent revoked later still releases now',
    consent: { revokedAtMs: T('2026-03-01T12:00:00.001Z') },
    datum: datum('2026-02-10T10:00:00Z'),
    now: NOW,
    expected: 'h1',
  },
  {
    name: 'a consent expires at valid_until',
    consent: { validUntilMs: T(NOW) },
    datum: datum('2026-02-10T10:00:00Z'),
    now: NOW,
    expected: null,
  },
  {
    name: 'a consent is active at its last millisecond',
    consent: { validUntilMs: T(NOW) + 1 },
    datum: datum('2026-02-10T10:00:00Z'),
    now: NOW,
    expected: 'h1',
  },
  {
    name: 'a consent is not active before it was granted',
    datum: datum('2026-01-20T10:00:00Z'),
    now: '2026-01-31T23:59:59.999Z',
    expected: null,
  },
  // move-out
  {
    name: 'after the household moved out, its old data of that meter is no longer released',
    consent: { dataUntilMs: null },
    datum: datum('2026-02-10T10:00:00Z'),
    now: '2026-04-01T00:00:00Z',
    expected: null,
  },
  {
    name: 'one millisecond before the move-out the meter is still covered',
    consent: { dataUntilMs: null },
    datum: datum('2026-02-10T10:00:00Z'),
    now: '2026-03-31T23:59:59.999Z',
    expected: 'h1',
  },
  {
    name: 'a move-out recorded after the fact, before the grant, leaves the meter uncovered',
    occupancies: [{ meterId: 'm1', householdId: 'h1', fromMs: T('2026-01-01T00:00:00Z'), untilMs: T('2026-01-20T00:00:00Z') }],
    datum: datum('2026-01-16T10:00:00Z'),
    now: NOW,
    expected: null,
  },
  {
    name: 'moving back in does not revive a consent that ended by move-out',
    consent: { dataUntilMs: null },
    occupancies: [
      { meterId: 'm1', householdId: 'h1', fromMs: T('2026-01-01T00:00:00Z'), untilMs: T('2026-02-15T00:00:00Z') },
      { meterId: 'm1', householdId: 'h1', fromMs: T('2026-02-20T00:00:00Z'), untilMs: null },
    ],
    datum: datum('2026-02-25T10:00:00Z'),
    now: NOW,
    expected: null,
  },
  // scope
  { name: 'a meter the consent does not name is not covered', consent: { meterIds: ['m2'] }, datum: datum('2026-02-10T10:00:00Z'), now: NOW, expected: null },
  { name: 'another recipient receives nothing', recipient: 'r2', datum: datum('2026-02-10T10:00:00Z'), now: NOW, expected: null },
  {
    name: 'another household’s data is not covered by h1’s consent',
    consent: { dataUntilMs: null },
    datum: datum('2026-04-10T10:00:00Z'),
    now: '2026-03-31T00:00:00Z',
    expected: null,
  },
  {
    name: 'a load-curve datum attributed to a household that did not occupy the meter then is not released',
    datum: datum('2026-02-10T10:00:00Z', 'load_curve', { householdId: 'h2' }),
    now: NOW,
    expected: null,
  },
  {
    name: 'a daily datum of the household is released when its day start is in the data window',
    consent: { granularity: 'daily' },
    datum: datum('2026-01-15T00:00:00Z', 'daily', { householdId: 'h1' }),
    now: NOW,
    expected: 'h1',
  },
  {
    name: 'a daily datum of another household is not released',
    consent: { granularity: 'daily' },
    datum: datum('2026-02-15T00:00:00Z', 'daily', { householdId: 'h2' }),
    now: NOW,
    expected: null,
  },
]

describe('the release rule', () => {
  it.each(CASES)('$name', (c) => {
    const consent: ConsentFact = { ...BASE, ...c.consent }
    const occupancies = c.occupancies ?? OCC
    expect(releasedTo(c.recipient ?? 'r1', c.datum, [consent], occupancies, T(c.now))).toBe(c.expected)
  })

  it('finds the releasing consent among others of other recipients and households', () => {
    const others: ConsentFact[] = [
      { ...BASE, id: 'x1', recipientId: 'r2' },
      { ...BASE, id: 'x2', householdId: 'h2' },
      { ...BASE, id: 'x3', granularity: 'monthly' },
    ]
    const d = datum('2026-02-10T10:00:00Z')
    expect(releasedTo('r1', d, others, OCC, T(NOW))).toBeNull()
    expect(releasedTo('r1', d, [...others, BASE], OCC, T(NOW))).toBe('h1')
  })

  it('orders granularities from finer to coarser', () => {
    expect(granularityCovers('load_curve', 'monthly')).toBe(true)
    expect(granularityCovers('monthly', 'load_curve')).toBe(false)
  })

  it('dates a daily datum by the start of its local day and a monthly one by the start of its month', () => {
    expect(datumInstantMs({ meterId: 'm', granularity: 'daily', day: '2026-07-01' }, TZ)).toBe(T('2026-06-30T22:00:00Z'))
    expect(datumInstantMs({ meterId: 'm', granularity: 'monthly', month: '2026-01' }, TZ)).toBe(T('2025-12-31T23:00:00Z'))
    expect(datumInstantMs({ meterId: 'm', granularity: 'load_curve', ts: 5 }, TZ)).toBe(5)
    expect(datumInstantMs({ meterId: 'm', granularity: 'daily' }, TZ)).toBeNull()
  })

  it('dates a move-out at the first end of the household’s occupancy since the grant', () => {
    expect(meterEndedAtMs({ ...BASE, dataUntilMs: null }, 'm1', OCC, T('2026-05-01T00:00:00Z'))).toBe(T('2026-04-01T00:00:00Z'))
    expect(meterEndedAtMs(BASE, 'm1', OCC, T(NOW))).toBeNull()
  })

  it('dates a move-out registered after the fact at its registration, for consents granted before it', () => {
    // Moved out on 1 April, registered on 20 May.
    const late: OccupancyFact[] = [{ ...OCC[0]!, consentsEndMs: T('2026-05-20T00:00:00Z') }, OCC[1]!]
    // Before the registration the consent still covered the meter, as the records then stood.
    expect(meterEndedAtMs(BASE, 'm1', late, T('2026-05-01T00:00:00Z'))).toBeNull()
    expect(meterEndedAtMs(BASE, 'm1', late, T('2026-06-01T00:00:00Z'))).toBe(T('2026-05-20T00:00:00Z'))
    // A consent granted after the registration never covered it.
    const grantedLater = { ...BASE, validFromMs: T('2026-05-25T00:00:00Z') }
    expect(meterEndedAtMs(grantedLater, 'm1', late, T('2026-06-01T00:00:00Z'))).toBe(grantedLater.validFromMs)
    // The data stays the owner's to the move-out: from 1 April it is h2's, whatever the consent.
    expect(releasedTo('r1', { meterId: 'm1', granularity: 'load_curve', atMs: T('2026-04-02T00:00:00Z') }, [{ ...BASE, dataUntilMs: null }], late, T('2026-05-01T00:00:00Z'))).toBe(null)
    expect(releasedTo('r1', { meterId: 'm1', granularity: 'load_curve', atMs: T('2026-03-02T00:00:00Z') }, [BASE], late, T('2026-05-01T00:00:00Z'))).toBe('h1')
  })
})

describe('the release rule at its edges', () => {
  it('is active from the instant of valid_from', () => {
    expect(consentActiveAt(BASE, BASE.validFromMs)).toBe(true)
    expect(consentActiveAt(BASE, BASE.validFromMs - 1)).toBe(false)
  })

  it('ends a daily datum with its local day and a monthly one with its month; a load-curve or incomplete one has no end', () => {
    expect(datumEndMs({ meterId: 'm', granularity: 'daily', day: '2026-10-24' }, TZ)).toBe(T('2026-10-24T22:00:00Z'))
    // The day of the clock change has 25 hours.
    expect(datumEndMs({ meterId: 'm', granularity: 'daily', day: '2026-10-25' }, TZ)).toBe(T('2026-10-25T23:00:00Z'))
    expect(datumEndMs({ meterId: 'm', granularity: 'monthly', month: '2026-12' }, TZ)).toBe(T('2026-12-31T23:00:00Z'))
    expect(datumEndMs({ meterId: 'm', granularity: 'load_curve', ts: 5 }, TZ)).toBeNull()
    expect(datumEndMs({ meterId: 'm', granularity: 'daily' }, TZ)).toBeNull()
    expect(datumEndMs({ meterId: 'm', granularity: 'monthly' }, TZ)).toBeNull()
    expect(datumInstantMs({ meterId: 'm', granularity: 'monthly' }, TZ)).toBeNull()
  })

  it('gives a daily datum to the household it was attributed to, even where another occupied the meter at its start', () => {
    // h2 moves in on 1 April at midnight UTC, 02:00 in Paris: at the start of that Paris day h1 was still there.
    const day = datum('2026-03-31T22:00:00Z', 'daily', { householdId: 'h2' })
    expect(datumOwner(day, OCC)).toBe('h2')
    expect(datumOwner({ ...day, granularity: 'load_curve' }, OCC)).toBeNull()
    expect(datumOwner({ ...day, granularity: 'load_curve', householdId: 'h1' }, OCC)).toBe('h1')
    expect(datumOwner({ ...day, granularity: 'load_curve', householdId: undefined }, OCC)).toBe('h1')
    // A daily datum named without its household is the occupant's at its start.
    expect(datumOwner({ ...day, householdId: undefined }, OCC)).toBe('h1')
  })

  it('dates a move-out by the household’s own occupancies of that meter, the earliest end after the grant, up to now included', () => {
    const back: OccupancyFact[] = [
      { meterId: 'm1', householdId: 'h1', fromMs: T('2026-01-01T00:00:00Z'), untilMs: T('2026-05-01T00:00:00Z') },
      { meterId: 'm1', householdId: 'h1', fromMs: T('2026-06-01T00:00:00Z'), untilMs: T('2026-07-01T00:00:00Z') },
    ]
    const consent = { ...BASE, dataUntilMs: null }
    // The earliest end is the one, in whatever order the occupancies are listed.
    expect(meterEndedAtMs(consent, 'm1', back, T('2026-08-01T00:00:00Z'))).toBe(T('2026-05-01T00:00:00Z'))
    expect(meterEndedAtMs(consent, 'm1', [...back].reverse(), T('2026-08-01T00:00:00Z'))).toBe(T('2026-05-01T00:00:00Z'))
    // An end at now has ended it; one at valid_from itself came before the grant.
    expect(meterEndedAtMs(consent, 'm1', back, T('2026-05-01T00:00:00Z'))).toBe(T('2026-05-01T00:00:00Z'))
    expect(meterEndedAtMs({ ...consent, validFromMs: T('2026-05-01T00:00:00Z') }, 'm1', back, T('2026-05-15T00:00:00Z'))).toBe(T('2026-05-01T00:00:00Z'))
    expect(meterEndedAtMs({ ...consent, validFromMs: T('2026-05-01T00:00:00Z') }, 'm1', back, T('2026-06-01T00:00:00Z'))).toBeNull()
    // Another meter's end is not this meter's.
    const elsewhere: OccupancyFact[] = [{ ...back[0]!, untilMs: null }, { meterId: 'm2', householdId: 'h1', fromMs: T('2025-01-01T00:00:00Z'), untilMs: T('2026-03-01T00:00:00Z') }]
    expect(meterEndedAtMs(consent, 'm1', elsewhere, T(NOW))).toBeNull()
  })
})

describe('release windows', () => {
  const byMeter = new Map([
    ['m1', OCC],
    ['m2', OCC_M2],
  ])

  it('cut load-curve windows to the occupancy and the data window, merged per meter and household', () => {
    const consents: ConsentFact[] = [
      { ...BASE, meterIds: ['m1', 'm2'], dataFromMs: T('2025-06-01T00:00:00Z'), dataUntilMs: null },
      { ...BASE, id: 'c2', meterIds: ['m2'], dataFromMs: T('2024-01-01T00:00:00Z'), dataUntilMs: T('2025-07-01T00:00:00Z') },
      { ...BASE, id: 'c3', recipientId: 'r2' },
    ]
    expect(releaseWindows('r1', 'load_curve', consents, byMeter, T(NOW))).toEqual([
      { meterId: 'm1', householdId: 'h1', fromMs: T('2026-01-01T00:00:00Z'), untilMs: T('2026-04-01T00:00:00Z') },
      { meterId: 'm2', householdId: 'h1', fromMs: T('2025-01-01T00:00:00Z'), untilMs: null },
    ])
  })

  it('leave out consents too coarse for the granularity asked, inactive ones and uncovered meters', () => {
    const consents: ConsentFact[] = [
      { ...BASE, granularity: 'daily' },
      { ...BASE, id: 'c2', meterIds: ['m2'], revokedAtMs: T('2026-02-15T00:00:00Z') },
    ]
    expect(releaseWindows('r1', 'load_curve', consents, byMeter, T(NOW))).toEqual([])
    expect(releaseWindows('r1', 'daily', consents, byMeter, T(NOW))).toEqual([
      { meterId: 'm1', householdId: 'h1', fromMs: BASE.dataFromMs, untilMs: BASE.dataUntilMs },
    ])
    expect(releaseWindows('r1', 'daily', consents, byMeter, T('2026-04-01T00:00:00Z'))).toEqual([])
  })

  it("leave out other recipients' consents, give daily data the whole data window, and list meters in order", () => {
    const consents: ConsentFact[] = [
      { ...BASE, id: 'c1', granularity: 'daily', meterIds: ['m2', 'm1'], dataFromMs: T('2025-06-01T00:00:00Z'), dataUntilMs: null },
      { ...BASE, id: 'c2', recipientId: 'r2', meterIds: ['m2'], dataFromMs: T('2024-01-01T00:00:00Z') },
    ]
    expect(releaseWindows('r1', 'daily', consents, byMeter, T(NOW))).toEqual([
      { meterId: 'm1', householdId: 'h1', fromMs: T('2025-06-01T00:00:00Z'), untilMs: null },
      { meterId: 'm2', householdId: 'h1', fromMs: T('2025-06-01T00:00:00Z'), untilMs: null },
    ])
  })

  it('merge touching and overlapping spans, an open-ended one taking all after it, and leave out an empty cut', () => {
    const window = (id: string, from: string, until: string | null): ConsentFact => ({ ...BASE, id, meterIds: ['m2'], dataFromMs: T(from), dataUntilMs: until === null ? null : T(until) })
    const windows = (consents: ConsentFact[]) => releaseWindows('r1', 'load_curve', consents, byMeter, T(NOW)).map((w) => [new Date(w.fromMs).toISOString().slice(0, 10), w.untilMs === null ? null : new Date(w.untilMs).toISOString().slice(0, 10)])
    expect(windows([window('a', '2026-01-01', '2026-02-01'), window('b', '2026-02-01', '2026-03-01')])).toEqual([['2026-01-01', '2026-03-01']])
    expect(windows([window('a', '2026-01-01', '2026-03-01'), window('b', '2026-02-01', '2026-02-15')])).toEqual([['2026-01-01', '2026-03-01']])
    expect(windows([window('a', '2026-01-01', '2026-02-01'), window('b', '2026-01-15', null)])).toEqual([['2026-01-01', null]])
    expect(windows([window('a', '2026-01-01', null), window('b', '2026-03-01', '2026-04-01')])).toEqual([['2026-01-01', null]])
    expect(windows([window('a', '2026-01-01', '2026-02-01'), window('b', '2026-02-02', '2026-03-01')])).toEqual([
      ['2026-01-01', '2026-02-01'],
      ['2026-02-02', '2026-03-01'],
    ])
    // A data window that ends where the occupancy begins releases no load curve of it.
    const before = { ...BASE, meterIds: ['m1'], dataFromMs: T('2025-06-01T00:00:00Z'), dataUntilMs: T('2026-01-01T00:00:00Z') }
    expect(releaseWindows('r1', 'load_curve', [before], byMeter, T(NOW))).toEqual([])
  })

  it('agree with the rule at every five minutes of a year', () => {
    const consents: ConsentFact[] = [
      { ...BASE, meterIds: ['m1', 'm2'] },
      { ...BASE, id: 'c2', meterIds: ['m2'], dataFromMs: T('2026-05-05T05:05:00Z'), dataUntilMs: T('2026-06-01T00:00:00Z') },
    ]
    const now = T(NOW)
    const disagreements: string[] = []
    let released = 0
    for (const meterId of ['m1', 'm2']) {
      const windows = releaseWindows('r1', 'load_curve', consents, byMeter, now).filter((w) => w.meterId === meterId)
      const occupancies = byMeter.get(meterId)!
      for (let t = T('2025-12-01T00:00:00Z'); t < T('2026-12-01T00:00:00Z'); t += 300_000) {
        const viaRule = releasedTo('r1', { meterId, granularity: 'load_curve', atMs: t }, consents, occupancies, now)
        const inWindow = windows.find((w) => w.fromMs <= t && (w.untilMs === null || t < w.untilMs))
        if ((inWindow?.householdId ?? null) !== viaRule) disagreements.push(`${meterId} ${new Date(t).toISOString()}`)
        if (viaRule !== null) released++
      }
    }
    expect(disagreements).toEqual([])
    expect(released).toBeGreaterThan(0)
  })
})
