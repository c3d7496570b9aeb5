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
}

/** Free slots a connection waits for before it sends again, in throughput mode. */
export function refillMinOf(window: number): number {
  return Math.max(1, Math.floor(window / 4))
}
