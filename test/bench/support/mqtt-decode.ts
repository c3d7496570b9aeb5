import { parser, type Packet } from 'mqtt-packet'

/** Every MQTT 3.1.1 packet in these bytes, read by mqtt-packet's parser (the reference the benchmarks' hand-made frames are checked against). */
export function decodeMqtt(bytes: Buffer): Packet[] {
  const p = parser({ protocolVersion: 4 })
  const packets: Packet[] = []
  p.on('packet', (packet: Packet) => packets.push(packet))
  p.on('error', (err: Error) => {
    throw err
  })
  p.parse(bytes)
  return packets
}
