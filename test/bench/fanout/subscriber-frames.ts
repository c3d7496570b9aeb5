import { generate } from 'mqtt-packet'
import { MqttFrameSplitter } from '../support/mqtt-frame-splitter.ts'

/**
 * MQTT 3.1.1 for the benchmark's recipients, on plain sockets: CONNECT and SUBSCRIBE encoded
 * with mqtt-packet, PUBACKs written by hand, and a reader for what a broker sends a
 * subscriber (CONNACK, SUBACK, PUBLISH, PINGRESP) that hands out a PUBLISH's topic and
 * payload as views of the chunk, without copying, so that receiving costs the recipients'
 * process little next to the broker under test.
 */

const TYPE = { connack: 2, publish: 3, suback: 9 } as const

export function recipientConnectFrame(options: { clientId: string; username: string; password: string; keepaliveSeconds: number }): Buffer {
  return generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: options.clientId,
    keepalive: options.keepaliveSeconds,
    username: options.username,
    password: Buffer.from(options.password, 'utf8'),
  })
}

export function subscribeFrame(filter: string, messageId: number, qos: 0 | 1): Buffer {
  return generate({ cmd: 'subscribe', messageId, subscriptions: [{ topic: filter, qos }] })
}

/** Writes the PUBACK of `messageId` into `out` at `at`; returns the offset after it. */
export function writePuback(out: Buffer, at: number, messageId: number): number {
  out[at] = 0x40
  out[at + 1] = 0x02
  out.writeUInt16BE(messageId, at + 2)
  return at + 4
}

export const PUBACK_BYTES = 4

export interface SubscriberEvents {
  connack(returnCode: number): void
  /** The granted QoS of the first (only) filter, 0x80 for a refusal. */
  suback(messageId: number, granted: number): void
  /** `messageId` is 0 for QoS 0. Topic and payload are views of the received bytes: use them before returning. */
  publish(qos: number, dup: boolean, messageId: number, topic: Buffer, payload: Buffer): void
}

/** Reads the packets a broker sends a subscriber from a byte stream that may cut them anywhere. */
export class SubscriberReader {
  private readonly splitter = new MqttFrameSplitter((first, buf, from, to) => this.packet(first, buf, from, to))

  constructor(private readonly on: SubscriberEvents) {}

  push(chunk: Buffer): void {
    this.splitter.push(chunk)
  }

  private packet(first: number, buf: Buffer, from: number, to: number): void {
    const type = first >> 4
    if (type === TYPE.publish) {
      const qos = (first >> 1) & 0x03
      const topicLength = buf.readUInt16BE(from)
      const topicEnd = from + 2 + topicLength
      const messageId = qos > 0 ? buf.readUInt16BE(topicEnd) : 0
      const payloadFrom = qos > 0 ? topicEnd + 2 : topicEnd
      this.on.publish(qos, (first & 0x08) !== 0, messageId, buf.subarray(from + 2, topicEnd), buf.subarray(payloadFrom, to))
    } else if (type === TYPE.connack) {
      this.on.connack(buf[from + 1]!)
    } else if (type === TYPE.suback) {
      this.on.suback(buf.readUInt16BE(from), buf[from + 2]!)
    }
  }
}

const TS_KEY = Buffer.from('"ts":"', 'latin1')
const TS_CHARS_MAX = 40

/**
 * The reading number r of a load-curve egress payload of the benchmark's series (its `ts` is
 * `tsStartMs + r × tsStepMs`), or -1 when the payload carries no such timestamp.
 */
export function readingNumberOf(payload: Buffer, series: { tsStartMs: number; tsStepMs: number }): number {
  const at = payload.indexOf(TS_KEY)
  if (at < 0) return -1
  const from = at + TS_KEY.length
  const end = payload.indexOf(0x22, from)
  if (end < 0 || end - from > TS_CHARS_MAX) return -1
  const ms = Date.parse(payload.toString('latin1', from, end))
  if (Number.isNaN(ms)) return -1
  const r = (ms - series.tsStartMs) / series.tsStepMs
  return Number.isInteger(r) && r >= 1 ? r : -1
}
