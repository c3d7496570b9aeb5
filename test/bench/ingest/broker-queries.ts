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
        const { monotonicUs, gcMs } = await ask<BrokerMark>('mark')
        return { monotonicUs, gcMs }
      } catch {
        return null
      }
    },
  }
}
