import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { MqttClient } from 'mqtt'
import { afterAll, describe, expect, it } from 'vitest'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { connectMeter, endClient, publishAcked } from '../support/broker.ts'
import { CliProcess, callApi, settleMonthsOver } from '../support/cli.ts'

/**
 * The backup of docs/operations.md on the embedded database: the data folder of a stopped
 * `metershare up`, copied with `cp -a`, is a backup; a system started on the copy serves what the
 * first one served, and carries on.
 */
const ADMIN = 'backup-pglite-admin-token-0123456789'
const START_MS_MAX = 90_000
const MONTH = '2026-10'
const HOUR_MS = 3_600_000
/** The system's calendar (METERSHARE_TIMEZONE). */
const TIMEZONE = 'Europe/Paris'

describe('a backup of the embedded database: the data folder of a stopped system', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'metershare-backup-pglite-'))
  const processes: CliProcess[] = []
  const clients: MqttClient[] = []
  const { DATABASE_URL: _url, ...rest } = process.env
  const env = { ...rest, METERSHARE_TIMEZONE: TIMEZONE, MQTT_PORT: '0', HTTP_PORT: '0', METERSHARE_HOST: '127.0.0.1', METERSHARE_ADMIN_TOKEN: ADMIN, METERSHARE_LOG_LEVEL: 'warn' }

  afterAll(async () => {
    for (const c of clients) await endClient(c)
    for (const p of processes) p.kill()
    rmSync(dir, { recursive: true, force: true })
  })

  async function up(dataDir: string): Promise<{ process: CliProcess; http: string; mqtt: string }> {
    const p = new CliProcess(['up', '--no-demo', '--no-simulate'], { ...env, METERSHARE_DATA_DIR: dataDir })
    processes.push(p)
    return { process: p, http: (await p.printed(/HTTP API\s+(http:\/\/\S+)/, START_MS_MAX))[1]!, mqtt: (await p.printed(/MQTT\s+(mqtt:\/\/\S+)/, START_MS_MAX))[1]! }
  }


  it(
    'starts from a copy of the folder of a stopped system and serves the same payouts, statements, consents, readings and quarantine, then carries on',
    async () => {
      const original = path.join(dir, 'data')
      const source = await up(original)
      const admin = <T>(method: string, route: string, body?: unknown): Promise<T> => callApi<T>(source.http, method, route, ADMIN, body)
      const utility = await admin<{ id: string }>('POST', '/admin/parties', { kind: 'utility', name: 'Copy grid' })
      const app = await admin<{ id: string; apiKey: string }>('POST', '/admin/parties', { kind: 'third_party', name: 'Copy app' })
      const household = await admin<{ id: string; apiKey: string }>('POST', '/admin/households', { name: 'Copy', email: 'copy@metershare.test', password: 'copy-password-123' })
      const meter = await admin<{ id: string; secret: string }>('POST', '/admin/meters', { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 60 })
      await admin('POST', '/admin/occupancies', { meterId: meter.id, householdId: household.id, from: `${MONTH}-01T00:00:00Z` })
      const offer = await admin<{ id: string }>('POST', '/admin/offers', {
        recipientId: app.id,
        purpose: 'advice',
        granularity: 'load_curve',
        priceMicrosPerDatum: '10000',
        split: { householdBps: 7000, operatorBps: 1000, platformBps: 2000, thirdParties: [] },
      })
      await callApi(source.http, 'POST', '/me/consents', household.apiKey, { offerId: offer.id, validUntil: '2027-12-01T00:00:00Z', dataFrom: `${MONTH}-01T00:00:00Z` })
      const start = Date.parse(`${MONTH}-01T00:00:00Z`)
      const ts = (i: number): string => new Date(start + i * HOUR_MS).toISOString().replace('.000Z', 'Z')
      const october = Array.from({ length: 31 * 24 }, (_, i) => ({ ts: ts(i + 1), values: { '1-0:1.8.0': 1_000 + (i + 1) * 400 } }))
      const client = await connectMeter(source.mqtt, meter)
      clients.push(client)
      await publishAcked(client, meterReadingsTopic(meter.id), JSON.stringify({ readings: october }))
      await publishAcked(client, meterReadingsTopic(meter.id), '{"ts": not json')
      await endClient(client)
      // Every month over by now, as the system's own periodic settlement would (at its next start, the
      // copy's): the data reach into the month after MONTH, which is over once the calendar has passed it.
      await settleMonthsOver(source.http, ADMIN, MONTH, TIMEZONE)

      const routes: Array<[string, string]> = [
        ['/me/payouts', household.apiKey],
        [`/me/statements/${MONTH}`, household.apiKey],
        ['/me/consents', household.apiKey],
        ['/me/consent-log', household.apiKey],
        [`/me/readings?meterId=${meter.id}&from=${MONTH}-01T00:00:00Z&to=2026-11-01T00:00:00Z&granularity=daily`, household.apiKey],
        [`/me/readings?meterId=${meter.id}&from=${MONTH}-31T00:00:00Z&to=2026-11-01T00:00:00Z&granularity=load_curve`, household.apiKey],
        [`/recipient/invoices/${MONTH}`, app.apiKey],
        [`/admin/quarantine?meterId=${meter.id}`, ADMIN],
      ]
      const answers = async (base: string): Promise<unknown[]> => Promise.all(routes.map(async ([route, token]) => ({ route, body: await callApi(base, 'GET', route, token) })))
      const before = await answers(source.http)
      expect((before[0] as { body: { payouts: unknown[] } }).body.payouts).toHaveLength(1)

      // Stopped in order, it lets go of the folder; the copy is then a backup.
      expect(await source.process.stop('SIGTERM')).toBe(0)
      expect(existsSync(path.join(original, 'pglite.lock'))).toBe(false)
      const copy = path.join(dir, 'copy')
      cpSync(original, copy, { recursive: true })

      const restored = await up(copy)
      expect(await answers(restored.http)).toEqual(before)
      // It carries on from there: the next datum is stored and shown.
      const again = await connectMeter(restored.mqtt, meter)
      clients.push(again)
      const next = { ts: ts(31 * 24 + 1), values: { '1-0:1.8.0': 1_000 + (31 * 24 + 1) * 400 } }
      await publishAcked(again, meterReadingsTopic(meter.id), JSON.stringify(next))
      const shown = await callApi<{ items: unknown[] }>(restored.http, 'GET', `/me/readings?meterId=${meter.id}&from=2026-11-01T00:30:00Z&to=2026-11-02T00:00:00Z&granularity=load_curve`, household.apiKey)
      expect(shown.items).toEqual([{ meterId: meter.id, ts: next.ts, granularity: 'load_curve', values: next.values }])
    },
    3 * START_MS_MAX,
  )
})
