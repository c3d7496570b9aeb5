import type { NodeChild } from '../support/processes.ts'
import type { BrokerCounts, IngestFigures, PolicyFigures } from './broker-process.ts'

/** Longest wait for the broker child to answer a question, in ms (counting may wait for commits to finish). */
const ANSWER_MS_MAX = { count: 60_000, stats: 10_000, policy: 10_000, gc: 30_000, mark: 30_000 } as const

/** What a benchmark asks the broker in its child process (`broker-process.ts`) over IPC. */
export interface BrokerQueries {
  /** Readings stored and acknowledged, once the commits in hand are done. */
  counts(): Promise<BrokerCounts>
  ingest(): Promise<IngestFigures>
  policy(): Promise<PolicyFigures>
  /** Memory after a full garbage collection. */
  gc(): Promise<BrokerHeap>
  /** The broker's profile clock now (µs) and its main thread's GC pauses so far; null when its event loop did not answer in time (a long stall). */
  mark(): Promise<BrokerMark | null>
}

export interface BrokerHeap {
  heapUsedBytes: number
  rssBytes: number
  /** Physical memory of V8's young generation (its semi-spaces), which RSS includes. */
  youngGenerationBytes: number
}

export interface BrokerMark {
  /** The monotonic clock of the broker's CPU profile samples, in µs. */
  monotonicUs: number
  /** The main thread's garbage-collection pauses since the broker started, in ms. */
  gcMs: number
  /** The main thread since the previous mark (over the measured window, at its end). */
  sincePrevious: MainThreadStalls
}

/** What held the broker's main thread up between two marks: its event loop's delays and its GC pauses, in ms. */
export interface MainThreadStalls {
  /** How late the event loop's periodic timer ran (beyond its interval): 99th percentile and longest. */
  loopDelayP99Ms: number
  loopDelayMaxMs: number
  scavenges: number
  scavengeMaxMs: number
  /** Full collections (mark-compact); their incremental marking steps are not counted. */
  markCompacts: number
  markCompactMaxMs: number
}

export function brokerQueries(child: NodeChild): BrokerQueries {
  const ask = <T>(type: keyof typeof ANSWER_MS_MAX): Promise<T & { type: string }> => {
    child.send({ type })
    return child.next<T & { type: string }>(type, ANSWER_MS_MAX[type])
  }
  return {
    counts: () => ask<BrokerCounts>('count'),
    ingest: () => ask<IngestFigures>('stats'),
    policy: () => ask<PolicyFigures>('policy'),
    gc: () => ask<BrokerHeap>('gc'),
    mark: async () => {
      try {
        const { monotonicUs, gcMs, sincePrevious } = await ask<BrokerMark>('mark')
        return { monotonicUs, gcMs, sincePrevious }
      } catch {
        return null
      }
    },
  }
}
