import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { reportFailures, type ChildMessage } from '../support/processes.ts'
import {
  DISCONNECT_FRAME,
  FrameReader,
  PACKET_TYPE,
  connectFrame,
  publishTemplate,
  writePublish,
  type PublishTemplate,
} from './mqtt-frames.ts'
import { refillMinOf, type GeneratorConnected, type GeneratorPlan, type GeneratorResult, type MeterSendTimes } from './generator-plan.ts'

/**
 * The load generator: simulated meters on plain sockets, each with its CONNECT and PUBLISH
 * frames encoded once (mqtt-packet) and patched per message, a fixed window of QoS 1
 * publishes in flight per connection, PUBACKs read by a minimal parser and timed per
 * message id. Modes: `throughput` (as fast as acknowledged), `rate` (a fixed total rate,
 * spread over the connections), `idle` (connect and wait), `storm` (every meter connects at
 * `go`, all at once, and sends `messagesPerMeter` publishes from its CONNACK on, as a district's
 * meters reconnecting after an outage flush what they buffered; its connections are made then,
 * not at `plan`). With `recordSendTimes`, the time
 * each reading was written is kept and returned (on the machine-wide monotonic clock).
 *
 * IPC: plan → progress…, connected; go → window-start, window-end, result; close → closed, then exit.
 */

const MESSAGE_ID_MAX = 65_535
/**
 * Connections leave from several loopback addresses: past about half of the ephemeral port
 * range towards one address and port, the kernel's search for a free source port makes each
 * connect() slower and slower (20,000 connections from 127.0.0.1 alone took minutes).
 */
const SOURCE_ADDRESSES = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 1}`)
const PROGRESS_INTERVAL_MS = 5_000

class Connection {
  readonly socket: net.Socket
  private readonly reader: FrameReader
  readingsSent = 0
  private nextMessageId = 1
  private readonly ids: Uint16Array
  private readonly sentAt: Float64Array
  private head = 0
  inflight = 0
  acked = 0
  closing = false
  onConnack: ((returnCode: number) => void) | null = null
  /** performance.now() of each reading written, when the plan asks for send times. */
  sentAtByReading: Float64Array | null = null
  /** Publishes it may still send (storm mode); unbounded otherwise. */
  budget = Number.POSITIVE_INFINITY

  constructor(
    readonly gen: Generator,
    readonly template: PublishTemplate | null,
    readonly connectBytes: Buffer,
    window: number,
    sourceAddress: string,
  ) {
    this.ids = new Uint16Array(window)
    this.sentAt = new Float64Array(window)
    this.reader = new FrameReader((type, head) => this.onPacket(type, head))
    this.socket = net.connect({ port: gen.plan.port, host: '127.0.0.1', localAddress: sourceAddress })
    this.socket.setNoDelay(true)
    this.socket.on('connect', () => this.socket.write(connectBytes))
    this.socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk)
      this.gen.afterData(this)
    })
    this.socket.on('error', (err) => this.gen.noteError(err))
    this.socket.on('close', () => {
      if (this.onConnack !== null) this.onConnack(-1)
      if (!this.closing) this.gen.closedEarly(this)
    })
  }

  get capacity(): number {
    return Math.min(this.ids.length - this.inflight, this.budget)
  }

  /** Writes `n` publishes in one buffer. */
  send(n: number, now: number): void {
    const t = this.template!
    const out = Buffer.allocUnsafe(n * t.frame.length)
    const perMessage = t.tsOffsets.length
    let at = 0
    for (let i = 0; i < n; i++) {
      const id = this.nextMessageId
      this.nextMessageId = id === MESSAGE_ID_MAX ? 1 : id + 1
      at = writePublish(out, at, t, id, this.gen.plan.series, this.readingsSent + 1)
      if (this.sentAtByReading !== null) this.recordSent(perMessage, now)
      this.readingsSent += perMessage
      const slot = (this.head + this.inflight) % this.ids.length
      this.ids[slot] = id
      this.sentAt[slot] = now
      this.inflight++
    }
    this.budget -= n
    this.socket.write(out)
    this.gen.sentMessages += n
  }

  private recordSent(readings: number, now: number): void {
    let times = this.sentAtByReading!
    if (this.readingsSent + readings > times.length) {
      const grown = new Float64Array(Math.max(times.length * 2, this.readingsSent + readings))
      grown.set(times)
      this.sentAtByReading = times = grown
    }
    times.fill(now, this.readingsSent, this.readingsSent + readings)
  }

  private onPacket(type: number, head: number): void {
    if (type === PACKET_TYPE.puback) return this.onPuback(head)
    if (type === PACKET_TYPE.connack && this.onConnack !== null) {
      const done = this.onConnack
      this.onConnack = null
      done(head & 0xff)
    }
  }

  private onPuback(id: number): void {
    const size = this.ids.length
    let k = 0
    while (k < this.inflight && this.ids[(this.head + k) % size] !== id) k++
    if (k === this.inflight) {
      this.gen.unexpectedAcks++
      return
    }
    const slot = (this.head + k) % size
    if (k > 0) this.gen.outOfOrderAcks++
    this.gen.recordAck(performance.now() - this.sentAt[slot]!)
    this.acked++
    // Acknowledged out of order: mark the slot; the head moves past marked slots.
    this.sentAt[slot] = -1
    while (this.inflight > 0 && this.sentAt[this.head]! < 0) {
      this.head = (this.head + 1) % size
      this.inflight--
    }
  }
}

class Generator {
  readonly connections: Connection[] = []
  /** The connection of each meter of the plan, by its index there (absent when it did not connect). */
  private readonly byMeter: Array<Connection | undefined> = []
  sentMessages = 0
  unexpectedAcks = 0
  outOfOrderAcks = 0
  private acked = 0
  private windowAcked = 0
  private measuring = false
  private sending = false
  private closedEarlyCount = 0
  private lostInflight = 0
  private latencies = new Uint32Array(1 << 16)
  private latencyCount = 0
  private errors = 0
  private firstError: string | null = null
  private drainWaiter: (() => void) | null = null
  private rateTimer: NodeJS.Timeout | null = null
  /** performance.now() of the last PUBACK read. */
  private lastAckAt = 0

  private readonly refillMin: number

  constructor(readonly plan: GeneratorPlan) {
    this.refillMin = refillMinOf(plan.windowPerConnection)
  }

  noteError(err: Error): void {
    this.errors++
    this.firstError ??= err.message
  }

  closedEarly(c: Connection): void {
    this.closedEarlyCount++
    this.lostInflight += c.inflight
    c.inflight = 0
    this.checkDrained()
  }

  recordAck(latencyMs: number): void {
    this.acked++
    this.lastAckAt = performance.now()
    if (!this.measuring) return
    this.windowAcked++
    if (this.latencyCount === this.latencies.length) {
      const grown = new Uint32Array(this.latencies.length * 2)
      grown.set(this.latencies)
      this.latencies = grown
    }
    this.latencies[this.latencyCount++] = Math.round(latencyMs * 1000)
  }

  afterData(c: Connection): void {
    if (!this.sending) return this.checkDrained()
    // Refilling a few slots at a time rather than one per PUBACK spares the generator a write per message.
    if (this.plan.mode === 'rate' || this.plan.mode === 'idle' || c.capacity === 0) return
    if (c.capacity < this.refillMin && c.budget > c.capacity) return
    // Refill once per turn of the event loop: PUBACKs read in several chunks leave in one write.
    this.refill.add(c)
    if (this.refill.size === 1) setImmediate(this.flushRefill)
  }

  private readonly refill = new Set<Connection>()
  private readonly flushRefill = (): void => {
    const now = performance.now()
    for (const c of this.refill) if (this.sending && c.capacity > 0 && !c.closing) c.send(c.capacity, now)
    this.refill.clear()
  }

  /**
   * Connects every meter of the plan, `connectConcurrency` at a time; with `sendOnConnack` (storm
   * mode) each sends its window the moment it is accepted.
   */
  async connectAll(sendOnConnack = false): Promise<GeneratorConnected> {
    const started = performance.now()
    const { meters, connectConcurrency, connectTimeoutMs, keepaliveSeconds, mode, readingsPerMessage, windowPerConnection } = this.plan
    let next = 0
    let connected = 0
    let refused = 0
    let failed = 0
    const connackUs: number[] = []
    const one = async (): Promise<void> => {
      while (next < meters.length) {
        const index = next++
        const meter = meters[index]!
        const template = mode === 'idle' ? null : publishTemplate(meter.id, readingsPerMessage)
        const source = SOURCE_ADDRESSES[index % SOURCE_ADDRESSES.length]!
        const c = new Connection(this, template, connectFrame(meter, keepaliveSeconds), windowPerConnection, source)
        if (this.plan.recordSendTimes === true) c.sentAtByReading = new Float64Array(64)
        const opened = performance.now()
        const rc = await new Promise<number>((resolve) => {
          const timer = setTimeout(() => resolve(-1), connectTimeoutMs)
          c.onConnack = (code) => {
            clearTimeout(timer)
            resolve(code)
          }
        })
        if (rc >= 0) connackUs.push(Math.round((performance.now() - opened) * 1000))
        if (rc === 0) {
          connected++
          this.connections.push(c)
          this.byMeter[index] = c
          if (sendOnConnack) {
            c.budget = this.plan.messagesPerMeter ?? 0
            c.send(c.capacity, performance.now())
          }
        } else {
          if (rc > 0) refused++
          else failed++
          this.firstError ??= rc > 0 ? `CONNACK return code ${rc}` : 'no CONNACK'
          c.closing = true
          c.socket.destroy()
        }
      }
    }
    const progress = setInterval(() => process.send!({ type: 'progress', connected, total: meters.length }), PROGRESS_INTERVAL_MS)
    try {
      await Promise.all(Array.from({ length: Math.min(connectConcurrency, meters.length) }, one))
    } finally {
      clearInterval(progress)
    }
    return { type: 'connected', connected, refused, failed, firstError: this.firstError, ms: performance.now() - started, connackUs: Uint32Array.from(connackUs) }
  }

  async run(): Promise<GeneratorResult> {
    const { mode, warmupMs, measureMs, drainTimeoutMs, ratePerSecond } = this.plan
    this.sending = true
    const t0 = performance.now()
    if (mode === 'throughput') {
      for (const c of this.connections) c.send(c.capacity, t0)
    } else {
      // Every millisecond, what is due so far goes out, one message per connection in turn.
      let sent = 0
      let cursor = 0
      this.rateTimer = setInterval(() => {
        const now = performance.now()
        let due = Math.floor((ratePerSecond * (now - t0)) / 1000) - sent
        let idle = 0
        while (due > 0 && idle < this.connections.length) {
          const c = this.connections[cursor]!
          cursor = (cursor + 1) % this.connections.length
          if (c.capacity > 0 && !c.closing) {
            c.send(1, now)
            sent++
            due--
            idle = 0
          } else idle++
        }
      }, 1)
    }
    await sleep(warmupMs)
    process.send!({ type: 'window-start' })
    const cpu0 = process.cpuUsage()
    const w0 = performance.now()
    this.measuring = true
    await sleep(measureMs)
    this.measuring = false
    const windowMs = performance.now() - w0
    const cpu = process.cpuUsage(cpu0)
    process.send!({ type: 'window-end' })
    this.sending = false
    if (this.rateTimer !== null) clearInterval(this.rateTimer)
    await Promise.race([new Promise<void>((r) => ((this.drainWaiter = r), this.checkDrained())), sleep(drainTimeoutMs)])
    const unacked = this.connections.reduce((n, c) => n + c.inflight, 0)
    // performance.now() counts from this process's start on the monotonic clock that process.hrtime reads.
    const offsetMs = Number(process.hrtime.bigint()) / 1e6 - performance.now()
    const sendTimes: MeterSendTimes[] | undefined =
      this.plan.recordSendTimes === true
        ? this.plan.meters.flatMap((m, i) => {
            const c = this.byMeter[i]
            if (c === undefined || c.sentAtByReading === null) return []
            const sentUs = c.sentAtByReading.slice(0, c.readingsSent)
            for (let k = 0; k < sentUs.length; k++) sentUs[k] = (sentUs[k]! + offsetMs) * 1000
            return [{ meterId: m.id, sentUs }]
          })
        : undefined
    return this.result(windowMs, cpu, unacked, sendTimes !== undefined ? { sendTimes } : {})
  }

  /** What a run tells the bench: its window, its CPU over it, the publishes unacknowledged at its end. */
  private result(windowMs: number, cpu: NodeJS.CpuUsage, unacked: number, extra: Pick<GeneratorResult, 'sendTimes' | 'connect'>): GeneratorResult {
    return {
      type: 'result',
      connections: this.connections.length,
      sentMessages: this.sentMessages,
      ackedMessages: this.acked,
      windowAckedMessages: this.windowAcked,
      windowMs,
      latenciesUs: this.latencies.slice(0, this.latencyCount),
      cpuMs: (cpu.user + cpu.system) / 1000,
      unackedAtEnd: unacked + this.lostInflight,
      closedEarly: this.closedEarlyCount,
      unexpectedAcks: this.unexpectedAcks,
      outOfOrderAcks: this.outOfOrderAcks,
      ...extra,
    }
  }

  /**
   * Storm mode: every meter connects now, all at once, and sends its publishes from its CONNACK
   * on; over when every connected meter has had all of them acknowledged, or after `measureMs`.
   * The window is the whole storm: from `go` to the last PUBACK.
   */
  async storm(): Promise<GeneratorResult> {
    const { measureMs } = this.plan
    this.sending = true
    this.measuring = true
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    const connect = await this.connectAll(true)
    const deadline = t0 + measureMs
    while (performance.now() < deadline && this.connections.some((c) => !c.closing && !c.socket.destroyed && (c.budget > 0 || c.inflight > 0))) await sleep(20)
    this.measuring = false
    this.sending = false
    const cpu = process.cpuUsage(cpu0)
    const unacked = this.connections.reduce((n, c) => n + c.inflight + (Number.isFinite(c.budget) ? c.budget : 0), 0)
    return this.result((this.acked > 0 ? this.lastAckAt : performance.now()) - t0, cpu, unacked, { connect })
  }

  checkDrained(): void {
    if (this.drainWaiter === null || this.sending) return
    for (const c of this.connections) if (c.inflight > 0) return
    const w = this.drainWaiter
    this.drainWaiter = null
    w()
  }

  async closeAll(): Promise<void> {
    const closed = this.connections.map(
      (c) =>
        new Promise<void>((resolve) => {
          c.closing = true
          if (c.socket.destroyed) return resolve()
          c.socket.once('close', () => resolve())
          c.socket.end(DISCONNECT_FRAME)
        }),
    )
    await Promise.race([Promise.all(closed), sleep(10_000)])
    for (const c of this.connections) c.socket.destroy()
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

reportFailures()
// Asked to close, or the bench that started us is gone: either way we are done.
process.on('disconnect', () => process.exit(0))
let generator: Generator | null = null

process.on('message', (m: ChildMessage) => {
  void (async () => {
    switch (m.type) {
      case 'plan':
        generator = new Generator(m as unknown as GeneratorPlan)
        // A storm's meters connect at `go`, as part of what it measures.
        process.send!(generator.plan.mode === 'storm' ? ({ type: 'connected', connected: 0, refused: 0, failed: 0, firstError: null, ms: 0, connackUs: new Uint32Array(0) } satisfies GeneratorConnected) : await generator.connectAll())
        return
      case 'go':
        process.send!(generator!.plan.mode === 'storm' ? await generator!.storm() : await generator!.run())
        return
      case 'close':
        await generator?.closeAll()
        process.send!({ type: 'closed' })
        process.disconnect()
        return
    }
  })().catch((err: unknown) => {
    process.send!({ type: 'failed', error: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  })
})
