import { afterEach, beforeEach, expect, it } from 'vitest'
import { AccessLogRecorder } from '../../../services/consent/access-log-recorder.ts'
import { listAccessLog } from '../../../services/consent/access-log-service.ts'
import { createMetrics } from '../../../shared/metrics.ts'
import { describeDatabases } from '../../support/database.ts'
import { seedConsentWorld, type ConsentWorld } from './consent-world.ts'

describeDatabases('access log recorder', (t) => {
  let w: ConsentWorld
  let recorder: AccessLogRecorder | undefined

  beforeEach(async () => {
    w = await seedConsentWorld(t.db)
  })

  afterEach(async () => {
    await recorder?.close().catch(() => undefined)
    recorder = undefined
  })

  async function rows() {
    const r = await t.db.selectFrom('access_log').select(['recipient_id', 'household_id', 'meter_id', 'day', 'channel', 'datums']).orderBy('meter_id').orderBy('day').execute()
    return r.map((x) => [x.recipient_id, x.household_id, x.meter_id, x.day, x.channel, Number(x.datums)])
  }

  it('adds what it counted to the access log on flush, summing per key across flushes', async () => {
    const metrics = createMetrics({ defaultMetrics: false })
    recorder = new AccessLogRecorder(t.db, { flushIntervalMs: 3_600_000, metrics })
    recorder.record(w.appId, w.h1, w.m1, '2026-03-01', 'mqtt', 1)
    recorder.record(w.appId, w.h1, w.m1, '2026-03-01', 'mqtt', 2)
    recorder.record(w.appId, w.h1, w.m2, '2026-03-01', 'mqtt', 5)
    recorder.record(w.appId, w.h1, w.m2, '2026-03-01', 'mqtt', 0)
    expect(recorder.pendingDatums()).toBe(8n)
    expect(await rows()).toEqual([])
    await recorder.flush()
    expect(recorder.pendingDatums()).toBe(0n)
    recorder.record(w.appId, w.h1, w.m1, '2026-03-01', 'mqtt', 4)
    recorder.record(w.appId, w.h1, w.m1, '2026-03-02', 'mqtt', 1)
    await recorder.flush()
    expect(await rows()).toEqual([
      [w.appId, w.h1, w.m1, '2026-03-01', 'mqtt', 7],
      [w.appId, w.h1, w.m1, '2026-03-02', 'mqtt', 1],
      [w.appId, w.h1, w.m2, '2026-03-01', 'mqtt', 5],
    ])
    expect(await metrics.registry.getSingleMetricAsString('metershare_datums_released_total')).toContain(
      'metershare_datums_released_total{channel="mqtt"} 13',
    )
  })

  it('flushes on its own every interval, and writes everything left on close', async () => {
    recorder = new AccessLogRecorder(t.db, { flushIntervalMs: 20 })
    recorder.record(w.labId, w.h2, w.m3, '2026-03-01', 'mqtt', 3)
    await expect.poll(rows, { timeout: 5_000, interval: 10 }).toEqual([[w.labId, w.h2, w.m3, '2026-03-01', 'mqtt', 3]])
    const closing = new AccessLogRecorder(t.db, { flushIntervalMs: 3_600_000 })
    closing.record(w.labId, w.h2, w.m3, '2026-03-01', 'mqtt', 2)
    await closing.close()
    await closing.close()
    expect(await rows()).toEqual([[w.labId, w.h2, w.m3, '2026-03-01', 'mqtt', 5]])
  })

  it('drops only a count naming something that does not exist, and keeps counts when the database fails', async () => {
    recorder = new AccessLogRecorder(t.db, { flushIntervalMs: 3_600_000 })
    recorder.record(w.appId, w.h1, w.m1, '2026-03-01', 'http', 2)
    recorder.record(w.appId, w.h1, 'no-such-meter', '2026-03-01', 'http', 9)
    await recorder.flush()
    expect(await rows()).toEqual([[w.appId, w.h1, w.m1, '2026-03-01', 'http', 2]])

    recorder.record(w.appId, w.h1, w.m1, 'not-a-day', 'http', 1)
    await expect(recorder.flush()).rejects.toThrow()
    expect(recorder.pendingDatums()).toBe(1n)
  })

  it('shows the household its own access log, page by page, with the recipients’ names', async () => {
    recorder = new AccessLogRecorder(t.db, { flushIntervalMs: 3_600_000 })
    recorder.record(w.appId, w.h1, w.m1, '2026-03-01', 'mqtt', 2)
    recorder.record(w.labId, w.h1, w.m2, '2026-03-01', 'http', 3)
    recorder.record(w.appId, w.h1, w.m1, '2026-03-02', 'http', 4)
    recorder.record(w.appId, w.h2, w.m3, '2026-03-02', 'http', 5)
    await recorder.flush()
    const first = await listAccessLog(t.db, w.h1, { limit: 2 })
    const second = await listAccessLog(t.db, w.h1, { limit: 2, cursor: first.next! })
    expect(second.next).toBeNull()
    const all = [...first.items, ...second.items]
    const expected = [
      ['2026-03-01', w.appId, 'Energy advice app', w.m1, 'mqtt', 2n],
      ['2026-03-01', w.labId, 'Research lab', w.m2, 'http', 3n],
      ['2026-03-02', w.appId, 'Energy advice app', w.m1, 'http', 4n],
    ].sort((a, b) => String(a[0]) + String(a[1]) < String(b[0]) + String(b[1]) ? -1 : 1)
    expect(all.map((e) => [e.day, e.recipientId, e.recipientName, e.meterId, e.channel, e.datums])).toEqual(expected)
    expect((await listAccessLog(t.db, w.h1, { limit: 10, fromDay: '2026-03-02' })).items).toHaveLength(1)
    await expect(listAccessLog(t.db, w.h1, { limit: 10, fromDay: '2026-3-2' })).rejects.toMatchObject({ field: 'from' })
  })
})
