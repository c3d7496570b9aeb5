import { afterAll, beforeAll, expect, it } from 'vitest'
import { connectMeter, endClient, waitFor } from '../support/broker.ts'
import { BROWSER_PATH, BROWSER_SKIP, launchChromium } from '../support/browser.ts'
import { callApi, runCli } from '../support/cli.ts'
import { describePrivatePostgres } from '../support/private-postgres.ts'
import { DATABASE_UNAVAILABLE_ANSWER, UP_START_MS_MAX, adminRequestsTimed, logSince as logOf, publishingMeter as meterOf, startUpOnServer, timed, type UpOnServer } from '../support/up-outage.ts'

/**
 * `metershare up --no-demo --no-simulate` on PostgreSQL while the server goes away (`pg_ctl stop -m
 * fast`) and comes back, as an operator and a meter see it: /healthz, /metrics, the HTTP API, the
 * log and the status line, a meter's publish, and a process started meanwhile.
 */
const ADMIN = 'outage-e2e-admin-token-0123456789'
const RECOVERY_MS_MAX = 60_000
/** How long the server stays away (at least: the checks below take what they take). */
const OUTAGE_MS = 12_000

describePrivatePostgres('metershare up while its database server goes away and comes back', (server) => {
  let s: UpOnServer
  let up: UpOnServer['up']
  let http = ''
  let mqttUrl = ''
  let url = ''
  let meter: { id: string; secret: string }

  beforeAll(async () => {
    s = await startUpOnServer(server().url, ADMIN)
    ;({ up, http, mqttUrl, url, meter } = s)
  }, UP_START_MS_MAX + 30_000)

  afterAll(async () => {
    for (const c of s?.clients ?? []) await endClient(c)
    await up?.stop()
  })

  const logSince = (from: number) => logOf(up, from)
  const publishingMeter = (day: string, reconnectPeriod: number) => meterOf(s, day, reconnectPeriod)

  it('says the database is down on /healthz, /metrics, the API and the log, once each, holds the meter, and is back by itself', async () => {
    const { client, publish, acked } = await publishingMeter('2026-10-01', 300)
    publish(1)
    await waitFor(() => acked() === 1, 10_000, 'the first reading acknowledged')
    const from = up.output.length

    await server().stop('fast')
    const stoppedAt = Date.now()
    publish(2)
    // The broker's check trusts a commit of the last 5 s; then a probe says the database is away.
    const health = await waitFor(async () => {
      const res = await fetch(http + '/healthz')
      return res.status === 503 ? { status: res.status, body: (await res.json()) as unknown } : undefined
    }, 30_000, '/healthz 503')
    expect(health.body).toEqual({ status: 'unavailable', broker: true, database: false, storage: true })
    const healthMs = Date.now() - stoppedAt

    // The API: a clear 503 in the contract's error format, at once (the connection is refused), for reads and writes.
    const answers = await adminRequestsTimed(http, ADMIN, RECOVERY_MS_MAX)
    for (const a of answers) {
      expect(a.value).toEqual(DATABASE_UNAVAILABLE_ANSWER)
    }

    const metrics = await (await fetch(http + '/metrics')).text()
    expect(metrics).toMatch(/^metershare_database_up 0$/m)
    expect(metrics).toMatch(/^metershare_database_unreachable 1$/m)

    // A meter connecting now cannot be signed in: CONNACK 3, server unavailable (it tries again later).
    await expect(connectMeter(mqttUrl, meter, { clientId: meter.id })).rejects.toThrow(/Server unavailable/)
    // A process started now stops at once, naming DATABASE_URL and the cause (exit 2): its supervisor restarts it.
    const migrate = await runCli(['migrate'], { ...process.env, DATABASE_URL: url })
    expect(migrate.code).toBe(2)
    expect(migrate.stderr).toContain(`DATABASE_URL: nothing accepts connections at 127.0.0.1:${server().port}: is PostgreSQL running there?`)

    // The status line (every 10 s without a terminal) leads with it.
    await up.printed(/DATABASE UNREACHABLE: readings held, not acknowledged \(see the log\)/, 15_000)
    const left = OUTAGE_MS - (Date.now() - stoppedAt)
    if (left > 0) await new Promise((r) => setTimeout(r, left))
    expect(acked()).toBe(1)
    const outageLog = logSince(from)

    const startedAt = Date.now()
    await server().start()
    await waitFor(() => acked() === 2, RECOVERY_MS_MAX, 'the held reading acknowledged')
    const ackMs = Date.now() - startedAt
    await waitFor(async () => (await fetch(http + '/healthz')).status === 200, RECOVERY_MS_MAX, '/healthz 200 again')
    const healthyMs = Date.now() - startedAt
    const quarantine = await callApi<{ items: unknown[] }>(http, 'GET', '/admin/quarantine', ADMIN)
    expect(quarantine.items).toEqual([])
    const after = await (await fetch(http + '/metrics')).text()
    expect(after).toMatch(/^metershare_database_up 1$/m)
    expect(after).toMatch(/^metershare_database_unreachable 0$/m)
    expect(client.connected).toBe(true)

    // Said once each, not at every request, retry or sweep.
    const said = (msg: string | RegExp): number => outageLog.filter((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg ?? ''))).length
    expect(said('request refused: the database cannot be reached')).toBe(1)
    expect(said(/^database unreachable: ingest holds publishes unacknowledged/)).toBe(1)
    expect(said('authentication lookup failed')).toBe(1)
    await waitFor(() => logSince(from).some((l) => l.msg === 'database reachable again: ingest resumed'), 10_000, 'the end of the hold in the log')
    console.info(
      `database stopped ${Date.now() - stoppedAt - (Date.now() - startedAt)} ms: /healthz 503 after ${healthMs} ms, API 503 in ${answers.map((a) => a.ms).join(', ')} ms, ` +
        `${outageLog.length} log lines during the outage (${[...new Set(outageLog.map((l) => l.msg))].join(' | ')}); ` +
        `after pg_ctl start: held reading acknowledged in ${ackMs} ms, /healthz 200 in ${healthyMs} ms`,
    )
  }, UP_START_MS_MAX + RECOVERY_MS_MAX * 2)

  it.skipIf(BROWSER_PATH === null)(`shows a browser a page saying so, in its language, and the portal again once the server is back${BROWSER_SKIP}`, async () => {
    const browser = await launchChromium()
    try {
      const signedIn = await (await browser.newContext({ locale: 'en-GB' })).newPage()
      await signedIn.goto(http + '/')
      await signedIn.getByLabel('Email').fill('doe@example.test')
      await signedIn.getByLabel('Password').fill('long enough password')
      await signedIn.getByRole('button', { name: 'Sign in' }).click()
      await signedIn.getByRole('heading', { level: 1, name: 'Your earnings' }).waitFor()
      const signingIn = await (await browser.newContext({ locale: 'fr-FR' })).newPage()
      await signingIn.goto(http + '/')

      await server().stop('fast')
      // A page followed, signed in: a page (not the API's JSON) saying what happened, with Retry-After.
      const consents = await signedIn.goto(http + '/consents')
      expect(consents?.status()).toBe(503)
      expect(consents?.headers()['content-type']).toMatch(/^text\/html/)
      expect(consents?.headers()['retry-after']).toBe('5')
      await signedIn.getByRole('heading', { level: 1, name: 'Metershare is unavailable for a moment.' }).waitFor()
      await signedIn.getByText('Nothing was changed: try again in a minute.').waitFor()
      // A form posted (the sign-in, in French): the same, in the page's language.
      await signingIn.getByLabel('E-mail').fill('doe@example.test')
      await signingIn.getByLabel('Mot de passe').fill('long enough password')
      const [posted] = await Promise.all([signingIn.waitForResponse((r) => r.url() === `${http}/portal/session`), signingIn.getByRole('button', { name: 'Se connecter' }).click()])
      expect(posted.status()).toBe(503)
      await signingIn.getByRole('heading', { level: 1, name: 'Metershare est momentanément indisponible.' }).waitFor()
      // Programs still get the contract's envelope.
      const api = await fetch(http + '/me/payouts', { headers: { cookie: (await signedIn.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ') } })
      expect(api.status).toBe(503)
      expect(((await api.json()) as { error: { code: string } }).error.code).toBe('DATABASE_UNAVAILABLE')

      await server().start()
      await waitFor(async () => (await fetch(http + '/healthz')).status === 200, RECOVERY_MS_MAX, '/healthz 200 again')
      // Still signed in: the session outlived the outage.
      await signedIn.goto(http + '/consents')
      await signedIn.getByRole('heading', { level: 1, name: 'Consents' }).waitFor()
    } finally {
      await browser.close()
    }
  }, UP_START_MS_MAX + RECOVERY_MS_MAX)

  it('stops on SIGTERM while the server is away, in seconds, having acknowledged nothing it could not store', async () => {
    const { publish, acked } = await publishingMeter('2026-10-02', 0)
    publish(1)
    await waitFor(() => acked() === 1, 10_000, 'a reading acknowledged')
    const from = up.output.length
    await server().stop('fast')
    publish(2)
    // Failed once in CI (timed out, not reproduced since): a recurrence says what the process logged meanwhile.
    await waitFor(async () => /^metershare_database_unreachable 1$/m.test(await (await fetch(http + '/metrics')).text()), 30_000, 'ingest held').catch((err: Error) => {
      throw new Error(`${err.message}; logged since the stop: ${JSON.stringify(logSince(from).map((l) => ({ ...l, time: undefined })))}`)
    })
    // Closing, ingest gives a group held for the server up at its next turn, without trying it again, rather than waiting for the server.
    const { value: code, ms } = await timed(() => up.stop())
    expect(code).toBe(0)
    expect(acked()).toBe(1)
    expect(up.output).toContain('Metershare: stopped; everything acknowledged is stored.')
    // Said as it is: given up at the stop, not "reachable again".
    const lines = logSince(0).map((l) => l.msg)
    expect(lines).toContain('ingest closing with publishes held for the database: they are not acknowledged (their meters send them again)')
    expect(lines.filter((m) => m === 'database reachable again: ingest resumed')).toHaveLength(1)
    console.info(`SIGTERM with the database away: exit ${code} after ${ms} ms`)
  }, RECOVERY_MS_MAX)
})
