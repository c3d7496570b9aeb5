import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { openDatabase } from '../../shared/db/database.ts'
import { migrateToLatest } from '../../shared/db/migrator.ts'
import { meterReadingsTopic } from '../../shared/topics.ts'
import { hasCommand } from '../support/tools.ts'
import { benchMeterId, provisionWorld, type BenchMeter } from './ingest/bench-world.ts'
import type { BrokerCounts, BrokerStart, IngestFigures } from './ingest/broker-process.ts'
import { brokerQueries, type BrokerHeap, type BrokerMark } from './ingest/broker-queries.ts'
import { LOAD, loadTiming, refillMinOf, type GeneratorConnected, type GeneratorPlan, type GeneratorResult } from './ingest/generator-plan.ts'
import { BENCH_OPTIONS, BenchHarness, DEFAULT_BENCH_DATABASE_URL, cleanUpOnSignal, describePostgres, exitWithUsageIf, numberOption, phasesOption, profileFlags, profileLines, progress, redact } from './support/harness.ts'
import { commandVersion, describeMachine, packageVersion } from './support/machine.ts'
import { MOSQUITTO_BIN, MOSQUITTO_SUB_BIN, startCountingSubscriber, startMosquitto, type CountingSubscriber } from './support/mosquitto.ts'
import { NodeChild, cpuMsBetween, cpuMsByPid, descriptorsOf, mainThreadCpuMs, ofDatabase, sampleMachine, sampleProcess } from './support/processes.ts'
import { bucketPercentile, counted, fmtFixed, fmtInt, fmtMb, fmtMs, fmtPercent, formatTable, mark, percentile } from './support/report.ts'

/**
 * `npm run bench:ingest`: durable MQTT ingest against a bare aedes broker and Mosquitto, on
 * PostgreSQL and PGlite. Prints figures and the issue's targets with PASS/MISS beside them;
 * asserts nothing. Run it on a quiet machine: every figure here shares the CPU with whatever
 * else runs (the "other" column shows how much did).
 *
 *   npm run bench:ingest -- [--seconds 10] [--quick] [--only bare,postgres,…] [--profile]
 *   BENCH_DATABASE_URL=postgres://…/postgres   (default: the local server)
 */

const PHASES = ['bare', 'postgres', 'pglite', 'mosquitto', 'half', 'paced', 'catchup', 'storm', 'idle'] as const
type Phase = (typeof PHASES)[number]

/** The paced phase: the same meters at these total rates (msg/s), to show how PUBACK latency grows with load. */
const DEFAULT_PACED_RATES = [1_000, 3_000, 8_000]

const USAGE = `usage: npm run bench:ingest -- [options]
  --seconds S          measured seconds per phase (default 10; --quick: 2)
  --warmup S           seconds of load before measuring (default 2; --quick: 0.5)
  --meters N           simulated meters publishing (default 1000; --quick: 100)
  --idle N             idle connections for memory per connection, and meters of the storm (default 20000; --quick: 1000)
  --storm-readings N   readings each meter of the storm flushes, one a message (default 96: a day at 15 minutes; --quick: 8)
  --window N           QoS 1 publishes in flight per connection (default 16)
  --catchup-window N   in flight per connection during catch-up (default 2)
  --catchup-readings N readings per message during catch-up (default 100)
  --generators N       load generator processes (default 1)
  --paced-rates LIST   total msg/s of the paced phases on PostgreSQL (default ${DEFAULT_PACED_RATES.join(',')})
  --only LIST          phases among ${PHASES.join(',')} (default all)
  --profile            CPU-profile each metershare broker's main and ingest threads (node --cpu-prof), summarise their measured window, keep the files
  --quick              a short smoke run
environment: BENCH_DATABASE_URL (an admin URL of a PostgreSQL server; default ${DEFAULT_BENCH_DATABASE_URL})`

const FD_MARGIN = 64
/** Below this many PUBACKs in a window, its rate and percentiles are flagged as unreliable. */
const FEW_SAMPLES = 200
const PROGRESS_EVERY_MS = 15_000
const TARGET = {
  bareRatioMin: 0.5,
  p99AtHalfRateMsMax: 50,
  catchupReadingsPerSecondMin: 100_000,
  idleBytesPerConnectionMax: 20 * 1024,
}

interface Options {
  seconds: number
  warmupSeconds: number
  meters: number
  idle: number
  window: number
  catchupWindow: number
  catchupReadings: number
  stormReadings: number
  generators: number
  pacedRates: number[]
  only: Set<Phase>
  profile: boolean
  quick: boolean
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...BENCH_OPTIONS,
      idle: { type: 'string' },
      window: { type: 'string' },
      'catchup-window': { type: 'string' },
      'catchup-readings': { type: 'string' },
      'storm-readings': { type: 'string' },
      generators: { type: 'string' },
      'paced-rates': { type: 'string' },
    },
    strict: true,
  })
  exitWithUsageIf(values.help, USAGE)
  const quick = values.quick
  const num = numberOption
  const only = phasesOption(values.only, PHASES)
  return {
    seconds: num('seconds', values.seconds, quick ? 2 : 10, 0.1),
    warmupSeconds: num('warmup', values.warmup, quick ? 0.5 : 2, 0),
    meters: Math.floor(num('meters', values.meters, quick ? 100 : 1_000, 1)),
    idle: Math.floor(num('idle', values.idle, quick ? 1_000 : 20_000, 1)),
    window: Math.floor(num('window', values.window, 16, 1)),
    catchupWindow: Math.floor(num('catchup-window', values['catchup-window'], 2, 1)),
    catchupReadings: Math.floor(num('catchup-readings', values['catchup-readings'], 100, 1)),
    stormReadings: Math.floor(num('storm-readings', values['storm-readings'], quick ? 8 : 96, 1)),
    generators: Math.floor(num('generators', values.generators, 1, 1)),
    pacedRates: values['paced-rates'] === undefined ? DEFAULT_PACED_RATES : values['paced-rates'].split(',').map((r) => Math.floor(num('paced-rates', r, 0, 1))),
    only,
    profile: values.profile,
    quick,
  }
}

// ---------------------------------------------------------------------------------------------
// Servers under test

type Target = { kind: 'bare' } | { kind: 'metershare'; backend: 'postgres' | 'pglite' } | { kind: 'mosquitto'; limits: MosquittoLimits }

type MosquittoLimits = 'open' | 'default'
/**
 * `default`: Mosquitto as installed (at most 20 QoS 1 messages in flight and 1,000 queued per
 * client: past that it drops the subscriber's messages). `open`: no such limits, so that what
 * reaches the subscriber measures how fast Mosquitto forwards rather than how much it drops.
 */
const MOSQUITTO_LIMITS: Record<MosquittoLimits, { config: string[]; description: string }> = {
  default: { config: [], description: 'Mosquitto with its default limits (max_inflight_messages 20, max_queued_messages 1000 per client)' },
  open: { config: ['max_inflight_messages 0', 'max_queued_messages 0'], description: 'Mosquitto without per-client limits (max_inflight_messages 0, max_queued_messages 0)' },
}

interface ServerUnderTest {
  port: number
  /** The broker's process (memory and CPU are read from it). */
  pid: number
  /** Other processes of this server whose CPU counts (Mosquitto's subscriber). */
  helperPids: number[]
  /** PostgreSQL: the database of this phase (its backends' CPU counts). */
  databaseName?: string
  subscriberCount?: () => number
  counts?: () => Promise<BrokerCounts>
  ingest?: () => Promise<IngestFigures>
  gc?: () => Promise<BrokerHeap>
  /** The broker's profile clock and main-thread GC pauses; null when it did not answer in time. */
  mark?: () => Promise<BrokerMark | null>
  /** Where its threads' CPU profiles are written (--profile). */
  profileDir?: string
  close(): Promise<void>
}

class Bench extends BenchHarness {
  private readonly tmp = mkdtempSync(path.join(os.tmpdir(), 'metershare-bench-'))
  /** Stops of processes that are not Node children (Mosquitto, its subscriber). */
  private readonly stoppers = new Set<() => Promise<void>>()
  interrupted = false
  private pgTemplate: string | null = null
  private pgliteTemplate: string | null = null
  pgMeters: BenchMeter[] = []
  pgliteMeters: BenchMeter[] = []

  constructor(
    readonly opts: Options,
    adminUrl: string,
  ) {
    super(adminUrl, `metershare_bench_${process.pid}`, import.meta.dirname)
  }

  async preparePostgres(meters: number, occupied: number): Promise<void> {
    const name = await this.createDatabase('template')
    const handle = await openDatabase({ databaseUrl: this.databaseUrl(name), pgliteDir: null, pgliteFsync: false, poolSize: 10 })
    try {
      await migrateToLatest(handle.db)
      this.pgMeters = await provisionWorld(handle.db, { meters, occupied, concurrency: 10 })
    } finally {
      await handle.close()
    }
    this.pgTemplate = name
  }

  async preparePglite(meters: number): Promise<void> {
    const dir = path.join(this.tmp, 'pglite-template')
    const handle = await openDatabase({ databaseUrl: null, pgliteDir: dir, pgliteFsync: false, poolSize: 1 })
    try {
      await migrateToLatest(handle.db)
      this.pgliteMeters = await provisionWorld(handle.db, { meters, occupied: meters, concurrency: 1 })
    } finally {
      await handle.close()
    }
    this.pgliteTemplate = dir
  }

  /** A fresh server for one phase (its own database copy); `close` is idempotent. */
  async startServer(target: Target, slug: string): Promise<ServerUnderTest> {
    const server = await this.startServerOnce(target, slug)
    let closing: Promise<void> | null = null
    return { ...server, close: () => (closing ??= server.close()) }
  }

  private async startServerOnce(target: Target, slug: string): Promise<ServerUnderTest> {
    const phaseSlug = this.nextSlug(slug)
    if (target.kind === 'mosquitto') {
      const dir = path.join(this.tmp, `mosquitto-${phaseSlug}`)
      mkdirSync(dir)
      const mosquitto = await startMosquitto(dir, MOSQUITTO_LIMITS[target.limits].config)
      this.stoppers.add(mosquitto.stop)
      const close = async (): Promise<void> => {
        await sub?.stop()
        await mosquitto.stop()
        this.stoppers.delete(mosquitto.stop)
      }
      let sub: CountingSubscriber | undefined
      try {
        sub = await startCountingSubscriber(mosquitto.port, meterReadingsTopic('+'), meterReadingsTopic('bench-probe'))
        this.stoppers.add(sub.stop)
        return { port: mosquitto.port, pid: mosquitto.pid, helperPids: [sub.pid], subscriberCount: sub.count, close }
      } catch (err) {
        await close()
        throw err
      }
    }

    let start: BrokerStart
    let dropDatabase: string | null = null
    let removeDir: string | null = null
    if (target.kind === 'bare') start = { type: 'start', kind: 'bare' }
    else if (target.backend === 'postgres') {
      const name = await this.createDatabase(phaseSlug, this.pgTemplate!)
      dropDatabase = name
      // The earlier phases' dirty pages and WAL are written out now, not by a checkpoint during this one.
      await this.admin('CHECKPOINT')
      start = { type: 'start', kind: 'metershare', databaseUrl: this.databaseUrl(name), pgliteDir: null, timezone: LOAD.timezone }
    } else {
      const dir = path.join(this.tmp, `pglite-${phaseSlug}`)
      cpSync(this.pgliteTemplate!, dir, { recursive: true })
      removeDir = dir
      start = { type: 'start', kind: 'metershare', databaseUrl: null, pgliteDir: dir, timezone: LOAD.timezone }
    }

    const execArgv = ['--expose-gc']
    let profileDir: string | undefined
    if (this.opts.profile && target.kind === 'metershare') {
      // Kept after the run (the rest of the temporary folder is removed) for a closer look.
      const profile = profileFlags(phaseSlug)
      profileDir = profile.dir
      execArgv.push(...profile.execArgv)
    }
    const child = this.spawn(`broker (${slug})`, 'ingest/broker-process.ts', execArgv)
    const cleanup = async (): Promise<void> => {
      await child.stop()
      if (dropDatabase !== null) await this.dropDatabase(dropDatabase)
      if (removeDir !== null) rmSync(removeDir, { recursive: true, force: true })
    }
    try {
      child.send(start)
      const ready = await child.next<{ type: 'ready'; port: number }>('ready', 60_000)
      const queries = brokerQueries(child)
      const durable = target.kind === 'metershare' ? { counts: queries.counts, ingest: queries.ingest } : {}
      return {
        port: ready.port,
        pid: child.pid,
        helperPids: [],
        ...(dropDatabase !== null ? { databaseName: dropDatabase } : {}),
        ...durable,
        gc: queries.gc,
        mark: queries.mark,
        ...(profileDir !== undefined ? { profileDir } : {}),
        close: cleanup,
      }
    } catch (err) {
      await cleanup()
      throw err
    }
  }

  private cleaning: Promise<void> | null = null

  /** Stops every process, drops every database and removes the temporary folder; once. */
  cleanup(): Promise<void> {
    this.cleaning ??= this.cleanupOnce()
    return this.cleaning
  }

  private async cleanupOnce(): Promise<void> {
    await this.stopChildrenAndDropDatabases(() => Promise.all([...this.stoppers].map((stop) => stop())))
    rmSync(this.tmp, { recursive: true, force: true })
  }

  /** Spawns generators and splits `meters` between them; resolves once all have connected. */
  async connectGenerators(
    count: number,
    meters: BenchMeter[],
    plan: Omit<GeneratorPlan, 'type' | 'meters' | 'ratePerSecond'> & { ratePerSecondTotal: number },
  ): Promise<{ generators: NodeChild[]; connected: GeneratorConnected[] }> {
    const n = Math.max(1, Math.min(count, meters.length))
    const generators = Array.from({ length: n }, (_, i) => this.spawn(`generator ${i + 1}`, 'ingest/load-generator.ts'))
    try {
      generators.forEach((g, i) => {
        const share = meters.filter((_, k) => k % n === i)
        const { ratePerSecondTotal, ...rest } = plan
        g.send({ type: 'plan', ...rest, meters: share, ratePerSecond: (ratePerSecondTotal * share.length) / meters.length } satisfies GeneratorPlan)
      })
      const counts = generators.map(() => 0)
      let shownAt = performance.now()
      generators.forEach((g, i) =>
        g.on('progress', (m) => {
          counts[i] = m.connected as number
          if (performance.now() - shownAt < PROGRESS_EVERY_MS) return
          shownAt = performance.now()
          progress(`connecting: ${fmtInt(counts.reduce((a, b) => a + b, 0))} of ${fmtInt(meters.length)}`)
        }),
      )
      // Each generator gives up on a connection after connectTimeoutMs: this is only a safety net.
      const timeoutMs = LOAD.connectTimeoutMs * Math.ceil(meters.length / n / LOAD.connectConcurrency + 1)
      const connected = await Promise.all(generators.map((g) => g.next<GeneratorConnected>('connected', timeoutMs)))
      return { generators, connected }
    } catch (err) {
      await Promise.all(generators.map((g) => g.stop(5_000)))
      throw err
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Phases

interface LoadSpec {
  label: string
  target: Target
  slug: string
  meters: BenchMeter[]
  mode: 'throughput' | 'rate'
  readingsPerMessage: number
  window: number
  ratePerSecond: number
}

interface LoadFigures {
  spec: LoadSpec
  connections: number
  messagesPerSecond: number
  readingsPerSecond: number
  /** Mosquitto: what reached the subscriber, per second. */
  forwardedPerSecond: number | null
  p50Us: number
  p99Us: number
  maxUs: number
  brokerCores: number
  dbCores: number | null
  generatorCores: number
  helperCores: number
  machineCores: number
  rssBytes: number
  rssPeakBytes: number
  check: string
  notes: string[]
  profile: string[]
}

/**
 * What a message cost each part over the window, in µs of CPU (share of a core ÷ msg/s): the broker's
 * main thread (the sockets, MQTT, the queue), its other threads (Metershare's ingest thread, V8's
 * and libuv's helpers), the phase's PostgreSQL processes and the load generator.
 */
function cpuPerMessageNote(messagesPerSecond: number, mainCores: number, brokerCores: number, dbCores: number | null, generatorCores: number): string {
  const us = (cores: number): string => fmtFixed((cores * 1e6) / messagesPerSecond, 1)
  const total = brokerCores + (dbCores ?? 0) + generatorCores
  return (
    `CPU a message (µs): broker main thread ${us(mainCores)}, its other threads ${us(Math.max(0, brokerCores - mainCores))}` +
    `${dbCores === null ? '' : `, PostgreSQL ${us(dbCores)}`}, generator ${us(generatorCores)}; together ${us(total)}`
  )
}

/**
 * What the half-rate phase leaves for Metershare's own work on this machine: the cores that a broker
 * answering at once (bare aedes at the same rate), the generator and PostgreSQL's share of the durable
 * phase take between them, before any validation, group commit or ordering of ours runs. Near the
 * machine's cores, every hand-off waits for a CPU, whatever the broker does.
 */
function halfRateFloor(half: LoadFigures, bareHalf: LoadFigures): string {
  const machine = os.cpus().length
  const db = half.dbCores ?? 0
  const floor = bareHalf.brokerCores + half.generatorCores + db
  return (
    `  at half rate, before any of Metershare's own work (cpu, share of one core; the machine has ${machine * 100}%): ` +
      `bare aedes answering at once ${fmtPercent(bareHalf.brokerCores)} + the generator ${fmtPercent(half.generatorCores)} + PostgreSQL storing it ${fmtPercent(db)} ` +
      `= ${fmtPercent(floor)}, ${fmtPercent(floor / machine)} of the machine; bare aedes alone there: p99 ${fmtMs(bareHalf.p99Us)} ms`
  )
}

async function runLoad(bench: Bench, spec: LoadSpec): Promise<LoadFigures> {
  const o = bench.opts
  progress(`${spec.label}: starting`)
  const server = await bench.startServer(spec.target, spec.slug)
  let generators: NodeChild[] = []
  try {
    const c = await bench.connectGenerators(o.generators, spec.meters, {
      port: server.port,
      mode: spec.mode,
      windowPerConnection: spec.window,
      readingsPerMessage: spec.readingsPerMessage,
      ratePerSecondTotal: spec.ratePerSecond,
      ...loadTiming(o),
    })
    generators = c.generators
    const connections = c.connected.reduce((n, x) => n + x.connected, 0)
    const notes: string[] = []
    if (connections < spec.meters.length) {
      notes.push(`only ${connections} of ${spec.meters.length} meters connected (${c.connected.map((x) => x.firstError).find((e) => e !== null) ?? 'no error'})`)
    }
    if (connections === 0) throw new Error(`${spec.label}: no meter could connect`)
    progress(`${spec.label}: ${connections} meters connected in ${fmtInt(Math.max(...c.connected.map((x) => x.ms)))} ms, loading`)

    const pids = [server.pid, ...server.helperPids]
    const withPg = server.databaseName !== undefined
    const ours = ofDatabase(server.databaseName)
    for (const g of generators) g.send({ type: 'go' })
    const runTimeoutMs = (o.warmupSeconds + o.seconds) * 1000 + 60_000
    const sample = () => ({
      at: performance.now(),
      server: pids.map(sampleProcess),
      main: mainThreadCpuMs(server.pid),
      machine: sampleMachine(),
      pg: withPg ? cpuMsByPid('postgres', ours) : new Map<number, number>(),
      sub: server.subscriberCount?.() ?? 0,
    })
    const profiled = server.profileDir !== undefined && server.mark !== undefined
    await generators[0]!.next('window-start', runTimeoutMs)
    const s0 = sample()
    const from = (await server.mark?.()) ?? null
    const ingestFrom = (await server.ingest?.()) ?? null
    await generators[0]!.next('window-end', runTimeoutMs)
    const s1 = sample()
    const to = (await server.mark?.()) ?? null
    const ingestTo = (await server.ingest?.()) ?? null
    const results = await Promise.all(generators.map((g) => g.next<GeneratorResult>('result', LOAD.drainTimeoutMs + 60_000)))

    const wallMs = s1.at - s0.at
    const windowMs = results.reduce((n, r) => n + r.windowMs, 0) / results.length
    const windowAcked = results.reduce((n, r) => n + r.windowAckedMessages, 0)
    const acked = results.reduce((n, r) => n + r.ackedMessages, 0)
    const sent = results.reduce((n, r) => n + r.sentMessages, 0)
    const unacked = results.reduce((n, r) => n + r.unackedAtEnd, 0)
    const latencies = concat(results.map((r) => r.latenciesUs)).sort()
    const cpuOf = (i: number): number => ((s1.server[i]?.cpuMs ?? 0) - (s0.server[i]?.cpuMs ?? 0)) / wallMs
    const brokerCores = cpuOf(0)
    const helperCores = server.helperPids.reduce((n, _, i) => n + cpuOf(i + 1), 0)
    const generatorCores = results.reduce((n, r) => n + r.cpuMs / r.windowMs, 0)
    const messagesPerSecond = (windowAcked * 1000) / windowMs
    const closedEarly = results.reduce((n, r) => n + r.closedEarly, 0)
    const unexpected = results.reduce((n, r) => n + r.unexpectedAcks, 0)
    const outOfOrder = results.reduce((n, r) => n + r.outOfOrderAcks, 0)
    if (closedEarly > 0) notes.push(`${closedEarly} connections closed by the broker during the run`)
    if (unexpected > 0) notes.push(`${unexpected} PUBACKs for message ids not in flight`)
    if (outOfOrder > 0) notes.push(`${outOfOrder} PUBACKs out of publish order`)
    if (latencies.length < FEW_SAMPLES) {
      notes.push(`only ${latencies.length} PUBACKs inside the window: too few for these figures to mean much (raise --seconds)`)
    }
    if (spec.mode === 'rate') {
      notes.push(`target rate ${fmtInt(spec.ratePerSecond)} msg/s, achieved ${fmtInt(messagesPerSecond)} msg/s`)
    }

    if (from !== null && to !== null && to.monotonicUs > from.monotonicUs) {
      const w = to.sincePrevious
      notes.push(
        `main thread in garbage collection: ${fmtPercent((to.gcMs - from.gcMs) / ((to.monotonicUs - from.monotonicUs) / 1000))} of the window ` +
          `(${counted(w.scavenges, 'scavenge')}, longest ${fmtFixed(w.scavengeMaxMs, 1)} ms; ${counted(w.markCompacts, 'mark-compact')}, longest ${fmtFixed(w.markCompactMaxMs, 1)} ms)`,
      )
      notes.push(`main event loop held up: p99 ${fmtFixed(w.loopDelayP99Ms, 1)} ms, longest ${fmtFixed(w.loopDelayMaxMs, 1)} ms`)
    }

    const dbCores = withPg ? cpuMsBetween(s0.pg, s1.pg) / wallMs : null
    if (spec.target.kind !== 'mosquitto' && s0.main !== null && s1.main !== null && messagesPerSecond > 0) {
      notes.push(cpuPerMessageNote(messagesPerSecond, (s1.main - s0.main) / wallMs, brokerCores, dbCores, generatorCores))
    }

    let forwardedPerSecond: number | null = null
    let check = '–'
    if (server.subscriberCount !== undefined) {
      forwardedPerSecond = ((s1.sub - s0.sub) * 1000) / wallMs
      const delivered = await settledCount(server.subscriberCount)
      check = `subscriber got ${fmtInt(delivered)} of ${fmtInt(acked)} acknowledged`
      const limits = spec.target.kind === 'mosquitto' ? MOSQUITTO_LIMITS[spec.target.limits].description : ''
      notes.push(`${limits}, no persistence; one mosquitto_sub at QoS 1 on meters/+/readings; forwarded ${fmtInt(forwardedPerSecond)} msg/s to the subscriber while acknowledging ${fmtInt(messagesPerSecond)} msg/s`)
      if (delivered < acked) notes.push(`Mosquitto dropped ${fmtInt(acked - delivered)} messages for its subscriber; nothing is stored`)
    }
    if (server.counts !== undefined) {
      const counts = await server.counts()
      const figures = await server.ingest!()
      const rpm = spec.readingsPerMessage
      const exact = counts.readings === acked * rpm && unacked === 0
      const plausible = counts.readings >= acked * rpm && counts.readings <= sent * rpm
      const clean = counts.quarantine === 0 && counts.rollups === counts.readings
      check = exact && clean ? `stored ${fmtInt(counts.readings)} = acked ✓` : plausible && clean ? `stored ${fmtInt(counts.readings)} ≥ acked ${fmtInt(acked * rpm)} (${unacked} unacked) ✓` : `MISMATCH stored ${fmtInt(counts.readings)} vs acked ${fmtInt(acked * rpm)}`
      if (!clean) notes.push(`quarantine ${counts.quarantine}, rollup count ${counts.rollups} (expected 0 and ${counts.readings})`)
      notes.push(commitNote(figures))
      if (ingestFrom !== null && ingestTo !== null) {
        // The broker's own histograms over the window: what of the PUBACK latency the broker holds (receipt to PUBACK), the rest being the sockets and the generator.
        const bound = (buckets: 'ackBuckets' | 'commitBuckets', p: number): string => {
          const le = bucketPercentile(ingestFrom[buckets], ingestTo[buckets], p)
          return Number.isNaN(le) ? '–' : Number.isFinite(le) ? `≤ ${fmtInt(le * 1000)} ms` : 'beyond the last bucket'
        }
        notes.push(
          `broker's side over the window (metrics buckets): receipt to PUBACK p50 ${bound('ackBuckets', 50)}, p99 ${bound('ackBuckets', 99)}; ` +
            `group commit p50 ${bound('commitBuckets', 50)}, p99 ${bound('commitBuckets', 99)}`,
        )
      }
    } else if (unacked > 0) notes.push(`${unacked} publishes unacknowledged at the end`)

    const end = sampleProcess(server.pid)
    const figures: LoadFigures = {
      spec,
      connections,
      messagesPerSecond,
      readingsPerSecond: messagesPerSecond * spec.readingsPerMessage,
      forwardedPerSecond,
      p50Us: percentile(latencies, 50),
      p99Us: percentile(latencies, 99),
      maxUs: latencies.length === 0 ? Number.NaN : latencies[latencies.length - 1]!,
      brokerCores,
      dbCores,
      generatorCores,
      helperCores,
      machineCores: (s1.machine.busyMs - s0.machine.busyMs) / wallMs,
      rssBytes: s1.server[0]?.rssBytes ?? Number.NaN,
      rssPeakBytes: end?.rssPeakBytes ?? s1.server[0]?.rssPeakBytes ?? Number.NaN,
      check,
      notes,
      profile: [],
    }
    await Promise.all(generators.map((g) => g.stop()))
    generators = []
    await server.close()
    if (profiled) figures.profile = profileLines(server.profileDir!, from?.monotonicUs ?? null, to?.monotonicUs ?? null)
    if (profiled && (from === null || to === null)) notes.push('the broker did not answer in time to mark the window: its profile covers its whole life')
    progress(`${spec.label}: ${fmtInt(figures.readingsPerSecond)} readings/s, ${check}`)
    return figures
  } finally {
    await Promise.all(generators.map((g) => g.stop(5_000)))
    await server.close()
  }
}

interface IdleFigures {
  label: string
  requested: number
  connections: number
  limitedBy: string | null
  rssBeforeBytes: number
  rssAfterBytes: number
  heapBeforeBytes: number | null
  heapAfterBytes: number | null
  /** The V8 young generation's memory before and after (part of RSS, not of the heap in use). */
  youngBeforeBytes: number | null
  youngAfterBytes: number | null
  connectMs: number
  /** The broker's CPU time while the connections came in. */
  connectCpuMs: number
}

async function runIdle(bench: Bench, label: string, target: Target, slug: string, meters: BenchMeter[]): Promise<IdleFigures> {
  progress(`${label}: starting`)
  const server = await bench.startServer(target, slug)
  let generators: NodeChild[] = []
  try {
    const requested = bench.opts.idle
    const { n, generatorCount, limitedBy: roomLimit } = connectionRoom(server.pid, requested, meters.length)
    let limitedBy = roomLimit
    const plan = {
      port: server.port,
      mode: 'idle',
      windowPerConnection: 1,
      readingsPerMessage: 1,
      ratePerSecondTotal: 0,
      warmupMs: 0,
      measureMs: 0,
      drainTimeoutMs: 0,
      series: LOAD.series,
      keepaliveSeconds: LOAD.keepaliveSeconds,
      connectConcurrency: LOAD.connectConcurrency,
      connectTimeoutMs: LOAD.connectTimeoutMs,
    } as const
    // One connection first, kept: what a broker builds once, at its first connection, for good (mqtt-packet's
    // cache of 65,536 packet-identifier buffers, 6.3 MB, at its first write; compiled code) is then in the
    // "before" figure rather than spread over the connections (about 0.3 KB each over 20,000).
    const first = await bench.connectGenerators(1, meters.slice(0, 1), plan)
    generators = first.generators
    const before = server.gc !== undefined ? await server.gc() : null
    const s0 = sampleProcess(server.pid)!
    const c = await bench.connectGenerators(generatorCount, meters.slice(1, n), plan)
    generators = [...first.generators, ...c.generators]
    const connectCpuMs = sampleProcess(server.pid)!.cpuMs - s0.cpuMs
    const connections = c.connected.reduce((k, x) => k + x.connected, 0)
    if (connections < n - 1) limitedBy = `${n - 1 - connections} connections refused or failed (${c.connected.map((x) => x.firstError).find((e) => e !== null) ?? '?'})`
    await new Promise((r) => setTimeout(r, 1_000))
    const after = server.gc !== undefined ? await server.gc() : null
    const rssAfter = sampleProcess(server.pid)!.rssBytes
    const figures: IdleFigures = {
      label,
      requested,
      connections,
      limitedBy,
      rssBeforeBytes: s0.rssBytes,
      rssAfterBytes: rssAfter,
      connectCpuMs,
      heapBeforeBytes: before?.heapUsedBytes ?? null,
      heapAfterBytes: after?.heapUsedBytes ?? null,
      youngBeforeBytes: before?.youngGenerationBytes ?? null,
      youngAfterBytes: after?.youngGenerationBytes ?? null,
      connectMs: Math.max(...c.connected.map((x) => x.ms)),
    }
    progress(`${label}: ${fmtInt(connections)} connections, ${fmtInt((rssAfter - s0.rssBytes) / Math.max(1, connections))} bytes each`)
    return figures
  } finally {
    await Promise.all(generators.map((g) => g.stop(30_000)))
    await server.close()
  }
}

/**
 * How many of `requested` connections a phase can open to the broker `pid` (its open-files limit,
 * and the meters provisioned), what limited them if anything, and how many generator processes
 * hold them (each within this process's limit, which they inherit).
 */
function connectionRoom(pid: number, requested: number, provisioned: number): { n: number; generatorCount: number; limitedBy: string | null } {
  const brokerFds = descriptorsOf(pid)
  const brokerRoom = brokerFds.limit - brokerFds.open - FD_MARGIN
  const generatorRoom = descriptorsOf(process.pid).limit - 2 * FD_MARGIN
  let n = Math.min(requested, provisioned)
  let limitedBy: string | null = provisioned < requested ? `${provisioned} meters provisioned` : null
  if (n > brokerRoom) {
    n = brokerRoom
    limitedBy = `the broker's open-files limit of ${brokerFds.limit} (ulimit -n; raise the hard limit for the full count)`
  }
  return { n, generatorCount: Math.max(1, Math.ceil(n / generatorRoom)), limitedBy }
}

/** Connections a storm opens at once (each generator): about what the broker's listen backlog holds (MQTT_LISTEN_BACKLOG, 4,096). */
const STORM_CONNECT_CONCURRENCY = 2_000
/** The longest a storm may last, in ms, before what is left unacknowledged is reported. */
const STORM_MS_MAX = 600_000
/** Publishes each meter of a storm has in flight: MQTT.js replays its offline store one message at a time. */
const STORM_WINDOW = 1

interface StormFigures {
  meters: number
  limitedBy: string | null
  readingsPerMeter: number
  connected: number
  connectMs: number
  /** From opening a meter's socket to its CONNACK, in µs. */
  connackP50Us: number
  connackP99Us: number
  doneMs: number
  acked: number
  readingsPerSecond: number
  p50Us: number
  p99Us: number
  maxUs: number
  brokerCores: number
  dbCores: number
  generatorCores: number
  rssPeakBytes: number
  check: string
  notes: string[]
}

/**
 * A district's meters reconnecting at once after an outage, each flushing the readings it buffered
 * one message at a time (as MQTT.js replays its offline store), on PostgreSQL: how long until every
 * meter is connected, and until every reading is stored; the rate over the whole storm; PUBACK
 * latency; the broker's peak memory.
 */
async function runStorm(bench: Bench, meters: BenchMeter[]): Promise<StormFigures> {
  const o = bench.opts
  const label = 'catch-up storm, PostgreSQL'
  progress(`${label}: starting`)
  const server = await bench.startServer({ kind: 'metershare', backend: 'postgres' }, 'pg-storm')
  let generators: NodeChild[] = []
  try {
    const { n, generatorCount, limitedBy } = connectionRoom(server.pid, o.idle, meters.length)
    const c = await bench.connectGenerators(generatorCount, meters.slice(0, n), {
      port: server.port,
      mode: 'storm',
      windowPerConnection: STORM_WINDOW,
      readingsPerMessage: 1,
      messagesPerMeter: o.stormReadings,
      ratePerSecondTotal: 0,
      warmupMs: 0,
      measureMs: STORM_MS_MAX,
      drainTimeoutMs: 0,
      series: LOAD.series,
      keepaliveSeconds: LOAD.keepaliveSeconds,
      connectConcurrency: STORM_CONNECT_CONCURRENCY,
      connectTimeoutMs: LOAD.connectTimeoutMs,
    })
    generators = c.generators
    const ours = ofDatabase(server.databaseName)
    const s0 = { at: performance.now(), broker: sampleProcess(server.pid), pg: cpuMsByPid('postgres', ours) }
    progress(`${label}: ${fmtInt(n)} meters connecting at once, ${fmtInt(o.stormReadings)} readings each`)
    for (const g of generators) g.send({ type: 'go' })
    const results = await Promise.all(generators.map((g) => g.next<GeneratorResult>('result', STORM_MS_MAX + 60_000)))
    const s1 = { at: performance.now(), broker: sampleProcess(server.pid), pg: cpuMsByPid('postgres', ours) }
    const wallMs = s1.at - s0.at
    const connect = results.map((r) => r.connect!)
    const connected = connect.reduce((k, x) => k + x.connected, 0)
    const acked = results.reduce((k, r) => k + r.ackedMessages, 0)
    const unacked = results.reduce((k, r) => k + r.unackedAtEnd, 0)
    const doneMs = Math.max(...results.map((r) => r.windowMs))
    const latencies = concat(results.map((r) => r.latenciesUs)).sort()
    const connacks = concat(connect.map((x) => x.connackUs)).sort()
    const notes: string[] = []
    if (connected < n) notes.push(`${fmtInt(n - connected)} of ${fmtInt(n)} meters did not connect (${connect.map((x) => x.firstError).find((e) => e !== null) ?? 'no error'})`)
    const closedEarly = results.reduce((k, r) => k + r.closedEarly, 0)
    if (closedEarly > 0) notes.push(`${closedEarly} connections closed by the broker during the storm`)
    const outOfOrder = results.reduce((k, r) => k + r.outOfOrderAcks, 0)
    if (outOfOrder > 0) notes.push(`${outOfOrder} PUBACKs out of publish order`)
    const counts = await server.counts!()
    const figures = await server.ingest!()
    notes.push(commitNote(figures))
    const clean = counts.quarantine === 0 && counts.rollups === counts.readings
    const check =
      counts.readings === acked && unacked === 0 && clean
        ? `stored ${fmtInt(counts.readings)} = acked ✓`
        : `${counts.readings === acked && clean ? '' : 'MISMATCH '}stored ${fmtInt(counts.readings)}, acked ${fmtInt(acked)}, ${fmtInt(unacked)} unacknowledged when it ended`
    const end = sampleProcess(server.pid)
    const storm: StormFigures = {
      meters: n,
      limitedBy,
      readingsPerMeter: o.stormReadings,
      connected,
      connectMs: Math.max(...connect.map((x) => x.ms)),
      connackP50Us: percentile(connacks, 50),
      connackP99Us: percentile(connacks, 99),
      doneMs,
      acked,
      readingsPerSecond: (acked * 1000) / doneMs,
      p50Us: percentile(latencies, 50),
      p99Us: percentile(latencies, 99),
      maxUs: latencies.length === 0 ? Number.NaN : latencies[latencies.length - 1]!,
      brokerCores: ((s1.broker?.cpuMs ?? 0) - (s0.broker?.cpuMs ?? 0)) / wallMs,
      dbCores: cpuMsBetween(s0.pg, s1.pg) / wallMs,
      generatorCores: results.reduce((k, r) => k + r.cpuMs, 0) / wallMs,
      rssPeakBytes: end?.rssPeakBytes ?? Number.NaN,
      check,
      notes,
    }
    progress(`${label}: ${fmtInt(acked)} readings in ${fmtFixed(doneMs / 1000, 1)} s, ${check}`)
    return storm
  } finally {
    await Promise.all(generators.map((g) => g.stop(30_000)))
    await server.close()
  }
}

function stormTable(rows: StormFigures[]): string {
  return formatTable(
    [
      { title: 'meters', align: 'left' },
      { title: 'readings each' },
      { title: 'all connected s' },
      { title: 'CONNACK p50/p99 s' },
      { title: 'all stored s' },
      { title: 'readings/s' },
      { title: 'p50 ms' },
      { title: 'p99 ms' },
      { title: 'max ms' },
      { title: 'broker cpu' },
      { title: 'pg cpu' },
      { title: 'gen cpu' },
      { title: 'peak MB' },
      { title: 'check', align: 'left' },
    ],
    rows.map((r) => [
      `${fmtInt(r.connected)} of ${fmtInt(r.meters)}`,
      fmtInt(r.readingsPerMeter),
      fmtFixed(r.connectMs / 1000, 1),
      `${fmtFixed(r.connackP50Us / 1e6, 1)}/${fmtFixed(r.connackP99Us / 1e6, 1)}`,
      fmtFixed(r.doneMs / 1000, 1),
      fmtInt(r.readingsPerSecond),
      fmtMs(r.p50Us),
      fmtMs(r.p99Us),
      fmtMs(r.maxUs),
      fmtPercent(r.brokerCores),
      fmtPercent(r.dbCores),
      fmtPercent(r.generatorCores),
      fmtMb(r.rssPeakBytes),
      r.check,
    ]),
  )
}

/** The subscriber's count once it has stopped growing. */
async function settledCount(count: () => number): Promise<number> {
  const deadline = Date.now() + LOAD.drainTimeoutMs
  let last = -1
  while (Date.now() < deadline) {
    const now = count()
    if (now === last) return now
    last = now
    await new Promise((r) => setTimeout(r, 500))
  }
  return count()
}

function concat(parts: Uint32Array[]): Uint32Array {
  const out = new Uint32Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}




// ---------------------------------------------------------------------------------------------
// Output

function loadTable(rows: LoadFigures[], bare: LoadFigures | undefined): string {
  const pct = (cores: number | null): string => (cores === null ? '–' : fmtPercent(cores))
  return formatTable(
    [
      { title: 'phase', align: 'left' },
      { title: 'conns×window' },
      { title: 'msg/s' },
      { title: 'readings/s' },
      { title: '×bare' },
      { title: 'p50 ms' },
      { title: 'p99 ms' },
      { title: 'max ms' },
      { title: 'broker cpu' },
      { title: 'pg cpu' },
      { title: 'gen cpu' },
      { title: 'other cpu' },
      { title: 'RSS MB' },
      { title: 'peak MB' },
      { title: 'check', align: 'left' },
    ],
    rows.map((r) => {
      const durable = r.forwardedPerSecond ?? r.readingsPerSecond
      const ratio = bare !== undefined && r.spec.readingsPerMessage === 1 && r !== bare ? fmtFixed(durable / bare.readingsPerSecond, 2) : r === bare ? '1.00' : '–'
      const other = r.machineCores - r.brokerCores - (r.dbCores ?? 0) - r.generatorCores - r.helperCores
      return [
        r.spec.label,
        `${r.connections}×${r.spec.window}`,
        fmtInt(r.messagesPerSecond),
        fmtInt(durable),
        ratio,
        fmtMs(r.p50Us),
        fmtMs(r.p99Us),
        fmtMs(r.maxUs),
        pct(r.brokerCores + r.helperCores),
        pct(r.dbCores),
        pct(r.generatorCores),
        pct(Math.max(0, other)),
        fmtMb(r.rssBytes),
        fmtMb(r.rssPeakBytes),
        r.check,
      ]
    }),
  )
}

/** The group commits of a metershare phase, and how its meters' publishes reached ingest since the broker started. */
function commitNote(figures: IngestFigures): string {
  return (
    `group commits: ${fmtInt(figures.commits)}, mean ${fmtInt(figures.meanBatchReadings)} readings in ${fmtFixed(figures.meanCommitMs, 1)} ms` +
    (figures.commitFailures > 0 ? `, ${figures.commitFailures} failed and retried` : '') +
    `; publishes read past aedes' parser ${fmtInt(figures.publishes.direct)}, through it ${fmtInt(figures.publishes.aedes)}`
  )
}

function idleTable(rows: IdleFigures[]): string {
  return formatTable(
    [
      { title: 'broker', align: 'left' },
      { title: 'connections' },
      { title: 'connect s' },
      { title: 'broker cpu µs/connect' },
      { title: 'RSS before MB' },
      { title: 'RSS after MB' },
      { title: 'RSS/conn KB' },
      { title: 'heap/conn KB' },
      { title: 'young gen MB' },
      { title: 'note', align: 'left' },
    ],
    rows.map((r) => [
      r.label,
      fmtInt(r.connections),
      fmtFixed(r.connectMs / 1000, 1),
      fmtInt((r.connectCpuMs * 1000) / r.connections),
      fmtMb(r.rssBeforeBytes),
      fmtMb(r.rssAfterBytes),
      fmtFixed((r.rssAfterBytes - r.rssBeforeBytes) / r.connections / 1024, 1),
      r.heapBeforeBytes === null || r.heapAfterBytes === null ? '–' : fmtFixed((r.heapAfterBytes - r.heapBeforeBytes) / r.connections / 1024, 1),
      r.youngBeforeBytes === null || r.youngAfterBytes === null ? '–' : `${fmtMb(r.youngBeforeBytes)} → ${fmtMb(r.youngAfterBytes)}`,
      r.limitedBy === null ? '' : `fewer than ${fmtInt(r.requested)}: ${r.limitedBy}`,
    ]),
  )
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2))
  const adminUrl = process.env.BENCH_DATABASE_URL ?? DEFAULT_BENCH_DATABASE_URL
  const bench = new Bench(opts, adminUrl)
  cleanUpOnSignal(bench)

  const out = (line = ''): void => void process.stdout.write(line + '\n')
  out('# metershare ingest benchmark')
  out()
  for (const line of describeMachine()) out(line)

  let pgReason: string | null = null
  try {
    out(await describePostgres(bench))
  } catch (err) {
    pgReason = `no PostgreSQL at ${redact(adminUrl)}: ${(err as Error).message}`
    out(`PostgreSQL unavailable (${pgReason}): PostgreSQL phases skipped`)
  }
  out(`PGlite     ${packageVersion('@electric-sql/pglite')} (fsync on)`)
  out(`aedes      ${packageVersion('aedes')}`)
  const mosquittoReason = !existsSync(MOSQUITTO_BIN)
    ? `${MOSQUITTO_BIN} not found (apt-get install mosquitto)`
    : !hasCommand(MOSQUITTO_SUB_BIN)
      ? `${MOSQUITTO_SUB_BIN} not found (apt-get install mosquitto-clients)`
      : null
  out(`Mosquitto  ${mosquittoReason ?? commandVersion(MOSQUITTO_BIN, ['-h']) ?? 'unknown'}`)
  out()
  out(
    `run: ${opts.meters} meters, window ${opts.window} QoS 1 publishes in flight per connection, ${opts.seconds} s measured after ${opts.warmupSeconds} s warm-up per phase, ` +
      `${opts.generators} generator process(es) on raw sockets with pre-encoded frames (refilling ${refillMinOf(opts.window)} at a time), catch-up ${opts.catchupReadings} readings a message × window ${opts.catchupWindow}${opts.quick ? ' (--quick)' : ''}`,
  )
  out()

  const load: LoadFigures[] = []
  const idle: IdleFigures[] = []
  const storms: StormFigures[] = []
  const skipped: string[] = []
  const failed: string[] = []
  /** One phase failing (a crash, a timeout) is reported; the others still run. */
  const attempt = async <T>(label: string, list: T[], phase: () => Promise<T>): Promise<void> => {
    if (bench.interrupted) return
    try {
      list.push(await phase())
    } catch (err) {
      failed.push(`${label}: ${(err as Error).message}`)
      progress(`${label}: FAILED ${(err as Error).message}`)
    }
  }
  const want = (p: Phase): boolean => opts.only.has(p)
  const needPg = pgReason === null && (want('postgres') || want('half') || want('paced') || want('catchup') || want('storm') || want('idle'))
  try {
    if (needPg) {
      const total = want('idle') || want('storm') ? Math.max(opts.meters, opts.idle) : opts.meters
      progress(`provisioning ${fmtInt(total)} meters on PostgreSQL`)
      // A storm's meters are a district's: each occupied, its readings attributed.
      await bench.preparePostgres(total, want('storm') ? total : opts.meters)
    }
    if (want('pglite') || want('catchup')) {
      progress(`provisioning ${fmtInt(opts.meters)} meters on PGlite`)
      await bench.preparePglite(opts.meters)
    }
    const anyMeters = (n: number): BenchMeter[] => Array.from({ length: n }, (_, i) => ({ id: benchMeterId(i + 1), secret: 'bare' }))
    const spec = (label: string, target: Target, slug: string, meters: BenchMeter[], extra: Partial<LoadSpec> = {}): LoadSpec => ({
      label,
      target,
      slug,
      meters,
      mode: 'throughput',
      readingsPerMessage: 1,
      window: opts.window,
      ratePerSecond: 0,
      ...extra,
    })
    const pgMeters = bench.pgMeters.slice(0, opts.meters)

    const loadPhase = (ls: LoadSpec): Promise<void> => attempt(ls.label, load, () => runLoad(bench, ls))
    const idlePhase = (label: string, target: Target, slug: string, meters: BenchMeter[]): Promise<void> =>
      attempt(`idle, ${label}`, idle, () => runIdle(bench, label, target, slug, meters))
    const pg: Target = { kind: 'metershare', backend: 'postgres' }
    const pglite: Target = { kind: 'metershare', backend: 'pglite' }

    if (want('bare')) await loadPhase(spec('bare aedes (stores nothing)', { kind: 'bare' }, 'bare', anyMeters(opts.meters)))
    if (want('postgres')) {
      if (pgReason === null) await loadPhase(spec('metershare, PostgreSQL', pg, 'pg', pgMeters))
      else skipped.push(`metershare on PostgreSQL: ${pgReason}`)
    }
    if (want('pglite')) await loadPhase(spec('metershare, PGlite', pglite, 'pglite', bench.pgliteMeters))
    if (want('mosquitto')) {
      if (mosquittoReason === null) {
        await loadPhase(spec('Mosquitto → 1 subscriber', { kind: 'mosquitto', limits: 'open' }, 'mosquitto', anyMeters(opts.meters)))
        await loadPhase(spec('Mosquitto, default limits', { kind: 'mosquitto', limits: 'default' }, 'mosquitto-default', anyMeters(opts.meters)))
      }
      else skipped.push(`Mosquitto: ${mosquittoReason}`)
    }
    if (want('half')) {
      const pgMax = load.find((r) => r.spec.slug === 'pg')
      if (pgReason !== null) skipped.push(`half rate: ${pgReason}`)
      else if (pgMax === undefined) skipped.push('half rate: needs the PostgreSQL throughput phase (add postgres to --only)')
      else {
        const rate = Math.max(1, Math.round(pgMax.messagesPerSecond / 2))
        // The same paced load on the bare broker: what the MQTT traffic alone costs at that rate.
        if (want('bare')) await loadPhase(spec('bare aedes, same ½ rate', { kind: 'bare' }, 'bare-half', anyMeters(opts.meters), { mode: 'rate', ratePerSecond: rate }))
        await loadPhase(spec('metershare, PostgreSQL, ½ max rate', pg, 'pg-half', pgMeters, { mode: 'rate', ratePerSecond: rate }))
      }
    }
    if (want('paced')) {
      // The latency a user sees below saturation: meters publishing one at a time, at rising total rates.
      if (pgReason === null) {
        for (const rate of opts.pacedRates) {
          await loadPhase(spec(`metershare, PostgreSQL, paced ${fmtInt(rate)}/s`, pg, `pg-paced-${rate}`, pgMeters, { mode: 'rate', ratePerSecond: rate }))
        }
      } else skipped.push(`paced rates on PostgreSQL: ${pgReason}`)
    }
    if (want('catchup')) {
      const extra = { readingsPerMessage: opts.catchupReadings, window: opts.catchupWindow }
      if (pgReason === null) await loadPhase(spec(`catch-up ×${opts.catchupReadings}, PostgreSQL`, pg, 'pg-catchup', pgMeters, extra))
      else skipped.push(`catch-up on PostgreSQL: ${pgReason}`)
      await loadPhase(spec(`catch-up ×${opts.catchupReadings}, PGlite`, pglite, 'pglite-catchup', bench.pgliteMeters, extra))
    }
    if (want('storm')) {
      if (pgReason === null) await attempt('catch-up storm, PostgreSQL', storms, () => runStorm(bench, bench.pgMeters))
      else skipped.push(`catch-up storm on PostgreSQL: ${pgReason}`)
    }
    if (want('idle')) {
      await idlePhase('bare aedes', { kind: 'bare' }, 'idle-bare', anyMeters(opts.idle))
      if (pgReason === null) await idlePhase('metershare, PostgreSQL', pg, 'idle-pg', bench.pgMeters)
      else skipped.push(`idle connections on metershare: ${pgReason}`)
      if (mosquittoReason === null) await idlePhase('Mosquitto', { kind: 'mosquitto', limits: 'default' }, 'idle-mosquitto', anyMeters(opts.idle))
    }
  } finally {
    await bench.cleanup()
  }

  const bare = load.find((r) => r.spec.slug === 'bare')
  if (load.length > 0) {
    out('## Load (figures over the measured window)')
    out()
    out(loadTable(load, bare))
    out()
    out('readings/s: durably stored (metershare), acknowledged and dropped (bare aedes), delivered to the subscriber (Mosquitto).')
    out('PUBACK latency: publish written to PUBACK read, per message, in the generator. cpu: share of one core over the window')
    out(`(machine: ${os.cpus().length} cores = ${os.cpus().length * 100}%); broker cpu: Mosquitto's includes its subscriber; pg cpu: the backends of the`)
    out('phase\'s database and the server\'s own processes; other cpu: whatever else ran meanwhile (when high, the figures are not the machine\'s).')
    for (const r of load) {
      if (r.notes.length === 0 && r.profile.length === 0) continue
      out()
      out(`${r.spec.label}:`)
      for (const n of r.notes) out(`  - ${n}`)
      for (const p of r.profile) out(`  ${p}`)
    }
    out()
  }
  if (storms.length > 0) {
    out('## Catch-up storm (every meter reconnects at once and flushes what it buffered, one reading a message, one in flight)')
    out()
    out(stormTable(storms))
    out()
    out(`all connected: from the start to the last CONNACK, ${fmtInt(STORM_CONNECT_CONCURRENCY)} connects at a time per generator; CONNACK: each meter's wait for its own; all stored: to the last PUBACK; readings/s over that time; cpu over the whole storm.`)
    for (const r of storms) {
      if (r.limitedBy !== null) out(`  - fewer than ${fmtInt(opts.idle)} meters: ${r.limitedBy}`)
      for (const n of r.notes) out(`  - ${n}`)
    }
    out()
  }
  if (idle.length > 0) {
    out('## Idle connections (memory per connection: RSS growth while connecting them ÷ connections, after a GC; measured from a first connection on)')
    out()
    out(idleTable(idle))
    out()
  }
  for (const s of skipped) out(`skipped: ${s}`)
  for (const f of failed) out(`FAILED: ${f}`)
  if (skipped.length + failed.length > 0) out()

  out('## Targets (printed, not asserted)')
  out()
  const pgRow = load.find((r) => r.spec.slug === 'pg')
  const mosquittoRow = load.find((r) => r.spec.slug === 'mosquitto')
  const halfRow = load.find((r) => r.spec.slug === 'pg-half')
  const catchupRow = load.find((r) => r.spec.slug === 'pg-catchup')
  const idlePg = idle.find((r) => r.label.startsWith('metershare'))
  const targets: Array<[string, string, boolean | null]> = [
    [
      'durable ingest on PostgreSQL faster than Mosquitto forwarding',
      pgRow && mosquittoRow ? `${fmtInt(pgRow.readingsPerSecond)} vs ${fmtInt(mosquittoRow.forwardedPerSecond ?? Number.NaN)} readings/s` : '',
      pgRow && mosquittoRow ? pgRow.readingsPerSecond > (mosquittoRow.forwardedPerSecond ?? Infinity) : null,
    ],
    [
      `durable ingest on PostgreSQL ≥ ${TARGET.bareRatioMin}× the bare broker`,
      // Three decimals: 0.4975 is a miss, and must not read as "0.50×".
      pgRow && bare ? `${fmtFixed(pgRow.readingsPerSecond / bare.readingsPerSecond, 3)}× (${fmtInt(pgRow.readingsPerSecond)} vs ${fmtInt(bare.readingsPerSecond)} readings/s)` : '',
      pgRow && bare ? pgRow.readingsPerSecond >= TARGET.bareRatioMin * bare.readingsPerSecond : null,
    ],
    [
      `p99 PUBACK < ${TARGET.p99AtHalfRateMsMax} ms at half the maximum rate`,
      halfRow ? `${fmtMs(halfRow.p99Us)} ms at ${fmtInt(halfRow.messagesPerSecond)} msg/s` : '',
      halfRow ? halfRow.p99Us / 1000 < TARGET.p99AtHalfRateMsMax : null,
    ],
    [
      `catch-up on PostgreSQL ≥ ${fmtInt(TARGET.catchupReadingsPerSecondMin)} readings/s`,
      catchupRow ? `${fmtInt(catchupRow.readingsPerSecond)} readings/s` : '',
      catchupRow ? catchupRow.readingsPerSecond >= TARGET.catchupReadingsPerSecondMin : null,
    ],
    [
      `≤ ${TARGET.idleBytesPerConnectionMax / 1024} KB per idle connection (metershare)`,
      idlePg ? `${fmtFixed((idlePg.rssAfterBytes - idlePg.rssBeforeBytes) / idlePg.connections / 1024, 1)} KB over ${fmtInt(idlePg.connections)}` : '',
      idlePg ? (idlePg.rssAfterBytes - idlePg.rssBeforeBytes) / idlePg.connections <= TARGET.idleBytesPerConnectionMax : null,
    ],
  ]
  const tw = Math.max(...targets.map((t) => t[0].length))
  for (const [what, figure, pass] of targets) out(`${mark(pass)}  ${what.padEnd(tw)}  ${pass === null ? '(not measured)' : figure}`)
  const bareHalfRow = load.find((r) => r.spec.slug === 'bare-half')
  if (halfRow && bareHalfRow) out(halfRateFloor(halfRow, bareHalfRow))
  const paced = load.filter((r) => r.spec.slug.startsWith('pg-paced-') || r.spec.slug === 'pg-half').sort((a, b) => a.spec.ratePerSecond - b.spec.ratePerSecond)
  if (paced.length > 0) {
    out()
    out(`paced load on PostgreSQL, p99 PUBACK: ${paced.map((r) => `${fmtMs(r.p99Us)} ms at ${fmtInt(r.messagesPerSecond)} msg/s`).join(' · ')}`)
  }
  const failures = load.filter((r) => r.check.startsWith('MISMATCH')).length
  if (failures > 0) {
    out()
    out(`${failures} phase(s) stored a different count than was acknowledged: see the check column.`)
  }
  return failures > 0 || failed.length > 0 ? 1 : 0
}


process.exitCode = await main()
