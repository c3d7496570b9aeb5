import { expect, it } from 'vitest'
import { dailyDatumsToPublish, type TouchedGroup } from '../../../services/metering/daily-publication.ts'
import { describeDatabases } from '../../support/database.ts'
import { readingSeries, seedHousehold, seedMeter, seedOccupancy, seedReadings } from '../../support/seed.ts'

const ctx = { timezone: 'Europe/Paris' }
const IMPORT = '1-0:1.8.0'
const HOUR = 3_600_000

/** Local midnight (Paris, summer time) of 2026-10-0n, as an instant. */
function midnight(n: number): Date {
  return new Date(Date.UTC(2026, 8, 30, 22) + (n - 1) * 24 * HOUR)
}

function day(n: number): string {
  return `2026-10-0${n}`
}

/**
 * Hourly readings of the hours `fromHour` to `toHour` (exclusive) of local day n, each stamped at the
 * end of its hour (the last of a whole day at the next midnight); index = 10 Wh per hour since Oct 1 00:00.
 */
function hours(n: number, fromHour = 0, toHour = 24) {
  const start = midnight(n).getTime() + (fromHour + 1) * HOUR
  const first = (n - 1) * 24 + fromHour
  return readingSeries({ start: new Date(start), count: toHour - fromHour, firstIndex: first * 10 })
}

describeDatabases('daily publication', (t) => {
  /** A meter occupied since September whose reading at midnight on 1 October (index 0) opens that day. */
  async function occupiedMeter(): Promise<{ meter: string; h: string }> {
    const meter = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    await seedOccupancy(t.db, { meterId: meter, householdId: h, from: '2026-09-01T00:00:00Z' })
    await seedReadings(t.db, meter, [{ ts: midnight(1), values: { [IMPORT]: 0 } }], ctx.timezone)
    return { meter, h }
  }

  it('publishes a day once the reading at its end arrives, nothing while it is open, and not again when the next begins', async () => {
    const { meter, h } = await occupiedMeter()
    await seedReadings(t.db, meter, hours(1, 0, 12), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(1), created: true }], ctx)).toEqual([])
    await seedReadings(t.db, meter, hours(1, 12, 23), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(1), created: false }], ctx)).toEqual([])
    // The reading at midnight ends the day's last hour: Oct 1 is complete, from 00:00 (0 Wh) to 24:00 (240 Wh).
    await seedReadings(t.db, meter, hours(1, 23), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(1), created: false }], ctx)).toEqual([
      { meterId: meter, day: day(1), granularity: 'daily', values: { [IMPORT]: 240 }, householdId: h },
    ])
    await seedReadings(t.db, meter, hours(2, 0, 1), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(2), created: true, householdId: h }], ctx)).toEqual([])
  })

  it('withholds a day whose reading at midnight has not come, though later days have data: its energy could still change', async () => {
    const { meter, h } = await occupiedMeter()
    // Oct 1 until 22:00, Oct 2 without data, then Oct 3 begins: Oct 1 is complete, but its last two hours could still come.
    await seedReadings(t.db, meter, hours(1, 0, 22), ctx.timezone)
    await seedReadings(t.db, meter, hours(3, 0, 1), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(3), created: true, householdId: h }], ctx)).toEqual([])
    // One of them comes: published, Oct 1 would read 230 Wh, and 240 at the next: the difference is an hour's energy.
    await seedReadings(t.db, meter, hours(1, 22, 23), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(1), created: false }], ctx)).toEqual([])
    // The reading at midnight fixes Oct 1. Oct 3 stays withheld: Oct 2 has no reading at its end, Oct 3's opening.
    await seedReadings(t.db, meter, hours(1, 23), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(1), created: false }], ctx)).toEqual([
      { meterId: meter, day: day(1), granularity: 'daily', values: { [IMPORT]: 240 }, householdId: h },
    ])
    await seedReadings(t.db, meter, hours(3, 1), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(3), created: false }], ctx)).toEqual([])
  })

  it('publishes a backfilled day once, final, when a later reading came first: its changes would give away the load curve', async () => {
    const { meter, h } = await occupiedMeter()
    // A meter back online sends its latest reading first (Oct 3, 01:00), then its backlog one reading at a time.
    await seedReadings(t.db, meter, hours(3, 0, 1), ctx.timezone)
    const published: [string, number | undefined][] = []
    for (const [n, r] of [...hours(1).map((r) => [1, r] as const), ...hours(2).map((r) => [2, r] as const)]) {
      await seedReadings(t.db, meter, [r], ctx.timezone)
      for (const d of await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(n), created: false }], ctx)) {
        expect(d.householdId).toBe(h)
        published.push([d.day, d.values[IMPORT]])
      }
    }
    // Each day once its reading at midnight is in, and Oct 2 again at most when Oct 1's end fixed its opening: never a value between.
    expect(published).toEqual([
      [day(1), 240],
      [day(2), 240],
    ])
  })

  it('withholds a day whose latest reading is off the meter\'s grid until its reading at midnight comes: published once, with the midnight\'s value', async () => {
    const { meter, h } = await occupiedMeter()
    // An hourly meter's reading on demand at 23:30 (index 235): the reading at midnight can still come, and would change the day.
    await seedReadings(t.db, meter, [...hours(1, 0, 23), { ts: new Date(midnight(2).getTime() - HOUR / 2), values: { [IMPORT]: 235 } }], ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(1), created: false }], ctx)).toEqual([])
    // Nor does it open Oct 2, whole from 01:00 to its midnight: Oct 2's opening index is Oct 1's midnight one.
    await seedReadings(t.db, meter, hours(2), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(2), created: true, householdId: h }], ctx)).toEqual([])
    await seedReadings(t.db, meter, hours(1, 23), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(1), created: false }], ctx)).toEqual([
      { meterId: meter, day: day(1), granularity: 'daily', values: { [IMPORT]: 240 }, householdId: h },
      { meterId: meter, day: day(2), granularity: 'daily', values: { [IMPORT]: 240 }, householdId: h },
    ])
  })

  it('closes a day by the last reading on the meter\'s grid where local midnight is off it (UTC hours, India), and a move-out by a reading on demand', async () => {
    const kolkata = { timezone: 'Asia/Kolkata' }
    const meter = await seedMeter(t.db)
    const a = await seedHousehold(t.db)
    const b = await seedHousehold(t.db)
    // Local midnight of 1 October is 18:30 UTC on 30 September; the meter reads on UTC's hours, from 18:00 (index 0).
    const moveOut = new Date(Date.parse('2026-10-01T18:30:00Z') + 10 * HOUR + 17 * 60_000)
    await seedOccupancy(t.db, { meterId: meter, householdId: a, from: '2026-09-01T00:00:00Z', until: moveOut })
    await seedOccupancy(t.db, { meterId: meter, householdId: b, from: moveOut })
    // Complete once the meter reads past the day's end (19:00 UTC, the next day's first reading); closed by 18:00's.
    await seedReadings(t.db, meter, readingSeries({ start: '2026-09-30T18:00:00Z', count: 26, firstIndex: -10 }), kolkata.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: '2026-10-01', created: false }], kolkata)).toEqual([
      { meterId: meter, day: '2026-10-01', granularity: 'daily', values: { [IMPORT]: 240 }, householdId: a },
    ])
    // On 2 October a leaves at 10:17 local; a reading on demand at 10:10 local (04:40 UTC) is its last: no reading on the grid could follow before the move.
    const onDemand = { ts: new Date(moveOut.getTime() - 7 * 60_000), values: { [IMPORT]: 345 } }
    // b reads on from 05:00 UTC (index 350) past the day's end; the interval across the move is neither's.
    const stays = [...readingSeries({ start: '2026-10-01T20:00:00Z', count: 9, firstIndex: 250 }), onDemand, ...readingSeries({ start: '2026-10-02T05:00:00Z', count: 15, firstIndex: 340 })]
    await seedReadings(t.db, meter, stays, kolkata.timezone)
    const published = await dailyDatumsToPublish(t.db, [{ meterId: meter, day: '2026-10-02', created: true, householdId: a }], kolkata)
    expect(published.map((d) => [d.day, d.householdId, d.values[IMPORT]]).sort()).toEqual(
      [
        ['2026-10-02', a, 105],
        ['2026-10-02', b, 130],
      ].sort(),
    )
  })

  it('publishes every day a batch completes when it spans several days', async () => {
    const { meter, h } = await occupiedMeter()
    await seedReadings(t.db, meter, hours(1, 0, 20), ctx.timezone)
    await seedReadings(t.db, meter, [...hours(1, 20), ...hours(2), ...hours(3, 0, 3)], ctx.timezone)
    const touched: TouchedGroup[] = [
      { meterId: meter, day: day(1), created: false },
      { meterId: meter, day: day(2), created: true },
      { meterId: meter, day: day(3), created: true },
    ]
    expect(await dailyDatumsToPublish(t.db, touched, ctx)).toEqual([
      { meterId: meter, day: day(1), granularity: 'daily', values: { [IMPORT]: 240 }, householdId: h },
      { meterId: meter, day: day(2), granularity: 'daily', values: { [IMPORT]: 240 }, householdId: h },
    ])
  })

  it('publishes a day when its late closing reading comes, and the next day, whose opening index it is', async () => {
    const { meter, h } = await occupiedMeter()
    await seedReadings(t.db, meter, [...hours(1), ...hours(2, 0, 12), ...hours(3), ...hours(4, 0, 1)], ctx.timezone)
    const touched: TouchedGroup[] = [1, 2, 3, 4].map((n) => ({ meterId: meter, day: day(n), created: true }))
    // Oct 2 lacks its evening, and Oct 3 its opening index: only Oct 1 is final.
    expect((await dailyDatumsToPublish(t.db, touched, ctx)).map((d) => d.day)).toEqual([day(1)])
    // The evening of Oct 2 arrives late.
    await seedReadings(t.db, meter, hours(2, 12), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(2), created: false }], ctx)).toEqual([
      { meterId: meter, day: day(2), granularity: 'daily', values: { [IMPORT]: 240 }, householdId: h },
      { meterId: meter, day: day(3), granularity: 'daily', values: { [IMPORT]: 240 }, householdId: h },
    ])
  })

  it('publishes a late day created between complete days, and its successor, but not its predecessor again', async () => {
    const { meter, h } = await occupiedMeter()
    await seedReadings(t.db, meter, [...hours(1), ...hours(3), ...hours(4, 0, 1)], ctx.timezone)
    await seedReadings(t.db, meter, hours(2), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(2), created: true }], ctx)).toEqual([
      { meterId: meter, day: day(2), granularity: 'daily', values: { [IMPORT]: 240 }, householdId: h },
      { meterId: meter, day: day(3), granularity: 'daily', values: { [IMPORT]: 240 }, householdId: h },
    ])
  })

  it('publishes one datum per household of a day with a move-out, and none for data owned by nobody', async () => {
    const meter = await seedMeter(t.db)
    const a = await seedHousehold(t.db)
    const b = await seedHousehold(t.db)
    const moveOut = new Date(midnight(2).getTime() + 10 * HOUR)
    const gone = new Date(midnight(2).getTime() + 20 * HOUR)
    await seedOccupancy(t.db, { meterId: meter, householdId: a, from: '2026-09-01T00:00:00Z', until: moveOut })
    await seedOccupancy(t.db, { meterId: meter, householdId: b, from: moveOut, until: gone })
    await seedReadings(t.db, meter, hours(1), ctx.timezone)
    // Oct 2 whole, closed by its reading at midnight (owned by nobody): a until 09:00 (its last reading), b from 10:00 to 19:00.
    await seedReadings(t.db, meter, hours(2), ctx.timezone)
    const published = await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(2), created: true, householdId: null }], ctx)
    expect(published.map((d) => [d.day, d.householdId, d.values[IMPORT]]).sort()).toEqual(
      [
        [day(2), a, 90],
        // From b's first reading: the hour measured across the move belongs to neither.
        [day(2), b, 90],
      ].sort(),
    )

    const nobody = await seedMeter(t.db)
    await seedReadings(t.db, nobody, [...hours(1), ...hours(2, 0, 1)], ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: nobody, day: day(2), created: true }], ctx)).toEqual([])
  })

  it('does not publish the previous day again when a move-in adds a second group to a day already begun', async () => {
    const meter = await seedMeter(t.db)
    const a = await seedHousehold(t.db)
    const b = await seedHousehold(t.db)
    const moveOut = new Date(midnight(2).getTime() + 10 * HOUR)
    const moveIn = new Date(midnight(2).getTime() + 15 * HOUR)
    await seedOccupancy(t.db, { meterId: meter, householdId: a, from: '2026-09-01T00:00:00Z', until: moveOut })
    await seedReadings(t.db, meter, [...hours(1), ...hours(2, 0, 15)], ctx.timezone)
    await seedOccupancy(t.db, { meterId: meter, householdId: b, from: moveIn })
    await seedReadings(t.db, meter, hours(2, 15, 16), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: day(2), created: true, householdId: b }], ctx)).toEqual([])
  })

  it('publishes no day for a reading alone at the midnight before a meter\'s first day or a household\'s move-in: it measures nothing', async () => {
    const { meter, h } = await occupiedMeter()
    // The meter's first reading, at midnight on 1 October (index 0), closes 30 September; then 1 October whole.
    await seedReadings(t.db, meter, hours(1), ctx.timezone)
    expect(await dailyDatumsToPublish(t.db, [{ meterId: meter, day: '2026-09-30', created: true }, { meterId: meter, day: day(1), created: true }], ctx)).toEqual([
      { meterId: meter, day: day(1), granularity: 'daily', values: { [IMPORT]: 240 } , householdId: h },
    ])

    // A moves out and B in at midnight on 2 October: the reading stamped then is B's, alone in B's 1 October.
    const other = await seedMeter(t.db)
    const a = await seedHousehold(t.db)
    const b = await seedHousehold(t.db)
    await seedOccupancy(t.db, { meterId: other, householdId: a, from: '2026-09-01T00:00:00Z', until: midnight(2) })
    await seedOccupancy(t.db, { meterId: other, householdId: b, from: midnight(2) })
    await seedReadings(t.db, other, [{ ts: midnight(1), values: { [IMPORT]: 0 } }, ...hours(1), ...hours(2, 0, 1)], ctx.timezone)
    const published = await dailyDatumsToPublish(t.db, [{ meterId: other, day: day(1), created: true }, { meterId: other, day: day(2), created: true }], ctx)
    // A's 1 October, 00:00 to 23:00 (0 … 230 Wh); the hour ending at the move is measured across it: neither's.
    expect(published.map((d) => [d.day, d.householdId, d.values[IMPORT]])).toEqual([[day(1), a, 230]])
  })

  it('handles several meters in one batch', async () => {
    const one = await occupiedMeter()
    const two = await occupiedMeter()
    const three = await occupiedMeter()
    // One batch stores Oct 1 and the start of Oct 2 of each; the third did not get its reading at midnight.
    await seedReadings(t.db, one.meter, [...hours(1), ...hours(2, 0, 1)], ctx.timezone)
    await seedReadings(t.db, two.meter, [...hours(1, 6), ...hours(2, 0, 2)], ctx.timezone)
    await seedReadings(t.db, three.meter, [...hours(1, 0, 23), ...hours(2, 1, 2)], ctx.timezone)
    const touched: TouchedGroup[] = [one, two, three].flatMap(({ meter }) => [
      { meterId: meter, day: day(1), created: true },
      { meterId: meter, day: day(2), created: true },
    ])
    const published = await dailyDatumsToPublish(t.db, touched, ctx)
    expect(published.map((d) => [d.meterId, d.day, d.householdId, d.values[IMPORT]]).sort()).toEqual(
      [
        [one.meter, day(1), one.h, 240],
        // 06:00 to 24:00 missing in between changes nothing: the day runs from its opening index to its closing one.
        [two.meter, day(1), two.h, 240],
      ].sort(),
    )
    expect(await dailyDatumsToPublish(t.db, [], ctx)).toEqual([])
  })
})
