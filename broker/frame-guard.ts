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

/** Wraps the stream's `read` (aedes pulls bytes with `conn.read(null)`) with a FrameScanner. */
export function guardPacketSize(conn: Duplex, packetBytesMax: number, onViolation: (reason: string) => void): void {
  const scanner = new FrameScanner(packetBytesMax)
  const read = conn.read.bind(conn)
  conn.read = function guardedRead(size?: number) {
    const chunk = read(size) as Buffer | null
    if (chunk === null) return null
    const violation = scanner.feed(chunk)
    if (violation !== null) {
      onViolation(violation)
      conn.destroy()
      return null
    }
    return chunk
  }
}
