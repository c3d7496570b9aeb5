import type { MqttClient } from 'mqtt'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { WebSocket } from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { connectMeter, endClient, publishAcked, publishesIngested, startTestBroker, waitFor, type TestBroker } from '../support/broker.ts'
import { useTestDatabase } from '../support/database.ts'
import { hasCommand, run, skipReason } from '../support/tools.ts'
import { createOccupiedMeter, readingsOf, type TestMeter } from '../support/world.ts'
import { createServer } from 'node:http'
import { connect, type AddressInfo } from 'node:net'

const T0 = Date.parse('2026-10-01T00:00:00Z')

describe('independent clients and transports', () => {
  const t = useTestDatabase('pglite')
  let tb: TestBroker
  let meter: TestMeter
  let householdId: string

  beforeAll(async () => {
    tb = await startTestBroker(t.handle)
  })
  afterAll(async () => {
    await tb.close()
  })

  async function provision(): Promise<void> {
    ;({ meter, householdId } = await createOccupiedMeter(t.db, new Date(T0)))
  }

  describe.skipIf(!hasCommand('mosquitto_pub'))(`mosquitto_pub as a meter${skipReason('mosquitto_pub', 'mosquitto-clients')}`, () => {
    it('publishes a reading that is stored and attributed', async () => {
      await provision()
      const payload = JSON.stringify({ ts: '2026-10-01T02:30:00+02:00', values: { '1-0:1.8.0': 4242 } })
      const before = await publishesIngested(tb)
      const r = await run('mosquitto_pub', [
        '-h', '127.0.0.1', '-p', String(tb.port), '-V', 'mqttv311',
        '-i', meter.id, '-u', meter.id, '-P', meter.secret,
        '-t', meterReadingsTopic(meter.id), '-q', '1', '-m', payload,
      ])
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      const rows = await readingsOf(t.db, meter.id)
      expect(rows).toHaveLength(1)
      expect(rows[0]).toMatchObject({ ts: new Date('2026-10-01T00:30:00Z'), household_id: householdId, values: { '1-0:1.8.0': 4242 } })
      // Read past aedes' parser (broker/meter-publishes.ts), and acknowledged: mosquitto_pub exits 0 only after its PUBACK.
      expect(await publishesIngested(tb)).toEqual({ direct: before.direct + 1, aedes: before.aedes })
    })

    it('is refused with CONNACK 4 on a wrong secret', async () => {
      await provision()
      const r = await run('mosquitto_pub', [
        '-h', '127.0.0.1', '-p', String(tb.port), '-V', 'mqttv311',
        '-i', meter.id, '-u', meter.id, '-P', 'not-the-secret',
        '-t', meterReadingsTopic(meter.id), '-q', '1', '-m', '{}',
      ])
      expect(r.code).not.toBe(0)
      expect(r.stderr.toLowerCase()).toContain('bad user name or password')
      expect(await readingsOf(t.db, meter.id)).toHaveLength(0)
    })
  })

  it('accepts meters over WebSocket at /mqtt of the HTTP port', async () => {
    await provision()
    // 404 to any GET; a POST's body echoed back.
    const server = createServer((req, res) => {
      if (req.method !== 'POST') return void res.writeHead(404).end()
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const text = `got ${Buffer.concat(chunks).toString()}`
        res.writeHead(200, { 'content-length': Buffer.byteLength(text) }).end(text)
      })
    })
    tb.broker.attachWebSocket(server)
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    const port = (server.address() as AddressInfo).port
    let client: MqttClient | undefined
    try {
      client = await connectMeter(`ws://127.0.0.1:${port}/mqtt`, meter)
      const before = await publishesIngested(tb)
      await publishAcked(client, meterReadingsTopic(meter.id), JSON.stringify({ ts: '2026-10-01T00:15:00Z', values: { '1-0:1.8.0': 1 } }))
      expect(await readingsOf(t.db, meter.id)).toHaveLength(1)
      // Over WebSocket too, the publish is read past aedes' parser (broker/meter-publishes.ts).
      expect(await publishesIngested(tb)).toEqual({ direct: before.direct + 1, aedes: before.aedes })
      // A packet in one WebSocket message (found by probing: a CONNACK came in four, a PUBLISH in six).
      await endClient(client)
      client = undefined
      const ws = new WebSocket(`ws://127.0.0.1:${port}/mqtt`, 'mqtt')
      const messages: Buffer[] = []
      ws.on('message', (m: Buffer) => messages.push(m))
      await new Promise((r, reject) => ws.once('open', r).once('error', reject))
      ws.send(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId: meter.id, username: meter.id, password: Buffer.from(meter.secret) } as Packet))
      await waitFor(() => messages.length > 0)
      ws.send(mqttPacket.generate({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: `meters/${meter.id}/status`, qos: 1 }] } as Packet))
      await waitFor(() => messages.length > 1)
      await new Promise((r) => setTimeout(r, 200))
      expect(messages.map((m) => m.toString('hex'))).toEqual(['20020000', '9003000701'])
      ws.close()
      // Another upgrade (curl --http2's h2c), on another path or on /mqtt, gets the HTTP answer it would without it.
      for (const p of ['/healthz', '/mqtt']) {
        const answer = await rawHttp(port, `GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n`)
        expect(answer).toMatch(/^HTTP\/1\.1 404 Not Found\r\n/)
      }
      // With a body: the body too, in the first packet or after it.
      const h2c = 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n'
      const body = '{"kind":"utility","name":"' + 'x'.repeat(20_000) + '"}'
      const posted = await rawHttp(port, `POST /data HTTP/1.1\r\nHost: x\r\n${h2c}Content-Length: ${body.length}\r\n\r\n${body}`)
      expect([posted.split('\r\n')[0], posted.endsWith(`got ${body}`)]).toEqual(['HTTP/1.1 200 OK', true])
      const chunked = await rawHttp(port, `POST /data HTTP/1.1\r\nHost: x\r\n${h2c}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`)
      expect(chunked).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n[^]*"code":"INVALID_INPUT","message":"transfer-encoding: /)
    } finally {
      if (client !== undefined) await endClient(client)
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    }
  })
})

/** What a server answers to `request` written as is on a connection of its own, until it closes it. */
function rawHttp(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request))
    let answer = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => (answer += chunk))
    socket.on('error', reject)
    socket.on('close', () => resolve(answer))
    socket.setTimeout(5_000, () => socket.destroy(new Error(`no end of answer in 5 s: ${JSON.stringify(answer)}`)))
  })
}
