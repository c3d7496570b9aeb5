import net, { type AddressInfo } from 'node:net'
import { Aedes } from 'aedes'
import mqttPacket from 'mqtt-packet'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { EVERY_TOPIC } from '../../broker/egress-interest.ts'
import { AEDES_EMITTER_CONCURRENCY, EGRESS_PUBLISHES_IN_FLIGHT_MAX, Egress } from '../../broker/egress.ts'
import type { StoredDatum } from '../../services/metering/ingest-service.ts'
import { waitFor } from '../support/broker.ts'

/**
 * The egress under a backlog: a subscriber that stops reading while a catch-up storm is stored
 * (its socket's buffers fill, and aedes' deliveries to it stay pending), then leaves. A real aedes
 * on a socket and a raw MQTT client written with mqtt-packet, which can stop reading at will. No
 * database: the datums come as the ingest hands them over after a commit.
 */

const START = Date.parse('2026-10-01T00:00:00Z')

function stored(n: number, meters = 100): StoredDatum[] {
  return Array.from({ length: n }, (_, i) => ({
    meterId: `M-${i % meters}`,
    tsMs: START + Math.floor(i / meters) * 900_000,
    values: { '1-0:1.8.0': 1_000_000 + i },
    householdId: `hh_${i % meters}`,
  }))
}

interface Setup {
  aedes: Aedes
  server: net.Server
  egress: Egress
  counts: { queued: number; dropped: number }
}

const open: Setup[] = []

async function setup(queueMax?: number): Promise<Setup & { warnings: string[] }> {
  const aedes = await Aedes.createBroker({ concurrency: AEDES_EMITTER_CONCURRENCY })
  const server = net.createServer((socket) => aedes.handle(socket))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const counts = { queued: 0, dropped: 0 }
  const metrics = { egressQueued: { set: (v: number) => void (counts.queued = v) }, egressDropped: { inc: (n = 1) => void (counts.dropped += n) } }
  const warnings: string[] = []
  const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line).msg as string) })
  const egress = new Egress(aedes, log, EVERY_TOPIC, metrics, queueMax)
  const s = { aedes, server, egress, counts, warnings }
  open.push(s)
  return s
}

/** A subscriber to `readings/+` that reads nothing once subscribed: resolves with its socket once SUBACK came. */
async function stalledSubscriber(server: net.Server): Promise<net.Socket> {
  const { port } = server.address() as AddressInfo
  const socket = net.connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const subscribed = new Promise<void>((resolve) => parser.on('packet', (p) => p.cmd === 'suback' && resolve()))
  socket.on('data', (chunk) => parser.parse(chunk))
  await new Promise<void>((r) => socket.once('connect', () => r()))
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'slow-recipient', keepalive: 0 }))
  socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'readings/+', qos: 1 }] }))
  await subscribed
  // Stop reading: the kernel's buffers fill, then aedes' writes to it wait.
  socket.removeAllListeners('data')
  socket.pause()
  return socket
}

afterEach(async () => {
  for (const s of open.splice(0)) {
    await new Promise<void>((r) => s.aedes.close(() => r()))
    await new Promise<void>((r) => s.server.close(() => r()))
  }
})

describe('egress under a backlog', () => {
  it('hands aedes a bounded number of publications, keeps the rest in order, and survives the slow subscriber leaving', async () => {
    const { aedes, server, egress, counts } = await setup()
    const subscriber = await stalledSubscriber(server)
    // What aedes' emitter is doing: with it overflowing its own queue, this was a stack overflow when the subscriber left.
    const mq = (aedes as unknown as { mq: { current: number; length: number } }).mq
    egress.publishReadings(stored(150_000))
    await waitFor(() => egress.queued > 100_000)
    expect(mq.current).toBeLessThanOrEqual(EGRESS_PUBLISHES_IN_FLIGHT_MAX)
    expect(mq.length).toBe(0)
    expect(counts.queued).toBe(egress.queued)

    // The subscriber goes: everything left completes (published to nobody), in a loop, not a recursion.
    const uncaught: unknown[] = []
    const onUncaught = (err: unknown): void => void uncaught.push(err)
    process.on('uncaughtException', onUncaught)
    try {
      subscriber.destroy()
      await egress.drained()
      expect(egress.queued).toBe(0)
      expect(counts.queued).toBe(0)
      expect(uncaught).toEqual([])
    } finally {
      process.off('uncaughtException', onUncaught)
    }
  }, 60_000)

  it('keeps at most its maximum waiting, dropping the oldest, counted', async () => {
    const { server, egress, counts } = await setup(1_000)
    const subscriber = await stalledSubscriber(server)
    egress.publishReadings(stored(20_000))
    await waitFor(() => counts.dropped > 0)
    // Whatever the socket and aedes took before the stall, the queue holds the maximum and the rest were counted.
    expect(egress.queued).toBe(1_000)
    expect(counts.dropped).toBeGreaterThanOrEqual(20_000 - 1_000 - 5_000)
    subscriber.destroy()
    await egress.drained()
    expect(egress.queued).toBe(0)
  }, 60_000)

  it('publishes nothing more once closed: what waits is counted and logged once, not handed to the closed emitter', async () => {
    const { aedes, server, egress, counts, warnings } = await setup()
    await stalledSubscriber(server)
    egress.publishReadings(stored(30_000))
    await waitFor(() => egress.queued > 10_000)
    const left = egress.queued
    egress.close()
    expect([egress.queued, counts.queued, counts.dropped]).toEqual([0, 0, left])
    egress.publishReadings(stored(10))
    expect([egress.queued, counts.dropped]).toEqual([0, left + 10])
    // The broker closes aedes next: its publications in flight fail, quietly.
    await new Promise<void>((r) => aedes.close(() => r()))
    await new Promise((r) => setTimeout(r, 100))
    expect(warnings).toEqual(['broker closing: egress datums still waiting are not published live (they are stored, and in the pull API)'])
  }, 60_000)

  it('counts the publications aedes cannot complete (its emitter failing, as with Redis away) as dropped, and logs them once a minute, not one line each', async () => {
    const { aedes, egress, counts, warnings } = await setup()
    // What the Redis emitter does while Redis is away: every emit fails.
    ;(aedes as unknown as { mq: { emit(packet: unknown, cb?: (err?: Error) => void): void } }).mq.emit = (_packet, cb) => cb?.(new Error('Connection is closed.'))
    egress.publishReadings(stored(300))
    await egress.drained()
    expect(counts.dropped).toBe(300)
    expect(warnings).toEqual(['egress publish failed: datums not published live (they are stored, and in the pull API)'])
  })

  it('delivers in publication order to a subscriber that keeps up', async () => {
    const { server, egress } = await setup()
    const { port } = server.address() as AddressInfo
    const socket = net.connect(port, '127.0.0.1')
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    const received: number[] = []
    let subscribed = false
    parser.on('packet', (p) => {
      if (p.cmd === 'suback') subscribed = true
      if (p.cmd === 'publish') {
        received.push(JSON.parse(p.payload.toString()).values['1-0:1.8.0'] as number)
        socket.write(mqttPacket.generate({ cmd: 'puback', messageId: p.messageId! }))
      }
    })
    socket.on('data', (chunk) => parser.parse(chunk))
    await new Promise<void>((r) => socket.once('connect', () => r()))
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'recipient', keepalive: 0 }))
    socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'readings/+', qos: 1 }] }))
    await waitFor(() => subscribed)
    egress.publishReadings(stored(5_000))
    await waitFor(() => received.length === 5_000, 30_000)
    expect(received).toEqual(Array.from({ length: 5_000 }, (_, i) => 1_000_000 + i))
    socket.destroy()
  }, 60_000)
})
