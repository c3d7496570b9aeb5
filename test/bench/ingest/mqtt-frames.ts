import { generate } from 'mqtt-packet'
import { OBIS_IMPORT_ENERGY_TOTAL } from '../../../shared/obis.ts'
import { meterReadingsTopic } from '../../../shared/topics.ts'
import { MqttFrameSplitter } from '../support/mqtt-frame-splitter.ts'

/**
 * MQTT 3.1.1 frames for the load generator, encoded once with mqtt-packet and patched in place
 * per message (message id, timestamps, indexes), so that sending costs a copy and a few
 * digit writes instead of an encoder call: the generator must not be the bottleneck.
 *
 * Every reading is valid and distinct: reading number r (1, 2, …) of a meter is stamped
 * `tsStartMs + r × tsStepMs` and carries the cumulative import index `INDEX_START + r × indexStepWh`,
 * so timestamps and indexes only grow and each one is stored.
 */

export const INDEX_DIGITS = 10
export const INDEX_START = 1_000_000_000
/** "2020-01-01T00:15:00" — the Z stays in the template. */
const TS_CHARS = 19

export const PACKET_TYPE = { connack: 2, puback: 4, pingresp: 13 } as const

export interface ReadingSeries {
  tsStartMs: number
  tsStepMs: number
  indexStepWh: number
}

export interface PublishTemplate {
  frame: Buffer
  messageIdOffset: number
  tsOffsets: number[]
  indexOffsets: number[]
}

export function connectFrame(meter: { id: string; secret: string }, keepaliveSeconds: number): Buffer {
  return generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: meter.id,
    keepalive: keepaliveSeconds,
    username: meter.id,
    password: Buffer.from(meter.secret, 'utf8'),
  })
}

export const DISCONNECT_FRAME: Buffer = generate({ cmd: 'disconnect' })

/** A QoS 1 PUBLISH of `readingsPerMessage` readings to the meter's readings topic (a batch when more than one). */
export function publishTemplate(meterId: string, readingsPerMessage: number): PublishTemplate {
  if (!Number.isInteger(readingsPerMessage) || readingsPerMessage < 1) throw new Error(`assertion failed: readingsPerMessage ${readingsPerMessage}`)
  const tsMarks: number[] = []
  const indexMarks: number[] = []
  let text = readingsPerMessage === 1 ? '' : '{"readings":['
  for (let i = 0; i < readingsPerMessage; i++) {
    if (i > 0) text += ','
    text += '{"ts":"'
    tsMarks.push(text.length)
    text += '2000-01-01T00:00:00Z","values":{"' + OBIS_IMPORT_ENERGY_TOTAL + '":'
    indexMarks.push(text.length)
    text += String(INDEX_START) + '}}'
  }
  if (readingsPerMessage > 1) text += ']}'
  const payload = Buffer.from(text, 'latin1')
  const topic = meterReadingsTopic(meterId)
  const frame = generate({ cmd: 'publish', qos: 1, dup: false, retain: false, messageId: 1, topic, payload })
  const payloadOffset = frame.length - payload.length
  const messageIdOffset = payloadOffset - 2
  if (frame.readUInt16BE(messageIdOffset) !== 1) throw new Error('assertion failed: message id not where expected')
  return {
    frame,
    messageIdOffset,
    tsOffsets: tsMarks.map((m) => payloadOffset + m),
    indexOffsets: indexMarks.map((m) => payloadOffset + m),
  }
}

/**
 * Writes into `out` at `at` the PUBLISH carrying readings number `firstReading` … of the
 * series, with `messageId`. Returns the offset after the frame.
 */
export function writePublish(out: Buffer, at: number, t: PublishTemplate, messageId: number, series: ReadingSeries, firstReading: number): number {
  t.frame.copy(out, at)
  out.writeUInt16BE(messageId, at + t.messageIdOffset)
  for (let i = 0; i < t.tsOffsets.length; i++) {
    const r = firstReading + i
    out.write(new Date(series.tsStartMs + r * series.tsStepMs).toISOString(), at + t.tsOffsets[i]!, TS_CHARS, 'latin1')
    writeDigits(out, at + t.indexOffsets[i]!, INDEX_START + r * series.indexStepWh)
  }
  return at + t.frame.length
}

function writeDigits(out: Buffer, at: number, value: number): void {
  if (value >= 10 ** INDEX_DIGITS) throw new Error(`assertion failed: index ${value} needs more than ${INDEX_DIGITS} digits`)
  for (let i = INDEX_DIGITS - 1; i >= 0; i--) {
    out[at + i] = 48 + (value % 10)
    value = Math.floor(value / 10)
  }
}

/**
 * The few packets a broker sends a publishing client, read from a byte stream that may cut
 * them anywhere. Calls `onPacket(type, first two bytes of the variable header, first byte)`:
 * the message id of a PUBACK, the flags and return code of a CONNACK.
 */
export class FrameReader {
  private readonly splitter: MqttFrameSplitter

  constructor(onPacket: (type: number, head: number, flagsByte: number) => void) {
    this.splitter = new MqttFrameSplitter((first, buf, from, to) => onPacket(first >> 4, to - from >= 2 ? buf.readUInt16BE(from) : 0, first))
  }

  push(chunk: Buffer): void {
    this.splitter.push(chunk)
  }
}
