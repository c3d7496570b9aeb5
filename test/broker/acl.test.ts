import mqtt, { type MqttClient } from 'mqtt'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { METER_ID_LENGTH_MAX } from '../../shared/ids.ts'
import { TOPIC_FILTER_BYTES_MAX, meterReadingsTopic, meterStatusTopic } from '../../shared/topics.ts'
import { renewApiKey, renewMeterSecret, retireMeter } from '../../services/directory/directory-service.ts'
import { connectClient, connectMeter, endClient, publishAcked, startTestBroker, subscribeGranted, type TestBroker } from '../support/broker.ts'
import { configureLogging } from '../../shared/logger.ts'
import { useTestDatabase } from '../support/database.ts'
import { RawMqttClient } from '../support/raw-mqtt.ts'
import { createTestHousehold, createTestMeter, createUtility, insertOccupancy, type TestMeter } from '../support/world.ts'

const SUBACK_FAILURE = 128

describe('who may connect, publish and subscribe', () => {
  const t = useTestDatabase('pglite')
  let tb: TestBroker
  let meter: TestMeter
  let other: TestMeter
  let recipient: { id: string; apiKey: string }
  let household: { id: string; apiKey: string }
  const clients: MqttClient[] = []

  beforeAll(async () => {
    tb = await startTestBroker(t.handle, {
      policy: {
        releasedTo: () => null,
        householdOwns: () => false,
        householdMayFollow: (h, m) => h === household.id && m === meter.id,
      },
      overrides: { mqtt: { authFailuresPerUsernameFree: 3, authDelayMsMax: 2_000 } },
    })
  })
  afterAll(async () => {
    await tb.close()
  })
  beforeEach(async () => {
    const utility = await createUtility(t.db)
    recipient = utility
    meter = await createTestMeter(t.db, utility.id)
    other = await createTestMeter(t.db, utility.id)
    household = await createTestHousehold(t.db)
    await insertOccupancy(t.db, meter.id, household.id, new Date('2026-01-01T00:00:00Z'))
  })
  afterEach(async () => {
    for (const c of clients.splice(0)) await endClient(c)
  })

  async function grant(client: MqttClient, filter: string): Promise<number> {
    clients.push(client)
    return subscribeGranted(client, filter)
  }

  it('closes the connections that renewed credentials opened, and refuses the old ones after', async () => {
    const closed = (c: MqttClient): Promise<void> => new Promise((resolve) => c.once('close', () => resolve()))
    const m = await connectMeter(tb.url, meter)
    const bystander = await connectMeter(tb.url, other)
    const r = await connectClient(tb.url, { clientId: 'recipient-renewed', username: recipient.id, password: recipient.apiKey })
    const h = await connectClient(tb.url, { clientId: 'household-renewed', username: household.id, password: household.apiKey })
    clients.push(m, bystander, r, h)

    const mClosed = closed(m)
    const { secret } = await renewMeterSecret(t.db, meter.id)
    await mClosed
    await expect(connectMeter(tb.url, meter)).rejects.toThrow(/Bad username or password/i)
    clients.push(await connectMeter(tb.url, { id: meter.id, secret }))

    const rClosed = closed(r)
    const hClosed = closed(h)
    const party = await renewApiKey(t.db, 'party', recipient.id)
    const home = await renewApiKey(t.db, 'household', household.id)
    await Promise.all([rClosed, hClosed])
    await expect(connectClient(tb.url, { clientId: 'recipient-renewed', username: recipient.id, password: recipient.apiKey })).rejects.toThrow(
      /Bad username or password/i,
    )
    clients.push(await connectClient(tb.url, { clientId: 'recipient-renewed', username: recipient.id, password: party.apiKey }))
    clients.push(await connectClient(tb.url, { clientId: 'household-renewed', username: household.id, password: home.apiKey }))
    // Nobody else's connection was touched.
    expect(bystander.connected).toBe(true)
    await publishAcked(bystander, meterReadingsTopic(other.id), JSON.stringify({ ts: '2026-10-01T00:15:00Z', values: { '1-0:1.8.0': 1 } }))
  })

  it('closes the connection of a meter taken out of service, and refuses it after', async () => {
    const m = await connectMeter(tb.url, meter)
    const bystander = await connectMeter(tb.url, other)
    clients.push(m, bystander)
    const closed = new Promise<void>((resolve) => m.once('close', () => resolve()))
    const lines: Array<{ msg: string; clientId?: string }> = []
    configureLogging({ level: 'info', target: { write: (line: string) => lines.push(JSON.parse(line)) } })
    try {
      await retireMeter(t.db, meter.id, new Date())
      await closed
    } finally {
      configureLogging({ level: 'silent', target: process.stdout })
    }
    // Said as what happened (found by probing: "its credentials were renewed").
    expect(lines.filter((l) => l.clientId === meter.id).map((l) => l.msg)).toContain('connection closed: the meter was taken out of service')
    await expect(connectMeter(tb.url, meter)).rejects.toThrow(/Bad username or password/i)
    expect(bystander.connected).toBe(true)
  })

  /** Whether the broker answers a SUBSCRIBE by closing the connection, or else the SUBACK's code. */
  function closedOrGranted(client: MqttClient, filter: string): Promise<'closed' | number> {
    return new Promise((resolve) => {
      client.once('close', () => resolve('closed'))
      client.subscribe(filter, { qos: 1 }, (err, grants) => {
        const granted = (err as { packet?: { granted?: number[] } } | null)?.packet?.granted?.[0] ?? grants?.[0]?.qos
        if (granted !== undefined) resolve(granted)
      })
    })
  }

  it('lets a meter subscribe to its own status topic only', async () => {
    const c = await connectMeter(tb.url, meter)
    expect(await grant(c, meterStatusTopic(meter.id))).toBe(1)
    expect(await grant(c, meterStatusTopic(other.id))).toBe(SUBACK_FAILURE)
    expect(await grant(c, meterReadingsTopic(meter.id))).toBe(SUBACK_FAILURE)
    expect(await grant(c, 'readings/+')).toBe(SUBACK_FAILURE)
    expect(await grant(c, '#')).toBe(SUBACK_FAILURE)
    expect(await grant(c, '$SYS/#')).toBe(SUBACK_FAILURE)
  })

  it('lets a recipient subscribe to egress topics and nothing else', async () => {
    const c = await connectClient(tb.url, { clientId: 'recipient-app-1', username: recipient.id, password: recipient.apiKey })
    for (const ok of ['readings/+', 'daily/+', `readings/${meter.id}`, `daily/${meter.id}`]) expect(await grant(c, ok)).toBe(1)
    for (const no of ['#', 'readings/#', '+/+', 'meters/+/readings', meterReadingsTopic(meter.id), meterStatusTopic(meter.id), '$SYS/#', 'daily']) {
      expect(await grant(c, no)).toBe(SUBACK_FAILURE)
    }
  })

  it(`refuses a filter over ${TOPIC_FILTER_BYTES_MAX} bytes with SUBACK 0x80, and closes the connection of one holding U+0000`, async () => {
    const c = await connectClient(tb.url, { clientId: 'recipient-odd-filters', username: recipient.id, password: recipient.apiKey })
    const longest = `daily/${'M'.repeat(METER_ID_LENGTH_MAX)}`
    expect(await grant(c, longest)).toBe(1)
    for (const tooLong of [`readings/${'x'.repeat(TOPIC_FILTER_BYTES_MAX)}`, `readings/${'x'.repeat(60_000)}`, `daily/${'é'.repeat(TOPIC_FILTER_BYTES_MAX / 2)}`]) {
      expect(await grant(c, tooLong)).toBe(SUBACK_FAILURE)
    }
    expect(c.connected).toBe(true)
    // [MQTT-4.7.3-2], [MQTT-1.5.3-2]: not a filter at all; the server closes the connection.
    expect(await closedOrGranted(c, `readings/${meter.id}\u0000`)).toBe('closed')
    const h = await connectClient(tb.url, { clientId: 'household-nul', username: household.id, password: household.apiKey })
    clients.push(h)
    expect(await closedOrGranted(h, `readings/\u0000${meter.id}`)).toBe('closed')
    // The broker goes on serving.
    const again = await connectClient(tb.url, { clientId: 'recipient-after-nul', username: recipient.id, password: recipient.apiKey })
    expect(await grant(again, 'readings/+')).toBe(1)
  })

  it('closes the connection of a SUBSCRIBE whose filter is not an MQTT filter, whichever wildcard is misplaced [MQTT-4.7.1-2], [MQTT-4.7.1-3]', async () => {
    // aedes closed most of them, but answered `readings/+a` with SUBACK 0x80.
    // MQTT.js refuses to send them: written raw.
    for (const filter of ['readings/+a', 'readings/a+', 'readings/#/x', '#/x', 'readings/a#', '+x']) {
      const raw = await RawMqttClient.connect(tb.port, { clientId: 'recipient-bad-filter', username: recipient.id, password: Buffer.from(recipient.apiKey) })
      expect(await raw.connack()).toBe(0)
      raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 1 }] })
      const answer = await Promise.race([raw.closed.then(() => 'closed'), raw.next((p) => p.cmd === 'suback').then((p) => p)])
      raw.end()
      expect([filter, answer]).toEqual([filter, 'closed'])
    }
    // Well-formed filters it may not have are refused one by one, the connection kept.
    const c = await connectClient(tb.url, { clientId: 'recipient-refused-filters', username: recipient.id, password: recipient.apiKey })
    for (const filter of ['readings/#', '#', '+/+', 'daily/#']) expect([filter, await grant(c, filter)]).toEqual([filter, SUBACK_FAILURE])
    expect(c.connected).toBe(true)
  })

  it('refuses with CONNACK 2 an empty client id with clean session 0 [MQTT-3.1.3-8], a client id over clientIdBytesMax, and a keepalive of 0 or over keepaliveSecondsMax', async () => {
    const as = { username: recipient.id, password: Buffer.from(recipient.apiKey) }
    const answer = (fields: Parameters<typeof RawMqttClient.connect>[1]) => RawMqttClient.connackOf(tb.port, fields)
    // Without an id the client could never end the session again, nor take it up: it would only count against its limit.
    expect(await answer({ ...as, clientId: '', clean: false })).toBe(2)
    expect(await answer({ ...as, clientId: '', clean: true })).toBe(0)
    expect(await answer({ ...as, clientId: 'c'.repeat(64) })).toBe(0)
    expect(await answer({ ...as, clientId: 'c'.repeat(65) })).toBe(2)
    expect(await answer({ ...as, clientId: 'é'.repeat(33) })).toBe(2)
    // aedes answered these 6, a return code MQTT 3.1.1 does not have; 2 is Mosquitto's past its max_keepalive.
    for (const keepalive of [0, 3_601, 65_535]) expect([keepalive, await answer({ ...as, clientId: 'app-keepalive', keepalive })]).toEqual([keepalive, 2])
    expect(await answer({ ...as, clientId: 'app-keepalive', keepalive: 3_600 })).toBe(0)
    expect(await answer({ ...as, clientId: 'app-keepalive', keepalive: 1 })).toBe(0)
  })

  it('answers a CONNECT of a protocol level other than 3 or 4 with CONNACK 1, then closes [MQTT-3.1.2-2]', async () => {
    // mqtt-packet's parser refused these as malformed, and aedes closed the connection without an answer.
    const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId: 'app-level', username: recipient.id, password: Buffer.from(recipient.apiKey) } as Packet)
    const levelAt = 2 + 2 + 4 // fixed header of a short CONNECT, the name's length, "MQTT"
    for (const level of [2, 5, 6, 0]) {
      const raw = await RawMqttClient.open(tb.port)
      const bytes = Buffer.from(connect)
      bytes[levelAt] = level
      // A byte at a time: the level is read wherever the segments cut.
      await raw.trickle(bytes)
      expect([level, await raw.connack()]).toEqual([level, 1])
      await raw.closed
    }
    // A name and a level that do not go together (found by verifying; Mosquitto answers them 1 too).
    for (const [protocolId, protocolVersion] of [['MQIsdp', 4], ['MQTT', 3]] as const) {
      expect([protocolId, await RawMqttClient.connackOf(tb.port, { protocolId, protocolVersion, clientId: 'app-level-x', username: recipient.id, password: Buffer.from(recipient.apiKey) })]).toEqual([protocolId, 1])
    }
    // Levels 3 (named MQIsdp) and 4 (named MQTT) are let in.
    for (const [protocolId, protocolVersion] of [['MQIsdp', 3], ['MQTT', 4]] as const) {
      expect([protocolId, await RawMqttClient.connackOf(tb.port, { protocolId, protocolVersion, clientId: 'app-level-ok', username: recipient.id, password: Buffer.from(recipient.apiKey) })]).toEqual([protocolId, 0])
    }
  })

  it('refuses a will the client could not publish itself with CONNACK 5, and closes a CONNECT whose will is of QoS 3 unanswered', async () => {
    const answer = (fields: Parameters<typeof RawMqttClient.connect>[1]) => RawMqttClient.connackOf(tb.port, fields)
    const will = (topic: string, qos: 0 | 1 | 2 = 1) => ({ topic, payload: Buffer.from('{}'), qos, retain: false })
    const asMeter = (m: TestMeter) => ({ clientId: m.id, username: m.id, password: Buffer.from(m.secret) })
    expect(await answer({ ...asMeter(meter), will: will(meterReadingsTopic(meter.id)) })).toBe(0)
    expect(await answer({ ...asMeter(meter), will: will(meterReadingsTopic(other.id)) })).toBe(5)
    expect(await answer({ ...asMeter(meter), will: will(meterStatusTopic(meter.id)) })).toBe(5)
    expect(await answer({ clientId: 'app-will', username: recipient.id, password: Buffer.from(recipient.apiKey), clean: false, will: will(`readings/${meter.id}`) })).toBe(5)
    // Refused before a persistent session was claimed for it: nothing counts against its limit.
    expect(await t.db.selectFrom('mqtt_sessions').select('client_id').where('client_id', '=', 'app-will').execute()).toEqual([])
    expect(await answer({ clientId: 'hh-will', username: household.id, password: Buffer.from(household.apiKey), will: will('anything') })).toBe(5)
    expect(await answer({ ...asMeter(meter), will: will(meterReadingsTopic(meter.id), 3 as 2) })).toBe('closed')
    // The broker goes on serving.
    clients.push(await connectMeter(tb.url, meter))
  })

  it('lets a household follow the readings of a meter it occupies only', async () => {
    const c = await connectClient(tb.url, { clientId: 'household-phone', username: household.id, password: household.apiKey })
    expect(await grant(c, `readings/${meter.id}`)).toBe(1)
    expect(await grant(c, `readings/${other.id}`)).toBe(SUBACK_FAILURE)
    expect(await grant(c, 'readings/+')).toBe(SUBACK_FAILURE)
    expect(await grant(c, `daily/${other.id}`)).toBe(SUBACK_FAILURE)
  })

  it.each(['recipient', 'household'] as const)('disconnects a %s that publishes anything', async (who) => {
    const creds = who === 'recipient' ? recipient : household
    const c = await connectClient(tb.url, { clientId: `${who}-publisher`, username: creds.id, password: creds.apiKey })
    clients.push(c)
    const closed = new Promise<void>((r) => c.once('close', () => r()))
    c.publish(meterReadingsTopic(meter.id), '{"ts":"2026-10-01T00:00:00Z","values":{"1-0:1.8.0":1}}', { qos: 1 })
    await closed
    expect(await t.db.selectFrom('readings').select('meter_id').execute()).toEqual([])
  })

  it('refuses a meter under another client id with CONNACK 2 when its secret holds, 4 when it does not', async () => {
    for (const clientId of [`${meter.id}-2`, 'other']) {
      await expect(connectClient(tb.url, { clientId, username: meter.id, password: meter.secret })).rejects.toMatchObject({ code: 2 })
      await expect(connectClient(tb.url, { clientId, username: meter.id, password: `${meter.secret}x` })).rejects.toMatchObject({ code: 4 })
    }
  })

  it("wipes a connect's password once answered, let in or refused: no client's secret stays in the broker's memory", async () => {
    // mqtt-packet's parser keeps the CONNECT packet, password and all, for as long as the connection lasts.
    const ours = tb.broker.aedes.authenticate
    const seen: Array<{ password: Buffer; text: string }> = []
    tb.broker.aedes.authenticate = (client, username, password, done) => {
      if (password !== undefined) seen.push({ password, text: password.toString() })
      ours(client, username, password, done)
    }
    try {
      clients.push(await connectMeter(tb.url, meter))
      clients.push(await connectClient(tb.url, { clientId: 'app-wiped', username: recipient.id, password: recipient.apiKey }))
      await expect(connectMeter(tb.url, { id: other.id, secret: `${other.secret}x` })).rejects.toMatchObject({ code: 4 })
    } finally {
      tb.broker.aedes.authenticate = ours
    }
    expect(seen.map((s) => s.text)).toEqual([meter.secret, recipient.apiKey, `${other.secret}x`])
    for (const { password } of seen) expect(password.equals(Buffer.alloc(password.length))).toBe(true)
  })

  it('refuses a recipient that takes a meter’s client id', async () => {
    await expect(connectClient(tb.url, { clientId: meter.id, username: recipient.id, password: recipient.apiKey })).rejects.toMatchObject({ code: 2 })
  })

  it("keeps a recipient's offline persistent session to it: another principal may neither take nor wipe it", async () => {
    const rival = await createUtility(t.db)
    const clientId = `app-session-${recipient.id}`
    const own = { clientId, username: recipient.id, password: recipient.apiKey }
    const first = await connectClient(tb.url, { ...own, clean: false })
    expect(await grant(first, 'readings/+')).toBe(1)
    await endClient(first)
    // Offline now: the rival may not connect under its client id, persistent or clean (a clean connect would wipe it).
    for (const clean of [false, true]) {
      await expect(connectClient(tb.url, { clientId, username: rival.id, password: rival.apiKey, clean })).rejects.toMatchObject({ code: 2 })
    }
    // The owner finds its session where it left it.
    const back = mqtt.connect(tb.url, { protocolVersion: 4, reconnectPeriod: 0, ...own, clean: false })
    const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
      back.once('connect', resolve)
      back.once('error', reject)
    })
    expect(connack.sessionPresent).toBe(true)
    await endClient(back)
    // A clean connect by the owner ends the session, and frees the client id.
    await endClient(await connectClient(tb.url, { ...own, clean: true }))
    clients.push(await connectClient(tb.url, { clientId, username: rival.id, password: rival.apiKey, clean: true }))
  })

  it('refuses a client id or user name holding U+0000, and goes on serving', async () => {
    // MQTT strings never hold it [MQTT-1.5.3-2]; a lookup of it in PostgreSQL would throw.
    await expect(connectClient(tb.url, { clientId: 'x\u0000y', username: recipient.id, password: recipient.apiKey })).rejects.toMatchObject({ code: 2 })
    await expect(connectClient(tb.url, { clientId: 'app-nul', username: `${recipient.id}\u0000`, password: recipient.apiKey })).rejects.toMatchObject({ code: 4 })
    clients.push(await connectClient(tb.url, { clientId: 'app-after-nul', username: recipient.id, password: recipient.apiKey }))
  })

  it('answers guesses at one meter sent all at once one after another, the right secret among them too', async () => {
    const started = Date.now()
    const guesses = Array.from({ length: 7 }, (_, i) =>
      connectMeter(tb.url, { id: meter.id, secret: i === 6 ? meter.secret : `guess-${i}` }).then(
        (c) => (clients.push(c), Date.now() - started),
        () => Date.now() - started,
      ),
    )
    const answeredAfterMs = (await Promise.all(guesses)).sort((a, b) => a - b)
    // 3 free, then 100, +200, +400 and +800 ms after the one before, in whatever order they came.
    expect(answeredAfterMs.filter((ms) => ms < 100).length).toBeLessThanOrEqual(3)
    expect(answeredAfterMs[6]).toBeGreaterThanOrEqual(1_500)
    expect(clients).toHaveLength(1)
  })

  it('refuses anonymous connections', async () => {
    await expect(connectClient(tb.url, { clientId: 'anonymous' })).rejects.toMatchObject({ code: 4 })
  })

  /** A connect of the meter with a wrong secret: refused with CONNACK 4, after how many ms. */
  async function wrongSecretMs(): Promise<number> {
    const started = Date.now()
    await expect(connectMeter(tb.url, { id: meter.id, secret: 'guess' })).rejects.toMatchObject({ code: 4 })
    return Date.now() - started
  }

  it('slows down repeated failures from one address', async () => {
    const attempt = wrongSecretMs
    for (let i = 0; i < 3; i++) await attempt()
    // The 4th failure waits 100 ms, the 5th 200 ms, the 6th 400 ms before the CONNACK.
    await attempt()
    await attempt()
    expect(await attempt()).toBeGreaterThanOrEqual(400)
  })

  it('slows only the failing user name, and a success elsewhere from the address does not reset it', async () => {
    const failure = wrongSecretMs
    // 3 free failures, then 100, 200, 400 and 800 ms: the next one waits 1,600 ms.
    for (let i = 0; i < 7; i++) await failure()
    // Another meter from the same address connects without that wait.
    const started = Date.now()
    clients.push(await connectMeter(tb.url, other))
    expect(Date.now() - started).toBeLessThan(1_600)
    // Its success does not forget the guesses at the first meter.
    expect(await failure()).toBeGreaterThanOrEqual(1_600)
  }, 20_000)
})
