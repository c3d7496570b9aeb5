import type { MqttClient } from 'mqtt'
import { connectMeter } from './broker.ts'
import { CliProcess, callApi } from './cli.ts'
import { queryOnce } from './private-postgres.ts'

/**
 * `metershare up --no-demo --no-simulate` on a private PostgreSQL server of a test file's own, with
 * one meter in a household, for the files that take the server away under it (stopped, frozen).
 */

export const UP_START_MS_MAX = 90_000

export type LogLine = { msg?: string; level?: number }

export interface UpOnServer {
  up: CliProcess
  http: string
  mqttUrl: string
  /** The `metershare` database's URL on the server. */
  url: string
  meter: { id: string; secret: string }
  /** The MQTT clients the file opened (publishingMeter), to end in its afterAll. */
  clients: MqttClient[]
}

/** Creates the `metershare` database on `serverUrl`'s server, starts `up` on it with `env` besides, and makes the meter's world. */
export async function startUpOnServer(serverUrl: string, adminToken: string, env: NodeJS.ProcessEnv = {}): Promise<UpOnServer> {
  await queryOnce(serverUrl, 'CREATE DATABASE metershare')
  const url = serverUrl.replace(/\/postgres$/, '/metershare')
  const { DATABASE_URL: _url, METERSHARE_DATA_DIR: _dir, ...rest } = process.env
  const up = new CliProcess(['up', '--no-demo', '--no-simulate'], {
    ...rest,
    DATABASE_URL: url,
    MQTT_PORT: '0',
    HTTP_PORT: '0',
    METERSHARE_HOST: '127.0.0.1',
    METERSHARE_ADMIN_TOKEN: adminToken,
    METERSHARE_LOG_LEVEL: 'info',
    ...env,
  })
  const http = (await up.printed(/HTTP API\s+(http:\/\/\S+)/, UP_START_MS_MAX))[1]!
  const mqttUrl = (await up.printed(/MQTT\s+(mqtt:\/\/\S+)/, UP_START_MS_MAX))[1]!
  const utility = await callApi<{ id: string }>(http, 'POST', '/admin/parties', adminToken, { kind: 'utility', name: 'Grid' })
  const household = await callApi<{ id: string }>(http, 'POST', '/admin/households', adminToken, { name: 'Doe', email: 'doe@example.test', password: 'long enough password' })
  const meter = await callApi<{ id: string; secret: string }>(http, 'POST', '/admin/meters', adminToken, { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 30 })
  await callApi(http, 'POST', '/admin/occupancies', adminToken, { meterId: meter.id, householdId: household.id, from: '2026-10-01T00:00:00Z' })
  return { up, http, mqttUrl, url, meter, clients: [] }
}

/** The JSON log lines `up` printed after `from` (an offset in its output). */
export function logSince(up: CliProcess, from: number): LogLine[] {
  return up.output
    .slice(from)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine)
}

export async function timed<T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t = Date.now()
  const value = await f()
  return { value, ms: Date.now() - t }
}

/** The meter connected with a session (what is in flight is resent on reconnect), publishing the hours of `day` QoS 1. */
export async function publishingMeter(s: UpOnServer, day: string, reconnectPeriod: number): Promise<{ client: MqttClient; publish(hour: number): void; acked(): number }> {
  const client = await connectMeter(s.mqttUrl, s.meter, { clean: false, reconnectPeriod })
  s.clients.push(client)
  let acked = 0
  const publish = (hour: number): void => {
    const payload = JSON.stringify({ ts: `${day}T${String(hour).padStart(2, '0')}:00:00Z`, values: { '1-0:1.8.0': Date.parse(day) / 3_600_000 + hour } })
    client.publish(`meters/${s.meter.id}/readings`, payload, { qos: 1 }, (err) => {
      if (!err) acked++
    })
  }
  return { client, publish, acked: () => acked }
}

/** What a refused request must be answered while the database cannot be reached. */
export const DATABASE_UNAVAILABLE_ANSWER = {
  status: 503,
  retryAfter: '5',
  body: { error: { code: 'DATABASE_UNAVAILABLE', message: 'the database cannot be reached now: try again later' } },
}

/** A read and a write of the operator's, and another read, each timed: what they were answered (status, Retry-After, body). */
export async function adminRequestsTimed(http: string, adminToken: string, timeoutMs: number): Promise<Array<{ value: { status: number; retryAfter: string | null; body: unknown }; ms: number }>> {
  const answers = []
  for (const [method, route, body] of [
    ['GET', '/admin/quarantine', undefined],
    ['POST', '/admin/parties', { kind: 'utility', name: 'During' }],
    ['GET', '/admin/quarantine', undefined],
    ['GET', '/admin/quarantine', undefined],
  ] as const) {
    answers.push(
      await timed(async () => {
        const res = await fetch(http + route, {
          method,
          headers: { authorization: `Bearer ${adminToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal: AbortSignal.timeout(timeoutMs),
        })
        return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as unknown }
      }),
    )
  }
  return answers
}
