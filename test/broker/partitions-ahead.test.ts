import pg from 'pg'
import { afterEach, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { formatTimestamp } from '../../shared/calendar.ts'
import { PARTITION_AHEAD_LOCK_WAIT_MS, prepareReadingsPartitions } from '../../shared/db/partitions.ts'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { describePostgres } from '../support/database.ts'
import { connectMeter, endClient, publishAcked, startTestBroker, waitFor, type TestBroker } from '../support/broker.ts'
import { createTestMeter, createUtility } from '../support/world.ts'

/** Two minutes before a month starts (UTC), on the broker's clock. */
const BEFORE_MONTH_MS = Date.parse('2026-11-30T23:58:00Z')
/** How long the test holds the lock a pg_dump holds on readings; a PUBACK must come well before. */
const LOCK_HELD_MS = 8_000
const ACK_MS_MAX = 3_000

/** A session holding what pg_dump holds on readings until it ends: ACCESS SHARE, in a transaction. */
async function holdDumpLock(url: string): Promise<{ release(): Promise<void> }> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  await client.query('BEGIN')
  await client.query('LOCK TABLE readings IN ACCESS SHARE MODE')
  return {
    release: async () => {
      await client.query('COMMIT')
      await client.end()
    },
  }
}

async function partitionExists(url: string, name: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query('SELECT to_regclass($1) IS NOT NULL AS found', [name])).rows[0].found as boolean
  } finally {
    await client.end()
  }
}

describePostgres('readings partitions made ahead of their month', (t) => {
  let tb: TestBroker | undefined
  let client: MqttClient | undefined
  let lock: { release(): Promise<void> } | undefined

  afterEach(async () => {
    await lock?.release()
    lock = undefined
    if (client !== undefined) await endClient(client)
    client = undefined
    await tb?.close()
    tb = undefined
  })

  it('stores the first datum of a month at once while a pg_dump holds its lock on readings (it waited for the dump to end)', async () => {
    const start = Date.now()
    tb = await startTestBroker(t.handle, { deps: { clock: () => BEFORE_MONTH_MS + (Date.now() - start) } })
    await waitFor(() => partitionExists(t.url!, 'readings_y2026m12'), 10_000, "December's partition made by the broker at its start")
    const utility = await createUtility(t.db)
    const meter = await createTestMeter(t.db, utility.id, { intervalMinutes: 15 })
    client = await connectMeter(tb.url, meter)
    lock = await holdDumpLock(t.url!)
    const sent = Date.now()
    const acked = publishAcked(client, meterReadingsTopic(meter.id), JSON.stringify({ ts: formatTimestamp(Date.parse('2026-12-01T00:00:00Z')), values: { '1-0:1.8.0': 1_000 } }))
    const outcome = await Promise.race([acked.then(() => 'acknowledged'), new Promise((r) => setTimeout(() => r('held up'), ACK_MS_MAX))])
    expect(outcome).toBe('acknowledged')
    expect(Date.now() - sent).toBeLessThan(LOCK_HELD_MS)
    await lock.release()
    lock = undefined
  })

  it('gives up within its lock wait while a pg_dump holds the lock, leaving reading queries free, and makes the partitions once it is gone', async () => {
    const march = Date.parse('2027-03-15T12:00:00Z')
    lock = await holdDumpLock(t.url!)
    const other = await t.openAnother({ poolSize: 1 })
    try {
      const started = Date.now()
      expect(await prepareReadingsPartitions(other.db, march)).toEqual(['2027-03', '2027-04'])
      expect(Date.now() - started).toBeLessThan(PARTITION_AHEAD_LOCK_WAIT_MS * 2 + 1_000)
      // Nothing queued behind it: a reading query answers while the dump's lock is held.
      const reader = new pg.Client({ connectionString: t.url! })
      await reader.connect()
      await reader.query("SET statement_timeout = '2s'")
      await expect(reader.query('SELECT count(*) FROM readings')).resolves.toBeDefined()
      await reader.end()
      await lock.release()
      lock = undefined
      expect(await prepareReadingsPartitions(other.db, march)).toEqual([])
      expect(await partitionExists(t.url!, 'readings_y2027m03')).toBe(true)
      expect(await partitionExists(t.url!, 'readings_y2027m04')).toBe(true)
    } finally {
      await other.close()
    }
  })
})
