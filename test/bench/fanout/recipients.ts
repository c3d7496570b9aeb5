import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { TOPIC_WILDCARD_READINGS, egressTopic } from '../../../shared/topics.ts'
import { DISCONNECT_FRAME, type ReadingSeries } from '../ingest/mqtt-frames.ts'
import { reportFailures, type ChildMessage } from '../support/processes.ts'
import { PUBACK_BYTES, SubscriberReader, readingNumberOf, recipientConnectFrame, subscribeFrame, writePuback } from './subscriber-frames.ts'

/**
 * The recipients of the fan-out benchmark, in a process of their own: one raw-socket MQTT
 * connection per recipient party, subscribed to `readings/+` at QoS 1, acknowledging every
 * datum and noting which one it was (meter, reading number) and when it arrived, on the
 * machine-wide monotonic clock that the load generator stamps its publishes with.
 *
 * IPC: start → ready {granted}; count → count {delivered}; result → result {recipients};
 * close → closed, then exit.
 */

export interface RecipientsStart {
  type: 'start'
  port: number
  recipients: Array<{ id: string; apiKey: string }>
  /** Meter ids by index: a delivery is noted by the index of its meter. */
  meterIds: string[]
  series: ReadingSeries
  keepaliveSeconds: number
  connectTimeoutMs: number
}

export interface RecipientDeliveries {
  recipientId: string
  /** One entry per datum received, in arrival order. */
  meterIndex: Uint32Array
  reading: Uint32Array
  /** Arrival, in µs of the monotonic clock (process.hrtime). */
  receivedUs: Float64Array
  /** PUBLISHes with the DUP flag (redeliveries). */
  dupFlagged: number
  /** Datums whose meter or reading number could not be read. */
  unparsed: number
  closedEarly: boolean
}

const SUBSCRIBE_MESSAGE_ID = 1
const INITIAL_CAPACITY = 1 << 14

class Recipient {
  private socket: net.Socket | null = null
  private readonly reader: SubscriberReader
  private meterIndex = new Uint32Array(INITIAL_CAPACITY)
  private reading = new Uint32Array(INITIAL_CAPACITY)
  private receivedUs = new Float64Array(INITIAL_CAPACITY)
  count = 0
  private dupFlagged = 0
  private unparsed = 0
  private closing = false
  private closedEarly = false
  private pubacks = Buffer.allocUnsafe(PUBACK_BYTES * 1024)
  private pubackAt = 0
  private nowUs = 0
  private onConnack: ((code: number) => void) | null = null
  private onSuback: ((granted: number) => void) | null = null

  constructor(
    readonly id: string,
    private readonly apiKey: string,
    private readonly clientId: string,
    private readonly topics: ReadonlyMap<string, number>,
    private readonly series: ReadingSeries,
  ) {
    this.reader = new SubscriberReader({
      connack: (code) => this.onConnack?.(code),
      suback: (_id, granted) => this.onSuback?.(granted),
      publish: (qos, dup, messageId, topic, payload) => this.onPublish(qos, dup, messageId, topic, payload),
    })
  }

  /** Connects and subscribes; resolves to the granted QoS (0x80: refused). */
  async start(port: number, keepaliveSeconds: number, timeoutMs: number): Promise<number> {
    const socket = net.connect({ port, host: '127.0.0.1' })
    this.socket = socket
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', () => undefined)
    socket.on('close', () => {
      if (!this.closing) this.closedEarly = true
      this.onConnack?.(-1)
      this.onSuback?.(-1)
    })
    const within = <T>(what: string, p: Promise<T>): Promise<T> =>
      Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`recipient ${this.id}: no ${what} within ${timeoutMs} ms`)), timeoutMs).unref())])
    const connack = within('CONNACK', new Promise<number>((resolve) => (this.onConnack = resolve)))
    socket.write(recipientConnectFrame({ clientId: this.clientId, username: this.id, password: this.apiKey, keepaliveSeconds }))
    const code = await connack
    this.onConnack = null
    if (code !== 0) throw new Error(`recipient ${this.id}: CONNACK ${code}`)
    const suback = within('SUBACK', new Promise<number>((resolve) => (this.onSuback = resolve)))
    socket.write(subscribeFrame(TOPIC_WILDCARD_READINGS, SUBSCRIBE_MESSAGE_ID, 1))
    const granted = await suback
    this.onSuback = null
    return granted
  }

  private onData(chunk: Buffer): void {
    // Every datum of one chunk arrived at the same moment.
    this.nowUs = (performance.now() + clockOffsetMs) * 1000
    this.reader.push(chunk)
    if (this.pubackAt > 0) {
      this.socket!.write(Buffer.from(this.pubacks.subarray(0, this.pubackAt)))
      this.pubackAt = 0
    }
  }

  private onPublish(qos: number, dup: boolean, messageId: number, topic: Buffer, payload: Buffer): void {
    if (qos > 0) {
      if (this.pubackAt + PUBACK_BYTES > this.pubacks.length) {
        this.socket!.write(Buffer.from(this.pubacks.subarray(0, this.pubackAt)))
        this.pubackAt = 0
      }
      this.pubackAt = writePuback(this.pubacks, this.pubackAt, messageId)
    }
    if (dup) this.dupFlagged++
    const meter = this.topics.get(topic.toString('latin1'))
    const r = readingNumberOf(payload, this.series)
    if (meter === undefined || r < 0) {
      this.unparsed++
      return
    }
    if (this.count === this.reading.length) this.grow()
    this.meterIndex[this.count] = meter
    this.reading[this.count] = r
    this.receivedUs[this.count] = this.nowUs
    this.count++
  }

  private grow(): void {
    const n = this.reading.length * 2
    const m = new Uint32Array(n)
    m.set(this.meterIndex)
    this.meterIndex = m
    const r = new Uint32Array(n)
    r.set(this.reading)
    this.reading = r
    const t = new Float64Array(n)
    t.set(this.receivedUs)
    this.receivedUs = t
  }

  deliveries(): RecipientDeliveries {
    return {
      recipientId: this.id,
      meterIndex: this.meterIndex.slice(0, this.count),
      reading: this.reading.slice(0, this.count),
      receivedUs: this.receivedUs.slice(0, this.count),
      dupFlagged: this.dupFlagged,
      unparsed: this.unparsed,
      closedEarly: this.closedEarly,
    }
  }

  /** DISCONNECT, then wait for the broker to close. */
  disconnect(): Promise<void> {
    this.closing = true
    const socket = this.socket
    if (socket === null || socket.destroyed) return Promise.resolve()
    const closed = new Promise<void>((r) => socket.once('close', () => r()))
    socket.end(DISCONNECT_FRAME)
    return Promise.race([closed, new Promise<void>((r) => setTimeout(r, 5_000))]).finally(() => socket.destroy())
  }
}

/** performance.now() + this = the monotonic clock of process.hrtime, in ms. */
let clockOffsetMs = 0
let recipients: Recipient[] = []

reportFailures()
process.on('disconnect', () => process.exit(0))
process.on('message', (m: ChildMessage) => {
  void answer(m).catch((err: unknown) => {
    process.send!({ type: 'failed', error: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  })
})

async function answer(m: ChildMessage): Promise<void> {
  switch (m.type) {
    case 'start': {
      const start = m as unknown as RecipientsStart
      clockOffsetMs = Number(process.hrtime.bigint()) / 1e6 - performance.now()
      const topics = new Map(start.meterIds.map((id, i) => [egressTopic('readings', id), i]))
      recipients = start.recipients.map((r, i) => new Recipient(r.id, r.apiKey, `bench-recipient-${i + 1}`, topics, start.series))
      const granted = await Promise.all(recipients.map((r) => r.start(start.port, start.keepaliveSeconds, start.connectTimeoutMs)))
      process.send!({ type: 'ready', granted })
      return
    }
    case 'count':
      process.send!({ type: 'count', delivered: recipients.reduce((n, r) => n + r.count, 0) })
      return
    case 'result':
      process.send!({ type: 'result', recipients: recipients.map((r) => r.deliveries()) })
      return
    case 'close':
      await Promise.all(recipients.map((r) => r.disconnect()))
      process.send!({ type: 'closed' })
      process.disconnect()
      return
  }
}
