import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { connectClient, connectMeter, endClient, publishAcked, waitFor } from '../support/broker.ts'
import { CliProcess } from '../support/cli.ts'
import { describePostgres } from '../support/database.ts'
import { freePort, hasCommand, skipReason } from '../support/tools.ts'
import { createTestMeter, createUtility, readingsOf } from '../support/world.ts'

/**
 * docker-compose.yml's HAProxy, with the configuration the compose file gives it, in front of a
 * `metershare broker` and a `metershare api` process. Only what Docker provides is swapped: the
 * service names become local ports, and HAProxy connects from 127.0.0.2, the address the processes
 * trust as their load balancer (METERSHARE_TRUSTED_PROXIES), while clients come from 127.0.0.1.
 * Whatever the processes log about a client must name 127.0.0.1: the balancer's PROXY protocol
 * header (MQTT) and X-Forwarded-For (WebSocket, HTTP) carried it.
 */
const ROOT = path.resolve(import.meta.dirname, '../..')
const ADMIN = 'lb-e2e-admin-token-0123456789ab'
const START_MS_MAX = 60_000
const BALANCER = '127.0.0.2'
const CLIENT = '127.0.0.1'

/** The compose file's HAProxy configuration, its Docker names replaced by local addresses. */
function haproxyConfig(ports: { lbMqtt: number; lbHttp: number; brokerMqtt: number; brokerHttp: number; api: number }): string {
  const compose = parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
    services: { lb: { configs: Array<{ source: string }> } }
    configs: Record<string, { content: string }>
  }
  const upstream: Record<string, number> = { 'broker:1883': ports.brokerMqtt, 'broker:8080': ports.brokerHttp, 'api:8080': ports.api }
  const text = compose.configs[compose.services.lb.configs[0]!.source]!.content
  const config = text
    .replace(/^\s*resolvers docker\n\s*nameserver .*\n/m, '')
    .replace(/maxconn \d+/, 'maxconn 1000')
    .replace('bind :1883', `bind ${CLIENT}:${ports.lbMqtt}`)
    .replace('bind :8080', `bind ${CLIENT}:${ports.lbHttp}`)
    .replace(/server-template (\w+) \d+ (\w+:\d+) (.*) resolvers docker init-addr none/g, (_m, name: string, target: string, options: string) => {
      return `server ${name}1 127.0.0.1:${upstream[target]} ${options.replace('check port 8080', `check port ${ports.brokerHttp}`)} source ${BALANCER}`
    })
    .replace(/server (\w+) (\w+:\d+) (.*) resolvers docker init-addr none/g, (_m, name: string, target: string, options: string) => `server ${name} 127.0.0.1:${upstream[target]} ${options} source ${BALANCER}`)
  if (/resolvers|broker:|api:/.test(config)) throw new Error(`the compose file's HAProxy configuration changed shape; adapt this test:\n${config}`)
  return config
}

describe.skipIf(!hasCommand('haproxy'))(`the load balancer of docker-compose.yml${skipReason('haproxy', 'haproxy')}`, () => {
  describePostgres(
    'HAProxy in front of a broker and the API',
    (t) => {
      const processes: CliProcess[] = []
      const clients: MqttClient[] = []
      let haproxy: ChildProcess | undefined
      let broker: CliProcess
      let api: CliProcess
      let mqttUrl: string
      let httpBase: string

      beforeAll(async () => {
        const ports = { lbMqtt: await freePort(), lbHttp: await freePort(), brokerMqtt: await freePort(), brokerHttp: await freePort(), api: await freePort() }
        const { DATABASE_URL: _url, METERSHARE_DATA_DIR: _dir, REDIS_URL: _redis, ...rest } = process.env
        const env = { ...rest, DATABASE_URL: t.url!, METERSHARE_ADMIN_TOKEN: ADMIN, METERSHARE_HOST: '127.0.0.1', METERSHARE_LOG_LEVEL: 'info', METERSHARE_TRUSTED_PROXIES: BALANCER }
        broker = new CliProcess(['broker'], { ...env, MQTT_PORT: String(ports.brokerMqtt), HTTP_PORT: String(ports.brokerHttp) })
        api = new CliProcess(['api'], { ...env, HTTP_PORT: String(ports.api) })
        processes.push(broker, api)
        await broker.printed(/"msg":"broker running"/, START_MS_MAX)
        await api.printed(/"msg":"api running"/, START_MS_MAX)
        const file = path.join(tmpdir(), `metershare-haproxy-${process.pid}.cfg`)
        writeFileSync(file, haproxyConfig(ports))
        haproxy = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] })
        let said = ''
        haproxy.stdout!.on('data', (d: Buffer) => (said += d.toString()))
        haproxy.stderr!.on('data', (d: Buffer) => (said += d.toString()))
        mqttUrl = `mqtt://${CLIENT}:${ports.lbMqtt}`
        httpBase = `http://${CLIENT}:${ports.lbHttp}`
        await waitFor(
          async () => {
            if (haproxy!.exitCode !== null) throw new Error(`haproxy exited (${haproxy!.exitCode}):\n${said}`)
            return (await fetch(`${httpBase}/healthz`).catch(() => null))?.status === 200
          },
          START_MS_MAX,
          'the API behind HAProxy',
        )
      }, 3 * START_MS_MAX)

      afterAll(async () => {
        for (const c of clients) await endClient(c)
        haproxy?.kill('SIGKILL')
        for (const p of processes) p.kill()
      })

      /** The addresses `process` logged `message` with, once there are `count`. */
      async function loggedAddresses(process: CliProcess, message: string, count: number): Promise<string[]> {
        const addresses = (): string[] =>
          process.output
            .split('\n')
            .filter((l) => l.includes(`"msg":"${message}"`))
            .map((l) => (JSON.parse(l) as { address: string }).address)
        await waitFor(() => addresses().length >= count, 10_000, `${count}× "${message}"`)
        return addresses()
      }

      it('carries a meter through to the broker, which stores what it acknowledges', async () => {
        const meter = await createTestMeter(t.db, (await createUtility(t.db)).id)
        // HAProxy's first health checks may still be under way: a refused connection is retried.
        const m = await waitFor(() => connectMeter(mqttUrl, meter).catch(() => undefined), 20_000, 'a meter connected through HAProxy')
        clients.push(m)
        await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ ts: '2026-10-02T10:00:00Z', values: { '1-0:1.8.0': 42 } }))
        expect(await readingsOf(t.db, meter.id)).toHaveLength(1)
      })

      it("counts failed logins over MQTT, MQTT over WebSocket and the portal by the client's address, not the balancer's", async () => {
        const meter = await createTestMeter(t.db, (await createUtility(t.db)).id)
        await expect(connectMeter(mqttUrl, { id: meter.id, secret: 'guess' })).rejects.toMatchObject({ code: 4 })
        await expect(connectClient(`${httpBase.replace('http', 'ws')}/mqtt`, { clientId: meter.id, username: meter.id, password: 'guess' })).rejects.toMatchObject({ code: 4 })
        expect(await loggedAddresses(broker, 'mqtt authentication failed', 2)).toEqual([CLIENT, CLIENT])

        let status = 0
        for (let i = 0; status !== 429 && i < 20; i++) {
          const res = await fetch(`${httpBase}/portal/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: `nobody-${i}@example.org`, password: 'wrong' }) })
          status = res.status
        }
        expect(status).toBe(429)
        expect(await loggedAddresses(api, 'portal sign-in throttled', 1)).toEqual([CLIENT])
      })
    },
    { resetEach: false },
  )
})
