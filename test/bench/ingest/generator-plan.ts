import type { ReadingSeries } from './mqtt-frames.ts'

/** What the bench asks of a load generator process, and what it answers (`load-generator.ts`). */

export interface GeneratorPlan {
  type: 'plan'
  port: number
  meters: Array<{ id: string; secret: string }>
  mode: 'throughput' | 'rate' | 'idle' | 'storm'
  windowPerConnection: number
  /** Storm mode: the publishes each meter sends once connected (its buffered readings). */
  messagesPerMeter?: number
  readingsPerMessage: number
  /** This generator's share of the total, in messages per second (rate mode). */
  ratePerSecond: number
  warmupMs: number
  /** The measured window; in storm mode, the longest the storm may last. */
  measureMs: number
  drainTimeoutMs: number
  series: ReadingSeries
  keepaliveSeconds: number
  connectConcurrency: number
  connectTimeoutMs: number
  /** Keep when each reading was written, for latencies measured elsewhere (fan-out to subscribers). */
  recordSendTimes?: boolean
}

export interface GeneratorConnected {
  type: 'connected'
  connected: number
  refused: number
  failed: number
  firstError: string | null
  ms: number
  /** Per connection answered, from opening its socket to its CONNACK, in µs. */
  connackUs: Uint32Array
}

export interface GeneratorResult {
  type: 'result'
  connections: number
  sentMessages: number
  ackedMessages: number
  windowAckedMessages: number
  windowMs: number
  /** PUBACK latency of every message acknowledged inside the window, in µs. */
  latenciesUs: Uint32Array
  cpuMs: number
  unackedAtEnd: number
  closedEarly: number
  unexpectedAcks: number
  outOfOrderAcks: number
  /** With `recordSendTimes`: per meter, when reading number r (1, 2, …) was written, at index r − 1. */
  sendTimes?: MeterSendTimes[]
  /** Storm mode: how its meters connected (`ms`: from `go` to the last CONNACK). */
  connect?: GeneratorConnected
}

export interface MeterSendTimes {
  meterId: string
  /** Microseconds of the system's monotonic clock (`process.hrtime`), the same in every process of the machine. */
  sentUs: Float64Array
}

/** Free slots a connection waits for before it sends again, in throughput mode. */
export function refillMinOf(window: number): number {
  return Math.max(1, Math.floor(window / 4))
}

/** What every load benchmark offers alike: the meters' zone and reading series, and the connection timing. */
export const LOAD = {
  timezone: 'Europe/Paris',
  series: { tsStartMs: Date.UTC(2020, 0, 1), tsStepMs: 15 * 60_000, indexStepWh: 25 } satisfies ReadingSeries,
  keepaliveSeconds: 600,
  connectConcurrency: 200,
  connectTimeoutMs: 60_000,
  drainTimeoutMs: 30_000,
} as const

/** The parts of a generator's plan that come from `LOAD` and the run's measuring window. */
export function loadTiming(window: { warmupSeconds: number; seconds: number }): Pick<
  GeneratorPlan,
  'warmupMs' | 'measureMs' | 'drainTimeoutMs' | 'series' | 'keepaliveSeconds' | 'connectConcurrency' | 'connectTimeoutMs'
> {
  return {
    warmupMs: window.warmupSeconds * 1000,
    measureMs: window.seconds * 1000,
    drainTimeoutMs: LOAD.drainTimeoutMs,
    series: LOAD.series,
    keepaliveSeconds: LOAD.keepaliveSeconds,
    connectConcurrency: LOAD.connectConcurrency,
    connectTimeoutMs: LOAD.connectTimeoutMs,
  }
}
