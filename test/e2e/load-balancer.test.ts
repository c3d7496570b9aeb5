import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import https from 'node:https'
import { tmpdir } from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { setTimeout as sleep } from 'node:timers/promises'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { connectClient, connectMeter, endClient, publishAcked, waitFor } from '../support/broker.ts'
import { CliProcess } from '../support/cli.ts'
import { describePostgres } from '../support/database.ts'
import { makeTestCa, issueServerCertificate, type TestPki } from '../support/tls.ts'
import { freePort, hasCommand, run, skipReason } from '../support/tools.ts'
import { createTestHousehold, createTestMeter, createUtility, insertOccupancy, readingsOf } from '../support/world.ts'

/**
 * docker-compose.yml's HAProxy, with the configuration the compose file gives it, in front of a
 * `metershare broker` and a `metershare api` process. Only what Docker provides is swapped: the
 * service names become local ports, the certificate folder (METERSHARE_TLS_DIR) a temporary one
 * holding a certificate of a throwaway authority made with openssl, and HAProxy connects from
 * 127.0.0.2, the address the processes trust as their load balancer (METERSHARE_TRUSTED_PROXIES),
 * while clients come from 127.0.0.1. HAProxy runs in master-worker mode, as the haproxy image runs
 * it, so that a reload is the one the operator makes. Clients reach the system only through TLS, as
 * they do in production: MQTT on the compose file's 8883, HTTPS and WSS on its 443. Whatever the
 * processes log about a client must name 127.0.0.1: the balancer's PROXY protocol header (MQTT) and
 * X-Forwarded-For (WebSocket, HTTP) carried it.
 */
const ROOT = path.resolve(import.meta.dirname, '../..')
const ADMIN = 'lb-e2e-admin-token-0123456789ab'
const START_MS_MAX = 60_000
const BALANCER = '127.0.0.2'
/** The compose file's `timeout client` and `timeout http-request`: how long a client has to finish its TLS handshake and send its request. */
const COMPOSE_HANDSHAKE_TIMEOUT = '30s'
/** Those in the test, shorter than the compose file's, so that the test does not wait half a minute. */
const HANDSHAKE_MS_MAX = 4_000
const CLIENT = '127.0.0.1'

interface Ports {
  lbMqtts: number
  lbHttps: number
  lbHttp: number
  brokerMqtt: number
  brokerHttp: number
  api: number
}

/** Where the compose file mounts METERSHARE_TLS_DIR in the load balancer. */
const CERT_DIR_IN_IMAGE = '/usr/local/etc/haproxy/certs/'
/** How long the worker a reload replaced may serve its connections on, in the test (the compose file: 15 minutes). */
const HARD_STOP_AFTER_MS_IN_TEST = 4_000

/** The compose file's HAProxy configuration, its Docker names replaced by local addresses and its certificates by `certDir`'s. */
function haproxyConfig(ports: Ports, certDir: string): string {
  const compose = parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
    services: { lb: { configs: Array<{ source: string }>; volumes: string[] } }
    configs: Record<string, { content: string }>
  }
  if (!compose.services.lb.volumes.some((v) => v.endsWith(`:${CERT_DIR_IN_IMAGE.slice(0, -1)}:ro`))) throw new Error(`the compose file no longer mounts the certificates at ${CERT_DIR_IN_IMAGE}; adapt this test`)
  const upstream: Record<string, number> = { 'broker:1883': ports.brokerMqtt, 'broker:8080': ports.brokerHttp, 'api:8080': ports.api }
  const text = compose.configs[compose.services.lb.configs[0]!.source]!.content
  const config = text
    .replace(/^\s*resolvers docker\n\s*nameserver .*\n/m, '')
    .replace(/maxconn \d+/, 'maxconn 1000')
    .replace(/hard-stop-after \S+/, `hard-stop-after ${HARD_STOP_AFTER_MS_IN_TEST}ms`)
    .replace(`timeout client ${COMPOSE_HANDSHAKE_TIMEOUT}\n`, `timeout client ${HANDSHAKE_MS_MAX}ms\n`)
    .replace(`timeout http-request ${COMPOSE_HANDSHAKE_TIMEOUT}\n`, `timeout http-request ${HANDSHAKE_MS_MAX}ms\n`)
    .replaceAll(CERT_DIR_IN_IMAGE, `${certDir}/`)
    .replace('bind :8883 ', `bind ${CLIENT}:${ports.lbMqtts} `)
    .replace('bind :443 ', `bind ${CLIENT}:${ports.lbHttps} `)
    .replace('bind :80\n', `bind ${CLIENT}:${ports.lbHttp}\n`)
    .replace(/server-template (\w+) \d+ (\w+:\d+) (.*) resolvers docker init-addr none/g, (_m, name: string, target: string, options: string) => {
      return `server ${name}1 127.0.0.1:${upstream[target]} ${options.replace('check port 8080', `check port ${ports.brokerHttp}`)} source ${BALANCER}`
    })
    .replace(/server (\w+) (\w+:\d+) (.*) resolvers docker init-addr none/g, (_m, name: string, target: string, options: string) => `server ${name} 127.0.0.1:${upstream[target]} ${options} source ${BALANCER}`)
  if (/resolvers|broker:|api:|bind :|\/usr\/local/.test(config) || !config.includes(`hard-stop-after ${HARD_STOP_AFTER_MS_IN_TEST}ms`) || !config.includes(`timeout client ${HANDSHAKE_MS_MAX}ms\n`) || !config.includes(`timeout http-request ${HANDSHAKE_MS_MAX}ms\n`)) throw new Error(`the compose file's HAProxy configuration changed shape; adapt this test:\n${config}`)
  return config
}

/** An HTTPS request trusting `ca` (Node's fetch takes no CA of its own): status, headers and body. */
function httpsRequest(
  url: string,
  ca: Buffer,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: options.method ?? 'GET', headers: options.headers, ca }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

/** The serial number (hex) of the certificate a TLS server at `port` presents, trusting `ca`. */
function servedSerial(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: CLIENT, port, ca, servername: 'localhost' }, () => {
      resolve(socket.getPeerCertificate().serialNumber.toUpperCase())
      socket.end()
    })
    socket.on('error', reject)
  })
}

const tools = ['haproxy', 'openssl'] as const
const reasons = skipReason('haproxy', 'haproxy') + skipReason('openssl', 'openssl')

describe.skipIf(!tools.every(hasCommand))(`the load balancer of docker-compose.yml${reasons}`, () => {
  describePostgres(
    'HAProxy in front of a broker and the API',
    (t) => {
      const processes: CliProcess[] = []
      const clients: MqttClient[] = []
      let haproxy: ChildProcess | undefined
      let said = ''
      let broker: CliProcess
      let api: CliProcess
      let ports: Ports
      let dir: string
      let ca: TestPki & { key: string }
      let wrongCa: TestPki
      let certFile: string
      let mqttsUrl: string
      let httpsBase: string

      beforeAll(async () => {
        dir = mkdtempSync(path.join(tmpdir(), 'metershare-lb-'))
        ca = await makeTestCa(path.join(dir, 'pki'), 'metershare-test-ca')
        wrongCa = await makeTestCa(path.join(dir, 'pki'), 'another-ca')
        // The folder the operator gives as METERSHARE_TLS_DIR: one PEM file, the certificate and its key.
        certFile = path.join(dir, 'certs', 'metershare.pem')
        await issueServerCertificate(ca, certFile)

        ports = { lbMqtts: await freePort(), lbHttps: await freePort(), lbHttp: await freePort(), brokerMqtt: await freePort(), brokerHttp: await freePort(), api: await freePort() }
        const { DATABASE_URL: _url, METERSHARE_DATA_DIR: _dir, REDIS_URL: _redis, ...rest } = process.env
        const env = { ...rest, DATABASE_URL: t.url!, METERSHARE_ADMIN_TOKEN: ADMIN, METERSHARE_HOST: '127.0.0.1', METERSHARE_LOG_LEVEL: 'info', METERSHARE_TRUSTED_PROXIES: BALANCER }
        broker = new CliProcess(['broker'], { ...env, MQTT_PORT: String(ports.brokerMqtt), HTTP_PORT: String(ports.brokerHttp) })
        api = new CliProcess(['api'], { ...env, HTTP_PORT: String(ports.api) })
        processes.push(broker, api)
        await broker.printed(/"msg":"broker running"/, START_MS_MAX)
        await api.printed(/"msg":"api running"/, START_MS_MAX)
        const file = path.join(dir, 'haproxy.cfg')
        writeFileSync(file, haproxyConfig(ports, path.join(dir, 'certs')))
        // -W -db: master-worker in the foreground, as the haproxy image's entrypoint starts it.
        haproxy = spawn('haproxy', ['-W', '-db', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] })
        haproxy.stdout!.on('data', (d: Buffer) => (said += d.toString()))
        haproxy.stderr!.on('data', (d: Buffer) => (said += d.toString()))
        mqttsUrl = `mqtts://${CLIENT}:${ports.lbMqtts}`
        httpsBase = `https://${CLIENT}:${ports.lbHttps}`
        await waitFor(
          async () => {
            if (haproxy!.exitCode !== null) throw new Error(`haproxy exited (${haproxy!.exitCode}):\n${said}`)
            return (await httpsRequest(`${httpsBase}/healthz`, ca.ca).catch(() => null))?.status === 200
          },
          START_MS_MAX,
          'the API behind HAProxy',
        )
      }, 3 * START_MS_MAX)

      afterAll(async () => {
        for (const c of clients) await endClient(c)
        // The master stops its workers, the one a reload left serving its open connections too.
        if (haproxy !== undefined && haproxy.exitCode === null) {
          const exited = new Promise((r) => haproxy!.once('exit', r))
          haproxy.kill('SIGTERM')
          await exited
        }
        for (const p of processes) p.kill()
        if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
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

      /** A meter of its own household, occupied since 2026-10-01. */
      async function occupiedMeter(): Promise<{ meter: { id: string; secret: string }; householdId: string }> {
        const meter = await createTestMeter(t.db, (await createUtility(t.db)).id)
        const household = await createTestHousehold(t.db)
        await insertOccupancy(t.db, meter.id, household.id, new Date('2026-10-01T00:00:00Z'))
        return { meter, householdId: household.id }
      }

      /** mosquitto_pub publishing one reading QoS 1 as `meter` to the TLS port (exit 0: the PUBACK came), with `tlsArgs`. */
      function mosquittoPublish(meter: { id: string; secret: string }, tlsArgs: string[], ts: string): Promise<{ code: number; stderr: string }> {
        return run('mosquitto_pub', [
          '-h', CLIENT, '-p', String(ports.lbMqtts), '-V', 'mqttv311', ...tlsArgs,
          '-i', meter.id, '-u', meter.id, '-P', meter.secret,
          '-t', meterReadingsTopic(meter.id), '-q', '1', '-m', JSON.stringify({ ts, values: { '1-0:1.8.0': 42 } }),
        ])
      }

      it.skipIf(!hasCommand('mosquitto_pub'))(`carries a meter over MQTT over TLS to the broker, which stores and attributes what it acknowledges${skipReason('mosquitto_pub', 'mosquitto-clients')}`, async () => {
        const { meter, householdId } = await occupiedMeter()
        // HAProxy's first health checks may still be under way: a refused connection is tried again.
        const published = await waitFor(async () => {
          const r = await mosquittoPublish(meter, ['--cafile', ca.caFile], '2026-10-02T10:00:00Z')
          return r.code === 0 ? r : undefined
        }, 20_000, 'a reading published through HAProxy')
        expect(published.stderr).toBe('')
        expect(await readingsOf(t.db, meter.id)).toEqual([expect.objectContaining({ meter_id: meter.id, household_id: householdId, values: { '1-0:1.8.0': 42 } })])
      })

      it.skipIf(!hasCommand('mosquitto_pub'))(`refuses a meter that does not trust the certificate, and MQTT in plaintext on the TLS port${skipReason('mosquitto_pub', 'mosquitto-clients')}`, async () => {
        const { meter } = await occupiedMeter()
        const untrusting = await mosquittoPublish(meter, ['--cafile', wrongCa.caFile], '2026-10-02T10:00:00Z')
        expect(untrusting.code).not.toBe(0)
        expect(untrusting.stderr).toMatch(/certificate verify failed|TLS|SSL/i)
        const plaintext = await mosquittoPublish(meter, [], '2026-10-02T10:30:00Z')
        expect(plaintext.code).not.toBe(0)
        // Neither got as far as the broker: the secret never left in clear, and nothing was stored.
        expect(await readingsOf(t.db, meter.id)).toEqual([])
        expect(broker.output).not.toContain(meter.id)
      })

      it('speaks TLS 1.2 and 1.3, and refuses TLS 1.1, on the MQTT and the HTTPS port', async () => {
        /** openssl s_client's handshake at `version` (exit 0: it completed and the certificate verified). */
        const handshake = (port: number, version: string): Promise<{ code: number; stdout: string }> =>
          run('openssl', ['s_client', '-connect', `${CLIENT}:${port}`, `-${version}`, '-cipher', 'DEFAULT@SECLEVEL=0', '-CAfile', ca.caFile, '-verify_return_error'], { timeoutMs: 10_000 })

        // Control: this openssl does speak TLS 1.1, to a server that allows it, so a refusal below is the balancer's.
        const oldPort = await freePort()
        const old = spawn('openssl', ['s_server', '-accept', `${CLIENT}:${oldPort}`, '-cert', certFile, '-key', certFile, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0', '-quiet'], { stdio: 'ignore' })
        try {
          const control = await waitFor(async () => {
            const r = await handshake(oldPort, 'tls1_1')
            return r.code === 0 ? r : undefined
          }, 10_000, 'a TLS 1.1 handshake with openssl s_server')
          expect(control.stdout).toMatch(/Protocol\s*: TLSv1\.1\n/)
        } finally {
          old.kill('SIGKILL')
        }

        for (const port of [ports.lbMqtts, ports.lbHttps]) {
          expect((await handshake(port, 'tls1_1')).code, `TLS 1.1 on ${port}`).not.toBe(0)
          const v12 = await handshake(port, 'tls1_2')
          expect(v12.code, `TLS 1.2 on ${port}`).toBe(0)
          // Forward secrecy: an ephemeral key exchange.
          expect(v12.stdout).toMatch(/Protocol\s*: TLSv1\.2\n/)
          expect(v12.stdout).toMatch(/^New, TLSv1\.2, Cipher is ECDHE-/m)
          const v13 = await handshake(port, 'tls1_3')
          expect(v13.code, `TLS 1.3 on ${port}`).toBe(0)
          // (Its session details come later, with the session ticket: the line of the handshake is the one to read.)
          expect(v13.stdout).toMatch(/^New, TLSv1\.3, Cipher is TLS_/m)
        }
      })

      it('carries MQTT over secure WebSocket at /mqtt, and refuses a client that does not trust the certificate', async () => {
        const { meter, householdId } = await occupiedMeter()
        const url = `${httpsBase.replace('https', 'wss')}/mqtt`
        await expect(connectMeter(url, meter, { ca: wrongCa.ca })).rejects.toThrow(/self-signed|certificate/i)
        const m = await waitFor(() => connectMeter(url, meter, { ca: ca.ca }).catch(() => undefined), 20_000, 'a meter connected over WSS')
        clients.push(m)
        await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ ts: '2026-10-02T11:00:00Z', values: { '1-0:1.8.0': 7 } }))
        expect(await readingsOf(t.db, meter.id)).toEqual([expect.objectContaining({ household_id: householdId, values: { '1-0:1.8.0': 7 } })])
      })

      it('serves the API and the portal over HTTPS: the session cookie is Secure, and every answer asks the browser to keep to HTTPS', async () => {
        const health = await httpsRequest(`${httpsBase}/healthz`, ca.ca)
        expect(health.status).toBe(200)
        expect(health.headers['strict-transport-security']).toMatch(/^max-age=\d+$/)

        const household = await createTestHousehold(t.db)
        // As the portal's page posts it: from its own https origin.
        const signIn = await httpsRequest(`${httpsBase}/portal/session`, ca.ca, {
          method: 'POST',
          headers: { 'content-type': 'application/json', origin: httpsBase },
          body: JSON.stringify({ email: household.email, password: household.password }),
        })
        expect(signIn.status, signIn.body).toBe(201)
        const cookie = signIn.headers['set-cookie']![0]!
        expect(cookie.split('; ')).toEqual(expect.arrayContaining(['Secure', 'HttpOnly', 'SameSite=Strict']))
        const me = await httpsRequest(`${httpsBase}/me/consents`, ca.ca, { headers: { cookie: cookie.slice(0, cookie.indexOf(';')) } })
        expect(me.status, me.body).toBe(200)
      })

      it('answers plain HTTP only with a redirect to HTTPS', async () => {
        for (const route of ['/healthz', '/me/consents?x=1', '/mqtt']) {
          const res = await fetch(`http://${CLIENT}:${ports.lbHttp}${route}`, { redirect: 'manual', headers: { authorization: 'Bearer whatever' } })
          expect(res.status).toBe(301)
          expect(res.headers.get('location')).toBe(`https://${CLIENT}:${ports.lbHttp}${route}`)
        }
      })

      it("counts failed logins over MQTT, MQTT over WebSocket and the portal by the client's address, not the balancer's", async () => {
        const meter = await createTestMeter(t.db, (await createUtility(t.db)).id)
        const before = (await loggedAddresses(broker, 'mqtt authentication failed', 0)).length
        await expect(connectMeter(mqttsUrl, { id: meter.id, secret: 'guess' }, { ca: ca.ca })).rejects.toMatchObject({ code: 4 })
        await expect(connectClient(`${httpsBase.replace('https', 'wss')}/mqtt`, { clientId: meter.id, username: meter.id, password: 'guess', ca: ca.ca })).rejects.toMatchObject({ code: 4 })
        expect((await loggedAddresses(broker, 'mqtt authentication failed', before + 2)).slice(before)).toEqual([CLIENT, CLIENT])

        let status = 0
        for (let i = 0; status !== 429 && i < 20; i++) {
          const res = await httpsRequest(`${httpsBase}/portal/session`, ca.ca, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: `nobody-${i}@example.org`, password: 'wrong' }) })
          status = res.status
        }
        expect(status).toBe(429)
        expect(await loggedAddresses(api, 'portal sign-in throttled', 1)).toEqual([CLIENT])
      })

      it('closes a connection that does not finish its TLS handshake in time, and keeps a meter that is idle far longer', async () => {
        const { meter: overTls } = await occupiedMeter()
        const { meter: overWss } = await occupiedMeter()
        // A keepalive of an hour (the broker's most): no PINGREQ, the connections carry nothing until the publish below.
        const m1 = await connectMeter(mqttsUrl, overTls, { ca: ca.ca, keepalive: 3_600 })
        const m2 = await connectMeter(`${httpsBase.replace('https', 'wss')}/mqtt`, overWss, { ca: ca.ca, keepalive: 3_600 })
        clients.push(m1, m2)
        const openedAt = Date.now()
        /** A TCP connection that sends nothing: when the balancer closed it, in ms after it opened. */
        const silent = (port: number): Promise<number> =>
          new Promise((resolve) => {
            const socket = net.connect(port, CLIENT)
            socket.on('error', () => {})
            socket.on('close', () => resolve(Date.now() - openedAt))
          })
        const closedAfterMs = await Promise.all([silent(ports.lbMqtts), silent(ports.lbHttps)])
        // `timeout client` (the compose file's 30 s, 4 s here), give or take the timer's granularity.
        for (const ms of closedAfterMs) expect(ms).toBeGreaterThanOrEqual(HANDSHAKE_MS_MAX - 1_000)
        // The meters, idle as long, are still connected and publish.
        expect(Date.now() - openedAt).toBeGreaterThan(HANDSHAKE_MS_MAX)
        await publishAcked(m1, meterReadingsTopic(overTls.id), JSON.stringify({ ts: '2026-10-02T13:00:00Z', values: { '1-0:1.8.0': 1 } }))
        await publishAcked(m2, meterReadingsTopic(overWss.id), JSON.stringify({ ts: '2026-10-02T13:00:00Z', values: { '1-0:1.8.0': 2 } }))
        expect(await readingsOf(t.db, overTls.id)).toHaveLength(1)
        expect(await readingsOf(t.db, overWss.id)).toHaveLength(1)
      }, 30_000)

      // Last: it reloads HAProxy.
      it('takes a renewed certificate on a reload; the meters connected before stay connected, until the old worker closes them (hard-stop-after) and they come back through the new one', async () => {
        const meter = await createTestMeter(t.db, (await createUtility(t.db)).id)
        const m = await connectMeter(mqttsUrl, meter, { ca: ca.ca, reconnectPeriod: 500 })
        clients.push(m)
        const first = await servedSerial(ports.lbMqtts, ca.ca)

        // Renewed as certbot or an editor does it: a new file moved over the old one, then a reload
        // (docker compose kill -s HUP lb: SIGHUP to the master).
        const serial = await issueServerCertificate(ca, `${certFile}.new`)
        renameSync(`${certFile}.new`, certFile)
        expect(serial).not.toBe(first)
        haproxy!.kill('SIGHUP')
        await waitFor(async () => (await servedSerial(ports.lbMqtts, ca.ca).catch(() => '')) === serial, 20_000, 'the renewed certificate on the MQTT port')
        expect(await servedSerial(ports.lbHttps, ca.ca)).toBe(serial)
        expect(said).toMatch(/Reloading HAProxy/)

        // The meter's connection, opened before the reload, is served on by the worker that took it.
        const closed = new Promise<number>((resolve) => m.once('close', () => resolve(Date.now())))
        await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ ts: '2026-10-02T12:00:00Z', values: { '1-0:1.8.0': 9 } }))
        expect(m.connected).toBe(true)
        expect(await readingsOf(t.db, meter.id)).toHaveLength(1)

        // Then that worker's time is up: it closes the connection, and the meter comes back through the new worker.
        const closedAt = await Promise.race([closed, sleep(5 * HARD_STOP_AFTER_MS_IN_TEST).then(() => null)])
        expect(closedAt, 'the old worker still holds the connection opened before the reload').not.toBeNull()
        await waitFor(() => m.connected, START_MS_MAX, 'the meter reconnected through the new worker')
        await publishAcked(m, meterReadingsTopic(meter.id), JSON.stringify({ ts: '2026-10-02T12:15:00Z', values: { '1-0:1.8.0': 10 } }))
        expect(await readingsOf(t.db, meter.id)).toHaveLength(2)
      }, 10 * HARD_STOP_AFTER_MS_IN_TEST)
    },
    { resetEach: false },
  )
})
