import mqtt, { type MqttClient } from 'mqtt'
import { parseCredentials, type MeterCredentials } from './credentials.ts'
import {
  planFaults,
  SKEW_MS_DEFAULT,
  TOO_LARGE_PAYLOAD_BYTES_DEFAULT,
  validateFaultRates,
  validateTooLargePayloadBytes,
  zeroFaultCounts,
  type FaultContext,
  type FaultCounts,
  type FaultKind,
  type FaultRates,
} from './faults.ts'
import { addDays, assertTimeZone, DAY_MS, isDay, MINUTE_MS, parseInstant, QUARTER_HOUR_MS } from './local-time.ts'
import { MeterModel, resolveMeter } from './meter-model.ts'
import {
  BATCH_READINGS_MAX,
  CUMULATIVE_REGISTERS,
  encodeBatch,
  encodeReading,
  meterReadingsTopic,
  meterStatusTopic,
  PAYLOAD_BYTES_MAX,
  type RegisterValues,
  type SimReading,
} from './meter-payload.ts'
import { ModelCalendar } from './model-calendar.ts'
import { hash32, Rng } from './random.ts'

/**
 * A fleet of simulated meters, each with its own MQTT connection and credentials
 * (client id = username = meter id, password = secret, `clean: false`, QoS 1).
 *
 * Time: simulated time starts at `from` and runs `speed` times faster than the clock; it never
 * passes the clock's now, so no reading is stamped in the future (past now it runs in real
 * time). With `speed: 'max'` each meter sends its next reading as soon as its window of
 * unacknowledged messages has room. Readings are produced at the end of each interval.
 *
 * Offline: a meter that is not connected keeps measuring into a bounded buffer (the oldest
 * reading is dropped, and counted, when it is full) and catches up in batches when it
 * reconnects. Messages sent but not acknowledged when a connection drops are sent again by
 * MQTT.js after the reconnect.
 */

export interface Clock {
  /** Epoch ms. */
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }

export interface FleetOptions {
  /** mqtt://host:port, mqtts://…, ws://host:port/mqtt */
  mqttUrl: string
  meters: readonly MeterCredentials[]
  /** Start of simulated time: epoch ms, Date, `YYYY-MM-DD` (local midnight) or RFC 3339. */
  from: number | Date | string
  /** Days to simulate (local days when `from` is a day); absent: run until stopped. */
  days?: number
  /**
   * Per meter id, the end of the last interval it has already delivered (epoch ms), as a fleet
   * started again on the same data resumes: that meter goes on with the next interval (its
   * registers are a function of time, so its index carries on). Meters absent start at `from`.
   */
  resumeAfter?: ReadonlyMap<string, number>
  /**
   * Per meter id, the registers of that last delivered reading. Where a cumulative one differs from
   * the model's at that instant (stored by an earlier version of the model, or tampered with), the
   * meter's indexes carry on from the stored value: the difference is added to every later reading,
   * so they never go back (which would be quarantined as index_regression) nor jump.
   */
  resumeRegisters?: ReadonlyMap<string, RegisterValues>
  /**
   * Also send each meter's index at `from` (at the first end of an interval at or after it) before
   * its first interval's reading: the reading that opens the first day of a household moving in at
   * `from`, without which that day, and its month, have no opening index and are never released
   * as daily or monthly data. Meters resuming go on after their last interval as before.
   */
  openingReading?: boolean
  /** Simulated ms per real ms (8640: a 30-day month in 5 minutes), or 'max'. */
  speed: number | 'max'
  /** Seed of meters whose credentials carry none (default 1). */
  seed?: number
  faults?: FaultRates
  /** Zone of the load profiles' wall clock (default Europe/Paris). */
  timeZone?: string
  clock?: Clock
  /** How often the fleet looks at the clock, ms (default 100). */
  tickMs?: number
  /** Readings a meter keeps while it cannot publish (default: 31 days of quarter-hours). */
  offlineBufferReadingsMax?: number
  /** Readings per catch-up message (default and maximum 1,000). */
  batchReadingsMax?: number
  /** Messages a meter has published and not yet seen acknowledged (default 4). */
  inflightPerMeterMax?: number
  /** Meters connecting at the same time while the fleet starts (default 50). */
  connectConcurrencyMax?: number
  /** Wait before reconnecting after a lost connection, ms (default 1,000). */
  reconnectPeriodMs?: number
  /** CONNACK wait, ms (default 30,000). */
  connectTimeoutMs?: number
  keepaliveSeconds?: number
  /** How long `stop()` waits for outstanding acknowledgements, ms (default 10,000). */
  stopTimeoutMs?: number
  /** How far ahead a `skew` fault stamps its reading, ms (default one day). */
  skewMs?: number
  tooLargePayloadBytes?: number
  /** Subscribe each meter to its status topic (default true). */
  subscribeStatus?: boolean
  onFault?: (event: FaultEvent) => void
  onStatus?: (meterId: string, payload: string) => void
  onMeterError?: (meterId: string, error: Error) => void
}

export interface FaultEvent {
  kind: FaultKind
  meterId: string
  /** The genuine reading the fault was derived from. */
  reading: SimReading
  /** The message as published (for out-of-order: the message carrying the late reading). */
  payload: string
}

export interface FleetStats {
  meters: number
  connected: number
  /** Meters whose credentials the broker refused (CONNACK 4 or 5); they do not retry. */
  rejected: number
  /** Genuine readings produced by the meters' clocks. */
  generated: number
  /** Genuine readings handed to MQTT, and those acknowledged (PUBACK). */
  published: number
  acknowledged: number
  /** Genuine readings waiting to be published (offline buffers, catch-up). */
  buffered: number
  /** Readings dropped because a full offline buffer had to make room. */
  dropped: number
  /** Readings in messages that failed for good (the fleet was stopped before their PUBACK). */
  failed: number
  /** Readings a meter held when the broker refused it (CONNACK 4 or 5): never to be sent. */
  unsent: number
  /** Messages (single readings, batches, faulty messages) published, acknowledged, awaiting PUBACK. */
  messagesPublished: number
  messagesAcknowledged: number
  inflight: number
  batches: number
  connects: number
  disconnects: number
  statusReports: number
  /** Faulty messages published, by kind. */
  faults: FaultCounts
  /** Every meter has produced its readings up to this instant (epoch ms); null without meters. */
  simulatedMs: number | null
  fromMs: number
  /** null when the fleet runs until stopped. */
  endMs: number | null
  done: boolean
  stopped: boolean
}

export interface Fleet {
  stats(): FleetStats
  /** Resolves when every reading up to the end has been acknowledged (never without `days`). */
  readonly done: Promise<FleetStats>
  /** Stops producing, waits up to `timeoutMs` for outstanding PUBACKs, then closes. Idempotent. */
  stop(options?: { timeoutMs?: number }): Promise<FleetStats>
}

export const OFFLINE_BUFFER_READINGS_MAX_DEFAULT = 31 * 96
export const INFLIGHT_PER_METER_MAX_DEFAULT = 4
export const CONNECT_CONCURRENCY_MAX_DEFAULT = 50
export const TICK_MS_DEFAULT = 100
export const STOP_TIMEOUT_MS_DEFAULT = 10_000
export const RECONNECT_PERIOD_MS_DEFAULT = 1000
export const CONNECT_TIMEOUT_MS_DEFAULT = 30_000
export const KEEPALIVE_SECONDS_DEFAULT = 60
/** How long stop() waits for one client to close, ms. */
const CLIENT_END_WAIT_MS = 2000
/** Days a fleet may simulate in one run. */
export const DAYS_MAX = 3660

type Entry =
  | { type: 'reading'; reading: SimReading; outOfOrder: boolean }
  | { type: 'fault'; kind: FaultKind; reading: SimReading; payload: string }

function positiveInt(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = value ?? fallback
  if (!Number.isInteger(v) || v < 1 || v > max) throw new RangeError(`${name}: must be an integer from 1 to ${max}, got ${v}`)
  return v
}

function resolveRange(from: FleetOptions['from'], days: number | undefined, timeZone: string): { fromMs: number; endMs: number | null } {
  let fromMs: number
  if (typeof from === 'number') fromMs = from
  else if (from instanceof Date) fromMs = from.getTime()
  else {
    const parsed = parseInstant(from, timeZone)
    if (parsed === null) throw new RangeError(`from: '${from}' is neither YYYY-MM-DD nor RFC 3339 with an offset`)
    fromMs = parsed
  }
  if (!Number.isFinite(fromMs)) throw new RangeError('from: not a valid instant')
  if (days === undefined) return { fromMs, endMs: null }
  if (!Number.isInteger(days) || days < 1 || days > DAYS_MAX) throw new RangeError(`days: must be an integer from 1 to ${DAYS_MAX}, got ${days}`)
  if (typeof from === 'string' && isDay(from)) {
    const end = parseInstant(addDays(from, days), timeZone)!
    return { fromMs, endMs: end }
  }
  return { fromMs, endMs: fromMs + days * DAY_MS }
}

export function startFleet(options: FleetOptions): Fleet {
  const timeZone = options.timeZone ?? 'Europe/Paris'
  assertTimeZone(timeZone)
  const { fromMs, endMs } = resolveRange(options.from, options.days, timeZone)
  const speed = options.speed
  if (speed !== 'max' && !(typeof speed === 'number' && Number.isFinite(speed) && speed > 0)) {
    throw new RangeError(`speed: must be a positive number or 'max', got ${String(speed)}`)
  }
  const faults = options.faults ?? {}
  validateFaultRates(faults)
  const tooLargePayloadBytes = options.tooLargePayloadBytes ?? TOO_LARGE_PAYLOAD_BYTES_DEFAULT
  validateTooLargePayloadBytes(tooLargePayloadBytes)
  const skewMs = positiveInt('skewMs', options.skewMs, SKEW_MS_DEFAULT)
  const limits = {
    tickMs: positiveInt('tickMs', options.tickMs, TICK_MS_DEFAULT, 60_000),
    offlineBufferReadingsMax: positiveInt('offlineBufferReadingsMax', options.offlineBufferReadingsMax, OFFLINE_BUFFER_READINGS_MAX_DEFAULT, 10_000_000),
    batchReadingsMax: positiveInt('batchReadingsMax', options.batchReadingsMax, BATCH_READINGS_MAX, BATCH_READINGS_MAX),
    inflightPerMeterMax: positiveInt('inflightPerMeterMax', options.inflightPerMeterMax, INFLIGHT_PER_METER_MAX_DEFAULT, 65_535),
    connectConcurrencyMax: positiveInt('connectConcurrencyMax', options.connectConcurrencyMax, CONNECT_CONCURRENCY_MAX_DEFAULT, 100_000),
    reconnectPeriodMs: positiveInt('reconnectPeriodMs', options.reconnectPeriodMs, RECONNECT_PERIOD_MS_DEFAULT),
    connectTimeoutMs: positiveInt('connectTimeoutMs', options.connectTimeoutMs, CONNECT_TIMEOUT_MS_DEFAULT),
    keepaliveSeconds: positiveInt('keepaliveSeconds', options.keepaliveSeconds, KEEPALIVE_SECONDS_DEFAULT, 65_535),
    stopTimeoutMs: options.stopTimeoutMs ?? STOP_TIMEOUT_MS_DEFAULT,
  }
  if (!Number.isInteger(limits.stopTimeoutMs) || limits.stopTimeoutMs < 0) throw new RangeError(`stopTimeoutMs: must be a non-negative integer, got ${limits.stopTimeoutMs}`)
  const clock = options.clock ?? systemClock
  const fleetSeed = options.seed ?? 1
  const calendar = new ModelCalendar(timeZone)
  if (fromMs < calendar.epochMs) throw new RangeError(`from: must not be before the meter model's epoch (${new Date(calendar.epochMs).toISOString()})`)
  const startedRealMs = clock.now()

  const stats = {
    generated: 0,
    published: 0,
    acknowledged: 0,
    dropped: 0,
    failed: 0,
    messagesPublished: 0,
    messagesAcknowledged: 0,
    batches: 0,
    connects: 0,
    disconnects: 0,
    statusReports: 0,
    faults: zeroFaultCounts(),
  }
  let stopping = false
  let stopped = false
  let isDone = false

  /** The fleet's simulated now: never past the clock's now. */
  const simulatedNow = (): number => {
    const now = clock.now()
    if (speed === 'max') return now
    return Math.min(now, fromMs + (now - startedRealMs) * speed)
  }

  class MeterRunner {
    readonly credentials: MeterCredentials
    readonly model: MeterModel
    readonly intervalMs: number
    readonly faultRng: Rng
    client: MqttClient | null = null
    connected = false
    everConnected = false
    rejected = false
    /** End of the next interval to produce. */
    nextEndMs: number
    queue: Entry[] = []
    bufferedReadings = 0
    /** A reading (with its faulty companions) held back to be sent after the next one. */
    held: Entry[] | null = null
    inflight = 0
    /** Messages awaiting PUBACK, with the number of genuine readings each carries. */
    readonly pending = new Set<{ readings: number }>()
    /** Set on reconnect: everything buffered goes out in batches. */
    catchingUp = false
    /** Added to the model's cumulative registers, by code (resumeRegisters); empty when they agree. */
    readonly offsets: [string, number][] = []

    constructor(credentials: MeterCredentials) {
      this.credentials = credentials
      this.model = new MeterModel(resolveMeter(credentials, fleetSeed), calendar)
      this.intervalMs = credentials.intervalMinutes * MINUTE_MS
      this.faultRng = new Rng(hash32(this.model.meter.seed, 'faults'))
      this.nextEndMs = Math.ceil(fromMs / this.intervalMs) * this.intervalMs + (options.openingReading === true ? 0 : this.intervalMs)
      const after = options.resumeAfter?.get(credentials.meterId)
      if (after !== undefined) this.nextEndMs = Math.max(this.nextEndMs, Math.floor(after / this.intervalMs) * this.intervalMs + this.intervalMs)
      const stored = options.resumeRegisters?.get(credentials.meterId)
      // The model's registers are defined on quarter-hours; a stored instant off that grid (a skewed clock) is not compared.
      if (after !== undefined && stored !== undefined && after % QUARTER_HOUR_MS === 0) {
        const model = this.model.registersAt(after)
        for (const [code, value] of Object.entries(stored)) {
          const own = model[code]
          if (CUMULATIVE_REGISTERS.has(code) && own !== undefined && Number.isSafeInteger(value) && value !== own) this.offsets.push([code, value - own])
        }
      }
    }

    get finished(): boolean {
      return this.rejected || (endMs !== null && this.nextEndMs > endMs && this.held === null && this.queue.length === 0 && this.inflight === 0)
    }

    /** Produces what is due, then publishes what the window allows. */
    pump(): void {
      if (!stopping && !this.rejected) this.produce()
      if (this.connected) this.send()
    }

    private produce(): void {
      const limit = speed === 'max' ? clock.now() : simulatedNow()
      while (this.nextEndMs <= limit && (endMs === null || this.nextEndMs <= endMs)) {
        if (this.connected) {
          // Back-pressure: at 'max' fill the window of unacknowledged messages, otherwise a batch.
          if (speed === 'max' ? this.bufferedReadings + this.inflight >= limits.inflightPerMeterMax : this.bufferedReadings >= limits.batchReadingsMax) break
        } else if (speed === 'max' || !this.everConnected) {
          // Offline buffering is for meters that lost their connection, not for meters still starting.
          break
        }
        this.produceOne(this.nextEndMs)
        this.nextEndMs += this.intervalMs
      }
      if (endMs !== null && this.nextEndMs > endMs) this.releaseHeld()
    }

    private produceOne(end: number): void {
      const reading = this.model.readingAt(end)
      for (const [code, offset] of this.offsets) reading.values[code]! += offset
      stats.generated++
      const ctx: FaultContext = { nowMs: clock.now(), intervalMs: this.intervalMs, skewMs, tooLargePayloadBytes }
      const plan = planFaults(reading, faults, this.faultRng, ctx)
      const group: Entry[] = [
        { type: 'reading', reading, outOfOrder: false },
        ...plan.extras.map((e): Entry => ({ type: 'fault', kind: e.kind, reading, payload: e.payload })),
      ]
      if (this.held !== null) {
        const late = this.held
        this.held = null
        const first = late[0]!
        if (first.type === 'reading') first.outOfOrder = true
        this.enqueue(group)
        this.enqueue(late)
      } else if (plan.swap) {
        this.held = group
      } else {
        this.enqueue(group)
      }
    }

    releaseHeld(): void {
      if (this.held === null) return
      const late = this.held
      this.held = null
      this.enqueue(late)
    }

    private enqueue(entries: Entry[]): void {
      for (const e of entries) {
        this.queue.push(e)
        if (e.type === 'reading') this.bufferedReadings++
      }
      while (this.bufferedReadings > limits.offlineBufferReadingsMax) {
        const dropped = this.queue.shift()!
        if (dropped.type === 'reading') {
          this.bufferedReadings--
          stats.dropped++
        }
      }
    }

    private send(): void {
      const client = this.client
      if (client === null) return
      while (this.inflight < limits.inflightPerMeterMax && this.queue.length > 0) {
        const head = this.queue[0]!
        if (head.type === 'fault') {
          this.queue.shift()
          stats.faults[head.kind]++
          options.onFault?.({ kind: head.kind, meterId: this.credentials.meterId, reading: head.reading, payload: head.payload })
          this.publish(client, head.payload, 0)
          continue
        }
        let count = 0
        while (count < limits.batchReadingsMax && count < this.queue.length && this.queue[count]!.type === 'reading') count++
        // Batches are for catching up (after a reconnect, or more waiting than a whole window carries); otherwise one by one.
        if (!this.catchingUp && this.bufferedReadings <= limits.inflightPerMeterMax) count = 1
        let payload = ''
        for (;;) {
          const readings = this.queue.slice(0, count).map((e) => e.reading)
          payload = count === 1 ? encodeReading(readings[0]!) : encodeBatch(readings)
          if (count === 1 || Buffer.byteLength(payload) <= PAYLOAD_BYTES_MAX) break
          count = Math.ceil(count / 2)
        }
        const sent = this.queue.splice(0, count)
        this.bufferedReadings -= count
        for (const e of sent) {
          if (e.type === 'reading' && e.outOfOrder) {
            stats.faults['out-of-order']++
            options.onFault?.({ kind: 'out-of-order', meterId: this.credentials.meterId, reading: e.reading, payload })
          }
        }
        if (count > 1) stats.batches++
        stats.published += count
        this.publish(client, payload, count)
      }
      if (this.bufferedReadings === 0) this.catchingUp = false
    }

    private publish(client: MqttClient, payload: string, readings: number): void {
      const message = { readings }
      this.pending.add(message)
      this.inflight++
      stats.messagesPublished++
      client.publish(meterReadingsTopic(this.credentials.meterId), payload, { qos: 1 }, (err) => {
        // After stop() has written a message off, its late callback changes nothing.
        if (!this.pending.delete(message)) return
        this.inflight--
        if (err) {
          stats.failed += readings
        } else {
          stats.messagesAcknowledged++
          stats.acknowledged += readings
        }
        this.pump()
        checkDone()
        checkDrained()
      })
    }
  }

  // The same checks as a credentials file (valid ids, intervals, no meter twice), before any connection.
  const runners = parseCredentials(options.meters).map((c) => new MeterRunner(c))

  let connecting = 0
  let nextToConnect = 0
  const connectMore = (): void => {
    while (!stopping && connecting < limits.connectConcurrencyMax && nextToConnect < runners.length) {
      connect(runners[nextToConnect++]!)
    }
  }

  const connect = (runner: MeterRunner): void => {
    const { meterId, secret } = runner.credentials
    connecting++
    let firstAttemptOver = false
    const firstAttemptDone = (): void => {
      if (firstAttemptOver) return
      firstAttemptOver = true
      connecting--
      connectMore()
    }
    const client = mqtt.connect(options.mqttUrl, {
      clientId: meterId,
      username: meterId,
      password: secret,
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: limits.reconnectPeriodMs,
      connectTimeout: limits.connectTimeoutMs,
      keepalive: limits.keepaliveSeconds,
      resubscribe: true,
      // A broker that cannot take it now (CONNACK 3: its database or Redis away, its connection limit)
      // is tried again, as any real meter does; refused credentials (4, 5) end it below.
      reconnectOnConnackError: true,
    })
    runner.client = client
    let subscribed = false
    client.on('connect', () => {
      // TCP_NODELAY (MQTT.js leaves Nagle on): a meter's next publish, written as a PUBACK frees its slot,
      // would otherwise wait for the broker's TCP ACK of the one before, which it delays until its PUBACK.
      ;(client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true)
      if (runner.everConnected && runner.bufferedReadings > 0) runner.catchingUp = true
      runner.connected = true
      runner.everConnected = true
      stats.connects++
      firstAttemptDone()
      if (options.subscribeStatus !== false && !subscribed) {
        subscribed = true
        client.subscribe(meterStatusTopic(meterId), { qos: 1 }, () => {})
      }
      runner.pump()
    })
    client.on('close', () => {
      if (runner.connected && !stopping) stats.disconnects++
      runner.connected = false
      firstAttemptDone()
    })
    client.on('message', (topic, payload) => {
      if (topic === meterStatusTopic(meterId)) {
        stats.statusReports++
        options.onStatus?.(meterId, payload.toString('utf8'))
      }
    })
    client.on('error', (err) => {
      const code = (err as { code?: unknown }).code
      if (code === 4 || code === 5) {
        runner.rejected = true
        client.end(true)
        checkDone()
      }
      options.onMeterError?.(meterId, err)
    })
  }

  let resolveDone!: (s: FleetStats) => void
  const done = new Promise<FleetStats>((resolve) => {
    resolveDone = resolve
  })

  const snapshot = (): FleetStats => {
    let connected = 0
    let rejected = 0
    let buffered = 0
    let inflight = 0
    let unsent = 0
    let simulated: number | null = null
    for (const r of runners) {
      if (r.connected) connected++
      if (r.rejected) {
        rejected++
        // Found by verifying: they were in no count of the summary.
        unsent += r.bufferedReadings
        continue
      }
      buffered += r.bufferedReadings
      inflight += r.inflight
      const upTo = Math.max(fromMs, r.nextEndMs - r.intervalMs)
      simulated = simulated === null ? upTo : Math.min(simulated, upTo)
    }
    const simulatedMs = simulated === null || endMs === null ? simulated : Math.min(simulated, endMs)
    return {
      meters: runners.length,
      connected,
      rejected,
      ...stats,
      faults: { ...stats.faults },
      buffered,
      unsent,
      inflight,
      simulatedMs,
      fromMs,
      endMs,
      done: isDone,
      stopped,
    }
  }

  function checkDone(): void {
    if (isDone || endMs === null) return
    for (const r of runners) if (!r.finished) return
    isDone = true
    resolveDone(snapshot())
  }

  let drainWaiter: (() => void) | null = null
  function checkDrained(): void {
    if (drainWaiter === null) return
    for (const r of runners) {
      if (r.inflight > 0) return
      if (r.connected && r.queue.length > 0) return
    }
    const w = drainWaiter
    drainWaiter = null
    w()
  }

  let timer: NodeJS.Timeout | null = null
  const tick = (): void => {
    timer = null
    if (stopping) return
    for (const r of runners) r.pump()
    checkDone()
    timer = setTimeout(tick, limits.tickMs)
  }

  connectMore()
  timer = setTimeout(tick, 0)
  if (runners.length === 0 && endMs !== null) checkDone()

  let stopPromise: Promise<FleetStats> | null = null
  const stop = (stopOptions: { timeoutMs?: number } = {}): Promise<FleetStats> => {
    stopPromise ??= (async () => {
      stopping = true
      if (timer !== null) clearTimeout(timer)
      timer = null
      for (const r of runners) {
        r.releaseHeld()
        r.pump()
      }
      const timeoutMs = stopOptions.timeoutMs ?? limits.stopTimeoutMs
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          drainWaiter = null
          resolve()
        }, timeoutMs)
        drainWaiter = () => {
          clearTimeout(t)
          resolve()
        }
        checkDrained()
      })
      await Promise.all(
        runners.map(
          (r) =>
            new Promise<void>((resolve) => {
              if (r.client === null) return resolve()
              // A client whose stream is already gone may never call back.
              const t = setTimeout(resolve, CLIENT_END_WAIT_MS)
              r.client.end(true, {}, () => {
                clearTimeout(t)
                resolve()
              })
            }),
        ),
      )
      for (const r of runners) {
        r.connected = false
        for (const message of r.pending) stats.failed += message.readings
        r.pending.clear()
        r.inflight = 0
      }
      stopped = true
      return snapshot()
    })()
    return stopPromise
  }

  return { stats: snapshot, done, stop }
}
