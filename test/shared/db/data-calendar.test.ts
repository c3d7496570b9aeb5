import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { pinTimezone } from '../../../shared/db/data-calendar.ts'
import { ConfigError } from '../../../shared/errors.ts'
import { runCli } from '../../support/cli.ts'
import { describeDatabases } from '../../support/database.ts'
import { seedMeter } from '../../support/seed.ts'

describeDatabases('the calendar of the stored data', (t) => {
  it('is the zone of the first process to start, and a process in another zone is refused, naming both', async () => {
    await sql`DELETE FROM settings`.execute(t.db)
    await pinTimezone(t.db, 'Europe/Paris')
    await pinTimezone(t.db, 'Europe/Paris')
    const err = await pinTimezone(t.db, 'UTC').then(
      () => null,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toBe(
      `METERSHARE_TIMEZONE: this database's days and months are cut in Europe/Paris (got "UTC"); its stored days, daily data and settled months cannot move to another calendar: start with METERSHARE_TIMEZONE=Europe/Paris`,
    )
    expect(await t.db.selectFrom('settings').select(['key', 'value']).execute()).toEqual([{ key: 'timezone', value: 'Europe/Paris' }])
  })

  it('refuses a zone Node.js and the database read otherwise, or the database does not know, before recording anything (found by probing: IST, AET)', async () => {
    await sql`DELETE FROM settings`.execute(t.db)
    const refusal = async (zone: string): Promise<string> => {
      const err = await pinTimezone(t.db, zone).then(
        () => null,
        (e: unknown) => e,
      )
      expect(err, zone).toBeInstanceOf(ConfigError)
      return (err as Error).message
    }
    // Kolkata (+05:30) to Node.js, Israel (+02:00) to PostgreSQL.
    expect(await refusal('IST')).toBe(
      'METERSHARE_TIMEZONE: "IST" is read as UTC+05:30 by Node.js and as UTC+02:00 by the database at 2025-01-01T00:00:00.000Z: give an IANA zone name (Region/City) both read alike, such as Asia/Calcutta (what Node.js reads "IST" as)',
    )
    // Los Angeles with its summer time to Node.js, UTC-08:00 all year to PostgreSQL: they part in March.
    expect(await refusal('PST')).toMatch(/^METERSHARE_TIMEZONE: "PST" is read as UTC-07:00 by Node\.js and as UTC-08:00 by the database at 2025-03-09T12:00:00\.000Z/)
    expect(await refusal('AET')).toBe(
      'METERSHARE_TIMEZONE: the database does not know "AET": give an IANA zone name (Region/City), such as Australia/Sydney (what Node.js reads "AET" as)',
    )
    expect(await t.db.selectFrom('settings').selectAll().execute()).toEqual([])
    // IANA names, links and fixed offsets are read alike.
    for (const zone of ['Asia/Kathmandu', 'Australia/Lord_Howe', 'Pacific/Chatham', 'America/Santiago', 'Etc/GMT-14', 'UTC', 'US/Eastern']) {
      await sql`DELETE FROM settings`.execute(t.db)
      await pinTimezone(t.db, zone)
    }
  })

  it('takes another spelling of the recorded zone (its case, an older name, a link) as the same zone (found by probing: refused)', async () => {
    await sql`DELETE FROM settings`.execute(t.db)
    await pinTimezone(t.db, 'asia/kathmandu')
    await pinTimezone(t.db, 'Asia/Kathmandu')
    await pinTimezone(t.db, 'Asia/Katmandu')
    await sql`DELETE FROM settings`.execute(t.db)
    await pinTimezone(t.db, 'America/Santiago')
    await pinTimezone(t.db, 'Chile/Continental')
    await expect(pinTimezone(t.db, 'America/Argentina/Buenos_Aires')).rejects.toThrow(/cut in America\/Santiago/)
    await sql`DELETE FROM settings`.execute(t.db)
  })

  it('checks data stored before zones were recorded against the zone asked for, and names zones that fit', async () => {
    await sql`DELETE FROM settings`.execute(t.db)
    await sql`DELETE FROM daily_rollups`.execute(t.db)
    const meterId = await seedMeter(t.db)
    // Stored in Paris: 1 October from 00:15 local (22:15Z the day before) to 23:45 (21:45Z).
    await t.db
      .insertInto('daily_rollups')
      .values({ meter_id: meterId, household_id: null, day: '2026-10-01', readings_count: 96, first_ts: new Date('2026-09-30T22:15:00Z'), last_ts: new Date('2026-10-01T21:45:00Z'), index_min: '{}', index_max: '{}' })
      .execute()
    const refusal = async (zone: string): Promise<string> => {
      const err = await pinTimezone(t.db, zone).then(
        () => null,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(ConfigError)
      return (err as Error).message
    }
    expect(await refusal('UTC')).toMatch(
      /^METERSHARE_TIMEZONE: the days stored in this database were not cut in "UTC" \(day 2026-10-01 holds a reading at 2026-09-30T22:15:00.000Z, on 2026-09-30 there\); they fit (\S+, ){4}\S+: start with the zone the data was stored in$/,
    )
    // A zone east of the true one fits the day's first reading, not its last.
    expect(await refusal('Asia/Tokyo')).toContain('holds a reading at 2026-10-01T21:45:00.000Z, on 2026-10-02 there')
    // The zones named all fit: a day of Paris is a day of each.
    const named = /they fit (.*): start/.exec(await refusal('America/New_York'))![1]!.split(', ')
    for (const zone of named) expect(['+02:00']).toContain(new Intl.DateTimeFormat('en', { timeZone: zone, timeZoneName: 'longOffset' }).format(new Date('2026-10-01T12:00:00Z')).slice(-6))
    expect(await t.db.selectFrom('settings').selectAll().execute()).toEqual([])
    await pinTimezone(t.db, 'Europe/Paris')
    expect(await t.db.selectFrom('settings').select('value').execute()).toEqual([{ value: 'Europe/Paris' }])
    await sql`DELETE FROM daily_rollups`.execute(t.db)
  })
})

it('refuses `metershare migrate` in another zone than the data\'s, with exit 2 and nothing changed', async () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'metershare-calendar-'))
  try {
    const env = { METERSHARE_DATA_DIR: dataDir, METERSHARE_LOG_LEVEL: 'silent' }
    expect((await runCli(['migrate'], { ...env, METERSHARE_TIMEZONE: 'America/New_York' })).code).toBe(0)
    const refused = await runCli(['migrate'], { ...env, METERSHARE_TIMEZONE: 'Asia/Kathmandu' })
    expect([refused.code, refused.stdout, refused.stderr]).toEqual([2, '', expect.stringContaining("this database's days and months are cut in America/New_York (got \"Asia/Kathmandu\")")])
    expect((await runCli(['migrate'], { ...env, METERSHARE_TIMEZONE: 'America/New_York' })).stdout).toBe('schema is up to date\n')
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
}, 120_000)
