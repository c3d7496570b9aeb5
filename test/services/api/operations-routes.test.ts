import net, { type AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApi } from '../../../services/api/app.ts'
import { HEALTH_CHECK_TIMEOUT_MS } from '../../../services/api/routes/operations-routes.ts'
import { envToConfig } from '../../../shared/config.ts'
import { HEALTH_PROBE_TIMEOUT_MS, openDatabase, probeDatabase, type DatabaseHandle } from '../../../shared/db/database.ts'
import { createMetrics } from '../../../shared/metrics.ts'
import { describeDatabases } from '../../support/database.ts'
import { ADMIN_TOKEN, UNREACHABLE_DATABASE_URL, databaseAnswers, useApi } from './api-harness.ts'

const CONTRACT_METRICS = [
  'metershare_readings_stored_total',
  'metershare_readings_quarantined_total',
  'metershare_mqtt_connections',
  'metershare_ingest_ack_seconds',
  'metershare_datums_released_total',
  'metershare_consents_active',
]

describeDatabases('GET /healthz and GET /metrics', (t) => {
  const api = useApi(t)

  it('answers 200 with both components when the database answers', async () => {
    const res = await api.inject({ method: 'GET', url: '/healthz' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ status: 'ok', broker: true, database: true })
    expect(res.headers['cache-control']).toBe('no-store')
  })

  it('needs no credentials, and ignores any', async () => {
    const res = await api.inject({ method: 'GET', url: '/healthz', headers: { authorization: 'Bearer stale-token' } })
    expect(res.statusCode).toBe(200)
  })

  it('exposes the metrics of CONTRACT.md in the Prometheus text format', async () => {
    const res = await api.inject({ method: 'GET', url: '/metrics' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe(api.metrics.registry.contentType)
    for (const name of CONTRACT_METRICS) expect(res.body).toContain(`# TYPE ${name} `)
    expect(res.body).toContain('# TYPE metershare_ingest_ack_seconds histogram')
    expect(res.body).toMatch(/^metershare_readings_quarantined_total\{reason="malformed_json"\} 0$/m)
    expect(res.body).toMatch(/^metershare_mqtt_connections\{role="meter"\} 0$/m)
    expect(res.body).toMatch(/^metershare_datums_released_total\{channel="http"\} 0$/m)
  })

  it('observes request durations by route pattern, not by URL', async () => {
    await api.inject({ method: 'GET', url: '/healthz' })
    await api.inject({ method: 'GET', url: '/no/such/route/123' })
    const text = (await api.inject({ method: 'GET', url: '/metrics' })).body
    expect(text).toMatch(/^metershare_http_request_seconds_count\{method="GET",route="\/healthz",status="200"\} [1-9]\d*$/m)
    expect(text).toMatch(/^metershare_http_request_seconds_count\{method="GET",route="unmatched",status="404"\} [1-9]\d*$/m)
    expect(text).not.toContain('/no/such/route')
  })
})

describe('GET /healthz when a component does not answer', () => {
  // A PostgreSQL address where nothing listens: every query fails at once, as with a server that is down.
  let closed: DatabaseHandle
  beforeAll(async () => {
    closed = await openDatabase({ databaseUrl: UNREACHABLE_DATABASE_URL, pgliteDir: null, pgliteFsync: false, poolSize: 1 })
  })

  async function healthWith(health: () => Promise<{ broker: boolean; database: boolean }>) {
    const app = await buildApi({ config: envToConfig({ adminToken: ADMIN_TOKEN }), db: closed, metrics: createMetrics({ defaultMetrics: false }), health })
    try {
      return await app.inject({ method: 'GET', url: '/healthz' })
    } finally {
      await app.close()
    }
  }

  it('answers 503 with the same shape when the database is gone', async () => {
    const res = await healthWith(async () => ({ broker: true, database: await databaseAnswers(closed.db) }))
    expect(res.statusCode).toBe(503)
    expect(res.json()).toEqual({ status: 'unavailable', broker: true, database: false })
  })

  it('answers 503 when the broker does not answer', async () => {
    const res = await healthWith(async () => ({ broker: false, database: true }))
    expect(res.statusCode).toBe(503)
    expect(res.json()).toEqual({ status: 'unavailable', broker: false, database: true })
  })

  it("answers 503 naming the storage while the broker's ingest is held on a full disk", async () => {
    const full = await healthWith(async () => ({ broker: true, database: true, storage: false }))
    expect(full.statusCode).toBe(503)
    expect(full.json()).toEqual({ status: 'unavailable', broker: true, database: true, storage: false })
    const fine = await healthWith(async () => ({ broker: true, database: true, storage: true }))
    expect(fine.statusCode).toBe(200)
    expect(fine.json()).toEqual({ status: 'ok', broker: true, database: true, storage: true })
  })

  it('names the database, and not the broker, when the database is silent for longer than the whole check waits', async () => {
    // A server that takes the connection and never answers: a frozen PostgreSQL.
    const sockets: net.Socket[] = []
    const silent = net.createServer((socket) => void sockets.push(socket))
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()))
    const frozen = await openDatabase({ databaseUrl: `postgres://x:y@127.0.0.1:${(silent.address() as AddressInfo).port}/db`, pgliteDir: null, pgliteFsync: false, poolSize: 1 })
    try {
      const res = await healthWith(async () => ({ broker: true, database: await probeDatabase(frozen) }))
      // With the probe's wait as long as the check's, the check's ran out first and said both were down.
      expect([res.statusCode, res.json()]).toEqual([503, { status: 'unavailable', broker: true, database: false }])
      expect(HEALTH_PROBE_TIMEOUT_MS).toBeLessThan(HEALTH_CHECK_TIMEOUT_MS)
    } finally {
      for (const socket of sockets) socket.destroy()
      silent.close()
      await frozen.close().catch(() => undefined)
    }
  }, HEALTH_CHECK_TIMEOUT_MS + 20_000)

  it('answers 503 when the check itself fails or never returns', async () => {
    const failing = await healthWith(async () => {
      throw new Error('broker unreachable')
    })
    expect(failing.statusCode).toBe(503)
    expect(failing.json()).toEqual({ status: 'unavailable', broker: false, database: false })
    const hanging = await healthWith(() => new Promise(() => {}))
    expect(hanging.statusCode).toBe(503)
    expect(hanging.json()).toEqual({ status: 'unavailable', broker: false, database: false })
  }, HEALTH_CHECK_TIMEOUT_MS + 20_000)

  afterAll(async () => {
    await closed.close()
  })
})
