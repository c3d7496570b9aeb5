import { createServer, type Server as HttpServer } from 'node:http'
import net, { type AddressInfo } from 'node:net'
import mqtt from 'mqtt'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ClosedBeforeHeaderError, parseProxyHeader, PROXY_V1_HEADER_BYTES_MAX, PROXY_V2_ADDRESS_BYTES_MAX, ProxyHeaderError, readProxyHeader } from '../../broker/proxy-protocol.ts'
import { configureLogging } from '../../shared/logger.ts'
import { throttleAddressOf } from '../../shared/trusted-proxies.ts'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { connectClient, connectMeter, endClient, publishAcked, startTestBroker, type TestBroker } from '../support/broker.ts'
import { useTestDatabase } from '../support/database.ts'
import { waitFor } from '../support/tools.ts'
import { createTestMeter, createUtility, readingsOf, type TestMeter } from '../support/world.ts'

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex')

function v1(line: string): Buffer {
  return Buffer.from(line + '\r\n', 'latin1')
}

/** A version 2 header: PROXY (or LOCAL) over TCP from an IPv4 or IPv6 address, with `tlvBytes` of TLVs after the addresses. */
function v2(command: 'PROXY' | 'LOCAL', source: string | null, tlvBytes = 0): Buffer {
  const ipv6 = source !== null && net.isIPv6(source)
  const addresses = source === null ? Buffer.alloc(0) : ipv6 ? Buffer.alloc(36) : Buffer.alloc(12)
  if (source !== null && !ipv6) source.split('.').forEach((b, i) => (addresses[i] = Number(b)))
  if (source !== null && ipv6) source.split(':').forEach((g, i) => addresses.writeUInt16BE(parseInt(g, 16), 2 * i))
  const head = Buffer.from([command === 'PROXY' ? 0x21 : 0x20, source === null ? 0x00 : ipv6 ? 0x21 : 0x11, 0, 0])
  head.writeUInt16BE(addresses.length + tlvBytes, 2)
  return Buffer.concat([V2_SIGNATURE, head, addresses, Buffer.alloc(tlvBytes)])
}

describe('PROXY protocol headers', () => {
  it('reads version 1 for TCP4, TCP6 and UNKNOWN, and says how long the header is', () => {
    const mqttBytes = Buffer.from([0x10, 0x0c])
    expect(parseProxyHeader(Buffer.concat([v1('PROXY TCP4 203.0.113.9 10.0.0.5 51234 1883'), mqttBytes]))).toEqual({
      header: { kind: 'proxied', source: '203.0.113.9' },
      length: 'PROXY TCP4 203.0.113.9 10.0.0.5 51234 1883\r\n'.length,
    })
    expect(parseProxyHeader(v1('PROXY TCP6 2001:db8::7 2001:db8::1 51234 1883'))?.header).toEqual({ kind: 'proxied', source: '2001:db8::7' })
    expect(parseProxyHeader(v1('PROXY UNKNOWN'))?.header).toEqual({ kind: 'local' })
  })

  it('reads version 2 for IPv4, IPv6, LOCAL and an unspecified family, skipping TLVs', () => {
    const header = v2('PROXY', '203.0.113.9', 7)
    expect(parseProxyHeader(Buffer.concat([header, Buffer.from([0x10])]))).toEqual({ header: { kind: 'proxied', source: '203.0.113.9' }, length: header.length })
    expect(parseProxyHeader(v2('PROXY', '2001:db8:0:0:0:0:0:7'))?.header).toEqual({ kind: 'proxied', source: '2001:db8:0:0:0:0:0:7' })
    expect(parseProxyHeader(v2('LOCAL', null))).toEqual({ header: { kind: 'local' }, length: 16 })
    expect(parseProxyHeader(v2('PROXY', null))?.header).toEqual({ kind: 'local' })
  })

  it('names an IPv4 client behind a dual-stack proxy by one throttle address, in version 1 or 2', () => {
    // Version 2 carries an IPv4-mapped address as eight groups; version 1 as ::ffff:a.b.c.d.
    const viaV2 = (parseProxyHeader(v2('PROXY', '0:0:0:0:0:ffff:cb00:7109'))!.header as { source: string }).source
    const viaV1 = (parseProxyHeader(v1('PROXY TCP6 ::ffff:203.0.113.9 ::1 51234 1883'))!.header as { source: string }).source
    expect(throttleAddressOf(viaV2)).toBe('203.0.113.9')
    expect(throttleAddressOf(viaV1)).toBe('203.0.113.9')
  })

  it('asks for more bytes while a header is incomplete, at every cut', () => {
    for (const whole of [v1('PROXY TCP4 203.0.113.9 10.0.0.5 51234 1883'), v2('PROXY', '203.0.113.9', 3)]) {
      for (let cut = 1; cut < whole.length; cut++) expect(parseProxyHeader(whole.subarray(0, cut)), `${cut} of ${whole.length}`).toBeNull()
      expect(parseProxyHeader(whole)?.length).toBe(whole.length)
    }
  })

  it('refuses what is not a header, a malformed one and one beyond its limit', () => {
    const refused = (buf: Buffer): string => {
      try {
        parseProxyHeader(buf)
      } catch (err) {
        expect(err).toBeInstanceOf(ProxyHeaderError)
        return (err as Error).message
      }
      throw new Error('accepted')
    }
    expect(refused(Buffer.from([0x10, 0x0c, 0x00, 0x04]))).toBe('not a PROXY protocol header')
    expect(refused(v1('PROXY TCP4 203.0.113.999 10.0.0.5 51234 1883'))).toBe('malformed PROXY v1 header')
    expect(refused(v1('PROXY TCP4 2001:db8::7 10.0.0.5 51234 1883'))).toBe('malformed PROXY v1 header')
    expect(refused(v1('PROXY TCP4 203.0.113.9 10.0.0.5 65536 1883'))).toBe('malformed PROXY v1 header')
    expect(refused(Buffer.from('PROXY ' + 'x'.repeat(PROXY_V1_HEADER_BYTES_MAX), 'latin1'))).toBe(`PROXY v1 header longer than ${PROXY_V1_HEADER_BYTES_MAX} bytes`)
    const badVersion = v2('PROXY', '203.0.113.9')
    badVersion[12] = 0x31
    expect(refused(badVersion)).toBe('malformed PROXY v2 header')
    expect(refused(v2('PROXY', '203.0.113.9', PROXY_V2_ADDRESS_BYTES_MAX))).toBe(`PROXY v2 addresses longer than ${PROXY_V2_ADDRESS_BYTES_MAX} bytes`)
  })
})

describe('reading the header off a socket', () => {
  /** A connected pair of sockets: what the first writes, the second reads. */
  async function pair(): Promise<{ client: net.Socket; server: net.Socket; close(): void }> {
    const listener = net.createServer()
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()))
    const accepted = new Promise<net.Socket>((r) => listener.once('connection', r))
    const client = net.connect((listener.address() as AddressInfo).port, '127.0.0.1')
    const server = await accepted
    listener.close()
    return { client, server, close: () => (client.destroy(), server.destroy()) }
  }

  it('hands back the bytes after the header, however the header is cut', async () => {
    const { client, server, close } = await pair()
    const header = readProxyHeader(server, 5_000)
    const whole = Buffer.concat([v2('PROXY', '203.0.113.40'), Buffer.from('MQTT bytes')])
    for (const [from, to] of [
      [0, 5],
      [5, 17],
      [17, whole.length],
    ] as const) {
      client.write(whole.subarray(from, to))
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(await header).toEqual({ kind: 'proxied', source: '203.0.113.40' })
    await waitFor(() => server.readableLength > 0, 2_000, 'the rest readable')
    expect(server.read()?.toString()).toBe('MQTT bytes')
    close()
  })

  it('gives up when the socket is destroyed before a header, rather than waiting out its time', async () => {
    const { server, close } = await pair()
    const header = readProxyHeader(server, 600_000)
    server.destroy()
    await expect(header).rejects.toBeInstanceOf(ClosedBeforeHeaderError)
    close()
  })
})

/**
 * A broker behind a load balancer. The balancer here is a relay of our own: it connects to the
 * broker from 127.0.0.2 (the trusted proxy) and opens each connection with the header it is told
 * to send. Clients that reach the broker directly come from 127.0.0.1, which is not trusted.
 */
describe('a broker behind a trusted load balancer', () => {
  const t = useTestDatabase('pglite')
  const PROXY_ADDRESS = '127.0.0.2'
  let tb: TestBroker
  let http: HttpServer
  let meter: TestMeter
  const relays: net.Server[] = []
  const clients: mqtt.MqttClient[] = []
  const lines: Array<{ msg: string; address?: string; reason?: string }> = []

  beforeAll(async () => {
    configureLogging({ level: 'debug', target: { write: (line: string) => lines.push(JSON.parse(line)) } })
    tb = await startTestBroker(t.handle, { env: { trustedProxies: PROXY_ADDRESS }, overrides: { mqtt: { connectTimeoutMs: 2_000 } } })
    http = createServer((_req, res) => res.writeHead(404).end())
    tb.broker.attachWebSocket(http)
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()))
  })
  beforeEach(async () => {
    meter = await createTestMeter(t.db, (await createUtility(t.db)).id)
  })
  afterEach(async () => {
    for (const c of clients.splice(0)) await endClient(c)
  })
  afterAll(async () => {
    configureLogging({ level: 'silent', target: process.stdout })
    for (const r of relays) r.close()
    await tb.close()
    await new Promise<void>((r) => http.close(() => r()))
  })

  /** A relay that opens each connection to the broker with `header`, written a byte at a time when `trickle`. */
  async function balancer(header: Buffer, trickle = false): Promise<string> {
    const relay = net.createServer((client) => {
      const upstream = net.connect({ port: tb.port, host: '127.0.0.1', localAddress: PROXY_ADDRESS })
      upstream.once('connect', async () => {
        if (!trickle) upstream.write(header)
        else for (const byte of header) await new Promise<void>((r) => upstream.write(Buffer.from([byte]), () => setImmediate(r)))
        client.pipe(upstream).pipe(client)
      })
      const close = (): void => {
        client.destroy()
        upstream.destroy()
      }
      client.on('error', close).on('close', close)
      upstream.on('error', close).on('close', close)
    })
    relays.push(relay)
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()))
    return `mqtt://127.0.0.1:${(relay.address() as AddressInfo).port}`
  }

  /** Writes `bytes` to the broker from `localAddress`; resolves once the broker has closed the connection. */
  async function closedAfterWriting(bytes: Buffer, localAddress: string): Promise<void> {
    const socket = net.connect({ port: tb.port, host: '127.0.0.1', localAddress })
    const closed = new Promise<void>((r) => socket.on('close', () => r()))
    socket.on('error', () => undefined)
    socket.write(bytes)
    await closed
  }

  /** The addresses the broker logged authentication failures from, once `count` have come. */
  async function failedFrom(count: number): Promise<string[]> {
    const failed = (): string[] => lines.filter((l) => l.msg === 'mqtt authentication failed').map((l) => l.address!)
    await waitFor(() => failed().length >= count, 5_000, `${count} failures logged`)
    return failed()
  }

  it('lets a meter through the balancer connect and publish, acknowledged once stored', async () => {
    const c = await connectMeter(await balancer(v2('PROXY', '203.0.113.20'), true), meter)
    clients.push(c)
    await publishAcked(c, meterReadingsTopic(meter.id), JSON.stringify({ ts: '2026-10-02T10:00:00Z', values: { '1-0:1.8.0': 42 } }))
    expect(await readingsOf(t.db, meter.id)).toHaveLength(1)
  })

  it('counts a failed login by the address the header names (versions 1 and 2), or by the balancer for LOCAL', async () => {
    lines.length = 0
    const refused = async (url: string): Promise<void> => {
      await expect(connectMeter(url, { id: meter.id, secret: 'guess' })).rejects.toMatchObject({ code: 4 })
    }
    await refused(await balancer(v2('PROXY', '203.0.113.21')))
    await refused(await balancer(v1('PROXY TCP6 2001:db8::21 ::1 40000 1883'), true))
    await refused(await balancer(v2('LOCAL', null)))
    // A client reaching the broker directly is counted by its own address.
    await refused(tb.url)
    expect(await failedFrom(4)).toEqual(['203.0.113.21', '2001:db8::21', PROXY_ADDRESS, '127.0.0.1'])
  })

  it('closes a connection from the balancer that does not open with a header, and takes a header from anyone else as the MQTT it is not', async () => {
    lines.length = 0
    // The first bytes of an MQTT CONNECT, from the balancer's address.
    await closedAfterWriting(Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54]), PROXY_ADDRESS)
    await waitFor(() => lines.some((l) => l.msg === 'connection closed: a trusted proxy sent no valid PROXY protocol header'), 5_000, 'the refusal logged')
    expect(lines.find((l) => l.msg.startsWith('connection closed: a trusted proxy'))).toMatchObject({ address: PROXY_ADDRESS, reason: 'not a PROXY protocol header' })

    // Directly, from 127.0.0.1: the header is not read, so it cannot pick the address failures count by.
    await closedAfterWriting(v1('PROXY TCP4 203.0.113.22 127.0.0.1 40000 1883'), '127.0.0.1')
    expect(lines.some((l) => l.address === '203.0.113.22')).toBe(false)
  })

  it('lets the balancer close a connection without a byte (a TCP health check) quietly', async () => {
    lines.length = 0
    const check = net.connect({ port: tb.port, host: '127.0.0.1', localAddress: PROXY_ADDRESS })
    await new Promise<void>((r) => check.once('connect', () => r()))
    check.end()
    await waitFor(() => lines.some((l) => l.msg === 'proxy connection closed before a PROXY header (a health check)'), 5_000, 'the health check noted')
    expect(lines.filter((l) => l.msg.startsWith('connection closed'))).toEqual([])
  })

  it('takes the client address of MQTT over WebSocket from X-Forwarded-For, from the balancer only', async () => {
    lines.length = 0
    const url = `ws://127.0.0.1:${(http.address() as AddressInfo).port}/mqtt`
    for (const localAddress of [PROXY_ADDRESS, '127.0.0.1']) {
      await expect(
        connectClient(url, { clientId: meter.id, username: meter.id, password: 'guess', wsOptions: { localAddress, headers: { 'x-forwarded-for': '203.0.113.23' } } }),
      ).rejects.toMatchObject({ code: 4 })
    }
    expect(await failedFrom(2)).toEqual(['203.0.113.23', '127.0.0.1'])
  })
})
