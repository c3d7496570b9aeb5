import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { endClient, waitFor } from '../support/broker.ts'
import { callApi } from '../support/cli.ts'
import { describePrivatePostgres, queryOnce } from '../support/private-postgres.ts'
import { DATABASE_UNAVAILABLE_ANSWER, UP_START_MS_MAX, adminRequestsTimed, logSince as logOf, publishingMeter as meterOf, startUpOnServer, timed, type UpOnServer } from '../support/up-outage.ts'

/**
 * `metershare up --no-demo --no-simulate` on PostgreSQL while its server stops answering without
 * closing anything (SIGSTOP to the postmaster and every backend: a frozen host; the kernel still
 * accepts connections and acknowledges what is sent), then answers again (SIGCONT). As an operator
 * and a meter see it: the HTTP API, /metrics, a meter's publish, and a stop meanwhile. The waits
 * are short here (METERSHARE_DB_CONNECT_TIMEOUT_MS, METERSHARE_DB_ANSWER_WAIT_MS) to keep the file fast.
 */
const ADMIN = 'frozen-e2e-admin-token-0123456789'
const RECOVERY_MS_MAX = 60_000
const CONNECT_TIMEOUT_MS = 1_000
const ANSWER_WAIT_MS = 1_000
/**
 * The longest an API request may take while the server does not answer, as docs/operations.md
 * bounds it: a statement's wait, the check, then a new connection's opening, and a look of the watch
 * (1 s at most); doubled for a busy machine. Before the watch a request waited for ever.
 */
const API_ANSWER_MS_MAX = 2 * (ANSWER_WAIT_MS + 2 * CONNECT_TIMEOUT_MS + 1_000)
/** A stop while the server does not answer: a retry's wait (2 s), a connection's opening, the connections' ending (1 s each); doubled and more for a busy machine. */
const STOP_MS_MAX = 20_000

describePrivatePostgres('metershare up while its database server stops answering and answers again', (server) => {
  let s: UpOnServer
  let up: UpOnServer['up']
  let http = ''
  let url = ''

  beforeAll(async () => {
    s = await startUpOnServer(server().url, ADMIN, {
      METERSHARE_DB_CONNECT_TIMEOUT_MS: String(CONNECT_TIMEOUT_MS),
      METERSHARE_DB_ANSWER_WAIT_MS: String(ANSWER_WAIT_MS),
    })
    ;({ up, http, url } = s)
  }, UP_START_MS_MAX + 30_000)

  afterEach(() => {
    server().thaw()
  })

  afterAll(async () => {
    server().thaw()
    for (const c of s?.clients ?? []) await endClient(c)
    await up?.stop()
  })

  const logSince = (from: number) => logOf(up, from)
  const publishingMeter = (day: string) => meterOf(s, day, 300)
  const meter = () => s.meter

  const metric = async (name: string): Promise<string | undefined> =>
    new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(http + '/metrics')).text())?.[1]

  it('answers the API 503 within its bound, holds a meter’s publish unacknowledged, and stores it once when the server answers again', async () => {
    const { client, publish, acked } = await publishingMeter('2026-10-01')
    publish(1)
    await waitFor(() => acked() === 1, 10_000, 'the first reading acknowledged')
    const from = up.output.length

    server().freeze()
    const frozenAt = Date.now()
    publish(2)

    // Reads and writes, on pooled connections (the first) and on new ones (once those are closed).
    const answers = await adminRequestsTimed(http, ADMIN, RECOVERY_MS_MAX)
    for (const a of answers) {
      expect(a.value).toEqual(DATABASE_UNAVAILABLE_ANSWER)
      expect(a.ms).toBeLessThanOrEqual(API_ANSWER_MS_MAX)
    }

    // Ingest is held for the database, as when the server is stopped; /healthz says it is down.
    await waitFor(async () => (await metric('metershare_database_unreachable')) === '1', RECOVERY_MS_MAX, 'ingest held')
    const heldMs = Date.now() - frozenAt
    expect(await metric('metershare_database_up')).toBe('0')
    const health = await fetch(http + '/healthz', { signal: AbortSignal.timeout(RECOVERY_MS_MAX) })
    // The database named as the part down; the broker, which answered, up (the whole check timing out said both were down).
    expect([health.status, await health.json()]).toEqual([503, { status: 'unavailable', broker: true, database: false, storage: true }])
    // Several of the ingest thread's tries (a new connection each, never answered) go by unacknowledged.
    await new Promise((r) => setTimeout(r, 3 * (ANSWER_WAIT_MS + CONNECT_TIMEOUT_MS)))
    expect(acked()).toBe(1)
    expect(client.connected).toBe(true)

    const thawedAt = Date.now()
    server().thaw()
    await waitFor(() => acked() === 2, RECOVERY_MS_MAX, 'the held reading acknowledged')
    const ackMs = Date.now() - thawedAt
    await waitFor(async () => (await fetch(http + '/healthz')).status === 200, RECOVERY_MS_MAX, '/healthz 200 again')
    await waitFor(async () => (await metric('metershare_database_unreachable')) === '0', RECOVERY_MS_MAX, 'ingest resumed')
    const stored = await queryOnce<{ ts: Date }>(url, 'SELECT ts FROM readings WHERE meter_id = $1 ORDER BY ts', [meter().id])
    expect(stored.map((r) => r.ts.toISOString())).toEqual(['2026-10-01T01:00:00.000Z', '2026-10-01T02:00:00.000Z'])
    expect(await queryOnce(url, 'SELECT 1 FROM quarantine WHERE meter_id = $1', [meter().id])).toEqual([])
    expect((await callApi<{ items: unknown[] }>(http, 'GET', '/admin/quarantine', ADMIN)).items).toEqual([])
    expect(client.connected).toBe(true)

    const said = logSince(from).map((l) => l.msg)
    expect(said).toContain('database server not answering: its connections closed')
    expect(said.filter((m) => /^database unreachable: ingest holds publishes unacknowledged/.test(m ?? ''))).toHaveLength(1)
    console.info(
      `database frozen (SIGSTOP): API 503 in ${answers.map((a) => a.ms).join(', ')} ms (bound ${API_ANSWER_MS_MAX} ms), ingest held after ${heldMs} ms; ` +
        `after SIGCONT: held reading acknowledged in ${ackMs} ms`,
    )
  }, UP_START_MS_MAX + RECOVERY_MS_MAX * 2)

  it('stops on SIGTERM while the server does not answer, in seconds, having acknowledged nothing it could not store', async () => {
    const { publish, acked } = await publishingMeter('2026-10-02')
    publish(1)
    await waitFor(() => acked() === 1, 10_000, 'a reading acknowledged')
    server().freeze()
    publish(2)
    await waitFor(async () => (await metric('metershare_database_unreachable')) === '1', RECOVERY_MS_MAX, 'ingest held')
    const { value: code, ms } = await timed(() => up.stop())
    expect(code).toBe(0)
    // Not held by the server: the held group is given up at its next turn, and connections the server does not close are closed here.
    expect(ms).toBeLessThanOrEqual(STOP_MS_MAX)
    expect(acked()).toBe(1)
    expect(up.output).toContain('Metershare: stopped; everything acknowledged is stored.')
    server().thaw()
    const stored = await queryOnce<{ n: number }>(url, `SELECT count(*)::int AS n FROM readings WHERE meter_id = $1 AND ts >= '2026-10-02'`, [meter().id])
    expect(stored[0]!.n).toBe(1)
    console.info(`SIGTERM with the database frozen: exit ${code} after ${ms} ms`)
  }, RECOVERY_MS_MAX * 2)
})
