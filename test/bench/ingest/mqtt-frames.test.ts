import type { IPublishPacket } from 'mqtt-packet'
import { describe, expect, it } from 'vitest'
import { decodeMqtt } from '../support/mqtt-decode.ts'
import { DEFAULT_INGEST_LIMITS } from '../../../shared/config.ts'
import { validatePayload } from '../../../services/metering/ingest-validation.ts'
import { FrameReader, INDEX_START, PACKET_TYPE, publishTemplate, writePublish, type ReadingSeries } from './mqtt-frames.ts'

const series: ReadingSeries = { tsStartMs: Date.UTC(2020, 0, 1), tsStepMs: 15 * 60_000, indexStepWh: 25 }
const meter = { meterId: 'bench-m000042', commodity: 'electricity' as const }

describe('the load generator frames', () => {
  it('patches message ids, timestamps and indexes into frames that decode as valid distinct readings', () => {
    const t = publishTemplate(meter.meterId, 1)
    const out = Buffer.alloc(t.frame.length * 3)
    let at = 0
    at = writePublish(out, at, t, 65_535, series, 1)
    at = writePublish(out, at, t, 1, series, 2)
    writePublish(out, at, t, 2, series, 3)

    const packets = decodeMqtt(out) as IPublishPacket[]
    expect(packets.map((p) => [p.cmd, p.qos, p.messageId, p.topic])).toEqual([
      ['publish', 1, 65_535, 'meters/bench-m000042/readings'],
      ['publish', 1, 1, 'meters/bench-m000042/readings'],
      ['publish', 1, 2, 'meters/bench-m000042/readings'],
    ])
    const datums = packets.flatMap((p) => validatePayload(meter, p.payload as Buffer, Date.now(), DEFAULT_INGEST_LIMITS).datums)
    expect(datums.map((d) => [new Date(d.tsMs).toISOString(), d.values])).toEqual([
      ['2020-01-01T00:15:00.000Z', { '1-0:1.8.0': INDEX_START + 25 }],
      ['2020-01-01T00:30:00.000Z', { '1-0:1.8.0': INDEX_START + 50 }],
      ['2020-01-01T00:45:00.000Z', { '1-0:1.8.0': INDEX_START + 75 }],
    ])
  })

  it('writes a batch of readings as one valid catch-up message', () => {
    const t = publishTemplate(meter.meterId, 100)
    const out = Buffer.alloc(t.frame.length)
    writePublish(out, 0, t, 7, series, 201)
    const [packet] = decodeMqtt(out) as IPublishPacket[]
    const message = validatePayload(meter, packet!.payload as Buffer, Date.now(), DEFAULT_INGEST_LIMITS)
    expect(message.rejects).toEqual([])
    expect(message.datums).toHaveLength(100)
    expect(message.datums[0]!.tsMs).toBe(series.tsStartMs + 201 * series.tsStepMs)
    expect(message.datums[99]!.values).toEqual({ '1-0:1.8.0': INDEX_START + 300 * 25 })
  })

  it('reads CONNACKs and PUBACKs cut anywhere across chunks', () => {
    const seen: Array<[number, number]> = []
    const reader = new FrameReader((type, head) => seen.push([type, head]))
    const stream = Buffer.from([0x20, 0x02, 0x00, 0x00, 0x40, 0x02, 0x00, 0x01, 0x40, 0x02, 0xff, 0xff, 0xd0, 0x00, 0x40, 0x02, 0x01, 0x00])
    for (let i = 0; i < stream.length; i += 3) reader.push(stream.subarray(i, i + 3))
    expect(seen).toEqual([
      [PACKET_TYPE.connack, 0],
      [PACKET_TYPE.puback, 1],
      [PACKET_TYPE.puback, 65_535],
      [PACKET_TYPE.pingresp, 0],
      [PACKET_TYPE.puback, 256],
    ])
  })
})
