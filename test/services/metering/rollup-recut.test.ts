import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { openDataCalendar, type RecutProgress } from '../../../services/metering/rollup-recut.ts'
import { ROLLUPS_RECUT_SETTING } from '../../../shared/db/data-calendar.ts'
import { up as markRollupsForRecut } from '../../../shared/db/migrations/0010-rollups-by-interval-end.ts'
import { ConfigError } from '../../../shared/errors.ts'
import { describeDatabases } from '../../support/database.ts'
import { readingSeries, rollupsOf, seedHousehold, seedMeter, seedOccupancy, seedReadings } from '../../support/seed.ts'

const TZ = 'Europe/Paris'
const IMPORT = '1-0:1.8.0'

/**
 * Rollups stored before a datum's day was that of the interval it ends (migration 0010) put the
 * reading at local midnight in the day after it. The first process to start cuts them again.
 */
describeDatabases('daily rollups cut again by interval end', (t) => {
  /** A meter with hourly readings from 1 October 00:00 to 2 October 00:00 (Paris), and its rollups as stored before 0010. */
  async function storedBefore(): Promise<{ meterId: string; h: string }> {
    await sql`DELETE FROM settings`.execute(t.db)
    await sql`DELETE FROM daily_rollups`.execute(t.db)
    const meterId = await seedMeter(t.db)
    const h = await seedHousehold(t.db)
    await seedOccupancy(t.db, { meterId, householdId: h, from: '2026-09-01T00:00:00Z' })
    await seedReadings(t.db, meterId, readingSeries({ start: '2026-09-30T22:00:00Z', count: 25 }), TZ)
    // As the earlier version stored them: 1 October from 00:00 to 23:00, 2 October with its midnight.
    await sql`DELETE FROM daily_rollups WHERE meter_id = ${meterId}`.execute(t.db)
    await t.db
      .insertInto('daily_rollups')
      .values([
        { meter_id: meterId, household_id: h, day: '2026-10-01', readings_count: 24, first_ts: new Date('2026-09-30T22:00:00Z'), last_ts: new Date('2026-10-01T21:00:00Z'), index_min: JSON.stringify({ [IMPORT]: 10 }), index_max: JSON.stringify({ [IMPORT]: 240 }) },
        { meter_id: meterId, household_id: h, day: '2026-10-02', readings_count: 1, first_ts: new Date('2026-10-01T22:00:00Z'), last_ts: new Date('2026-10-01T22:00:00Z'), index_min: JSON.stringify({ [IMPORT]: 250 }), index_max: JSON.stringify({ [IMPORT]: 250 }) },
      ])
      .execute()
    await markRollupsForRecut(t.db)
    return { meterId, h }
  }

  it('is marked by the migration only where rollups exist', async () => {
    await sql`DELETE FROM settings`.execute(t.db)
    await sql`DELETE FROM daily_rollups`.execute(t.db)
    await markRollupsForRecut(t.db)
    expect(await t.db.selectFrom('settings').selectAll().execute()).toEqual([])
    await storedBefore()
    expect(await t.db.selectFrom('settings').select(['key', 'value']).execute()).toEqual([{ key: ROLLUPS_RECUT_SETTING, value: 'pending' }])
    await sql`DELETE FROM settings`.execute(t.db)
  })

  it('cuts them again at the first start, in the zone recorded then, once', async () => {
    const { meterId, h } = await storedBefore()
    // The zone is checked against the days as they were cut: by the instant, 1 October holds 00:00 to 23:00 Paris.
    await expect(openDataCalendar(t.db, 'UTC')).rejects.toBeInstanceOf(ConfigError)
    await openDataCalendar(t.db, TZ)
    expect(await rollupsOf(t.db, meterId)).toEqual([
      { day: '2026-09-30', householdId: h, count: 1, firstTs: '2026-09-30T22:00:00.000Z', lastTs: '2026-09-30T22:00:00.000Z', indexMin: { [IMPORT]: 10 }, indexMax: { [IMPORT]: 10 } },
      { day: '2026-10-01', householdId: h, count: 24, firstTs: '2026-09-30T23:00:00.000Z', lastTs: '2026-10-01T22:00:00.000Z', indexMin: { [IMPORT]: 20 }, indexMax: { [IMPORT]: 250 } },
    ])
    expect(await t.db.selectFrom('settings').select(['key', 'value']).execute()).toEqual([{ key: 'timezone', value: TZ }])
    // Once: a later start changes nothing.
    const before = await t.db.selectFrom('daily_rollups').select(['day', 'updated_at']).where('meter_id', '=', meterId).orderBy('day').execute()
    await openDataCalendar(t.db, TZ)
    expect(await t.db.selectFrom('daily_rollups').select(['day', 'updated_at']).where('meter_id', '=', meterId).orderBy('day').execute()).toEqual(before)
    await sql`DELETE FROM daily_rollups`.execute(t.db)
  })

  it('cuts again the meters that took readings since the schema notice, until a pass finds none', async () => {
    const notice = new Date(Date.now() - 60_000)
    const { meterId } = await storedBefore()
    // Stored after the notice, as by a broker of the earlier version still running.
    await sql`UPDATE readings SET ingested_at = now() WHERE meter_id = ${meterId}`.execute(t.db)
    const progress: RecutProgress[] = []
    await openDataCalendar(t.db, TZ, { storedSince: notice, onProgress: (p) => progress.push(p) })
    expect(progress.filter((p) => p.phase === 'cutting').map((p) => [p.pass, p.meters])).toEqual([
      [1, 1],
      [2, 1],
    ])
    expect(progress.at(-1)).toMatchObject({ phase: 'done', meters: 1, done: 1 })
    expect((await rollupsOf(t.db, meterId)).map((r) => [r.day, r.count])).toEqual([
      ['2026-09-30', 1],
      ['2026-10-01', 24],
    ])
    await sql`DELETE FROM daily_rollups`.execute(t.db)
  })
})
