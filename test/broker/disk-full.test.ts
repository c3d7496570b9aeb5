import { cpSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { sql } from 'kysely'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { STORAGE_WATCH_INTERVAL_MS } from '../../broker/broker.ts'
import { openDatabase, type DatabaseHandle } from '../../shared/db/database.ts'
import { migrateToLatest } from '../../shared/db/migrator.ts'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { connectMeter, startTestBroker, waitFor, type TestBroker } from '../support/broker.ts'
import { mountSmallDisk, postgresBinDir, startPrivateCluster, tmpfsSkipReason, type PrivateCluster, type SmallDisk } from '../support/tmpfs.ts'
import { createTestMeter, createUtility, type TestMeter } from '../support/world.ts'
import { formatTimestamp } from '../../shared/calendar.ts'

/**
 * The database's disk fills while meters publish, for real: a tmpfs of its own under the database,
 * a filler file that takes all but a little of it, a broker on a socket, MQTT.js meters publishing
 * QoS 1 batches without pause. Then the filler is deleted. What is checked:
 * - every PUBACK the meters got is for datums stored (read back while the disk is full);
 * - while the disk is full the meters are held, not cut off: no disconnection, no error, no PUBACK,
 *   and the broker says so (metershare_storage_full, /healthz's `storage`);
 * - once space is back, ingest resumes by itself: every publish is acknowledged and each datum is
 *   stored exactly once.
 * PGlite: the broker stops short of the reserve (`storageFreeBytesMin`), as PGlite hangs when its WAL
 * cannot grow. PostgreSQL: a server of the test's own (initdb) on the tmpfs, which runs out for real
 * (SQLSTATE 53100).
 */

const T0 = Date.parse('2026-01-01T00:00:00Z')
const DATUMS_PER_MESSAGE = 50
const IN_FLIGHT_PER_METER = 8
/** How long the disk stays full with the meters held: longer than a failed commit's retries took to cut them off. */
const HOLD_MS = 4_000


interface Publisher {
  meter: TestMeter
  client: MqttClient
  /** Messages published (message i holds datums i*50 … i*50+49). */
  published: number
  acked: Set<number>
  closes: number
  errors: string[]
  stop(): void
}

function batchOf(message: number): string {
  const readings = Array.from({ length: DATUMS_PER_MESSAGE }, (_, k) => {
    const n = message * DATUMS_PER_MESSAGE + k
    return { ts: formatTimestamp(T0 + n * 900_000), values: { '1-0:1.8.0': 1_000 + n } }
  })
  return JSON.stringify({ readings })
}

/** Publishes batches back to back, IN_FLIGHT_PER_METER at a time, until stopped. */
async function startPublisher(url: string, meter: TestMeter): Promise<Publisher> {
  // A persistent session and quick reconnection: what a meter cut off would do.
  const client = await connectMeter(url, meter, { clean: false, reconnectPeriod: 200 })
  let stopped = false
  let inFlight = 0
  const p: Publisher = {
    meter,
    client,
    published: 0,
    acked: new Set(),
    closes: 0,
    errors: [],
    stop: () => {
      stopped = true
    },
  }
  client.on('close', () => p.closes++)
  client.on('error', (err) => p.errors.push(err.message))
  const pump = (): void => {
    while (!stopped && inFlight < IN_FLIGHT_PER_METER) {
      const i = p.published++
      inFlight++
      client.publish(meterReadingsTopic(meter.id), batchOf(i), { qos: 1 }, (err) => {
        inFlight--
        if (err) p.errors.push(err.message)
        else p.acked.add(i)
        pump()
      })
    }
  }
  pump()
  return p
}

/** Each stored (ts, value) of a meter, by message index, with how many rows each datum has. */
async function storedOf(handle: DatabaseHandle, meterId: string): Promise<{ rows: number; distinct: number; byMessage: Map<number, number> }> {
  const rows = (
    await sql<{ ts: Date; v: string }>`SELECT ts, values->>'1-0:1.8.0' AS v FROM readings WHERE meter_id = ${meterId}`.execute(handle.db)
  ).rows
  const byMessage = new Map<number, number>()
  const seen = new Set<number>()
  for (const r of rows) {
    const n = Math.round((new Date(r.ts).getTime() - T0) / 900_000)
    expect(Number(r.v)).toBe(1_000 + n)
    seen.add(n)
    const m = Math.floor(n / DATUMS_PER_MESSAGE)
    byMessage.set(m, (byMessage.get(m) ?? 0) + 1)
  }
  return { rows: rows.length, distinct: seen.size, byMessage }
}

function commitFailures(tb: TestBroker): Promise<number> {
  return tb.metrics.ingestCommitFailures.get().then((m) => m.values[0]?.value ?? 0)
}

function storageFull(tb: TestBroker): Promise<number> {
  return tb.metrics.storageFull.get().then((m) => m.values[0]?.value ?? 0)
}

/** The scenario, on a broker over `handle` whose database lives on `disk`. */
async function fillHoldAndFree(handle: DatabaseHandle, disk: SmallDisk, tb: TestBroker, leaveBytes: number): Promise<void> {
  const utility = await createUtility(handle.db)
  const meters = [await createTestMeter(handle.db, utility.id, { intervalMinutes: 15 }), await createTestMeter(handle.db, utility.id, { intervalMinutes: 15 })]
  disk.fillLeaving(leaveBytes)
  const publishers: Publisher[] = []
  try {
    for (const m of meters) publishers.push(await startPublisher(tb.url, m))

    // The disk fills: a commit fails for lack of space.
    await waitFor(async () => (await commitFailures(tb)) > 0, 40_000, 'a commit to fail for lack of space')
    const ackedAtFull = publishers.map((p) => p.acked.size)
    expect(Math.min(...ackedAtFull)).toBeGreaterThan(0)

    // Held, not cut off: no disconnection, no error, no PUBACK, and said by the broker.
    await new Promise((r) => setTimeout(r, HOLD_MS))
    for (const p of publishers) {
      expect(p.closes, `${p.meter.id} disconnected while the disk was full`).toBe(0)
      expect(p.errors).toEqual([])
    }
    expect(await storageFull(tb)).toBe(1)
    expect(tb.broker.storageFull()).toBe(true)
    // Every acknowledged publish is stored, whole, while the disk is still full.
    for (const p of publishers) {
      const stored = await storedOf(handle, p.meter.id)
      for (const i of p.acked) expect(stored.byMessage.get(i), `acknowledged message ${i} of ${p.meter.id}`).toBe(DATUMS_PER_MESSAGE)
    }

    // Space is back: no restart, no reconnection needed.
    for (const p of publishers) p.stop()
    disk.unfill()
    await waitFor(() => publishers.every((p) => p.acked.size === p.published), 30_000, 'every publish to be acknowledged once space is back')
    expect(await storageFull(tb)).toBe(0)
    expect(tb.broker.storageFull()).toBe(false)
    for (const p of publishers) {
      expect(p.acked.size).toBeGreaterThan(ackedAtFull[publishers.indexOf(p)]!)
      const stored = await storedOf(handle, p.meter.id)
      expect(stored.rows).toBe(p.published * DATUMS_PER_MESSAGE)
      expect(stored.distinct).toBe(stored.rows)
    }
  } finally {
    // At once: a client ended gracefully would wait for the acknowledgements it still expects.
    for (const p of publishers) {
      p.stop()
      await new Promise<void>((resolve) => p.client.end(true, {}, () => resolve()))
    }
  }
}

const skip = tmpfsSkipReason()
const MIB = 1024 * 1024

describe.skipIf(skip !== '')(`ingest when the database's disk fills up [pglite]${skip}`, () => {
  let disk: SmallDisk | undefined
  let handle: DatabaseHandle | undefined
  let tb: TestBroker | undefined
  /** What PGlite keeps free for itself in this test (the system's default is 64 MiB). */
  const reserve = 24 * MIB

  beforeAll(async () => {
    disk = mountSmallDisk(96)
    const dir = path.join(disk.dir, 'pglite')
    cpSync(inject('pgliteTemplateDir'), dir, { recursive: true })
    handle = await openDatabase({ databaseUrl: null, pgliteDir: dir, pgliteFsync: true, poolSize: 1 })
    tb = await startTestBroker(handle, { overrides: { ingest: { storageFreeBytesMin: reserve, commitRetryDelayMsMax: 200 } } })
  })

  afterAll(async () => {
    disk?.unfill()
    await tb?.close().catch(() => {})
    await handle?.close().catch(() => {})
    disk?.unmount()
  })

  it('says the storage is full while the disk has less than the reserve free, before any publish comes, and not once space is back', async () => {
    // Found by probing: started on a nearly full disk, /healthz said ok while every write failed.
    expect(tb!.broker.storageFull()).toBe(false)
    disk!.fillLeaving(reserve - 2 * MIB)
    try {
      await waitFor(() => tb!.broker.storageFull(), STORAGE_WATCH_INTERVAL_MS + 5_000, 'the broker noticing the disk below its reserve')
      expect(await storageFull(tb!)).toBe(1)
    } finally {
      disk!.unfill()
    }
    await waitFor(() => !tb!.broker.storageFull(), STORAGE_WATCH_INTERVAL_MS + 5_000, 'the broker noticing space back')
    expect(await storageFull(tb!)).toBe(0)
  }, 60_000)

  it('holds meters unacknowledged below the reserve, then stores every publish once when space is back', async () => {
    await fillHoldAndFree(handle!, disk!, tb!, reserve + 2 * MIB)
    // The reserve held: the disk never ran out under PGlite.
    expect(disk!.free()).toBeGreaterThan(reserve / 2)
  }, 90_000)
})

const bin = postgresBinDir()
const pgSkip = skip !== '' ? skip : bin === null ? ' (skipped: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin)' : ''

describe.skipIf(pgSkip !== '')(`ingest when the database's disk fills up [postgres server]${pgSkip}`, () => {
  let disk: SmallDisk | undefined
  let cluster: PrivateCluster | undefined
  let handle: DatabaseHandle | undefined
  let tb: TestBroker | undefined
  const serverLog = path.join(os.tmpdir(), `metershare-disk-full-${process.pid}.log`)

  beforeAll(async () => {
    disk = mountSmallDisk(64)
    cluster = await startPrivateCluster(bin!, disk, serverLog)
    handle = await openDatabase({ databaseUrl: cluster.url, pgliteDir: null, pgliteFsync: false, poolSize: 4 })
    await migrateToLatest(handle.db)
    tb = await startTestBroker(handle, { overrides: { ingest: { commitRetryDelayMsMax: 200 } } })
  })

  afterAll(async () => {
    disk?.unfill()
    await tb?.close().catch(() => {})
    await handle?.close().catch(() => {})
    await cluster?.stop().catch(() => {})
    disk?.unmount()
    rmSync(serverLog, { force: true })
  })

  it('holds meters unacknowledged while the server answers disk_full, then stores every publish once when space is back', async () => {
    await fillHoldAndFree(handle!, disk!, tb!, 2 * MIB)
  }, 90_000)
})
