import { generate } from 'mqtt-packet'
import { describe, expect, it } from 'vitest'
import { decodeMqtt } from '../support/mqtt-decode.ts'
import { SubscriberReader, readingNumberOf, recipientConnectFrame, subscribeFrame, writePuback } from './subscriber-frames.ts'

const series = { tsStartMs: Date.UTC(2020, 0, 1), tsStepMs: 15 * 60_000 }

describe('the benchmark recipients frames', () => {
  it('encodes a CONNECT, a SUBSCRIBE and PUBACKs that a standard parser reads back', () => {
    const out = Buffer.alloc(8)
    const end = writePuback(out, writePuback(out, 0, 1), 65_535)
    const packets = decodeMqtt(
      Buffer.concat([
        recipientConnectFrame({ clientId: 'bench-recipient-1', username: 'pty_x', password: 'pty_x.secret', keepaliveSeconds: 600 }),
        subscribeFrame('readings/+', 7, 1),
        out.subarray(0, end),
      ]),
    )
    expect(packets.map((p) => p.cmd)).toEqual(['connect', 'subscribe', 'puback', 'puback'])
    expect(packets[0]).toMatchObject({ clientId: 'bench-recipient-1', username: 'pty_x', keepalive: 600, clean: true })
    expect(packets[1]).toMatchObject({ messageId: 7, subscriptions: [{ topic: 'readings/+', qos: 1 }] })
    expect(packets.slice(2).map((p) => (p as { messageId: number }).messageId)).toEqual([1, 65_535])
  })

  it('reads CONNACK, SUBACK and QoS 0 and 1 PUBLISHes cut anywhere across chunks', () => {
    const long = Buffer.from(`{"meterId":"m1","ts":"2020-01-01T00:30:00Z","values":{"x":"${'y'.repeat(200)}"}}`)
    const stream = Buffer.concat([
      generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }),
      generate({ cmd: 'suback', messageId: 7, granted: [1] }),
      generate({ cmd: 'publish', topic: 'readings/m1', payload: long, qos: 1, messageId: 300, dup: true, retain: false }),
      generate({ cmd: 'publish', topic: 'readings/m2', payload: Buffer.from('{}'), qos: 0, dup: false, retain: false }),
      generate({ cmd: 'pingresp' }),
    ])
    for (const size of [1, 2, 3, 7, 64, stream.length]) {
      const seen: unknown[] = []
      const reader = new SubscriberReader({
        connack: (code) => seen.push(['connack', code]),
        suback: (id, granted) => seen.push(['suback', id, granted]),
        publish: (qos, dup, id, topic, payload) => seen.push(['publish', qos, dup, id, topic.toString(), payload.toString()]),
      })
      for (let i = 0; i < stream.length; i += size) reader.push(stream.subarray(i, i + size))
      expect(seen).toEqual([
        ['connack', 0],
        ['suback', 7, 1],
        ['publish', 1, true, 300, 'readings/m1', long.toString()],
        ['publish', 0, false, 0, 'readings/m2', '{}'],
      ])
    }
  })

  it('finds the reading number of an egress payload from its timestamp', () => {
    const payload = (ts: string): Buffer => Buffer.from(JSON.stringify({ meterId: 'bench-m000001', ts, granularity: 'load_curve', values: { '1-0:1.8.0': 1 } }))
    expect(readingNumberOf(payload('2020-01-01T00:15:00Z'), series)).toBe(1)
    expect(readingNumberOf(payload('2020-01-02T00:00:00Z'), series)).toBe(96)
    expect(readingNumberOf(payload('2020-01-01T00:00:00Z'), series)).toBe(-1)
    expect(readingNumberOf(payload('2020-01-01T00:20:00Z'), series)).toBe(-1)
    expect(readingNumberOf(Buffer.from('{"day":"2020-01-01"}'), series)).toBe(-1)
  })
})
