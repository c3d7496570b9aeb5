import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { MeterTails, commitMessages, scriptedIngest } from '../../../services/metering/ingest-service.ts'
import { validatePayload } from '../../../services/metering/ingest-validation.ts'
import { rebuildRollups, REBUILD_DAYS_PER_STATEMENT } from '../../../services/metering/rollup-repository.ts'
import { datumDayOf, dayOf } from '../../../shared/calendar.ts'
import { DEFAULT_INGEST_LIMITS } from '../../../shared/config.ts'
import { isCumulative } from '../../../shared/obis.ts'
import { describeDatabases } from '../../support/database.ts'
import { rollupsOf, seedHousehold, seedMeter, seedOccupancy, seedReadings, type SeedReading } from '../../support/seed.ts'

const TZ = 'Europe/Paris'
const IMPORT = '1-0:1.8.0'
const EXPORT = '1-0:2.8.0'
const POWER = '1-0:1.7.0'

/** Deterministic pseudo-random numbers (a test must not depend on luck). */
function lcg(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0
    return s / 2 ** 32
  }
}

/** The rollups the readings imply, computed here independently of the SQL. */
function expectedRollups(readings: { ts: Date; householdId: string | null; values: Record<string, number> }[]) {
  const groups = new Map<string, { day: string; householdId: string | null; count: number; first: number; last: number; min: Record<string, number>; max: Record<string, number> }>()
  for (const r of readings) {
    const day = dayOf(r.ts, TZ)
    const key = JSON.stringify([day, r.householdId])
    let g = groups.get(key)
    if (g === undefined) {
      g = { day, householdId: r.householdId, count: 0, first: Infinity, last: -Infinity, min: {}, max: {} }
      groups.set(key, g)
    }
    g.count++
    g.first = Math.min(g.first, r.ts.getTime())
    g.last = Math.max(g.last, r.ts.getTime())
    for (const [code, v] of Object.entries(r.values)) {
      if (!isCumulative(code)) continue
      g.min[code] = Math.min(g.min[code] ?? Infinity, v)
      g.max[code] = Math.max(g.max[code] ?? -Infinity, v)
    }
  }
  return [...groups.values()]
    .sort((a, b) => a.first - b.first)
    .map((g) => ({
      day: g.day,
      householdId: g.householdId,
      count: g.count,
      firstTs: new Date(g.first).toISOString(),
      lastTs: new Date(g.last).toISOString(),
      indexMin: g.min,
      indexMax: g.max,
    }))
}

describeDatabases('rollup repository', (t) => {
  it('keeps only cumulative registers in the indexes and counts every reading', async () => {
    const m = await seedMeter(t.db)
    await seedReadings(
      t.db,
      m,
      [
        { ts: '2026-10-01T08:00:00Z', values: { [IMPORT]: 100, [POWER]: 5000 } },
        { ts: '2026-10-01T09:00:00Z', values: { [POWER]: 7000 } },
        { ts: '2026-10-01T10:00:00Z', values: { [IMPORT]: 130, [EXPORT]: 4 } },
      ],
      TZ,
    )
    expect(await rollupsOf(t.db, m)).toEqual([
      {
        day: '2026-10-01',
        householdId: null,
        count: 3,
        firstTs: '2026-10-01T08:00:00.000Z',
        lastTs: '2026-10-01T10:00:00.000Z',
        indexMin: { [IMPORT]: 100, [EXPORT]: 4 },
        indexMax: { [IMPORT]: 130, [EXPORT]: 4 },
      },
    ])
  })

  it('merges each commit into the day register by register, whatever order the readings come in, and whichever registers each holds', async () => {
    // One local day (Paris, +02:00). The day's latest reading holds power alone, and another lacks the
    // export register: a rollup's latest datum does not hold every register's highest value.
    const day: SeedReading[] = [
      { ts: '2026-10-10T02:00:00Z', values: { [IMPORT]: 1_000, [EXPORT]: 50 } },
      { ts: '2026-10-10T06:00:00Z', values: { [POWER]: 800 } },
      { ts: '2026-10-10T10:00:00Z', values: { [IMPORT]: 1_500, [EXPORT]: 60 } },
      { ts: '2026-10-10T16:00:00Z', values: { [IMPORT]: 1_700 } },
      { ts: '2026-10-10T21:00:00Z', values: { [POWER]: 300 } },
    ]
    const expected = expectedRollups(day.map((r) => ({ ts: new Date(r.ts), householdId: null, values: r.values })))
    expect(expected.map((g) => [g.indexMin, g.indexMax])).toEqual([[{ [IMPORT]: 1_000, [EXPORT]: 50 }, { [IMPORT]: 1_700, [EXPORT]: 60 }]])
    // On PostgreSQL every other order goes through the scripts of the broker's ingest thread.
    const context = (n: number) => ({
      dialect: t.dialect,
      datumDayOf: (ms: number) => datumDayOf(ms, TZ),
      tails: new MeterTails(),
      ...(t.dialect === 'postgres' && n % 2 === 1 ? { scripted: scriptedIngest(t.handle) } : {}),
    })
    const payload = (rs: readonly SeedReading[]) => Buffer.from(JSON.stringify({ readings: rs.map((r) => ({ ts: r.ts, values: r.values })) }))
    // Every order of the five, one commit each, and in two commits (a batch of the first k, then the rest).
    const orders: SeedReading[][] = []
    const permute = (left: SeedReading[], taken: SeedReading[]): void => {
      if (left.length === 0) orders.push(taken)
      for (let i = 0; i < left.length; i++) permute([...left.slice(0, i), ...left.slice(i + 1)], [...taken, left[i]!])
    }
    permute(day, [])
    const random = lcg(7)
    for (const [n, order] of orders.entries()) {
      // All orders commit one reading at a time; every fourth also as two batches, split at a random point.
      for (const split of n % 4 === 0 ? [null, 1 + Math.floor(random() * (order.length - 1))] : [null]) {
        const m = await seedMeter(t.db)
        const commits = split === null ? order.map((r) => [r]) : [order.slice(0, split), order.slice(split)]
        for (const rs of commits) {
          const message = validatePayload({ meterId: m, commodity: 'electricity' }, payload(rs), Date.parse('2026-11-01T00:00:00Z'), DEFAULT_INGEST_LIMITS)
          expect(message.rejects).toEqual([])
          await commitMessages(t.db, [message], context(n))
        }
        expect(await rollupsOf(t.db, m), `order ${order.map((r) => String(r.ts).slice(11, 13)).join(',')}, split ${split}`).toEqual(expected)
      }
    }
  })

  it('rebuilds many days in bounded statements exactly as the readings imply', async () => {
    const m = await seedMeter(t.db)
    const households = [await seedHousehold(t.db), await seedHousehold(t.db), await seedHousehold(t.db)]
    const random = lcg(42)
    // Occupancies with gaps (nobody) between them, changing at arbitrary instants.
    let at = Date.parse('2026-09-15T00:00:00Z')
    for (let i = 0; i < 6; i++) {
      const from = at + Math.floor(random() * 5 * 86_400_000)
      const until = from + Math.floor((3 + random() * 12) * 86_400_000)
      await seedOccupancy(t.db, { meterId: m, householdId: households[i % 3]!, from: new Date(from), until: new Date(until) })
      at = until
    }
    const readings: SeedReading[] = []
    let index = 1000
    for (let ts = Date.parse('2026-09-20T00:00:00Z'); ts < Date.parse('2026-12-10T00:00:00Z'); ts += Math.floor((1 + random() * 9) * 3_600_000)) {
      index += Math.floor(random() * 500)
      const values: Record<string, number> = random() < 0.9 ? { [IMPORT]: index } : { [POWER]: 10 }
      if (random() < 0.3) values[EXPORT] = Math.floor(index / 10)
      readings.push({ ts: new Date(ts), values })
    }
    await seedReadings(t.db, m, readings, TZ)
    const days = new Set(readings.map((r) => dayOf(new Date(r.ts), TZ)))
    expect(days.size).toBeGreaterThan(2 * REBUILD_DAYS_PER_STATEMENT)

    const stored = await t.db.selectFrom('readings').select(['ts', 'household_id', 'values']).where('meter_id', '=', m).execute()
    expect(stored).toHaveLength(readings.length)
    const expected = expectedRollups(stored.map((r) => ({ ts: r.ts, householdId: r.household_id, values: r.values })))
    expect(new Set(expected.map((g) => g.householdId)).size).toBe(4) // three households and nobody
    expect(await rollupsOf(t.db, m)).toEqual(expected)

    // Re-attributing everything to nobody and rebuilding with an open end gives the same days, unowned.
    await sql`UPDATE readings SET household_id = NULL WHERE meter_id = ${m}`.execute(t.db)
    await rebuildRollups(t.db, m, new Date('2026-09-01T00:00:00Z'), null, TZ)
    expect(await rollupsOf(t.db, m)).toEqual(expectedRollups(stored.map((r) => ({ ts: r.ts, householdId: null, values: r.values }))))
  })

  it('removes the rollups of days whose readings are gone and leaves other days alone', async () => {
    const m = await seedMeter(t.db)
    await seedReadings(
      t.db,
      m,
      [
        { ts: '2026-10-01T08:00:00Z', values: { [IMPORT]: 100 } },
        { ts: '2026-10-02T08:00:00Z', values: { [IMPORT]: 200 } },
        { ts: '2026-10-03T08:00:00Z', values: { [IMPORT]: 300 } },
      ],
      TZ,
    )
    await t.db.deleteFrom('readings').where('meter_id', '=', m).where('ts', '>=', new Date('2026-10-02T00:00:00Z')).execute()
    await rebuildRollups(t.db, m, new Date('2026-10-02T00:00:00Z'), new Date('2026-10-02T12:00:00Z'), TZ)
    expect((await rollupsOf(t.db, m)).map((r) => r.day)).toEqual(['2026-10-01', '2026-10-03'])
    await rebuildRollups(t.db, m, new Date('2026-10-02T00:00:00Z'), null, TZ)
    expect((await rollupsOf(t.db, m)).map((r) => r.day)).toEqual(['2026-10-01'])
  })
})
