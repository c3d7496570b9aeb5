import net from 'node:net'
import { PerformanceObserver, constants as perfConstants, monitorEventLoopDelay } from 'node:perf_hooks'
import v8 from 'node:v8'
import { sql } from 'kysely'
import { Aedes } from 'aedes'
import type { Histogram } from 'prom-client'
import { envToConfig } from '../../../shared/config.ts'
import { openDatabase, type DatabaseHandle } from '../../../shared/db/database.ts'
import { configureLogging } from '../../../shared/logger.ts'
import type { Metrics } from '../../../shared/metrics.ts'
import type { EgressMeta, EgressPolicy } from '../../../broker/egress.ts'
import { openReleaseView, type ReleaseView } from '../../../services/consent/release-view.ts'
import { publishesIngested, startTestBroker, type TestBroker } from '../../support/broker.ts'
import { reportFailures, type ChildMessage } from '../support/processes.ts'
import type { BrokerHeap, BrokerMark, MainThreadStalls } from './broker-queries.ts'

/**
 * The broker under test, alone in its process so that its CPU time and memory are its own.
 * `bare`: aedes that lets everyone in and acknowledges every publish at once, storing nothing
 * (the ceiling of the MQTT layer). `metershare`: our broker on PostgreSQL or PGlite, with
 * the egress policy asked for: `owner-only` (the default: recipients get nothing),
 * `release-view` (the release rule's in-memory view, as in production) or `allow-all`
 * (every owned datum to every recipient: egress without filtering).
 *
 * IPC: start → ready {port}; stats → stats {ingest figures}; count → count {rows};
 * mark → mark {monotonicUs, gcMs, sincePrevious}; gc → gc {heap}; policy → policy {decisions timed};
 * close → closed, then exit.
 */

export type BrokerStart =
  | { type: 'start'; kind: 'bare' }
  | {
      type: 'start'
      kind: 'metershare'
      databaseUrl: string | null
      pgliteDir: string | null
      timezone: string
      policy?: BrokerPolicy
      /** Time every release decision (answered to `policy`). */
      timePolicy?: boolean
    }

export type BrokerPolicy = 'owner-only' | 'release-view' | 'allow-all'

/** Filtering off: each datum goes to every recipient, and to the household that owns it. */
const allowAllPolicy: EgressPolicy = {
  releasedTo: (_recipientPartyId: string, datum: EgressMeta) => datum.householdId ?? null,
  householdOwns: (householdId: string, datum: EgressMeta) => datum.householdId === householdId,
  householdMayFollow: () => false,
}

export interface BrokerCounts {
  readings: number
  quarantine: number
  rollups: number
}

/** The recipients' release decisions (`releasedTo`) asked of the policy so far, and the time they took. */
export interface PolicyFigures {
  decisions: number
  released: number
  ms: number
}

export interface IngestFigures {
  commits: number
  meanBatchReadings: number
  meanCommitMs: number
  commitFailures: number
  /** Meters' readings publishes handed to ingest, by path (metershare_ingest_publishes_total): read past aedes' parser, or through it. */
  publishes: { direct: number; aedes: number }
  /** metershare_ingest_commit_seconds so far: each group commit's transaction. */
  commitBuckets: HistogramBuckets
  /** metershare_ingest_ack_seconds so far: from the broker's receipt of a publish to its PUBACK, the broker's side of the latency. */
  ackBuckets: HistogramBuckets
}

/** Cumulative counts of a histogram, bucket by bucket in ascending order of their upper bound (seconds). */
export type HistogramBuckets = Array<{ le: number; count: number }>

reportFailures()

/** The main thread's garbage-collection pauses so far, in ms (the ingest thread's are its own). */
let gcPausedMs = 0
/** Sampling interval of the event-loop delay histogram, in ms: Node's default, cheap enough to leave on. */
const LOOP_DELAY_RESOLUTION_MS = 10
const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS })
loopDelay.enable()
/** GC pauses since the last mark, by kind. */
const noPauses = () => ({ scavenges: 0, scavengeMaxMs: 0, markCompacts: 0, markCompactMaxMs: 0 })
let pauses = noPauses()
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gcPausedMs += e.duration
    const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind
    if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) {
      pauses.scavenges++
      pauses.scavengeMaxMs = Math.max(pauses.scavengeMaxMs, e.duration)
    } else if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) {
      pauses.markCompacts++
      pauses.markCompactMaxMs = Math.max(pauses.markCompactMaxMs, e.duration)
    }
  }
}).observe({ entryTypes: ['gc'] })

/** What held the main thread up since the last call, which starts the next span. */
function stallsSinceLastMark(): MainThreadStalls {
  // The histogram records each interval between the timer's runs (ns): beyond the resolution, the loop was late.
  const lateMs = (ns: number): number => Math.max(0, ns / 1e6 - LOOP_DELAY_RESOLUTION_MS)
  const stalls = { loopDelayP99Ms: lateMs(loopDelay.percentile(99)), loopDelayMaxMs: lateMs(loopDelay.max), ...pauses }
  loopDelay.reset()
  pauses = noPauses()
  return stalls
}

let server: net.Server | null = null
let bare: Aedes | null = null
let broker: TestBroker | null = null
let handle: DatabaseHandle | null = null
let view: ReleaseView | null = null
const policyFigures: PolicyFigures = { decisions: 0, released: 0, ms: 0 }
let metrics: Metrics | null = null
let closing = false

// The bench that started us is gone: nobody will ask us to close.
process.on('disconnect', () => {
  if (!closing) process.exit(1)
})

process.on('message', (m: ChildMessage) => {
  void answer(m).catch((err: unknown) => {
    process.send!({ type: 'failed', error: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  })
})

async function answer(m: ChildMessage): Promise<void> {
  switch (m.type) {
    case 'start':
      return start(m as unknown as BrokerStart)
    case 'count':
      process.send!({ type: 'count', ...(await count()) })
      return
    case 'stats':
      process.send!({ type: 'stats', ...(await ingestFigures()) })
      return
    case 'policy':
      process.send!({ type: 'policy', ...policyFigures })
      return
    case 'mark':
      // The monotonic clock of CPU profile samples, to cut the profile to the measured window,
      // the GC pauses so far, whose difference over the window is its share spent collecting,
      // and what held the main thread up since the previous mark (at the window's end: the window).
      process.send!({
        type: 'mark',
        monotonicUs: Number(process.hrtime.bigint() / 1000n),
        gcMs: gcPausedMs,
        sincePrevious: stallsSinceLastMark(),
      } satisfies BrokerMark & { type: 'mark' })
      return
    case 'gc':
      collectGarbage()
      process.send!({ type: 'gc', ...heapFigures() } satisfies BrokerHeap & { type: 'gc' })
      return
    case 'close':
      closing = true
      await close()
      process.send!({ type: 'closed' })
      process.disconnect()
      // Anything left holding the event loop must not keep the process (nor its CPU profile) from ending.
      setTimeout(() => process.exit(0), 1_000).unref()
      return
  }
}

async function start(m: BrokerStart): Promise<void> {
  if (m.kind === 'bare') {
    const aedes = await Aedes.createBroker({ heartbeatInterval: 60_000 })
    aedes.authenticate = (_client, _username, _password, done) => done(null, true)
    aedes.authorizePublish = (_client, _packet, callback) => callback(null)
    bare = aedes
    server = net.createServer((socket) => aedes.handle(socket))
  } else {
    configureLogging({ level: 'silent' })
    // The database settings of a default configuration (PGlite with fsync, the default pool).
    const defaults = envToConfig({})
    handle = await openDatabase({
      databaseUrl: m.databaseUrl,
      pgliteDir: m.pgliteDir,
      pgliteFsync: defaults.db.pgliteFsync,
      poolSize: defaults.db.poolSize,
      applicationName: 'metershare-bench',
    })
    // The broker as the tests start it (the access-log recorder), with the policy asked for.
    const policy = m.policy ?? 'owner-only'
    if (policy === 'release-view') view = await openReleaseView(handle, { timeZone: m.timezone })
    const chosen = view !== null ? view : policy === 'allow-all' ? allowAllPolicy : null
    broker = await startTestBroker(handle, {
      timezone: m.timezone,
      ...(chosen !== null ? { policy: m.timePolicy === true ? timed(chosen) : chosen } : {}),
    })
    metrics = broker.metrics
  }
  const port = broker !== null ? broker.port : await listen(server!)
  collectGarbage()
  process.send!({ type: 'ready', port })
}

/** The policy, with the time of each release decision added up (performance.now() costs well under a microsecond). */
function timed(policy: EgressPolicy): EgressPolicy {
  return {
    releasedTo(recipientPartyId, datum, nowMs) {
      const t0 = performance.now()
      const owner = policy.releasedTo(recipientPartyId, datum, nowMs)
      policyFigures.ms += performance.now() - t0
      policyFigures.decisions++
      if (owner !== null) policyFigures.released++
      return owner
    },
    householdOwns: (householdId, datum, nowMs) => policy.householdOwns(householdId, datum, nowMs),
    householdMayFollow: (householdId, meterId, nowMs) => policy.householdMayFollow(householdId, meterId, nowMs),
  }
}

function listen(s: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => resolve((s.address() as net.AddressInfo).port))
  })
}

async function count(): Promise<BrokerCounts> {
  if (handle === null) return { readings: 0, quarantine: 0, rollups: 0 }
  const r = await sql<{ readings: bigint; quarantine: bigint; rollups: bigint }>`
    SELECT (SELECT count(*) FROM readings) AS readings,
      (SELECT count(*) FROM quarantine) AS quarantine,
      (SELECT coalesce(sum(readings_count), 0)::int8 FROM daily_rollups) AS rollups`.execute(handle.db)
  const row = r.rows[0]!
  return { readings: Number(row.readings), quarantine: Number(row.quarantine), rollups: Number(row.rollups) }
}

async function ingestFigures(): Promise<IngestFigures> {
  if (metrics === null) return { commits: 0, meanBatchReadings: 0, meanCommitMs: 0, commitFailures: 0, publishes: { direct: 0, aedes: 0 }, commitBuckets: [], ackBuckets: [] }
  const batch = await sumCount(metrics.ingestBatchReadings)
  const commit = await sumCount(metrics.ingestCommitSeconds)
  const failures = (await metrics.ingestCommitFailures.get()).values[0]?.value ?? 0
  return {
    commits: commit.count,
    meanBatchReadings: batch.count === 0 ? 0 : batch.sum / batch.count,
    meanCommitMs: commit.count === 0 ? 0 : (commit.sum * 1000) / commit.count,
    commitFailures: failures,
    publishes: await publishesIngested({ metrics }),
    commitBuckets: await cumulativeBuckets(metrics.ingestCommitSeconds),
    ackBuckets: await cumulativeBuckets(metrics.ingestAckSeconds),
  }
}

/** A histogram's cumulative bucket counts so far, by upper bound in seconds (the last one +Inf). */
async function cumulativeBuckets(h: Histogram): Promise<HistogramBuckets> {
  const values = (await h.get()).values.filter((v) => v.metricName?.endsWith('_bucket'))
  return values.map((v) => ({ le: v.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(v.labels.le), count: v.value }))
}

async function sumCount(h: Histogram): Promise<{ sum: number; count: number }> {
  const values = (await h.get()).values
  const of = (suffix: string): number => values.find((v) => v.metricName?.endsWith(suffix))?.value ?? 0
  return { sum: of('_sum'), count: of('_count') }
}

function heapFigures(): BrokerHeap {
  const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')
  return { heapUsedBytes: process.memoryUsage().heapUsed, rssBytes: process.memoryUsage.rss(), youngGenerationBytes: young?.physical_space_size ?? 0 }
}

function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc !== undefined) {
    gc()
    gc()
  }
}

async function close(): Promise<void> {
  if (broker !== null) await broker.close()
  await view?.close()
  if (bare !== null) {
    const b = bare
    await new Promise<void>((r) => b.close(() => r()))
  }
  if (server !== null) {
    // aedes.close() has cut every client, so the server closes at once.
    const s = server
    await new Promise<void>((r) => s.close(() => r()))
  }
  await handle?.close()
}
