import { expect, it } from 'vitest'
import { listReadings, type ReadingsQuery, type ReleaseWindow } from '../../../services/metering/reading-service.ts'
import { formatTimestamp } from '../../../shared/calendar.ts'
import { InvalidInputError } from '../../../shared/errors.ts'
import type { EgressDatum, Granularity } from '../../../shared/wire.ts'
import { describeDatabases, type TestDatabase } from '../../support/database.ts'
import { readingSeries, rollupsOf, seedHousehold, seedMeter, seedOccupancy, seedReadings } from '../../support/seed.ts'

const ctx = { timezone: 'Europe/Paris' }
const IMPORT = '1-0:1.8.0'
const EXPORT = '1-0:2.8.0'
const POWER = '1-0:1.7.0'

/** Local midnights in Paris (summer time until 2026-10-25 03:00). */
const OCT_1 = new Date('2026-09-30T22:00:00Z')
const OCT_2 = new Date('2026-10-01T22:00:00Z')
const OCT_3 = new Date('2026-10-02T22:00:00Z')
const SEP_1 = new Date('2026-08-31T22:00:00Z')
const JAN_1 = new Date('2026-12-31T23:00:00Z')
/** A moves out of meter 1 and B moves in. */
const T = new Date('2026-10-02T10:00:00Z')

interface World {
  m1: string
  m2: string
  a: string
  b: string
}

/**
 * Meter 1: A until T, then B; hourly readings over 3 local days (Oct 1–3), index +10 Wh each.
 * Meter 2: A throughout; a reading every 6 hours from Sep 1 to mid-December, +100 Wh each.
 * Both start at a local midnight: that first reading closes the day before (A's, with no energy of its own).
 */
async function seedWorld(t: TestDatabase): Promise<World> {
  const m1 = await seedMeter(t.db, { id: 'mtr-1' })
  const m2 = await seedMeter(t.db, { id: 'mtr-2' })
  const a = await seedHousehold(t.db, 'A')
  const b = await seedHousehold(t.db, 'B')
  await seedOccupancy(t.db, { meterId: m1, householdId: a, from: '2026-08-01T00:00:00Z', until: T })
  await seedOccupancy(t.db, { meterId: m1, householdId: b, from: T })
  await seedOccupancy(t.db, { meterId: m2, householdId: a, from: '2026-08-01T00:00:00Z' })
  await seedReadings(t.db, m1, readingSeries({ start: OCT_1, count: 72 }), ctx.timezone)
  await seedReadings(t.db, m2, readingSeries({ start: SEP_1, count: 400, stepMinutes: 360, stepWh: 100 }), ctx.timezone)
  return { m1, m2, a, b }
}

function query(q: Partial<ReadingsQuery> & Pick<ReadingsQuery, 'granularity'>): ReadingsQuery {
  return { meterIds: 'all-of-household', from: SEP_1, to: JAN_1, limit: 1000, ...q }
}

async function walk(t: TestDatabase, q: ReadingsQuery): Promise<{ items: EgressDatum[]; pages: number }> {
  const items: EgressDatum[] = []
  let cursor: string | undefined
  let pages = 0
  for (;;) {
    const page = await listReadings(t.db, { ...q, cursor }, ctx)
    pages++
    if (page.nextCursor !== null) expect(page.items).toHaveLength(q.limit)
    items.push(...page.items)
    if (page.nextCursor === null) return { items, pages }
    cursor = page.nextCursor
    expect(pages).toBeLessThan(1000)
  }
}

async function caught(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run()
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

describeDatabases('reading service', (t) => {
  it('lists a household’s own load curve as stored, and none of the data it does not own', async () => {
    const w = await seedWorld(t)
    const a = await listReadings(t.db, query({ householdId: w.a, meterIds: [w.m1], granularity: 'load_curve' }), ctx)
    expect(a.nextCursor).toBeNull()
    expect(a.items).toHaveLength(36) // Oct 1 and Oct 2 until 10:00Z
    expect(a.items[0]).toEqual({ meterId: w.m1, ts: formatTimestamp(OCT_1), granularity: 'load_curve', values: { [IMPORT]: 10 } })
    expect(a.items.at(-1)).toEqual({ meterId: w.m1, ts: '2026-10-02T09:00:00Z', granularity: 'load_curve', values: { [IMPORT]: 360 } })

    const b = await listReadings(t.db, query({ householdId: w.b, meterIds: [w.m1, w.m2], granularity: 'load_curve' }), ctx)
    expect(b.items).toHaveLength(36)
    expect(b.items[0]!).toMatchObject({ meterId: w.m1, ts: formatTimestamp(T) })
    expect(b.items.every((i) => i.meterId === w.m1)).toBe(true)

    const all = await listReadings(t.db, query({ householdId: w.a, granularity: 'load_curve' }), ctx)
    expect(all.items).toHaveLength(36 + 400)
    expect(all.items.slice(0, 36).every((i) => i.meterId === w.m1)).toBe(true)
    expect(all.items.slice(36).every((i) => i.meterId === w.m2)).toBe(true)
  })

  it('keeps the values exactly as the meter sent them', async () => {
    const m = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    await seedOccupancy(t.db, { meterId: m, householdId: h, from: OCT_1 })
    const values = { [IMPORT]: 9_007_199_254_740_991, [EXPORT]: 0, [POWER]: 2300, '1-0:1.8.1': 12 }
    await seedReadings(t.db, m, [{ ts: '2026-10-01T00:15:00Z', values }], ctx.timezone)
    const page = await listReadings(t.db, query({ householdId: h, granularity: 'load_curve' }), ctx)
    expect(page.items).toEqual([{ meterId: m, ts: '2026-10-01T00:15:00Z', granularity: 'load_curve', values }])
  })

  it('derives daily energy per household and day, splitting the day of a move-out', async () => {
    const w = await seedWorld(t)
    const a = await listReadings(t.db, query({ householdId: w.a, meterIds: [w.m1], granularity: 'daily' }), ctx)
    expect(a.items).toEqual([
      // The first reading, at midnight, closes 30 September: alone, with no index before it, it measures no
      // interval, so 30 September is no day of A's (the reading is a load-curve datum all the same).
      { meterId: w.m1, day: '2026-10-01', granularity: 'daily', values: { [IMPORT]: 240 } }, // 10 Wh at 00:00 … 250 Wh at 24:00
      { meterId: w.m1, day: '2026-10-02', granularity: 'daily', values: { [IMPORT]: 110 } }, // from 250 to 360 Wh at 11:00 (09:00Z)
    ])
    const b = await listReadings(t.db, query({ householdId: w.b, meterIds: [w.m1], granularity: 'daily' }), ctx)
    expect(b.items).toEqual([
      // Counted from B's own first index: the hour from A's last reading to B's first belongs to neither.
      { meterId: w.m1, day: '2026-10-02', granularity: 'daily', values: { [IMPORT]: 120 } }, // 370 Wh at 12:00 … 490 Wh at 24:00
      { meterId: w.m1, day: '2026-10-03', granularity: 'daily', values: { [IMPORT]: 230 } },
    ])
  })

  it('sums a household’s daily energies into monthly energy', async () => {
    const w = await seedWorld(t)
    const a = await listReadings(t.db, query({ householdId: w.a, granularity: 'monthly' }), ctx)
    // Meter 2: 4 readings a day of +100 Wh, the 4th at midnight closing the day; September counts from the
    // index at its start (the first reading, which closes 31 August, no day of its own). Meter 1's first
    // reading closes September: no month of A's there either.
    expect(a.items).toEqual([
      { meterId: w.m1, month: '2026-10', granularity: 'monthly', values: { [IMPORT]: 350 } },
      { meterId: w.m2, month: '2026-09', granularity: 'monthly', values: { [IMPORT]: 30 * 400 } },
      { meterId: w.m2, month: '2026-10', granularity: 'monthly', values: { [IMPORT]: 31 * 400 } }, // Oct 25 has 25 hours and 4 readings
      { meterId: w.m2, month: '2026-11', granularity: 'monthly', values: { [IMPORT]: 30 * 400 } },
      { meterId: w.m2, month: '2026-12', granularity: 'monthly', values: { [IMPORT]: 35 * 100 } },
    ])
    const daily = await listReadings(t.db, query({ householdId: w.a, meterIds: [w.m2], granularity: 'daily' }), ctx)
    const sum = (month: string) =>
      daily.items.filter((d) => d.granularity === 'daily' && d.day.startsWith(month)).reduce((n, d) => n + d.values[IMPORT]!, 0)
    expect(sum('2026-12')).toBe(35 * 100)
    expect(sum('2026-10')).toBe(31 * 400)
    const b = await listReadings(t.db, query({ householdId: w.b, granularity: 'monthly' }), ctx)
    expect(b.items).toEqual([{ meterId: w.m1, month: '2026-10', granularity: 'monthly', values: { [IMPORT]: 350 } }])
  })

  it('cuts days in local time across the October DST change (Oct 25 has 25 hours)', async () => {
    const m = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    await seedOccupancy(t.db, { meterId: m, householdId: h, from: OCT_1 })
    const oct24 = new Date('2026-10-23T22:00:00Z')
    const oct26 = new Date('2026-10-25T23:00:00Z')
    // Each hour's reading at its end: from 01:00 on the 24th to midnight after the 26th.
    await seedReadings(t.db, m, readingSeries({ start: new Date(oct24.getTime() + 3_600_000), count: 24 + 25 + 24 }), ctx.timezone)
    expect((await rollupsOf(t.db, m)).map((r) => [r.day, r.count, r.firstTs, r.lastTs])).toEqual([
      ['2026-10-24', 24, '2026-10-23T23:00:00.000Z', '2026-10-24T22:00:00.000Z'],
      ['2026-10-25', 25, '2026-10-24T23:00:00.000Z', '2026-10-25T23:00:00.000Z'],
      ['2026-10-26', 24, '2026-10-26T00:00:00.000Z', '2026-10-26T23:00:00.000Z'],
    ])
    const page = await listReadings(t.db, query({ householdId: h, granularity: 'daily' }), ctx)
    expect(page.items.map((d) => [d.granularity === 'daily' && d.day, d.values[IMPORT]])).toEqual([
      ['2026-10-24', 230],
      ['2026-10-25', 250],
      ['2026-10-26', 240],
    ])
    const until26 = await listReadings(t.db, query({ householdId: h, granularity: 'daily', from: oct24, to: oct26 }), ctx)
    expect(until26.items.map((d) => d.granularity === 'daily' && d.day)).toEqual(['2026-10-24', '2026-10-25'])
    const loadCurve = await listReadings(t.db, query({ householdId: h, granularity: 'load_curve', from: new Date('2026-10-24T22:00:00Z'), to: oct26 }), ctx)
    expect(loadCurve.items).toHaveLength(25)
  })

  it('selects a day or a month by its start, and readings in [from, to)', async () => {
    const w = await seedWorld(t)
    const h = { householdId: w.a, meterIds: [w.m1] }
    const days = async (from: Date, to: Date) =>
      (await listReadings(t.db, query({ ...h, granularity: 'daily', from, to }), ctx)).items.map((d) => d.granularity === 'daily' && d.day)
    expect(await days(OCT_1, OCT_3)).toEqual(['2026-10-01', '2026-10-02'])
    expect(await days(new Date(OCT_1.getTime() + 1), OCT_3)).toEqual(['2026-10-02'])
    expect(await days(OCT_1, new Date(OCT_2.getTime() + 1))).toEqual(['2026-10-01', '2026-10-02'])
    expect(await days(OCT_1, OCT_2)).toEqual(['2026-10-01'])
    const months = async (from: Date, to: Date) =>
      (await listReadings(t.db, query({ householdId: w.a, meterIds: [w.m2], granularity: 'monthly', from, to }), ctx)).items.map(
        (d) => d.granularity === 'monthly' && d.month,
      )
    expect(await months(OCT_1, new Date('2026-11-30T23:00:00Z'))).toEqual(['2026-10', '2026-11'])
    expect(await months(new Date('2026-10-01T00:00:00Z'), new Date('2026-11-30T23:00:00Z'))).toEqual(['2026-11'])
    const readings = await listReadings(t.db, query({ ...h, granularity: 'load_curve', from: OCT_2, to: new Date('2026-10-02T01:00:00Z') }), ctx)
    expect(readings.items.map((r) => r.granularity === 'load_curve' && r.ts)).toEqual([
      '2026-10-01T22:00:00Z',
      '2026-10-01T23:00:00Z',
      '2026-10-02T00:00:00Z',
    ])
  })

  for (const [granularity, limit] of [
    ['load_curve', 7],
    ['daily', 4],
    ['monthly', 1],
  ] as [Granularity, number][]) {
    it(`walks every page of ${granularity} data without loss or duplicate`, async () => {
      const w = await seedWorld(t)
      const whole = await listReadings(t.db, query({ householdId: w.a, granularity }), ctx)
      expect(whole.nextCursor).toBeNull()
      expect(whole.items.length).toBeGreaterThan(limit * 3)
      const { items, pages } = await walk(t, query({ householdId: w.a, granularity, limit }))
      expect(items).toEqual(whole.items)
      expect(pages).toBe(Math.ceil(whole.items.length / limit))
      const keys = items.map((i) => JSON.stringify([i.meterId, i.granularity === 'load_curve' ? i.ts : i.granularity === 'daily' ? i.day : i.month]))
      expect(new Set(keys).size).toBe(items.length)
    })
  }

  it('pages through readings that share a millisecond', async () => {
    const m = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    await seedOccupancy(t.db, { meterId: m, householdId: h, from: OCT_1 })
    await seedReadings(t.db, m, readingSeries({ start: OCT_2, count: 3 }), ctx.timezone)
    await t.db
      .insertInto('readings')
      .values(['2026-10-02T00:00:00.000001Z', '2026-10-02T00:00:00.000002Z', '2026-10-02T00:00:00.000999Z'].map((ts, i) => ({
        meter_id: m,
        ts: ts as unknown as Date,
        household_id: h,
        values: JSON.stringify({ [IMPORT]: 1000 + i }),
      })))
      .execute()
    const { items } = await walk(t, query({ householdId: h, granularity: 'load_curve', limit: 1 }))
    expect(items).toHaveLength(6)
    expect(items.map((i) => i.values[IMPORT])).toEqual([10, 20, 30, 1000, 1001, 1002])
  })

  it('restricts a recipient to release windows: owner, meter and time must all match', async () => {
    const w = await seedWorld(t)
    const windows: ReleaseWindow[] = [
      // A's data of meter 1 from Oct 1 00:00 local to Oct 2 05:00Z: Oct 1 is whole, Oct 2 is not.
      { meterId: w.m1, householdId: w.a, from: OCT_1, until: new Date('2026-10-02T05:00:00Z') },
      // Names B where A owned the data: selects nothing.
      { meterId: w.m2, householdId: w.b, from: SEP_1, until: null },
    ]
    const lc = await listReadings(t.db, query({ windows, granularity: 'load_curve' }), ctx)
    expect(lc.items).toHaveLength(24 + 7) // Oct 1, then 22:00Z … 04:00Z
    expect(lc.items.every((i) => i.meterId === w.m1)).toBe(true)
    expect(lc.items.at(-1)).toMatchObject({ ts: '2026-10-02T04:00:00Z' })

    const daily = await listReadings(t.db, query({ windows, granularity: 'daily' }), ctx)
    expect(daily.items).toEqual([{ meterId: w.m1, day: '2026-10-01', granularity: 'daily', values: { [IMPORT]: 240 } }])
    const monthly = await listReadings(t.db, query({ windows, granularity: 'monthly' }), ctx)
    expect(monthly.items).toEqual([{ meterId: w.m1, month: '2026-10', granularity: 'monthly', values: { [IMPORT]: 240 } }])

    // Two owners of one day under two consents: both datums, each its owner's share.
    const both: ReleaseWindow[] = [
      { meterId: w.m1, householdId: w.a, from: SEP_1, until: null },
      { meterId: w.m1, householdId: w.b, from: SEP_1, until: null },
    ]
    const split = await listReadings(t.db, query({ windows: both, meterIds: [w.m1], granularity: 'daily' }), ctx)
    // (The day of the move: A's share and B's, in the order of their ids.) Oct 3 has no reading at its
    // midnight: a recipient does not get it, its energy could still change (a household would see it).
    expect(split.items.map((d) => [d.granularity === 'daily' && d.day, d.values[IMPORT]]).sort()).toEqual([
      ['2026-10-01', 240],
      ['2026-10-02', 110],
      ['2026-10-02', 120],
    ])
    const own = await listReadings(t.db, query({ householdId: w.b, meterIds: [w.m1], granularity: 'daily' }), ctx)
    expect(own.items.map((d) => [d.granularity === 'daily' && d.day, d.values[IMPORT]])).toEqual([
      ['2026-10-02', 120],
      ['2026-10-03', 230],
    ])
    const paged = await walk(t, query({ windows: both, meterIds: [w.m1], granularity: 'daily', limit: 1 }))
    expect(paged.items).toEqual(split.items)

    // With an owner named too, windows of other owners select nothing.
    const onlyB = await listReadings(t.db, query({ windows: both, householdId: w.b, granularity: 'monthly' }), ctx)
    // B's October is not final (Oct 3 lacks its closing reading, and the rest of the month its data): no monthly datum yet.
    expect(onlyB.items).toEqual([])
    expect((await listReadings(t.db, query({ windows: [], granularity: 'load_curve' }), ctx)).items).toEqual([])
  })

  it('releases no month whose days between the move-in and its first day are still missing', async () => {
    // Hourly; the household moved in at Sep 10 00:00 local and out at Sep 13 00:00, and the meter has sent only Sep 12 so far.
    const meter = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    await seedOccupancy(t.db, { meterId: meter, householdId: h, from: '2026-09-09T22:00:00Z', until: '2026-09-12T22:00:00Z' })
    await seedReadings(t.db, meter, readingSeries({ start: '2026-09-11T22:00:00Z', count: 25, firstIndex: 1000 }), ctx.timezone)
    const windows: ReleaseWindow[] = [{ meterId: meter, householdId: h, from: SEP_1, until: null }]
    // Sep 12 is final (its midnight reading opens it, the last before the move-out closes it), but
    // Sep 10 and 11 may still come: September's total would change after its release.
    const daily = await listReadings(t.db, query({ windows, granularity: 'daily' }), ctx)
    expect(daily.items).toEqual([{ meterId: meter, day: '2026-09-12', granularity: 'daily', values: { [IMPORT]: 230 } }])
    expect((await listReadings(t.db, query({ windows, granularity: 'monthly' }), ctx)).items).toEqual([])

    // They come: the month runs from the move-in without a gap, and is released whole.
    await seedReadings(t.db, meter, readingSeries({ start: '2026-09-09T22:00:00Z', count: 48, firstIndex: 510 }), ctx.timezone)
    expect((await listReadings(t.db, query({ windows, granularity: 'monthly' }), ctx)).items).toEqual([
      { meterId: meter, month: '2026-09', granularity: 'monthly', values: { [IMPORT]: 1240 - 520 } },
    ])
  })

  it("releases a month of a household that came back to the meter on another day, once its days in the month are final", async () => {
    // Hourly. h lives there on 10 September (local), k from the 11th, h again from 1 October 00:00: the
    // reading at that midnight is h's, alone on 30 September (it closes that day, and measures nothing
    // of h's), so no day of h's. h's September is the 10th: final, and released. (The 10th's last hour
    // ends at k's first reading: neither's, 230 Wh.)
    const meter = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    const k = await seedHousehold(t.db)
    await seedOccupancy(t.db, { meterId: meter, householdId: h, from: '2026-09-09T22:00:00Z', until: '2026-09-10T22:00:00Z' })
    await seedOccupancy(t.db, { meterId: meter, householdId: k, from: '2026-09-10T22:00:00Z', until: '2026-09-30T22:00:00Z' })
    await seedOccupancy(t.db, { meterId: meter, householdId: h, from: '2026-09-30T22:00:00Z' })
    await seedReadings(t.db, meter, readingSeries({ start: '2026-09-09T22:00:00Z', count: 21 * 24 + 3 }), ctx.timezone)
    const windows: ReleaseWindow[] = [{ meterId: meter, householdId: h, from: SEP_1, until: null }]
    expect((await listReadings(t.db, query({ windows, granularity: 'daily' }), ctx)).items).toEqual([{ meterId: meter, day: '2026-09-10', granularity: 'daily', values: { [IMPORT]: 230 } }])
    expect((await listReadings(t.db, query({ windows, granularity: 'monthly' }), ctx)).items).toEqual([{ meterId: meter, month: '2026-09', granularity: 'monthly', values: { [IMPORT]: 230 } }])
  })

  it('releases a month a household left and came back to only once the days of both its stays are in, final', async () => {
    // Hourly. h lives there from 1 September (local) to the 10th 00:00, k to the 20th 00:00, then h again.
    const meter = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    const k = await seedHousehold(t.db)
    await seedOccupancy(t.db, { meterId: meter, householdId: h, from: SEP_1, until: '2026-09-09T22:00:00Z' })
    await seedOccupancy(t.db, { meterId: meter, householdId: k, from: '2026-09-09T22:00:00Z', until: '2026-09-19T22:00:00Z' })
    await seedOccupancy(t.db, { meterId: meter, householdId: h, from: '2026-09-19T22:00:00Z' })
    // Up to the midnight of h's return (that reading is h's, alone on the 19th: no day).
    const upToReturn = 19 * 24 + 1
    await seedReadings(t.db, meter, readingSeries({ start: SEP_1, count: upToReturn }), ctx.timezone)
    const windows: ReleaseWindow[] = [{ meterId: meter, householdId: h, from: SEP_1, until: null }]
    const monthly = async (): Promise<EgressDatum[]> => (await listReadings(t.db, query({ windows, granularity: 'monthly' }), ctx)).items
    // h's first stay is whole and final (1–9 September), but its second has no day yet: the month's
    // total would change after its release.
    expect((await listReadings(t.db, query({ windows, granularity: 'daily' }), ctx)).items).toHaveLength(9)
    expect(await monthly()).toEqual([])

    // The rest of September up to its closing midnight: h's days 20 to 30 join, and the month is final.
    // (The 9th's last hour ends at k's first reading: neither's, 230 Wh.)
    await seedReadings(t.db, meter, readingSeries({ start: new Date(SEP_1.getTime() + upToReturn * 3_600_000), count: 30 * 24 + 1 - upToReturn, firstIndex: upToReturn * 10 }), ctx.timezone)
    expect((await listReadings(t.db, query({ windows, granularity: 'daily' }), ctx)).items).toHaveLength(9 + 11)
    expect(await monthly()).toEqual([{ meterId: meter, month: '2026-09', granularity: 'monthly', values: { [IMPORT]: 8 * 240 + 230 + 11 * 240 } }])
  })

  it("counts none of the vacant hours around a stay within one day in the household's next day", async () => {
    // Hourly. Nobody lives there on 1 October (local) but from 01:45 to 06:45 (h), so nobody's readings of
    // that day stop for h's and resume after them; h is back from 2 October 00:15.
    const meter = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    await seedOccupancy(t.db, { meterId: meter, householdId: h, from: '2026-09-30T23:45:00Z', until: '2026-10-01T04:45:00Z' })
    await seedOccupancy(t.db, { meterId: meter, householdId: h, from: '2026-10-01T22:15:00Z' })
    await seedReadings(t.db, meter, readingSeries({ start: OCT_1, count: 27 }), ctx.timezone)
    // 1 October: 02:00 to 06:00 (the hour before 02:00 ends at nobody's reading). 2 October: 01:00 to
    // 02:00, not from h's 06:00 of the day before: the hours between were nobody's.
    expect((await listReadings(t.db, query({ householdId: h, granularity: 'daily' }), ctx)).items.map((d) => [d.granularity === 'daily' && d.day, d.values[IMPORT]])).toEqual([
      ['2026-10-01', 40],
      ['2026-10-02', 10],
    ])
  })

  it('refuses bad input naming the field', async () => {
    const w = await seedWorld(t)
    const base = query({ householdId: w.a, granularity: 'daily' })
    const daily = await listReadings(t.db, { ...base, limit: 1 }, ctx)
    expect(daily.nextCursor).not.toBeNull()
    // [from, from) is empty, not wrong.
    expect(await listReadings(t.db, { ...base, to: SEP_1 }, ctx)).toEqual({ items: [], nextCursor: null })
    const cases: [Partial<ReadingsQuery>, string][] = [
      [{ to: new Date(SEP_1.getTime() - 1) }, 'to'],
      [{ from: new Date('nope') }, 'from'],
      [{ limit: 0 }, 'limit'],
      [{ limit: 1001 }, 'limit'],
      [{ limit: 1.5 }, 'limit'],
      [{ granularity: 'hourly' as Granularity }, 'granularity'],
      [{ meterIds: Array.from({ length: 101 }, (_, i) => `m${i}`) }, 'meterId'],
      [{ cursor: 'not a cursor' }, 'cursor'],
      [{ cursor: Buffer.from('["readings.daily","x","2026-13-01","y"]').toString('base64url') }, 'cursor'],
      [{ cursor: daily.nextCursor!, granularity: 'monthly' }, 'cursor'],
    ]
    for (const [change, field] of cases) {
      const err = await caught(() => listReadings(t.db, { ...base, ...change }, ctx))
      expect(err).toBeInstanceOf(InvalidInputError)
      expect((err as InvalidInputError).field).toBe(field)
    }
  })
})
