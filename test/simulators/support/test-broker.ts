import net from 'node:net'
import { Aedes, type PublishPacket } from 'aedes'
import mqtt, { type MqttClient } from 'mqtt'
import type { MeterCredentials } from '../../../simulators/credentials.ts'

/**
 * A real aedes broker on a real socket (port 0) that knows the simulated meters'
 * credentials, a real MQTT subscriber on every meter's readings topic, and a TCP proxy that
 * can cut the meters' network. The product's broker is tested end to end elsewhere.
 */

export interface ConnectRecord {
  clientId: string
  username: string | undefined
  password: string | undefined
  clean: boolean
}

export interface TestBroker {
  readonly port: number
  readonly url: string
  readonly aedes: Aedes
  readonly connects: ConnectRecord[]
  /** While set, a publish for which it returns true is held: no PUBACK until released or dropped. */
  holdPublish: ((clientId: string, packet: PublishPacket) => boolean) | null
  releaseHeld(): void
  /** Refuses the meter's secret from now on (CONNACK 4), as a broker does once a meter is retired. */
  refuse(meterId: string): void
  close(): Promise<void>
}

export async function startTestBroker(meters: readonly MeterCredentials[]): Promise<TestBroker> {
  const secrets = new Map(meters.map((m) => [m.meterId, m.secret]))
  const connects: ConnectRecord[] = []
  const held: (() => void)[] = []
  const aedes = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      const pw = password?.toString('utf8')
      connects.push({ clientId: client.id, username, password: pw, clean: client.clean })
      if (username === SUBSCRIBER_USERNAME) return done(null, true)
      if (username === undefined || username !== client.id || secrets.get(username) !== pw) {
        return done(Object.assign(new Error('bad user name or password'), { returnCode: 4 }), false)
      }
      done(null, true)
    },
    authorizePublish(client, packet, callback) {
      if (client !== null && broker.holdPublish?.(client.id, packet) === true) {
        held.push(() => callback(null))
        return
      }
      callback(null)
    },
  })
  const server = net.createServer((socket) => aedes.handle(socket))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  const broker: TestBroker = {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    aedes,
    connects,
    holdPublish: null,
    releaseHeld() {
      for (const release of held.splice(0)) release()
    },
    refuse(meterId) {
      secrets.delete(meterId)
    },
    async close() {
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return broker
}

export const SUBSCRIBER_USERNAME = 'test-subscriber'

export interface Received {
  topic: string
  qos: number
  payload: Buffer
  text: string
}

export interface Subscriber {
  readonly messages: Received[]
  /** Resolves when `predicate` holds for the messages received so far (checked on each message). */
  until(predicate: (messages: Received[]) => boolean, timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

export async function startSubscriber(url: string, topic = 'meters/+/readings'): Promise<Subscriber> {
  const client: MqttClient = await mqtt.connectAsync(url, {
    clientId: `sub-${process.pid}-${Math.random().toString(36).slice(2)}`,
    username: SUBSCRIBER_USERNAME,
    protocolVersion: 4,
    reconnectPeriod: 0,
  })
  await client.subscribeAsync(topic, { qos: 1 })
  const messages: Received[] = []
  const waiters = new Set<() => void>()
  client.on('message', (t, payload, packet) => {
    messages.push({ topic: t, qos: packet.qos, payload, text: payload.toString('utf8') })
    for (const w of [...waiters]) w()
  })
  return {
    messages,
    until(predicate, timeoutMs = 20_000) {
      return new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (predicate(messages)) {
            waiters.delete(check)
            clearTimeout(timer)
            resolve()
          }
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`subscriber: condition not met within ${timeoutMs} ms (${messages.length} messages)`))
        }, timeoutMs)
        waiters.add(check)
        check()
      })
    },
    async close() {
      await client.endAsync(true)
    },
  }
}

/** A TCP proxy in front of the broker whose network can be cut and restored. */
export interface CuttableProxy {
  readonly url: string
  /** Destroys every open connection and refuses new ones until `restore()`. */
  cut(): void
  restore(): void
  close(): Promise<void>
}

export async function startProxy(targetPort: number): Promise<CuttableProxy> {
  let refusing = false
  const sockets = new Set<net.Socket>()
  const server = net.createServer((inbound) => {
    if (refusing) {
      inbound.destroy()
      return
    }
    const outbound = net.connect(targetPort, '127.0.0.1')
    sockets.add(inbound)
    sockets.add(outbound)
    const drop = (): void => {
      inbound.destroy()
      outbound.destroy()
      sockets.delete(inbound)
      sockets.delete(outbound)
    }
    inbound.on('error', drop).on('close', drop)
    outbound.on('error', drop).on('close', drop)
    inbound.pipe(outbound)
    outbound.pipe(inbound)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  return {
    url: `mqtt://127.0.0.1:${port}`,
    cut() {
      refusing = true
      for (const s of sockets) s.destroy()
      sockets.clear()
    },
    restore() {
      refusing = false
    },
    async close() {
      refusing = true
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** A clock the test moves by hand. */
export class ManualClock {
  private ms: number

  constructor(start: number | string) {
    this.ms = typeof start === 'number' ? start : Date.parse(start)
  }

  now(): number {
    return this.ms
  }

  advance(ms: number): void {
    this.ms += ms
  }

  set(ms: number | string): void {
    this.ms = typeof ms === 'number' ? ms : Date.parse(ms)
  }
}

/** Polls until `predicate` holds (for fleet stats, which have no events). */
export async function waitFor(predicate: () => boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`${what}: not met within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
}
