import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { sql } from 'kysely'
import type { DatabaseHandle } from '../../../shared/db/database.ts'
import { openReleaseView, type ReleaseView } from '../../../services/consent/release-view.ts'
import type { DatumRef } from '../../../services/consent/release-rule.ts'
import { VIEW_OCCUPIED_SINCE, viewId, type ViewWorld } from './view-world.ts'

/**
 * The release view measured in this process: heap held once built (heap used after a full
 * garbage collection, before and after, the median of several samples), how long it takes
 * to build, how long a full reload (every RELEASE_VIEW_REFRESH_INTERVAL_MS in the broker)
 * holds the event loop, and how many `releasedTo` decisions it makes per second.
 */

export interface ViewFigures {
  consents: number
  households: number
  heapBeforeBytes: number
  heapAfterBytes: number
  rssBeforeBytes: number
  rssAfterBytes: number
  /** Opening the view (listen, load, index), each build. */
  buildMs: number[]
  reloadMs: number
  /** The longest the event loop was held during the reload. */
  reloadStallMs: number
  lookupsPerRound: number
  /** Decisions per second, each round. */
  lookupsPerSecond: number[]
  /** Share of the lookups that released the datum. */
  releasedShare: number
  activeConsents: number
}

const HEAP_SAMPLES = 5
const LOOKUP_ROUNDS = 3
const DISTINCT_DATUMS_MAX = 1 << 18
/** Load-curve timestamps of the lookups: the last two years before now, on quarter hours. */
const LOOKUP_SPAN_MS = 2 * 365 * 86_400_000
const QUARTER_HOUR_MS = 15 * 60_000

export async function measureView(
  handle: DatabaseHandle,
  world: ViewWorld,
  options: { timeZone: string; builds: number; lookups: number; gc: () => void; now: () => number },
): Promise<ViewFigures> {
  // The pool's connections and the driver's code are warm before the first sample.
  await sql`SELECT count(*) FROM consents`.execute(handle.db)
  const before = heapSample(options.gc)
  const buildMs: number[] = []
  let view: ReleaseView | null = null
  try {
    for (let b = 0; b < options.builds; b++) {
      if (view !== null) {
        await view.close()
        view = null
        options.gc()
      }
      const t0 = performance.now()
      view = await openReleaseView(handle, { timeZone: options.timeZone, refreshIntervalMs: 3_600_000 })
      buildMs.push(performance.now() - t0)
    }
    const after = heapSample(options.gc)

    const delay = monitorEventLoopDelay({ resolution: 1 })
    delay.enable()
    const r0 = performance.now()
    await view!.refresh()
    const reloadMs = performance.now() - r0
    delay.disable()

    const datums = lookupDatums(world, Math.min(options.lookups, DISTINCT_DATUMS_MAX), options.now())
    const lookupsPerSecond: number[] = []
    let released = 0
    for (let round = 0; round < LOOKUP_ROUNDS; round++) {
      const nowMs = options.now()
      let hits = 0
      const t0 = performance.now()
      for (let i = 0; i < options.lookups; i++) {
        const d = datums[i % datums.length]!
        if (view!.releasedTo(d.recipientId, d.datum, nowMs) !== null) hits++
      }
      lookupsPerSecond.push((options.lookups * 1000) / (performance.now() - t0))
      released = hits
    }
    return {
      consents: world.consents,
      households: world.households,
      heapBeforeBytes: before.heapUsedBytes,
      heapAfterBytes: after.heapUsedBytes,
      rssBeforeBytes: before.rssBytes,
      rssAfterBytes: after.rssBytes,
      buildMs,
      reloadMs,
      reloadStallMs: delay.max / 1e6,
      lookupsPerRound: options.lookups,
      lookupsPerSecond,
      releasedShare: options.lookups === 0 ? 0 : released / options.lookups,
      activeConsents: view!.activeConsentsCount(),
    }
  } finally {
    await view?.close()
  }
}

function heapSample(gc: () => void): { heapUsedBytes: number; rssBytes: number } {
  const heap: number[] = []
  const rss: number[] = []
  for (let i = 0; i < HEAP_SAMPLES; i++) {
    gc()
    gc()
    heap.push(process.memoryUsage().heapUsed)
    rss.push(process.memoryUsage.rss())
  }
  return { heapUsedBytes: median(heap), rssBytes: median(rss) }
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/**
 * Datums as the broker asks about them (a load-curve timestamp and the household it was
 * attributed to), each for one of the recipients: random meters, recipients and quarter hours,
 * from a fixed seed so that every run asks the same questions.
 */
function lookupDatums(world: ViewWorld, count: number, nowMs: number): Array<{ recipientId: string; datum: DatumRef }> {
  let seed = 0x9e3779b9
  const next = (): number => {
    // xorshift32: reproducible and cheap.
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return (seed >>> 0) / 0x1_0000_0000
  }
  const latest = Math.floor(nowMs / QUARTER_HOUR_MS) * QUARTER_HOUR_MS
  const earliest = Math.max(VIEW_OCCUPIED_SINCE.getTime(), latest - LOOKUP_SPAN_MS)
  const steps = Math.max(1, Math.floor((latest - earliest) / QUARTER_HOUR_MS))
  return Array.from({ length: count }, () => {
    const h = 1 + Math.floor(next() * world.households)
    const recipientId = world.recipientIds[Math.floor(next() * world.recipientIds.length)]!
    const ts = earliest + Math.floor(next() * steps) * QUARTER_HOUR_MS
    return { recipientId, datum: { meterId: viewId('mtr', h), granularity: 'load_curve', ts, householdId: viewId('hh', h) } }
  })
}
