import { sql } from 'kysely'
import net from 'node:net'
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { meterReadingsTopic, meterStatusTopic } from '../../shared/topics.ts'
import { COPY_READINGS_MIN } from '../../services/metering/ingest-repository.ts'
import { describeDatabases } from '../support/database.ts'
import {
  connectMeter,
  endClient,
  publishAcked,
  startTestBroker,
  subscribeCollect,
  waitFor,
  type TestBroker,
} from '../support/broker.ts'
import { createOccupiedMeter, countRows, createTestHousehold, createTestMeter, createUtility, insertOccupancy, quarantineOf, readingsOf, type TestMeter } from '../support/world.ts'
import { formatTimestamp } from '../../shared/calendar.ts'
import { configureLogging } from '../../shared/logger.ts'

const T0 = Date.parse('2026-10-01T00:00:00Z')
const reading = (ms: number, index: number): string => JSON.stringify({ ts: formatTimestamp(ms), values: { '1-0:1.8.0': index } })

describeDatabases('ingest over MQTT', (t) => {
  let tb: TestBroker
  let meter: TestMeter
  let householdId: string
  let client: MqttClient | undefined

  beforeAll(async () => {
    tb = await startTestBroker(t.handle)
  })
  afterAll(async () => {
    await tb.close()
  })
  beforeEach(async () => {
    ;({ meter, householdId } = await createOccupiedMeter(t.db, new Date(T0)))
  })
  afterEach(async () => {
    if (client !== undefined) await endClient(client)
    client = undefined
  })

  it('acknowledges a reading once it is stored and attributed to the occupant, and times the acknowledgement', async () => {
    const acknowledged = async (): Promise<number> =>
      (await tb.metrics.ingestAckSeconds.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0
    const before = await acknowledged()
    client = await connectMeter(tb.url, meter)
    await publishAcked(client, meterReadingsTopic(meter.id), reading(T0 + 1_800_000, 1000))
    expect(await acknowledged()).toBe(before + 1)
    const rows = await readingsOf(t.db, meter.id)
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ ts: new Date(T0 + 1_800_000), household_id: householdId, values: { '1-0:1.8.0': 1000 } })
    const rollups = await t.db.selectFrom('daily_rollups').selectAll().execute()
    expect(rollups).toEqual([
      expect.objectContaining({ meter_id: meter.id, household_id: householdId, day: '2026-10-01', readings_count: 1, index_min: { '1-0:1.8.0': 1000 }, index_max: { '1-0:1.8.0': 1000 } }),
    ])
  })

  it('stores a batch of readings in one message', async () => {
    client = await connectMeter(tb.url, meter)
    const readings = Array.from({ length: 48 }, (_, i) => ({ ts: formatTimestamp(T0 + (i + 1) * 1_800_000), values: { '1-0:1.8.0': 1000 + i * 10 } }))
    await publishAcked(client, meterReadingsTopic(meter.id), JSON.stringify({ readings }))
    expect(await readingsOf(t.db, meter.id)).toHaveLength(48)
  })

  it('stores the same rows whether a group is inserted by its statement or, from COPY_READINGS_MIN datums, by COPY', async () => {
    client = await connectMeter(tb.url, meter)
    // Registers grow with time; the first datum of each batch falls before the occupancy: nobody's.
    const datum = (ms: number, k: number) => ({ ts: formatTimestamp(ms), values: { '1-0:1.8.0': 1000 + k * 7, '1-0:2.8.0': 20 + k, '1-0:1.7.0': 350 - k } })
    const small = { readings: [datum(T0 - 86_400_000, 0), datum(T0 + 900_000, 2), datum(T0 + 1_800_000, 3)] }
    const large = {
      readings: [datum(T0 - 86_400_000 + 900_000, 1), ...Array.from({ length: COPY_READINGS_MIN + 5 }, (_, i) => datum(T0 + (3 + i) * 900_000, 4 + i))],
    }
    await publishAcked(client, meterReadingsTopic(meter.id), JSON.stringify(small))
    await publishAcked(client, meterReadingsTopic(meter.id), JSON.stringify(large))
    const rows = await readingsOf(t.db, meter.id)
    const sent = [...small.readings, ...large.readings].sort((a, b) => a.ts.localeCompare(b.ts))
    expect(rows.map((r) => ({ ts: formatTimestamp(r.ts.getTime()), household: r.household_id, values: r.values }))).toEqual(
      sent.map((d) => ({ ts: d.ts, household: Date.parse(d.ts) < T0 ? null : householdId, values: d.values })),
    )
    const counted = await t.db.selectFrom('daily_rollups').select((eb) => eb.fn.sum<number>('readings_count').as('n')).where('meter_id', '=', meter.id).executeTakeFirstOrThrow()
    expect(Number(counted.n)).toBe(sent.length)
  })

  it('stores a batch spanning three months, each datum in its month, attributed and rolled up', async () => {
    client = await connectMeter(tb.url, meter)
    const stamps = ['2026-09-30T23:45:00Z', '2026-10-01T00:00:00Z', '2026-10-31T23:45:00Z', '2026-11-01T00:15:00Z']
    const batch = { readings: stamps.map((ts, i) => ({ ts, values: { '1-0:1.8.0': 500 + i } })) }
    await publishAcked(client, meterReadingsTopic(meter.id), JSON.stringify(batch))
    const rows = await readingsOf(t.db, meter.id)
    expect(rows.map((r) => [r.ts.toISOString().replace('.000Z', 'Z'), r.household_id])).toEqual([
      [stamps[0], null],
      [stamps[1], householdId],
      [stamps[2], householdId],
      [stamps[3], householdId],
    ])
    // Paris days: the first two datums fall on 1 October (one nobody's, one the household's), the last two on 1 November.
    const rollups = await t.db
      .selectFrom('daily_rollups')
      .select(['household_id', 'day', 'readings_count'])
      .where('meter_id', '=', meter.id)
      .orderBy('day')
      .orderBy('household_id')
      .execute()
    expect(rollups).toEqual([
      { household_id: householdId, day: '2026-10-01', readings_count: 1 },
      { household_id: null, day: '2026-10-01', readings_count: 1 },
      { household_id: householdId, day: '2026-11-01', readings_count: 2 },
    ])
    if (t.dialect === 'postgres') {
      // On PostgreSQL each month's datums live in that month's partition, created on the way.
      const { rows: homes } = await sql<{ home: string }>`
        SELECT tableoid::regclass::text AS home FROM readings WHERE meter_id = ${meter.id} ORDER BY ts`.execute(t.db)
      expect(homes.map((h) => h.home)).toEqual(['readings_y2026m09', 'readings_y2026m10', 'readings_y2026m10', 'readings_y2026m11'])
    }
  })

  it('stores a retransmitted datum with the same values once', async () => {
    client = await connectMeter(tb.url, meter)
    const payload = reading(T0 + 900_000, 500)
    await publishAcked(client, meterReadingsTopic(meter.id), payload)
    await publishAcked(client, meterReadingsTopic(meter.id), payload)
    expect(await readingsOf(t.db, meter.id)).toHaveLength(1)
    expect(await quarantineOf(t.db, meter.id)).toHaveLength(0)
  })

  it('keeps the first datum and quarantines a later one with other values as a conflict', async () => {
    client = await connectMeter(tb.url, meter)
    const status = await subscribeCollect(client, meterStatusTopic(meter.id))
    await publishAcked(client, meterReadingsTopic(meter.id), reading(T0 + 900_000, 500))
    await publishAcked(client, meterReadingsTopic(meter.id), reading(T0 + 900_000, 501))
    const rows = await readingsOf(t.db, meter.id)
    expect(rows.map((r) => r.values)).toEqual([{ '1-0:1.8.0': 500 }])
    const q = await quarantineOf(t.db, meter.id)
    expect(q.map((r) => r.reason)).toEqual(['conflict'])
    expect(JSON.parse(q[0]!.payload.toString('utf8'))).toEqual({ ts: formatTimestamp(T0 + 900_000), values: { '1-0:1.8.0': 501 } })
    await waitFor(() => status.messages.length > 0, 5_000, 'status message')
    expect(status.messages[0]).toMatchObject({ topic: meterStatusTopic(meter.id), payload: { status: 'quarantined', reason: 'conflict', ts: formatTimestamp(T0 + 900_000) } })
  })

  it.each([
    ['malformed_json', '{"ts": "2026-10-01T00:30:00Z", "values": '],
    ['malformed_json', Buffer.from([0x7b, 0xff, 0xfe, 0x7d])],
    ['invalid_schema', '{"ts":"2026-10-01T00:30:00Z"}'],
    ['invalid_schema', '{"ts":"yesterday","values":{"1-0:1.8.0":1}}'],
    ['invalid_schema', '{"ts":"2026-10-01T00:30:00","values":{"1-0:1.8.0":1}}'],
    ['invalid_schema', '{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":1.5}}'],
    ['invalid_schema', '{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":-1}}'],
    ['invalid_schema', '[1,2,3]'],
    ['invalid_schema', '{"readings":[]}'],
    ['unknown_obis', '{"ts":"2026-10-01T00:30:00Z","values":{"9-9:9.9.9":1}}'],
    ['unknown_obis', '{"ts":"2026-10-01T00:30:00Z","values":{"7-0:3.0.0":1}}'],
    // Names PostgreSQL's text cannot hold, echoed in the detail: a U+0000, a lone surrogate.
    ['unknown_obis', '{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0\\u0000":1}}'],
    ['unknown_obis', '{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0\\ud800":1}}'],
    ['invalid_schema', '{"ts":"2026-10-01T00:30:00Z","values":{"1-0:1.8.0":1},"x\\u0000\\udfff":1}'],
  ])('acknowledges bad data, quarantines it as %s and reports it on the status topic', async (reason, payload) => {
    client = await connectMeter(tb.url, meter)
    const status = await subscribeCollect(client, meterStatusTopic(meter.id))
    await publishAcked(client, meterReadingsTopic(meter.id), payload)
    expect(await countRows(t.db, 'readings')).toBe(0)
    const q = await quarantineOf(t.db, meter.id)
    expect(q).toHaveLength(1)
    expect(q[0]).toMatchObject({ reason, payload_bytes: Buffer.byteLength(payload) })
    expect(Buffer.compare(q[0]!.payload, Buffer.from(payload))).toBe(0)
    await waitFor(() => status.messages.length > 0, 5_000, 'status message')
    expect(status.messages[0]!.payload).toMatchObject({ status: 'quarantined', reason })
    expect(client.connected).toBe(true)
  })

  it('logs a message\'s quarantined readings as one line of counts by reason, without quoting what the meter sent', async () => {
    const lines: Array<{ msg: string; meterId?: string; quarantined?: Record<string, number> }> = []
    const written: string[] = []
    configureLogging({ level: 'info', target: { write: (line: string) => (written.push(line), lines.push(JSON.parse(line))) } })
    try {
      client = await connectMeter(tb.url, meter)
      // A secret sent by mistake as a register's name, in three readings, and one reading with a fraction.
      const leaked = 'my-meter-secret-Zt4q'
      const readings = [
        ...[1, 2, 3].map((i) => ({ ts: formatTimestamp(T0 + i * 900_000), values: { [leaked]: i } })),
        { ts: formatTimestamp(T0 + 4 * 900_000), values: { '1-0:1.8.0': 1.5 } },
      ]
      await publishAcked(client, meterReadingsTopic(meter.id), JSON.stringify({ readings }))
      await waitFor(() => lines.some((l) => l.msg.startsWith('readings quarantined')), 5_000, 'the quarantine log line')
      const logged = lines.filter((l) => l.msg.startsWith('readings quarantined'))
      expect(logged.map((l) => [l.meterId, l.quarantined])).toEqual([[meter.id, { unknown_obis: 3, invalid_schema: 1 }]])
      expect(written.filter((l) => l.includes(leaked))).toEqual([])
      expect(await quarantineOf(t.db, meter.id)).toHaveLength(4)
    } finally {
      configureLogging({ level: 'silent', target: process.stdout })
    }
  })

  it('stores the good readings of a batch and quarantines only the bad one', async () => {
    client = await connectMeter(tb.url, meter)
    const readings = [
      { ts: formatTimestamp(T0 + 900_000), values: { '1-0:1.8.0': 10 } },
      { ts: formatTimestamp(T0 + 1_800_000), values: { 'bogus': 11 } },
      { ts: formatTimestamp(T0 + 2_700_000), values: { '1-0:1.8.0': 12 } },
    ]
    await publishAcked(client, meterReadingsTopic(meter.id), JSON.stringify({ readings }))
    expect((await readingsOf(t.db, meter.id)).map((r) => r.ts.getTime())).toEqual([T0 + 900_000, T0 + 2_700_000])
    const q = await quarantineOf(t.db, meter.id)
    expect(q.map((r) => [r.reason, r.detail])).toEqual([['unknown_obis', expect.stringContaining('readings[1]')]])
    expect(JSON.parse(q[0]!.payload.toString())).toEqual(readings[1])
  })

  it('acknowledges a batch nested 120,000 levels deep and quarantines it whole, the broker and the meter still up', async () => {
    client = await connectMeter(tb.url, meter)
    // Under 256 KiB; copying such an element for its quarantine overflowed the stack (the broker's on PGlite, the ingest thread's on PostgreSQL).
    const deep = `{"readings":[{"ts":"${formatTimestamp(T0 + 900_000)}","values":{"1-0:1.8.0":1}},${'['.repeat(120_000)}${']'.repeat(120_000)}]}`
    await publishAcked(client, meterReadingsTopic(meter.id), deep)
    expect((await quarantineOf(t.db, meter.id)).map((r) => r.reason)).toEqual(['invalid_schema'])
    expect(await readingsOf(t.db, meter.id)).toEqual([])
    await publishAcked(client, meterReadingsTopic(meter.id), reading(T0 + 1_800_000, 5))
    expect(await readingsOf(t.db, meter.id)).toHaveLength(1)
    expect(client.connected).toBe(true)
  })

  it('quarantines a payload over 256 KiB as too_large, keeping its first 4 KiB', async () => {
    client = await connectMeter(tb.url, meter)
    const big = Buffer.alloc(300 * 1024, 0x61)
    await publishAcked(client, meterReadingsTopic(meter.id), big)
    const q = await quarantineOf(t.db, meter.id)
    expect(q).toHaveLength(1)
    expect(q[0]).toMatchObject({ reason: 'too_large', payload_bytes: big.length })
    expect(q[0]!.payload.length).toBe(4096)
    expect(client.connected).toBe(true)
  })

  it('closes a connection whose packet announces more than 1 MiB before reading it whole', async () => {
    client = await connectMeter(tb.url, meter)
    // A raw socket: CONNECT, then a PUBLISH header announcing 2 MiB followed by a few bytes only.
    const socket = net.connect(tb.port, '127.0.0.1')
    await new Promise((r) => socket.once('connect', r))
    const connect = (await import('mqtt-packet')).generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: meter.id + '-raw',
      keepalive: 30,
    } as never)
    socket.write(connect)
    const closed = new Promise<void>((r) => socket.once('close', () => r()))
    const remaining = 2 * 1024 * 1024
    const header = Buffer.from([0x30, (remaining & 0x7f) | 0x80, ((remaining >> 7) & 0x7f) | 0x80, (remaining >> 14) & 0x7f])
    socket.write(Buffer.concat([header, Buffer.alloc(1024, 0x62)]))
    await closed
    expect(await countRows(t.db, 'quarantine')).toBe(0)
  })

  it('quarantines a timestamp more than five minutes ahead as future_timestamp', async () => {
    client = await connectMeter(tb.url, meter)
    await publishAcked(client, meterReadingsTopic(meter.id), reading(Date.now() + 10 * 60_000, 1))
    await publishAcked(client, meterReadingsTopic(meter.id), reading(Date.now() + 60_000, 2))
    expect((await quarantineOf(t.db, meter.id)).map((r) => r.reason)).toEqual(['future_timestamp'])
    expect(await readingsOf(t.db, meter.id)).toHaveLength(1)
  })

  it('quarantines a cumulative index lower than an earlier reading as index_regression', async () => {
    client = await connectMeter(tb.url, meter)
    await publishAcked(client, meterReadingsTopic(meter.id), reading(T0 + 900_000, 1000))
    await publishAcked(client, meterReadingsTopic(meter.id), reading(T0 + 1_800_000, 999))
    // Late but consistent data between two readings is fine.
    await publishAcked(client, meterReadingsTopic(meter.id), reading(T0 + 2_700_000, 1010))
    await publishAcked(client, meterReadingsTopic(meter.id), reading(T0 + 1_800_000, 1005))
    expect((await readingsOf(t.db, meter.id)).map((r) => r.values['1-0:1.8.0'])).toEqual([1000, 1005, 1010])
    const q = await quarantineOf(t.db, meter.id)
    expect(q.map((r) => r.reason)).toEqual(['index_regression'])
    expect(q[0]!.detail).toContain('lower than 1000')
  })

  it('stores a datum outside every occupancy as nobody’s', async () => {
    client = await connectMeter(tb.url, meter)
    await publishAcked(client, meterReadingsTopic(meter.id), reading(T0 - 3_600_000, 1))
    const rows = await readingsOf(t.db, meter.id)
    expect(rows).toHaveLength(1)
    expect(rows[0]!.household_id).toBeNull()
  })

  it('attributes each datum to the household living there at its timestamp across a move', async () => {
    const utility = await createUtility(t.db, 'Other')
    const m2 = await createTestMeter(t.db, utility.id)
    const a = (await createTestHousehold(t.db, 'A')).id
    const b = (await createTestHousehold(t.db, 'B')).id
    const move = T0 + 12 * 3_600_000
    await insertOccupancy(t.db, m2.id, a, new Date(T0), new Date(move))
    await insertOccupancy(t.db, m2.id, b, new Date(move))
    client = await connectMeter(tb.url, m2)
    const readings = [move - 1_800_000, move, move + 1_800_000].map((ms, i) => ({ ts: formatTimestamp(ms), values: { '1-0:1.8.0': 100 + i } }))
    await publishAcked(client, meterReadingsTopic(m2.id), JSON.stringify({ readings }))
    expect((await readingsOf(t.db, m2.id)).map((r) => r.household_id)).toEqual([a, b, b])
    const rollups = await t.db.selectFrom('daily_rollups').select(['household_id', 'readings_count']).where('meter_id', '=', m2.id).orderBy('first_ts').execute()
    expect(rollups).toEqual([
      { household_id: a, readings_count: 1 },
      { household_id: b, readings_count: 2 },
    ])
  })

  it('disconnects a meter that publishes to another meter’s topic and stores nothing', async () => {
    const utility = await createUtility(t.db, 'Other')
    const other = await createTestMeter(t.db, utility.id)
    client = await connectMeter(tb.url, meter)
    const closed = new Promise<void>((r) => client!.once('close', () => r()))
    client.publish(meterReadingsTopic(other.id), reading(T0 + 900_000, 1), { qos: 1 })
    await closed
    expect(await countRows(t.db, 'readings')).toBe(0)
    expect(await countRows(t.db, 'quarantine')).toBe(0)
  })

  it('refuses a wrong secret and an unknown meter with CONNACK 4, and the right secret under a client id that is not the meter id with 2', async () => {
    await expect(connectMeter(tb.url, { id: meter.id, secret: 'wrong' })).rejects.toMatchObject({ code: 4 })
    await expect(connectMeter(tb.url, { id: 'no-such-meter', secret: meter.secret })).rejects.toMatchObject({ code: 4 })
    await expect(connectMeter(tb.url, meter, { clientId: meter.id + '-x' })).rejects.toMatchObject({ code: 2 })
    // Only the two wrong credentials count as failed authentications.
    expect((await tb.metrics.mqttAuthFailures.get()).values[0]!.value).toBe(2)
  })

  it('keeps each meter’s publish order in its acknowledgements', async () => {
    client = await connectMeter(tb.url, meter)
    const acks: number[] = []
    const sends = Array.from({ length: 200 }, (_, i) =>
      new Promise<void>((resolve, reject) =>
        client!.publish(meterReadingsTopic(meter.id), reading(T0 + (i + 1) * 60_000, 1000 + i), { qos: 1 }, (err) => {
          if (err) return reject(err)
          acks.push(i)
          resolve()
        }),
      ),
    )
    await Promise.all(sends)
    expect(acks).toEqual(Array.from({ length: 200 }, (_, i) => i))
    expect(await readingsOf(t.db, meter.id)).toHaveLength(200)
  })
})
