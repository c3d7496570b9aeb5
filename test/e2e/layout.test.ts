import type { ChildProcess } from 'node:child_process'
import type { MqttClient } from 'mqtt'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { connectClient, endClient, subscribeCollect, waitFor } from '../support/broker.ts'
import { CliProcess, callApi, runCli } from '../support/cli.ts'
import { describePostgres } from '../support/database.ts'
import { freePort, hasCommand, run, skipReason, startRedisServer } from '../support/tools.ts'

/**
 * The production layout of docker-compose.yml, as processes: `metershare migrate`, two
 * `metershare broker` coupled through Redis, `metershare api` and `metershare settlement`, on one
 * PostgreSQL. Everything goes through the contract: provisioning and consent over HTTP, a meter
 * publishing with mosquitto_pub to one broker, its recipient following on the other, the month
 * settled by the settlement process and paid out to the household through the API process.
 */
const ADMIN = 'layout-e2e-admin-token-0123456789'
/** Each process's start, and each wait for something to cross processes. */
const START_MS_MAX = 60_000
const CROSS_MS_MAX = 20_000
/** A completed month (today is later), so the settlement process settles it at its start. */
const MONTH = '2026-10'
const READING_TS = '2026-10-15T10:00:00Z'
const PRICE_MICROS = 1_500n
/** The household's share, in basis points of the price. */
const HOUSEHOLD_BPS = 7_000n

const tools = ['redis-server', 'mosquitto_pub'] as const
const missing = tools.filter((c) => !hasCommand(c))
const reasons = skipReason('redis-server', 'redis-server') + skipReason('mosquitto_pub', 'mosquitto-clients')

describe.skipIf(missing.length > 0)(`the production layout as processes${reasons}`, () => {
  describePostgres(
    'migrate, two brokers coupled through Redis, api and settlement',
    (t) => {
      let redis: ChildProcess | undefined
      let redisPort: number
      const processes: CliProcess[] = []
      const clients: MqttClient[] = []
      let env: NodeJS.ProcessEnv
      let api: string
      const brokers: Array<{ process: CliProcess; mqttPort: number; http: string }> = []

      beforeAll(async () => {
        redisPort = await freePort()
        redis = await startRedisServer(redisPort)
        const { DATABASE_URL: _url, METERSHARE_DATA_DIR: _dir, ...rest } = process.env
        env = {
          ...rest,
          DATABASE_URL: t.url!,
          REDIS_URL: `redis://127.0.0.1:${redisPort}`,
          METERSHARE_ADMIN_TOKEN: ADMIN,
          METERSHARE_HOST: '127.0.0.1',
          METERSHARE_LOG_LEVEL: 'info',
        }
      }, START_MS_MAX)

      afterAll(async () => {
        for (const c of clients) await endClient(c)
        for (const p of processes) p.kill()
        redis?.kill('SIGKILL')
      })

      const start = async (command: string, ready: RegExp, ports: { mqtt?: number; http: number }): Promise<CliProcess> => {
        const p = new CliProcess([command], { ...env, HTTP_PORT: String(ports.http), ...(ports.mqtt !== undefined ? { MQTT_PORT: String(ports.mqtt) } : {}) })
        processes.push(p)
        await p.printed(ready, START_MS_MAX)
        return p
      }

      const call = <T>(method: string, route: string, token: string, body?: unknown): Promise<T> => callApi<T>(api, method, route, token, body)

      it(
        'migrates, then runs two brokers, the API and (later) the settlement worker, each healthy on its own port',
        async () => {
          const migrated = await runCli(['migrate'], env)
          expect(migrated.stderr).toBe('')
          expect(migrated.code).toBe(0)
          // The suite's database is migrated already: the command says so and changes nothing.
          expect(migrated.stdout).toBe('schema is up to date\n')
          for (let i = 0; i < 2; i++) {
            const ports = { mqtt: await freePort(), http: await freePort() }
            brokers.push({ process: await start('broker', /"msg":"broker running"/, ports), mqttPort: ports.mqtt, http: `http://127.0.0.1:${ports.http}` })
          }
          const apiPort = await freePort()
          await start('api', /"msg":"api running"/, { http: apiPort })
          api = `http://127.0.0.1:${apiPort}`
          const apiHealth = await fetch(`${api}/healthz`)
          expect(apiHealth.status).toBe(200)
          // The API alone runs no broker: each broker answers for itself.
          expect(await apiHealth.json()).toEqual({ status: 'ok', database: true })
          // A broker coupled through Redis answers for its Redis too.
          for (const b of brokers) {
            const res = await fetch(`${b.http}/healthz`)
            expect(res.status).toBe(200)
            expect(await res.json()).toEqual({ status: 'ok', broker: true, database: true, redis: true, storage: true })
            // Read-only, as the API's: another method is refused, naming the allowed ones.
            for (const path of ['/healthz', '/metrics']) {
              const posted = await fetch(`${b.http}${path}`, { method: 'POST' })
              expect([path, posted.status, posted.headers.get('allow'), await posted.json()]).toEqual([
                path,
                405,
                'GET, HEAD',
                { error: { code: 'METHOD_NOT_ALLOWED', message: 'POST is not allowed here; allowed: GET, HEAD' } },
              ])
            }
            // An address it does not serve is answered as the API answers one.
            const unknown = await fetch(`${b.http}/admin/parties?limit=1`)
            expect([unknown.status, await unknown.json()]).toEqual([404, { error: { code: 'NOT_FOUND', message: 'no route GET /admin/parties' } }])
          }
        },
        4 * START_MS_MAX,
      )

      it(
        'stores what a meter publishes to one broker, forwards it to the consented recipient on the other, settles its month and books the household its share',
        async () => {
          const utility = await call<{ id: string }>('POST', '/admin/parties', ADMIN, { kind: 'utility', name: 'Layout grid' })
          const app = await call<{ id: string; apiKey: string }>('POST', '/admin/parties', ADMIN, { kind: 'third_party', name: 'Layout app' })
          const household = await call<{ id: string; apiKey: string }>('POST', '/admin/households', ADMIN, {
            name: 'Layout household',
            email: 'layout@metershare.test',
            password: 'layout-password-123',
          })
          const meter = await call<{ id: string; secret: string }>('POST', '/admin/meters', ADMIN, { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 15 })
          await call('POST', '/admin/occupancies', ADMIN, { meterId: meter.id, householdId: household.id, from: '2026-10-01T00:00:00Z' })
          const offer = await call<{ id: string }>('POST', '/admin/offers', ADMIN, {
            recipientId: app.id,
            purpose: 'advice',
            granularity: 'load_curve',
            priceMicrosPerDatum: String(PRICE_MICROS),
            split: { householdBps: Number(HOUSEHOLD_BPS), operatorBps: 1000, platformBps: 2000, thirdParties: [] },
          })
          const validUntil = new Date(Date.now() + 365 * 86_400_000).toISOString()
          await call('POST', '/me/consents', household.apiKey, { offerId: offer.id, validUntil, dataFrom: '2026-10-01T00:00:00Z' })

          // The second broker learns of the consent, given over the API process, from the database.
          const [first, second] = brokers as [(typeof brokers)[0], (typeof brokers)[0]]
          await waitFor(async () => /^metershare_consents_active 1$/m.test(await (await fetch(`${second.http}/metrics`)).text()), CROSS_MS_MAX, 'the consent on the second broker')
          const recipient = await connectClient(`mqtt://127.0.0.1:${second.mqttPort}`, { clientId: 'layout-app', username: app.id, password: app.apiKey })
          clients.push(recipient)
          const live = await subscribeCollect(recipient, 'readings/+')
          expect(live.granted).toBe(1)

          // The meter, an independent client, on the first broker: its exit 0 means the PUBACK came, after the commit.
          const values = { '1-0:1.8.0': 123_456 }
          const published = await run('mosquitto_pub', [
            '-h', '127.0.0.1', '-p', String(first.mqttPort), '-V', 'mqttv311',
            '-i', meter.id, '-u', meter.id, '-P', meter.secret,
            '-t', meterReadingsTopic(meter.id), '-q', '1', '-m', JSON.stringify({ ts: READING_TS, values }),
          ])
          expect(published.stderr).toBe('')
          expect(published.code).toBe(0)

          await waitFor(() => live.messages.length > 0, CROSS_MS_MAX, 'the datum forwarded by the second broker')
          expect(live.messages).toEqual([{ topic: `readings/${meter.id}`, payload: { meterId: meter.id, ts: READING_TS, granularity: 'load_curve', values } }])
          const own = await call<{ items: unknown[] }>('GET', `/me/readings?meterId=${meter.id}&from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z&granularity=load_curve`, household.apiKey)
          expect(own.items).toEqual([{ meterId: meter.id, ts: READING_TS, granularity: 'load_curve', values }])

          // The settlement worker settles the completed month at its start; the API process shows the household its share,
          // carried forward as its balance (below the default minimum payout of 5 EUR).
          const settlementPort = await freePort()
          await start('settlement', /"msg":"settlement running"/, { http: settlementPort })
          const share = (PRICE_MICROS * HOUSEHOLD_BPS) / 10_000n
          const statement = await waitFor(async () => {
            // 404 NOT_FOUND until the month is settled.
            const res = await fetch(`${api}/me/statements/${MONTH}`, { headers: { authorization: `Bearer ${household.apiKey}` } })
            return res.status === 404 ? undefined : ((await res.json()) as { lines: Array<Record<string, unknown>>; totalMicros: string })
          }, CROSS_MS_MAX, 'the household statement')
          expect(statement.lines).toEqual([{ recipientId: app.id, offerId: offer.id, granularity: 'load_curve', data: 1, grossMicros: String(PRICE_MICROS), shareMicros: String(share) }])
          expect(statement.totalMicros).toBe(String(share))
          expect(await call('GET', '/me/payouts', household.apiKey)).toEqual({ payouts: [], balanceMicros: String(share) })
          const invoice = await call<{ totalMicros: string }>('GET', `/recipient/invoices/${MONTH}`, app.apiKey)
          expect(invoice.totalMicros).toBe(String(PRICE_MICROS))

          // The API's /metrics shows no broker metrics (zeros would read as an idle fleet) and counts the consent in force;
          // the broker that stored the datum shows it.
          const apiMetrics = await (await fetch(`${api}/metrics`)).text()
          expect(apiMetrics).not.toMatch(/^metershare_readings_stored_total /m)
          expect(apiMetrics).not.toMatch(/^metershare_mqtt_connections/m)
          expect(apiMetrics).toMatch(/^metershare_consents_active 1$/m)
          const brokerMetrics = await (await fetch(`${brokers[0]!.http}/metrics`)).text()
          expect(brokerMetrics).toMatch(/^metershare_readings_stored_total 1$/m)

          // The settlement worker answers for itself on its own port: its database, and its runs (the first, at its start, settled the month).
          const settlementHttp = `http://127.0.0.1:${settlementPort}`
          const settlementHealth = await fetch(`${settlementHttp}/healthz`)
          expect([settlementHealth.status, await settlementHealth.json()]).toEqual([200, { status: 'ok', database: true }])
          const settlementMetrics = await (await fetch(`${settlementHttp}/metrics`)).text()
          expect(settlementMetrics).toMatch(/^metershare_settlement_runs_total\{outcome="ok"\} [1-9]\d*$/m)
          expect(settlementMetrics).toMatch(/^metershare_settlement_runs_total\{outcome="failed"\} 0$/m)
          const lastSuccess = Number(/^metershare_settlement_last_success_timestamp_seconds (\d+)$/m.exec(settlementMetrics)?.[1])
          expect(Math.abs(lastSuccess - Date.now() / 1000)).toBeLessThan(CROSS_MS_MAX / 1000 + 60)
          expect(settlementMetrics).toMatch(/^metershare_database_up 1$/m)
          expect(settlementMetrics).toMatch(/^metershare_consents_active 1$/m)
          // Nothing of a broker's or of the API's: zeros would read as an idle fleet.
          expect(settlementMetrics).not.toMatch(/^metershare_readings_stored_total/m)
          expect(settlementMetrics).not.toMatch(/^metershare_http_request_seconds/m)
          expect(settlementMetrics).not.toMatch(/^metershare_datums_released_total/m)
          const posted = await fetch(`${settlementHttp}/healthz`, { method: 'POST' })
          expect([posted.status, posted.headers.get('allow')]).toEqual([405, 'GET, HEAD'])
          // The others export no settlement runs: they run none.
          expect(apiMetrics).not.toMatch(/^metershare_settlement_runs_total/m)
          expect(brokerMetrics).not.toMatch(/^metershare_settlement_runs_total/m)
        },
        START_MS_MAX + 4 * CROSS_MS_MAX,
      )

      it(
        "answers 503 at a broker's /healthz, naming Redis, while Redis is away, and 200 once it is back",
        async () => {
          const health = async (base: string): Promise<{ status: number; body: unknown }> => {
            const res = await fetch(`${base}/healthz`)
            return { status: res.status, body: await res.json() }
          }
          redis?.kill('SIGKILL')
          for (const b of brokers) {
            await waitFor(async () => (await health(b.http)).status === 503, CROSS_MS_MAX, 'a broker noticing Redis is gone')
            expect(await health(b.http)).toEqual({ status: 503, body: { status: 'unavailable', broker: true, database: true, redis: false, storage: true } })
          }
          // The API process does not use Redis.
          expect(await health(api)).toEqual({ status: 200, body: { status: 'ok', database: true } })
          redis = await startRedisServer(redisPort)
          for (const b of brokers) {
            await waitFor(async () => (await health(b.http)).status === 200, CROSS_MS_MAX, 'a broker reconnecting to Redis')
            expect(await health(b.http)).toEqual({ status: 200, body: { status: 'ok', broker: true, database: true, redis: true, storage: true } })
          }
        },
        START_MS_MAX + 4 * CROSS_MS_MAX,
      )

      it(
        'keeps the settlement worker running when its database connections are cut',
        async () => {
          const settlement = processes.find((p) => p.args[0] === 'settlement')!
          const { rows } = await sql<{ cut: boolean }>`
            SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity
            WHERE datname = current_database() AND application_name = 'metershare:settlement'`.execute(t.db)
          expect(rows.length).toBeGreaterThan(0)
          // It used to end there (exit 13): nothing else held its event loop.
          await new Promise((r) => setTimeout(r, 3_000))
          expect(settlement.exitCode).toBeNull()
        },
        START_MS_MAX,
      )

      it(
        'stops every process cleanly on SIGTERM',
        async () => {
          for (const p of processes) {
            expect(await p.stop()).toBe(0)
            // Nothing logged an error on the way.
            expect(p.output).not.toMatch(/"level":[56]0/)
          }
        },
        START_MS_MAX,
      )
    },
    { resetEach: false },
  )
})
