import type { Duplex } from 'node:stream'

/**
 * A transport limit aedes lacks: close a connection as soon as a packet's fixed header
 * announces more than `packetBytesMax`, before the packet is read whole. It watches MQTT
 * framing (fixed header byte, variable-length remaining length) on the bytes aedes reads,
 * skipping bodies without copying them.
 */
export class FrameScanner {
  private state: 'header' | 'length' | 'body' = 'header'
  private lengthValue = 0
  private lengthMultiplier = 1
  private lengthBytes = 0
  private bodyRemaining = 0

  constructor(private readonly packetBytesMax: number) {}

  /** Returns a reason when the stream must be closed, otherwise null. */
  feed(chunk: Buffer): string | null {
    let i = 0
    const n = chunk.length
    while (i < n) {
      if (this.state === 'body') {
        const step = Math.min(this.bodyRemaining, n - i)
        this.bodyRemaining -= step
        i += step
        if (this.bodyRemaining === 0) this.state = 'header'
        continue
      }
      const byte = chunk[i++]!
      if (this.state === 'header') {
        this.state = 'length'
        this.lengthValue = 0
        this.lengthMultiplier = 1
        this.lengthBytes = 0
        continue
      }
      // 'length': [MQTT-2.2.3] up to four bytes, seven bits each, least significant first.
      this.lengthValue += (byte & 0x7f) * this.lengthMultiplier
      this.lengthMultiplier *= 128
      this.lengthBytes++
      if (byte & 0x80) {
        if (this.lengthBytes >= 4) return MALFORMED_LENGTH
        continue
      }
      const packetBytes = 1 + this.lengthBytes + this.lengthValue
      if (packetBytes > this.packetBytesMax) {
        return `packet of ${packetBytes} bytes exceeds packetBytesMax ${this.packetBytesMax}`
      }
      this.bodyRemaining = this.lengthValue
      this.state = this.bodyRemaining === 0 ? 'header' : 'body'
    }
    return null
  }
}

/** The violation of a remaining length longer than MQTT's four bytes: not an MQTT packet at all. */
export const MALFORMED_LENGTH = 'malformed remaining length'

/** How long, in ms, a connection answered CONNACK 1 is left to its client to close before it is destroyed. */
const REFUSED_CLOSE_MS = 1_000
/** MQTT's protocol levels the broker speaks: 3 (MQTT 3.1) and 4 (3.1.1). */
const PROTOCOL_LEVELS = new Set([3, 4])
/** CONNACK, return code 1: unacceptable protocol level [MQTT-3.1.2-2], in 3.1.1's form (what an MQTT 5 client also reads). */
const CONNACK_UNACCEPTABLE_PROTOCOL = Buffer.from([0x20, 0x02, 0x00, 0x01])

/**
 * The protocol level of a connection's first packet, read from the bytes as they come: a CONNECT
 * named "MQTT" (or 3.1's "MQIsdp"). mqtt-packet's parser refuses a level it does not know (2, or a 5
 * without its properties) as malformed, and aedes then closed the connection without the CONNACK 1
 * that [MQTT-3.1.2-2] asks for.
 */
class ConnectLevel {
  private seen = Buffer.alloc(0)
  private done = false

  /** The level once the bytes tell it, once; null before, after, and for anything but an MQTT CONNECT. */
  feed(chunk: Buffer): number | null {
    if (this.done) return null
    // The fixed header (5 bytes at most), the name's length, the name (6 bytes at most) and the level.
    this.seen = Buffer.concat([this.seen, chunk.subarray(0, 16)])
    const b = this.seen
    if (b[0] !== 0x10) return this.give(null)
    let at = 1
    while (at < b.length && at < 5 && (b[at]! & 0x80) !== 0) at++
    if (at >= b.length) return null
    at++
    if (b.length < at + 2) return null
    const nameLength = b.readUInt16BE(at)
    if (nameLength > 6) return this.give(null)
    const levelAt = at + 2 + nameLength
    if (b.length <= levelAt) return null
    const name = b.toString('latin1', at + 2, levelAt)
    const level = b[levelAt]!
    // "MQIsdp" is MQTT 3.1's name, "MQTT" 3.1.1's and later: a name and level that do not go together
    // are answered as a level not spoken (as Mosquitto does); 0 is no level at all.
    if (name === 'MQIsdp') return this.give(level === 3 ? 3 : 0)
    if (name === 'MQTT') return this.give(level === 3 ? 0 : level)
    return this.give(null)
  }

  private give(level: number | null): number | null {
    this.done = true
    this.seen = Buffer.alloc(0)
    return level
  }
}

/**
 * Wraps the stream's `read` (aedes pulls bytes with `conn.read(null)`) with a FrameScanner, and
 * answers a first CONNECT of a protocol level the broker does not speak with CONNACK 1, then closes.
 */
export function guardPacketSize(conn: Duplex, packetBytesMax: number, onViolation: (reason: string) => void): void {
  const scanner = new FrameScanner(packetBytesMax)
  const connectLevel = new ConnectLevel()
  let refused = false
  const read = conn.read.bind(conn)
  conn.read = function guardedRead(size?: number) {
    if (refused) return null
    const chunk = read(size) as Buffer | null
    if (chunk === null) return null
    const level = connectLevel.feed(chunk)
    if (level !== null && !PROTOCOL_LEVELS.has(level)) {
      refused = true
      onViolation(`${UNSUPPORTED_LEVEL} ${level}`)
      // Ended, not destroyed: destroyed with the rest of the CONNECT unread, the socket would send a reset,
      // and the client's stack could drop the CONNACK with it. The client closes on a refusal; if not, gone.
      conn.end(CONNACK_UNACCEPTABLE_PROTOCOL)
      setTimeout(() => conn.destroy(), REFUSED_CLOSE_MS).unref()
      return null
    }
    const violation = scanner.feed(chunk)
    if (violation !== null) {
      onViolation(violation)
      conn.destroy()
      return null
    }
    return chunk
  }
}

/** The start of the violation of a CONNECT of a protocol level the broker does not speak (answered CONNACK 1). */
export const UNSUPPORTED_LEVEL = 'CONNECT of protocol level'
