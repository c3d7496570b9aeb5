/**
 * Splits the bytes of an MQTT connection into whole control packets, however the stream cuts
 * them: `onFrame(firstByte, buffer, from, to)` gets each packet's fixed-header byte and the
 * bounds of its variable header and payload. The views are valid only during the call.
 */
export class MqttFrameSplitter {
  private rest: Buffer | null = null

  constructor(private readonly onFrame: (first: number, buf: Buffer, from: number, to: number) => void) {}

  push(chunk: Buffer): void {
    const buf = this.rest === null ? chunk : Buffer.concat([this.rest, chunk])
    this.rest = null
    let at = 0
    while (buf.length - at >= 2) {
      const first = buf[at]!
      let length = 0
      let multiplier = 1
      let p = at + 1
      let complete = false
      // The remaining length: at most four bytes, seven bits each, least significant first.
      for (let i = 0; i < 4 && p < buf.length; i++) {
        const b = buf[p++]!
        length += (b & 0x7f) * multiplier
        multiplier *= 128
        if ((b & 0x80) === 0) {
          complete = true
          break
        }
      }
      if (!complete || buf.length - p < length) break
      this.onFrame(first, buf, p, p + length)
      at = p + length
    }
    if (at < buf.length) this.rest = Buffer.from(buf.subarray(at))
  }
}
