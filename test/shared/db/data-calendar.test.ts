import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { sql } from 'kysely'
import { expect, it } from 'vitest'
import { pinTimezone } from '../../../shared/db/data-calendar.ts'
import { ConfigError } from '../../../shared/errors.ts'
import { runCli } from '../../support/cli.ts'
import { describeDatabases } from '../../support/database.ts'

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
})

it('refuses `metershare migrate` in another zone than the data\'s, with exit 2 and nothing changed', async () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'metershare-calendar-'))
  try {
    const env = { METERSHARE_DATA_DIR: dataDir, METERSHARE_LOG_LEVEL: 'silent' }
    expect((await runCli(['migrate'], { ...env, METERSHARE_TIMEZONE: 'America/New_York' })).code).toBe(0)
    const refused = await runCli(['migrate'], { ...env, METERSHARE_TIMEZONE: 'Asia/Kathmandu' })
    expect([refused.code, refused.stderr]).toEqual([2, expect.stringContaining("this database's days and months are cut in America/New_York (got \"Asia/Kathmandu\")")])
    expect((await runCli(['migrate'], { ...env, METERSHARE_TIMEZONE: 'America/New_York' })).stdout).toBe('schema is up to date\n')
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
}, 120_000)
