import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { IngestQueue } from '../../broker/ingest-queue.ts'
import type { CommitResult } from '../../services/metering/ingest-service.ts'
import type { CandidateDatum, ValidatedMessage } from '../../services/metering/ingest-validation.ts'
import { DEFAULT_INGEST_LIMITS } from '../../shared/config.ts'
import { createMetrics } from '../../shared/metrics.ts'

/**
 * The queue's pacing, with a committer the test holds: which groups are handed over, and when.
 * (The queue meets the real database in the broker tests; here only its decisions are watched.)
 */

const WAIT_MS = 40

function message(meterId: string, readings: number): ValidatedMessage {
  const datums = Array.from({ length: readings }, (_, i) => ({ tsMs: i, values: {} }) as unknown as CandidateDatum)
  return { meterId, receivedAtMs: 0, payload: Buffer.alloc(0), datums, rejects: [] }
}

function harness(limits: { flushReadingsMax: number; pipelineReadingsMin: number }) {
  const groups: Array<{ meters: string[]; startedAt: number; finish: () => void }> = []
  const queue = new IngestQueue({
    limits: { ...DEFAULT_INGEST_LIMITS, flushIntervalMs: WAIT_MS, commitsInFlightMax: 2, ...limits },
    commit: (messages) =>
      new Promise<CommitResult>((resolve) => {
        groups.push({
          meters: messages.map((m) => m.meterId),
          startedAt: performance.now(),
          finish: () => resolve({ outcomes: messages.map(() => ({ stored: [], quarantined: [], duplicates: 0 })), touched: [] }),
        })
      }),
    onCommitted: () => undefined,
    metrics: createMetrics(),
    log: pino({ level: 'silent' }),
  })
  return { queue, groups }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const turn = () => new Promise((r) => setImmediate(r))

describe('ingest queue pacing', () => {
  it('starts a group once its oldest message has waited flushIntervalMs, gathering what comes meanwhile', async () => {
    const { queue, groups } = harness({ flushReadingsMax: 100, pipelineReadingsMin: 50 })
    const submittedAt = performance.now()
    const answered = [queue.submit('a', message('a', 1))]
    await turn()
    expect(groups).toHaveLength(0)
    answered.push(queue.submit('b', message('b', 1)))
    await sleep(WAIT_MS * 3)
    expect(groups.map((g) => g.meters)).toEqual([['a', 'b']])
    expect(groups[0]!.startedAt - submittedAt).toBeGreaterThanOrEqual(WAIT_MS - 1)
    groups[0]!.finish()
    await Promise.all(answered)
  })

  it('starts a full group at once', async () => {
    const { queue, groups } = harness({ flushReadingsMax: 10, pipelineReadingsMin: 50 })
    const answered = queue.submit('a', message('a', 10))
    await turn()
    expect(groups.map((g) => g.meters)).toEqual([['a']])
    groups[0]!.finish()
    await answered
  })

  it('hands a second group over while one commits only when pipelineReadingsMin readings wait', async () => {
    const { queue, groups } = harness({ flushReadingsMax: 100, pipelineReadingsMin: 5 })
    const answered = [queue.submit('a', message('a', 100))]
    await turn()
    expect(groups).toHaveLength(1)

    // A small backlog waits for the commit in flight, however long it takes.
    answered.push(queue.submit('b', message('b', 2)), queue.submit('c', message('c', 2)))
    await sleep(WAIT_MS * 3)
    expect(groups).toHaveLength(1)

    // Enough readings waiting: the next group goes to the committer beside the one in flight.
    answered.push(queue.submit('d', message('d', 1)))
    await turn()
    expect(groups.map((g) => g.meters)).toEqual([['a'], ['b', 'c', 'd']])
    groups[0]!.finish()
    groups[1]!.finish()
    await Promise.all(answered)
  })

  it('after a commit, starts what waited during it at once (back to back under load)', async () => {
    const { queue, groups } = harness({ flushReadingsMax: 100, pipelineReadingsMin: 50 })
    const answered = [queue.submit('a', message('a', 100))]
    await turn()
    answered.push(queue.submit('b', message('b', 1)))
    await sleep(WAIT_MS * 2)
    expect(groups).toHaveLength(1)
    groups[0]!.finish()
    await answered[0]
    // No timer has had its turn yet: the group started on the commit's end, not after a wait of its own.
    await turn()
    expect(groups.map((g) => g.meters)).toEqual([['a'], ['b']])
    groups[1]!.finish()
    await Promise.all(answered)
  })
})
