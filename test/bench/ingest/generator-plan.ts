import type { ReadingSeries } from './mqtt-frames.ts'

/** What the bench asks of a load generator process, and what it answers (`load-generator.ts`). */

export interface GeneratorPlan {
  type: 'plan'
  port: number
  meters: Array<{ id: string; secret: string }>
  mode: 'throughput' | 'rate' | 'idle'
  windowPerConnection: number
  readingsPerMessage: number
  /** This generator's share of the total, in messages per second (rate mode). */
  ratePerSecond: number
  warmupMs: number
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
