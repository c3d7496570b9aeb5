import { sql } from 'kysely'
import { expect, it } from 'vitest'
import {
  createOccupancy,
  getOccupancy,
  listOccupancies,
  moveOut,
  occupanciesOfHousehold,
} from '../../../services/metering/occupancy-service.ts'
import { ConflictError, ERROR_CODES, InvalidInputError, NotFoundError } from '../../../shared/errors.ts'
import { ensureReadingsPartitions } from '../../../shared/db/partitions.ts'
import { describeDatabases, describePostgres } from '../../support/database.ts'
import { readingOwners, readingSeries, rollupsOf, seedHousehold, seedMeter, seedOccupancy, seedReadings } from '../../support/seed.ts'

const ctx = { timezone: 'Europe/Paris' }
const IMPORT = '1-0:1.8.0'

/** 2026-10-01 00:00 in Paris; the series below read every hour from there, index +10 each. */
const DAY_START = '2026-09-30T22:00:00Z'

async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

describeDatabases('occupancy service', (t) => {
  it('attributes readings before a move-out to the old household, and at and after it to the new one', async () => {
    const meter = await seedMeter(t.db)
    const a = await seedHousehold(t.db, 'A')
    const b = await seedHousehold(t.db, 'B')
    // Stored while nobody was registered: owned by nobody.
    await seedReadings(t.db, meter, readingSeries({ start: DAY_START, count: 24 }), ctx.timezone)
    expect((await readingOwners(t.db, meter)).every((r) => r.householdId === null)).toBe(true)

    const T = '2026-10-01T10:00:00Z'
    await createOccupancy(t.db, { meterId: meter, householdId: a, from: new Date('2026-09-01T00:00:00Z'), until: new Date(T) }, ctx)
    await createOccupancy(t.db, { meterId: meter, householdId: b, from: new Date(T), until: null }, ctx)

    const owners = await readingOwners(t.db, meter)
    const at = (ts: string) => owners.find((r) => r.ts === new Date(ts).toISOString())!.householdId
    expect(at('2026-10-01T09:00:00Z')).toBe(a)
    expect(at(T)).toBe(b)
    expect(at('2026-10-01T11:00:00Z')).toBe(b)
    expect(owners.filter((r) => r.householdId === a)).toHaveLength(12) // 22:00Z … 09:00Z
    expect(owners.filter((r) => r.householdId === b)).toHaveLength(12) // 10:00Z … 21:00Z

    // The reading at local midnight ends an interval of 30 September: it is that day's.
    const rollups = await rollupsOf(t.db, meter)
    expect(rollups).toEqual([
      {
        day: '2026-09-30',
        householdId: a,
        count: 1,
        firstTs: '2026-09-30T22:00:00.000Z',
        lastTs: '2026-09-30T22:00:00.000Z',
        indexMin: { [IMPORT]: 10 },
        indexMax: { [IMPORT]: 10 },
      },
      {
        day: '2026-10-01',
        householdId: a,
        count: 11,
        firstTs: '2026-09-30T23:00:00.000Z',
        lastTs: '2026-10-01T09:00:00.000Z',
        indexMin: { [IMPORT]: 20 },
        indexMax: { [IMPORT]: 120 },
      },
      {
        day: '2026-10-01',
        householdId: b,
        count: 12,
        firstTs: '2026-10-01T10:00:00.000Z',
        lastTs: '2026-10-01T21:00:00.000Z',
        indexMin: { [IMPORT]: 130 },
        indexMax: { [IMPORT]: 240 },
      },
    ])
  })

  it('re-attributes data stored as nobody’s when a move-in is registered late', async () => {
    const meter = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    await seedReadings(t.db, meter, readingSeries({ start: DAY_START, count: 48 }), ctx.timezone)
    expect((await rollupsOf(t.db, meter)).map((r) => r.householdId)).toEqual([null, null, null])

    const { id } = await createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date('2026-10-01T12:00:00Z'), until: null }, ctx)
    expect(id).toMatch(/^occ_/)

    const owners = await readingOwners(t.db, meter)
    expect(owners.filter((r) => r.householdId === h).map((r) => r.ts)[0]).toBe('2026-10-01T12:00:00.000Z')
    expect(owners.filter((r) => r.householdId === null).map((r) => r.ts).at(-1)).toBe('2026-10-01T11:00:00.000Z')
    expect(owners.filter((r) => r.householdId === h)).toHaveLength(34)
    const rollups = await rollupsOf(t.db, meter)
    expect(rollups.map((r) => [r.day, r.householdId, r.count])).toEqual([
      ['2026-09-30', null, 1],
      ['2026-10-01', null, 13],
      ['2026-10-01', h, 11],
      ['2026-10-02', h, 23],
    ])
    expect(rollups.reduce((n, r) => n + r.count, 0)).toBe(48)
  })

  it('re-attributes readings after a move-out registered late to nobody, and back when the move-out is moved later', async () => {
    const meter = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    const occ = await seedOccupancy(t.db, { meterId: meter, householdId: h, from: '2026-09-01T00:00:00Z' })
    await seedReadings(t.db, meter, readingSeries({ start: DAY_START, count: 72 }), ctx.timezone)
    expect((await readingOwners(t.db, meter)).every((r) => r.householdId === h)).toBe(true)

    await moveOut(t.db, occ, new Date('2026-10-02T06:30:00Z'), ctx)
    let owners = await readingOwners(t.db, meter)
    expect(owners.filter((r) => r.householdId === h).at(-1)!.ts).toBe('2026-10-02T06:00:00.000Z')
    expect(owners.filter((r) => r.householdId === null)[0]!.ts).toBe('2026-10-02T07:00:00.000Z')
    expect((await rollupsOf(t.db, meter)).map((r) => [r.day, r.householdId, r.count])).toEqual([
      ['2026-09-30', h, 1],
      ['2026-10-01', h, 24],
      ['2026-10-02', h, 8],
      ['2026-10-02', null, 16],
      ['2026-10-03', null, 23],
    ])
    expect((await getOccupancy(t.db, occ)).until).toEqual(new Date('2026-10-02T06:30:00Z'))

    // The household did stay one more day.
    await moveOut(t.db, occ, new Date('2026-10-03T06:30:00Z'), ctx)
    owners = await readingOwners(t.db, meter)
    expect(owners.filter((r) => r.householdId === h).at(-1)!.ts).toBe('2026-10-03T06:00:00.000Z')
    expect((await rollupsOf(t.db, meter)).map((r) => [r.day, r.householdId, r.count])).toEqual([
      ['2026-09-30', h, 1],
      ['2026-10-01', h, 24],
      ['2026-10-02', h, 24],
      ['2026-10-03', h, 8],
      ['2026-10-03', null, 15],
    ])
  })

  it('cancels a move-out still to come with until null, and refuses to undo one that has happened', async () => {
    const meter = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    const occ = await seedOccupancy(t.db, { meterId: meter, householdId: h, from: '2026-09-01T00:00:00Z' })
    await seedReadings(t.db, meter, readingSeries({ start: DAY_START, count: 72 }), ctx.timezone)
    const now = new Date('2026-10-02T12:00:00Z')
    // Announced for the 10th, then called off: the household stays, its data with it.
    await moveOut(t.db, occ, new Date('2026-10-10T00:00:00Z'), ctx, now)
    await moveOut(t.db, occ, null, ctx, now)
    expect((await getOccupancy(t.db, occ)).until).toBeNull()
    // Registered late, the 2nd at 06:30 is past: readings after it went to nobody, and the consents ended then.
    await moveOut(t.db, occ, new Date('2026-10-02T06:30:00Z'), ctx, now)
    expect((await readingOwners(t.db, meter)).filter((r) => r.householdId === null)[0]!.ts).toBe('2026-10-02T07:00:00.000Z')
    const err = await caught(moveOut(t.db, occ, null, ctx, now))
    expect(err).toBeInstanceOf(ConflictError)
    expect((err as ConflictError).message).toBe(
      `until: the move-out at 2026-10-02T06:30:00Z has happened and ended the household's consents for meter ${meter}; it may be moved to another past instant, and if the household stayed, register a new occupancy from 2026-10-02T06:30:00Z`,
    )
    // Nor moved into the future, which would undo it all the same; corrected to another past instant, it may.
    expect(await caught(moveOut(t.db, occ, new Date('2026-10-20T00:00:00Z'), ctx, now))).toBeInstanceOf(ConflictError)
    await moveOut(t.db, occ, new Date('2026-10-02T08:00:00Z'), ctx, now)
    await moveOut(t.db, occ, new Date('2026-10-02T06:30:00Z'), ctx, now)
    expect((await getOccupancy(t.db, occ)).until).toEqual(new Date('2026-10-02T06:30:00Z'))
    // The way back it names: the readings since return to the household.
    await createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date('2026-10-02T06:30:00Z'), until: null }, ctx)
    expect((await readingOwners(t.db, meter)).every((r) => r.householdId === h)).toBe(true)
    // Cancelling what is not there is no change.
    const open = await seedOccupancy(t.db, { meterId: await seedMeter(t.db), householdId: h, from: '2026-09-01T00:00:00Z' })
    await moveOut(t.db, open, null, ctx, now)
    expect((await getOccupancy(t.db, open)).until).toBeNull()
  })

  it("records when an end ends the household's consents: at a move-out registered in time, at the registration of a late one, never later once they ended", async () => {
    const h = await seedHousehold(t.db)
    const consentsEnd = async (id: string) => (await t.db.selectFrom('occupancies').select('consents_end_at').where('id', '=', id).executeTakeFirstOrThrow()).consents_end_at
    const occ = await seedOccupancy(t.db, { meterId: await seedMeter(t.db), householdId: h, from: '2026-09-01T00:00:00Z' })
    // Announced on 1 October for the 10th.
    await moveOut(t.db, occ, new Date('2026-10-10T00:00:00Z'), ctx, new Date('2026-10-01T00:00:00Z'))
    expect(await consentsEnd(occ)).toEqual(new Date('2026-10-10T00:00:00Z'))
    // Moved later on 1 November, when the consents had ended on the 10th: they stay ended then.
    await moveOut(t.db, occ, new Date('2026-10-20T00:00:00Z'), ctx, new Date('2026-11-01T00:00:00Z'))
    expect(await consentsEnd(occ)).toEqual(new Date('2026-10-10T00:00:00Z'))
    // Registered on 5 November for 28 October: the consents end on the 5th.
    const late = await seedOccupancy(t.db, { meterId: await seedMeter(t.db), householdId: h, from: '2026-09-01T00:00:00Z' })
    await moveOut(t.db, late, new Date('2026-10-28T00:00:00Z'), ctx, new Date('2026-11-05T00:00:00Z'))
    expect(await consentsEnd(late)).toEqual(new Date('2026-11-05T00:00:00Z'))
    // A whole stay registered afterwards, and one with no end yet.
    const past = await createOccupancy(t.db, { meterId: await seedMeter(t.db), householdId: h, from: new Date('2026-09-01T00:00:00Z'), until: new Date('2026-10-01T00:00:00Z') }, ctx, new Date('2026-11-05T00:00:00Z'))
    expect(await consentsEnd(past.id)).toEqual(new Date('2026-11-05T00:00:00Z'))
    const open = await createOccupancy(t.db, { meterId: await seedMeter(t.db), householdId: h, from: new Date('2026-09-01T00:00:00Z'), until: null }, ctx, new Date('2026-11-05T00:00:00Z'))
    expect(await consentsEnd(open.id)).toBeNull()
    // An earlier stay found out on 5 November, up to the move-in registered for the household on 1 October:
    // it did not move out then, and the consents it granted since stand (dated at the move-in, which they follow).
    const stayedAt = await seedMeter(t.db)
    await createOccupancy(t.db, { meterId: stayedAt, householdId: h, from: new Date('2026-10-01T00:00:00Z'), until: null }, ctx, new Date('2026-10-01T00:00:00Z'))
    const earlier = await createOccupancy(t.db, { meterId: stayedAt, householdId: h, from: new Date('2026-09-01T00:00:00Z'), until: new Date('2026-10-01T00:00:00Z') }, ctx, new Date('2026-11-05T00:00:00Z'))
    expect(await consentsEnd(earlier.id)).toEqual(new Date('2026-10-01T00:00:00Z'))
  })

  it('leaves the readings of other meters alone', async () => {
    const meter = await seedMeter(t.db)
    const other = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    await seedReadings(t.db, meter, readingSeries({ start: DAY_START, count: 5 }), ctx.timezone)
    await seedReadings(t.db, other, readingSeries({ start: DAY_START, count: 5 }), ctx.timezone)
    await createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date(DAY_START), until: null }, ctx)
    expect((await readingOwners(t.db, meter)).every((r) => r.householdId === h)).toBe(true)
    expect((await readingOwners(t.db, other)).every((r) => r.householdId === null)).toBe(true)
    expect((await rollupsOf(t.db, other)).map((r) => r.householdId)).toEqual([null, null])
  })

  it('refuses an overlapping occupancy and changes nothing', async () => {
    const meter = await seedMeter(t.db)
    const a = await seedHousehold(t.db)
    const b = await seedHousehold(t.db)
    await createOccupancy(t.db, { meterId: meter, householdId: a, from: new Date('2026-09-01T00:00:00Z'), until: null }, ctx)
    await seedReadings(t.db, meter, readingSeries({ start: DAY_START, count: 5 }), ctx.timezone)

    const err = await caught(createOccupancy(t.db, { meterId: meter, householdId: b, from: new Date('2026-10-01T00:00:00Z'), until: null }, ctx))
    expect(err).toBeInstanceOf(ConflictError)
    expect((err as ConflictError).code).toBe(ERROR_CODES.OCCUPANCY_OVERLAP)
    expect((err as ConflictError).statusCode).toBe(409)
    expect(await listOccupancies(t.db, { meterId: meter })).toHaveLength(1)
    expect((await readingOwners(t.db, meter)).every((r) => r.householdId === a)).toBe(true)
  })

  it('is refused by the database itself when two occupancies of a meter overlap', async () => {
    const meter = await seedMeter(t.db)
    const a = await seedHousehold(t.db)
    const b = await seedHousehold(t.db)
    await seedOccupancy(t.db, { meterId: meter, householdId: a, from: '2026-09-01T00:00:00Z', until: '2026-10-01T00:00:00Z' })
    const err = await caught(seedOccupancy(t.db, { meterId: meter, householdId: b, from: '2026-09-30T23:59:59Z' }))
    expect((err as { code?: string }).code).toBe('23P01')
    // Touching ends do not overlap: [from, until).
    await seedOccupancy(t.db, { meterId: meter, householdId: b, from: '2026-10-01T00:00:00Z' })
  })

  it('refuses a move-out moved later into the next occupancy', async () => {
    const meter = await seedMeter(t.db)
    const a = await seedHousehold(t.db)
    const b = await seedHousehold(t.db)
    const { id } = await createOccupancy(
      t.db,
      { meterId: meter, householdId: a, from: new Date('2026-09-01T00:00:00Z'), until: new Date('2026-10-01T00:00:00Z') },
      ctx,
    )
    await createOccupancy(t.db, { meterId: meter, householdId: b, from: new Date('2026-10-01T00:00:00Z'), until: null }, ctx)
    const err = await caught(moveOut(t.db, id, new Date('2026-10-05T00:00:00Z'), ctx))
    expect((err as ConflictError).code).toBe(ERROR_CODES.OCCUPANCY_OVERLAP)
    expect((await getOccupancy(t.db, id)).until).toEqual(new Date('2026-10-01T00:00:00Z'))
  })

  it('refuses a household coming back to a meter the local day it left it, by a move-in or a move-out, and changes nothing; back to back or another day is allowed', async () => {
    const meter = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    const k = await seedHousehold(t.db)
    // Paris: h leaves on 1 October at 12:00 (10:00Z), k lives there 12:00-17:00.
    await createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date('2026-09-01T00:00:00Z'), until: new Date('2026-10-01T10:00:00Z') }, ctx)
    await createOccupancy(t.db, { meterId: meter, householdId: k, from: new Date('2026-10-01T10:00:00Z'), until: new Date('2026-10-01T15:00:00Z') }, ctx)
    await seedReadings(t.db, meter, readingSeries({ start: DAY_START, count: 30 }), ctx.timezone)
    const owners = await readingOwners(t.db, meter)
    const rollups = await rollupsOf(t.db, meter)

    // Back at 19:00 the same day: refused.
    const err = await caught(createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date('2026-10-01T17:00:00Z'), until: null }, ctx))
    expect(err).toBeInstanceOf(ConflictError)
    expect((err as ConflictError).code).toBe(ERROR_CODES.OCCUPANCY_SAME_DAY_RETURN)
    expect((err as ConflictError).statusCode).toBe(409)
    expect((err as ConflictError).message).toMatch(/^from: household \S+ would leave meter \S+ at 2026-10-01T10:00:00Z and come back at 2026-10-01T17:00:00Z, the same day \(2026-10-01\)/)
    // Back at the midnight that closes the day: its reading is that day's, so refused too.
    const midnight = await caught(createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date('2026-10-01T22:00:00Z'), until: null }, ctx))
    expect((midnight as ConflictError).code).toBe(ERROR_CODES.OCCUPANCY_SAME_DAY_RETURN)
    // Said so: a return on the next local day is "the same day" only by the midnight reading's day.
    expect((midnight as ConflictError).message).toMatch(/come back at 2026-10-01T22:00:00Z, whose midnight reading closes 2026-10-01, the same day \(2026-10-01\)/)
    expect(await listOccupancies(t.db, { meterId: meter })).toHaveLength(2)
    expect(await readingOwners(t.db, meter)).toEqual(owners)
    expect(await rollupsOf(t.db, meter)).toEqual(rollups)

    // Back the next day: allowed. Then away again from 3 October, back on the 4th.
    const { id: second } = await createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date('2026-10-02T08:00:00Z'), until: new Date('2026-10-03T08:00:00Z') }, ctx)
    await createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date('2026-10-04T08:00:00Z'), until: null }, ctx)
    // Its move-out moved to the morning of the 4th, before it comes back: refused, and kept where it was.
    const moved = await caught(moveOut(t.db, second, new Date('2026-10-04T06:00:00Z'), ctx))
    expect((moved as ConflictError).code).toBe(ERROR_CODES.OCCUPANCY_SAME_DAY_RETURN)
    expect((moved as ConflictError).message).toMatch(/^until: /)
    expect((await getOccupancy(t.db, second)).until).toEqual(new Date('2026-10-03T08:00:00Z'))
    // Moved to where the next stay begins, back to back: one stay, allowed.
    await moveOut(t.db, second, new Date('2026-10-04T08:00:00Z'), ctx)
    expect((await getOccupancy(t.db, second)).until).toEqual(new Date('2026-10-04T08:00:00Z'))
    // An earlier stay registered late, ending on the morning of the 2nd before it came back: its end is refused.
    const late = await caught(createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date('2026-10-01T23:00:00Z'), until: new Date('2026-10-02T06:00:00Z') }, ctx))
    expect((late as ConflictError).code).toBe(ERROR_CODES.OCCUPANCY_SAME_DAY_RETURN)
    expect((late as ConflictError).message).toMatch(/^until: .* at 2026-10-02T06:00:00Z and come back at 2026-10-02T08:00:00Z, the same day \(2026-10-02\)/)
  })

  it('names the field of bad input and refuses unknown meters, households and occupancies', async () => {
    const meter = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    const from = new Date('2026-10-01T00:00:00Z')
    const cases: [() => Promise<unknown>, string][] = [
      [() => createOccupancy(t.db, { meterId: meter, householdId: h, from, until: from }, ctx), 'until'],
      [() => createOccupancy(t.db, { meterId: meter, householdId: h, from, until: new Date('2026-09-01T00:00:00Z') }, ctx), 'until'],
      [() => createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date('nope'), until: null }, ctx), 'from'],
      [() => createOccupancy(t.db, { meterId: 'mtr_missing', householdId: h, from, until: null }, ctx), 'meterId'],
      [() => createOccupancy(t.db, { meterId: meter, householdId: 'hh_missing', from, until: null }, ctx), 'householdId'],
      [() => createOccupancy(t.db, { meterId: '', householdId: h, from, until: null }, ctx), 'meterId'],
    ]
    for (const [run, field] of cases) {
      const err = await caught(run())
      expect(err).toBeInstanceOf(InvalidInputError)
      expect((err as InvalidInputError).field).toBe(field)
      expect((err as InvalidInputError).message.startsWith(`${field}:`)).toBe(true)
    }
    expect(await listOccupancies(t.db, {})).toEqual([])

    const { id } = await createOccupancy(t.db, { meterId: meter, householdId: h, from, until: null }, ctx)
    const early = await caught(moveOut(t.db, id, from, ctx))
    expect((early as InvalidInputError).field).toBe('until')
    expect(await caught(moveOut(t.db, 'occ_missing', new Date('2026-11-01T00:00:00Z'), ctx))).toBeInstanceOf(NotFoundError)
    expect(await caught(getOccupancy(t.db, 'occ_missing'))).toBeInstanceOf(NotFoundError)
  })

  it('lists occupancies by meter and by household in time order', async () => {
    const m1 = await seedMeter(t.db)
    const m2 = await seedMeter(t.db)
    const a = await seedHousehold(t.db)
    const b = await seedHousehold(t.db)
    const o1 = await createOccupancy(
      t.db,
      { meterId: m1, householdId: a, from: new Date('2026-01-01T00:00:00Z'), until: new Date('2026-06-01T00:00:00Z') },
      ctx,
    )
    const o2 = await createOccupancy(t.db, { meterId: m1, householdId: b, from: new Date('2026-06-01T00:00:00Z'), until: null }, ctx)
    const o3 = await createOccupancy(t.db, { meterId: m2, householdId: a, from: new Date('2026-06-01T00:00:00Z'), until: null }, ctx)
    expect(await listOccupancies(t.db, { meterId: m1 })).toEqual([
      { id: o1.id, meterId: m1, householdId: a, from: new Date('2026-01-01T00:00:00Z'), until: new Date('2026-06-01T00:00:00Z') },
      { id: o2.id, meterId: m1, householdId: b, from: new Date('2026-06-01T00:00:00Z'), until: null },
    ])
    expect((await occupanciesOfHousehold(t.db, a)).map((o) => o.id).sort()).toEqual([o1.id, o3.id].sort())
    expect(await listOccupancies(t.db, { householdId: b })).toHaveLength(1)
  })

  it('announces each change on metershare_changes once it is committed', async () => {
    const meter = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    const heard: unknown[] = []
    let resolveHeard: () => void = () => {}
    const unlisten = await t.handle.listen('metershare_changes', (payload) => {
      heard.push(JSON.parse(payload))
      if (heard.length === 2) resolveHeard()
    })
    const both = new Promise<void>((resolve) => {
      resolveHeard = resolve
    })
    try {
      const { id } = await createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date('2026-10-01T00:00:00Z'), until: null }, ctx)
      await moveOut(t.db, id, new Date('2026-10-10T00:00:00Z'), ctx)
      await both
      expect(heard).toEqual([
        { kind: 'occupancy', meterId: meter, householdId: h, occupancyId: id },
        { kind: 'occupancy', meterId: meter, householdId: h, occupancyId: id },
      ])
    } finally {
      await unlisten()
    }
  })

  it('sends no announcement when a change is refused', async () => {
    const meter = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    await createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date('2026-10-01T00:00:00Z'), until: null }, ctx)
    const heard: string[] = []
    const unlisten = await t.handle.listen('metershare_changes', (p) => heard.push(p))
    try {
      await caught(createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date('2026-10-02T00:00:00Z'), until: null }, ctx))
      // A later notification proves the channel delivered everything sent before it.
      await sql`SELECT pg_notify('metershare_changes', '{"kind":"marker"}')`.execute(t.db)
      await expect.poll(() => heard.length).toBeGreaterThan(0)
      expect(heard).toEqual(['{"kind":"marker"}'])
    } finally {
      await unlisten()
    }
  })
})

describePostgres('occupancy service under concurrent ingest', (t) => {
  it('waits for an ingest batch in flight and re-attributes what it stored', async () => {
    const meter = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    await seedReadings(t.db, meter, readingSeries({ start: DAY_START, count: 2 }), ctx.timezone)
    await ensureReadingsPartitions(t.db, ['2026-10'])
    const ingest = await t.openAnother()
    try {
      let commitIngest: () => void = () => {}
      const mayCommit = new Promise<void>((resolve) => {
        commitIngest = resolve
      })
      let stored: () => void = () => {}
      const hasStored = new Promise<void>((resolve) => {
        stored = resolve
      })
      // An ingest batch as the lead's transaction runs it: SHARE lock, then attribute at insert.
      const batch = ingest.db.transaction().execute(async (trx) => {
        await sql`LOCK TABLE occupancies IN SHARE MODE`.execute(trx)
        await sql`INSERT INTO readings (meter_id, ts, household_id, values)
          SELECT ${meter}, x.ts, (SELECT o.household_id FROM occupancies o WHERE o.meter_id = ${meter} AND o.period @> x.ts), ${JSON.stringify({ [IMPORT]: 30 })}::jsonb
          FROM (SELECT ${new Date('2026-10-01T01:00:00Z')}::timestamptz AS ts) AS x`.execute(trx)
        stored()
        await mayCommit
      })
      await Promise.race([hasStored, batch])
      const change = createOccupancy(t.db, { meterId: meter, householdId: h, from: new Date(DAY_START), until: null }, ctx)
      // The change must be queued behind the batch's lock before the batch commits.
      await expect
        .poll(async () => {
          const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
            WHERE c.relname = 'occupancies' AND NOT l.granted`.execute(ingest.db)
          return r.rows[0]!.n
        })
        .toBe(1)
      commitIngest()
      await batch
      await change
      const owners = await readingOwners(t.db, meter)
      expect(owners).toHaveLength(3)
      expect(owners.every((r) => r.householdId === h)).toBe(true)
      // The first reading, at midnight, closes 30 September.
      expect((await rollupsOf(t.db, meter)).map((r) => [r.day, r.householdId, r.count])).toEqual([
        ['2026-09-30', h, 1],
        ['2026-10-01', h, 2],
      ])
    } finally {
      await ingest.close()
    }
  })
})
