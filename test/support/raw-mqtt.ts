import net from 'node:net'
import mqttPacket, { type IConnectPacket, type Packet } from 'mqtt-packet'
import { waitFor } from './tools.ts'

/**
 * An MQTT 3.1.1 client written with mqtt-packet on a raw socket: it sends whatever packets or bytes a
 * test gives it, in one write or byte by byte, and collects what comes back, where MQTT.js would refuse
 * to send them or would answer for the test (PUBACKs).
 */
export class RawMqttClient {
  readonly received: Packet[] = []
  readonly closed: Promise<void>
  private constructor(readonly socket: net.Socket) {
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.on('packet', (p) => this.received.push(p))
    socket.on('data', (chunk) => parser.parse(chunk))
    socket.on('error', () => undefined)
    this.closed = new Promise((r) => socket.once('close', () => r()))
  }

  static async open(port: number): Promise<RawMqttClient> {
    const socket = net.connect(port, '127.0.0.1')
    socket.setNoDelay(true)
    await new Promise<void>((r, reject) => socket.once('connect', () => r()).once('error', reject))
    return new RawMqttClient(socket)
  }

  /**
   * Opens a connection and sends a CONNECT (MQTT 3.1.1, keepalive 30 s, clean session unless `fields`
   * say otherwise), then `behind` in the same write, without waiting for the CONNACK.
   */
  static async connect(port: number, fields: Partial<IConnectPacket> & { clientId: string }, behind = Buffer.alloc(0)): Promise<RawMqttClient> {
    const raw = await RawMqttClient.open(port)
    // mqtt-packet writes neither an empty client id with clean session 0 nor a will of QoS 3: written
    // as allowed, then the CONNECT flags byte changed (it follows the fixed header, "MQTT" and the level).
    const { clean = true, will } = fields
    const unwritable = (fields.clientId === '' && !clean) || (will?.qos ?? 0) > 2
    const connect = mqttPacket.generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      keepalive: 30,
      ...fields,
      clean: unwritable ? true : clean,
      ...(will !== undefined ? { will: { ...will, qos: unwritable ? 0 : will.qos } } : {}),
    } as IConnectPacket)
    if (unwritable) {
      let at = 1
      while ((connect[at]! & 0x80) !== 0) at++
      const flags = at + 1 + 6 + 1
      connect[flags] = (connect[flags]! & ~0x02 & ~0x18) | (clean ? 0x02 : 0) | (((will?.qos ?? 0) & 3) << 3)
    }
    raw.socket.write(Buffer.concat([connect, behind]))
    return raw
  }

  /** Connects as `connect` does and answers the CONNACK's return code, or 'closed'; the connection is then closed. */
  static async connackOf(port: number, fields: Partial<IConnectPacket> & { clientId: string }): Promise<number | 'closed'> {
    const raw = await RawMqttClient.connect(port, fields)
    try {
      return await raw.connack()
    } finally {
      raw.end()
    }
  }

  send(packet: Packet): void {
    this.socket.write(mqttPacket.generate(packet))
  }

  async next(match: (p: Packet) => boolean, timeoutMs = 5_000): Promise<Packet> {
    return waitFor(() => this.received.find(match), timeoutMs, 'a packet from the broker')
  }

  /** The CONNACK's return code, or 'closed' when the connection closed without one. */
  async connack(timeoutMs = 5_000): Promise<number | 'closed'> {
    const answered = this.next((p) => p.cmd === 'connack', timeoutMs).then((p) => (p as { returnCode: number }).returnCode)
    const closed = this.closed.then(() => 'closed' as const)
    const first = await Promise.race([answered, closed])
    // A CONNACK read just before the close counts.
    const connack = this.received.find((p) => p.cmd === 'connack') as { returnCode: number } | undefined
    return connack?.returnCode ?? first
  }

  pubacks(): number[] {
    return this.received.flatMap((p) => (p.cmd === 'puback' ? [p.messageId!] : []))
  }

  /** Writes `bytes` one byte per segment. */
  async trickle(bytes: Buffer): Promise<void> {
    for (let i = 0; i < bytes.length; i++) {
      await new Promise<void>((r) => this.socket.write(bytes.subarray(i, i + 1), () => r()))
      if (i % 8 === 0) await new Promise((r) => setImmediate(r))
    }
  }

  end(): void {
    this.socket.destroy()
  }
}
