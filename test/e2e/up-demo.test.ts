import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CliProcess } from '../support/cli.ts'
import { describePostgres, type TestDatabase } from '../support/database.ts'

/**
 * `npm start` as a new user meets it: `metershare up` with the demo world and its simulated fleet,
 * on a data folder that does not exist yet, then stopped and started again on the same data. On
 * the embedded database, and on PostgreSQL (an empty database of its own) when there is one.
 */
/** How long the demo may take to start, and to connect its meters and store their readings (status lines come every 10 s). */
const START_MS_MAX = 90_000
const FLEET_UP_MS_MAX = 60_000

function demoSuite(databaseUrl: () => string | null): void {
  let root: string
  let dataDir: string
  let up: CliProcess | undefined

  beforeAll(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'metershare-demo-'))
    // Not there yet, as ./data is not in a fresh clone.
    dataDir = path.join(root, 'data')
  })

  afterAll(() => {
    up?.kill()
    rmSync(root, { recursive: true, force: true })
  })

  const start = (): CliProcess => {
    // As a new user runs it: no operator token (one is generated and printed), the embedded database unless a URL is given.
    const { METERSHARE_ADMIN_TOKEN: _token, DATABASE_URL: _url, ...env } = process.env
    const url = databaseUrl()
    return new CliProcess(['up'], {
      ...env,
      METERSHARE_DATA_DIR: dataDir,
      MQTT_PORT: '0',
      HTTP_PORT: '0',
      METERSHARE_HOST: '127.0.0.1',
      METERSHARE_LOG_LEVEL: 'warn',
      ...(url !== null ? { DATABASE_URL: url } : {}),
    })
  }

  /** Waits for a status line with every simulated meter connected (and, if asked, readings stored); returns how many meters. */
  async function fleetUp(u: CliProcess, storing: boolean): Promise<number> {
    const meters = Number((await u.printed(/Simulator\s+(\d+) meters/, START_MS_MAX))[1])
    expect(meters).toBeGreaterThan(0)
    const stored = storing ? '[1-9][\\d,]*' : '[\\d,]+'
    await u.printed(new RegExp(`${meters}/${meters} meters connected · [\\d,]+ readings/s · ${stored} stored · 0 quarantined`), FLEET_UP_MS_MAX)
    return meters
  }

  it(
    'creates the demo world in a data folder that does not exist yet, connects every simulated meter and stores their readings',
    async () => {
      up = start()
      await up.printed(/Operator\s+Authorization: Bearer \S+\s+\(generated/, START_MS_MAX)
      await fleetUp(up, true)
    },
    START_MS_MAX + FLEET_UP_MS_MAX,
  )

  it('signs a demo household in with the printed email and password and shows it its consumption', async () => {
    const [, http] = await up!.printed(/HTTP API\s+(http:\/\/\S+)/, START_MS_MAX)
    const [, email, password] = await up!.printed(/sign in as (\S+) \/ (\S+)/, START_MS_MAX)
    const signIn = await fetch(`${http}/portal/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password }),
    })
    expect(signIn.status).toBe(201)
    const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!
    const readings = await fetch(`${http}/me/readings`, { headers: { cookie } })
    expect(readings.status).toBe(200)
    const body = (await readings.json()) as { items: Array<{ granularity: string; values: Record<string, number> }> }
    expect(body.items.length).toBeGreaterThan(0)
    expect(body.items[0]!.granularity).toBe('load_curve')
  })

  it(
    'stops cleanly, then starts again on the same data with the same fleet',
    async () => {
      expect(await up!.stop()).toBe(0)
      expect(up!.output).toContain('stopped; everything acknowledged is stored')
      const meters = Number(/Simulator\s+(\d+) meters/.exec(up!.output)![1])
      const simulatedBefore = [...up!.output.matchAll(/simulated (\d{4}-\d\d-\d\d \d\d:\d\d)Z/g)].at(-1)![1]!
      up = start()
      // The fleet goes on after what is stored, instead of resending its month from the first day.
      const [, resumedAt] = await up.printed(/Simulator\s+\d+ meters resuming at (\d{4}-\d\d-\d\d \d\d:\d\d)Z/, START_MS_MAX)
      expect(resumedAt! >= simulatedBefore).toBe(true)
      expect(await fleetUp(up, true)).toBe(meters)
      const [, http] = await up.printed(/HTTP API\s+(http:\/\/\S+)/, START_MS_MAX)
      const metrics = await (await fetch(`${http}/metrics`)).text()
      // At most the few readings in flight when the first run stopped come again (a window of 4 per meter).
      const duplicates = Number(/^metershare_readings_duplicate_total (\d+)$/m.exec(metrics)![1])
      expect(duplicates).toBeLessThanOrEqual(4 * meters)
      expect(await up.stop()).toBe(0)
    },
    START_MS_MAX + FLEET_UP_MS_MAX + 60_000,
  )

  it(
    'says so when the data folder has lost the demo credentials, and runs without a fleet',
    async () => {
      rmSync(path.join(dataDir, 'demo-world.json'))
      up = start()
      await up.printed(/no simulated fleet: the database is not empty and the data folder holds no demo credentials/, START_MS_MAX)
      // On a terminal the log goes to its file: the banner says it too.
      await up.printed(/Simulator\s+none: the database is not empty and \S+demo-world\.json is missing/, START_MS_MAX)
      expect(up.output).not.toMatch(/Simulator\s+\d+ meters/)
      expect(await up.stop()).toBe(0)
    },
    START_MS_MAX + 60_000,
  )
}

describe('npm start: metershare up with the demo world [pglite]', () => demoSuite(() => null))

describePostgres('npm start: metershare up with the demo world', (t: TestDatabase) => demoSuite(() => t.url), { resetEach: false })
