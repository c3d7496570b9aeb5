import { describe, expect, it } from 'vitest'
import { createMetrics } from '../../shared/metrics.ts'

describe('metrics', () => {
  it("names the process's own metrics with one metershare_ prefix, beside the contract's", async () => {
    const text = await createMetrics().registry.metrics()
    const names = new Set([...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]!))
    for (const name of ['metershare_process_cpu_user_seconds_total', 'metershare_process_resident_memory_bytes', 'metershare_nodejs_heap_size_used_bytes']) {
      expect(names, name).toContain(name)
    }
    for (const name of ['metershare_readings_stored_total', 'metershare_readings_quarantined_total', 'metershare_mqtt_connections', 'metershare_ingest_ack_seconds', 'metershare_datums_released_total', 'metershare_consents_active']) {
      expect(names, name).toContain(name)
    }
    expect([...names].filter((n) => !n.startsWith('metershare_') || n.startsWith('metershare_process_process_') || n.startsWith('metershare_process_nodejs_'))).toEqual([])
  })
  it('is scraped whole while the database cannot be reached: metershare_database_up 0, the consents counted last kept', async () => {
    let reachable = true
    const metrics = createMetrics({
      defaultMetrics: false,
      broker: false,
      consentsActiveCount: async () => {
        if (!reachable) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })
        return 7
      },
    })
    metrics.checkDatabaseWith(async () => reachable)
    const before = await metrics.registry.metrics()
    expect(before).toMatch(/^metershare_consents_active 7$/m)
    expect(before).toMatch(/^metershare_database_up 1$/m)
    reachable = false
    const text = await metrics.registry.metrics()
    expect(text).toMatch(/^metershare_database_up 0$/m)
    expect(text).toMatch(/^metershare_consents_active 7$/m)
  })
})
