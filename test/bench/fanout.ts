import os from 'node:os'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import v8 from 'node:v8'
import vm from 'node:vm'
import { openDatabase } from '../../shared/db/database.ts'
import { migrateToLatest } from '../../shared/db/migrator.ts'
import { configureLogging } from '../../shared/logger.ts'
import type { BrokerCounts, BrokerPolicy, BrokerStart, IngestFigures, PolicyFigures } from './ingest/broker-process.ts'
import { brokerQueries, type BrokerMark } from './ingest/broker-queries.ts'
import { LOAD, loadTiming, type GeneratorConnected, type GeneratorPlan, type GeneratorResult } from './ingest/generator-plan.ts'
import { BENCH_OPTIONS, BenchHarness, DEFAULT_BENCH_DATABASE_URL, cleanUpOnSignal, describePostgres, exitWithUsageIf, numberOption, phasesOption, profileFlags, profileLines, progress, redact } from './support/harness.ts'
import { describeMachine, packageVersion } from './support/machine.ts'
import { NodeChild, cpuMsBetween, cpuMsByPid, mainThreadCpuMs, ofDatabase, sampleMachine, sampleProcess } from './support/processes.ts'
import { fmtFixed, fmtInt, fmtMb, fmtMs, fmtPercent, formatTable, mark, percentile } from './support/report.ts'
import { analyseDeliveries, type DeliveryFigures } from './fanout/deliveries.ts'
import { provisionFanoutWorld, type FanoutWorld } from './fanout/fanout-world.ts'
import type { RecipientDeliveries, RecipientsStart } from './fanout/recipients.ts'
import { measureView, median, type ViewFigures } from './fanout/view-memory.ts'
import { CONSENTS_PER_HOUSEHOLD, generateViewWorld } from './fanout/view-world.ts'

/**
 * `npm run bench:fanout`: live egress with the release rule. A metershare broker on
 * PostgreSQL takes a fixed rate of QoS 1 readings from simulated meters and forwards each
 * stored datum on `readings/{meterId}` to recipients subscribed to `readings/+`, each holding
 * consents for a different half of the households. The same load runs with the release
 * rule's view as the egress policy (filter on), with a policy that releases every owned datum
 * to every recipient (filter off), and with nobody subscribed (what ingest alone costs).
 * Then the view itself, in this process, over a database of 100,000 consents: memory, build
 * time, reload stall, decisions per second. Prints figures and targets; asserts nothing.
 *
 *   npm run bench:fanout -- [--seconds 10] [--rate 2000] [--rounds 3] [--quick] [--only …] [--profile]
 *   BENCH_DATABASE_URL=postgres://…/postgres   (default: the local server)
 */

const PHASES = ['filter-on', 'filter-off', 'ingest-only', 'view'] as const
type Phase = (typeof PHASES)[number]


const USAGE = `usage: npm run bench:fanout -- [options]
  --seconds S      measured seconds per load phase (default 10; --quick: 3)
  --warmup S       seconds of load before measuring (default 2; --quick: 1)
  --meters N       simulated meters publishing (default 1000; --quick: 100)
  --recipients N   recipient parties subscribed to readings/+ (default 5)
  --rate N         readings per second offered by all meters together, one a message (default 2000; --quick: 500)
  --consents N     consents in the view's database (default 100000; --quick: 10000), ${CONSENTS_PER_HOUSEHOLD} per household
  --lookups N      releasedTo decisions per timed round (default 1000000; --quick: 200000)
  --rounds N       run the load phases N times, interleaved; targets use the medians (default 3; --quick: 1)
  --only LIST      phases among ${PHASES.join(',')} (default all)
  --profile        CPU-profile the broker's main and ingest threads (node --cpu-prof), summarise their measured window, keep the files
  --quick          a short smoke run
environment: BENCH_DATABASE_URL (an admin URL of a PostgreSQL server; default ${DEFAULT_BENCH_DATABASE_URL})`

/** Deliveries are complete when the recipients' count has not grown for this long. */
const SETTLE_QUIET_MS = 2_000
const SETTLE_POLL_MS = 250
/** QoS 1 publishes in flight per meter: at a fixed rate a meter has one at a time unless the broker stalls. */
const WINDOW_PER_METER = 16
const VIEW_BUILDS = 3
const FEW_SAMPLES = 200
const PROVISION_CONCURRENCY = 10
const TARGET = {
  /** With the rule, forwarding costs at most 1 ÷ 0.8 = 1.25× what forwarding everything costs, per delivered datum. */
  forwardingRatioMin: 0.8,
}

interface Options {
  seconds: number
  warmupSeconds: number
  meters: number
  recipients: number
  rate: number
  consents: number
  lookups: number
  rounds: number
  only: Set<Phase>
  profile: boolean
  quick: boolean
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...BENCH_OPTIONS,
      recipients: { type: 'string' },
      rate: { type: 'string' },
      consents: { type: 'string' },
      lookups: { type: 'string' },
      rounds: { type: 'string' },
    },
    strict: true,
  })
  exitWithUsageIf(values.help, USAGE)
  const quick = values.quick
  const num = numberOption
  const only = phasesOption(values.only, PHASES)
  const consents = Math.floor(num('consents', values.consents, quick ? 10_000 : 100_000, CONSENTS_PER_HOUSEHOLD))
  return {
    seconds: num('seconds', values.seconds, quick ? 3 : 10, 0.5),
    warmupSeconds: num('warmup', values.warmup, quick ? 1 : 2, 0),
    meters: Math.floor(num('meters', values.meters, quick ? 100 : 1_000, 2)),
    recipients: Math.floor(num('recipients', values.recipients, 5, 1)),
    rate: num('rate', values.rate, quick ? 500 : 2_000, 1),
    consents: consents - (consents % CONSENTS_PER_HOUSEHOLD),
    lookups: Math.floor(num('lookups', values.lookups, quick ? 200_000 : 1_000_000, 1)),
    rounds: Math.floor(num('rounds', values.rounds, quick ? 1 : 3, 1)),
    only,
    profile: values.profile,
    quick,
  }
}

// ---------------------------------------------------------------------------------------------
// Databases and processes

class Bench extends BenchHarness {
  interrupted = false
  template: string | null = null
  world: FanoutWorld | null = null

  constructor(
    readonly opts: Options,
    adminUrl: string,
  ) {
    super(adminUrl, `metershare_fanout_${process.pid}`, import.meta.dirname)
  }

  async prepareWorld(): Promise<void> {
    const name = await this.createDatabase('template')
    const handle = await openDatabase({ databaseUrl: this.databaseUrl(name), pgliteDir: null, pgliteFsync: false, poolSize: PROVISION_CONCURRENCY })
    try {
      await migrateToLatest(handle.db)
      this.world = await provisionFanoutWorld(handle.db, {
        meters: this.opts.meters,
        recipients: this.opts.recipients,
        concurrency: PROVISION_CONCURRENCY,
        now: new Date(),
      })
    } finally {
      await handle.close()
    }
    this.template = name
  }

  async cleanup(): Promise<void> {
    await this.stopChildrenAndDropDatabases()
  }
}

interface BrokerUnderTest {
  child: NodeChild
  port: number
  databaseName: string
  /** Where its threads' CPU profiles are written (--profile), else null. */
  profileDir: string | null
  counts(): Promise<BrokerCounts>
  ingest(): Promise<IngestFigures>
  policy(): Promise<PolicyFigures>
  mark(): Promise<BrokerMark | null>
  close(): Promise<void>
}

async function startBroker(bench: Bench, policy: BrokerPolicy, slug: string): Promise<BrokerUnderTest> {
  const databaseName = await bench.createDatabase(slug, bench.template!)
  const execArgv = ['--expose-gc']
  let profileDir: string | null = null
  if (bench.opts.profile) {
    const profile = profileFlags(slug)
    profileDir = profile.dir
    execArgv.push(...profile.execArgv)
  }
  const child = bench.spawn(`broker (${slug})`, 'ingest/broker-process.ts', execArgv)
  let closing: Promise<void> | null = null
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      await child.stop()
      await bench.dropDatabase(databaseName)
    })())
  try {
    child.send({ type: 'start', kind: 'metershare', databaseUrl: bench.databaseUrl(databaseName), pgliteDir: null, timezone: LOAD.timezone, policy, timePolicy: true } satisfies BrokerStart)
    const ready = await child.next<{ type: 'ready'; port: number }>('ready', 60_000)
    return {
      child,
      port: ready.port,
      databaseName,
      profileDir,
      ...brokerQueries(child),
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}

// ---------------------------------------------------------------------------------------------
// Load phases

interface LoadSpec {
  label: string
  slug: string
  policy: BrokerPolicy
  /** Recipients subscribe, and a consent decides (filter on) or not (filter off). */
  recipients: 'consented-halves' | 'everything' | 'none'
}

interface LoadFigures {
  spec: LoadSpec
  round: number
  meters: number
  recipients: number
  ingestedPerSecond: number
  forwardedPerSecond: number
  delivery: DeliveryFigures | null
  p50Us: number
  p99Us: number
  maxUs: number
  latencySamples: number
  ackP99Us: number
  /** All the broker's threads: the main one, the ingest thread, V8's and libuv's helpers. */
  brokerCores: number
  /** The broker's main thread alone, where MQTT and egress run (commits run on the ingest thread). */
  mainCores: number
  policy: PolicyFigures
  dbCores: number
  generatorCores: number
  recipientsCores: number
  machineCores: number
  rssBytes: number
  stored: number
  problems: string[]
  notes: string[]
  profile: string[]
}

function hrtimeUs(): number {
  return Number(process.hrtime.bigint()) / 1000
}

async function runLoad(bench: Bench, spec: LoadSpec, round: number): Promise<LoadFigures> {
  const o = bench.opts
  const world = bench.world!
  const slug = bench.nextSlug(spec.slug)
  const label = roundLabel(spec.label, round, o.rounds)
  progress(`${label}: starting`)
  const broker = await startBroker(bench, spec.policy, slug)
  let recipients: NodeChild | null = null
  let generator: NodeChild | null = null
  try {
    if (spec.recipients !== 'none') {
      recipients = bench.spawn(`recipients (${spec.slug})`, 'fanout/recipients.ts')
      recipients.send({
        type: 'start',
        port: broker.port,
        recipients: world.recipients.map((r) => ({ id: r.id, apiKey: r.apiKey })),
        meterIds: world.meters.map((m) => m.id),
        series: LOAD.series,
        keepaliveSeconds: LOAD.keepaliveSeconds,
        connectTimeoutMs: LOAD.connectTimeoutMs,
      } satisfies RecipientsStart)
      const ready = await recipients.next<{ type: string; granted: number[] }>('ready', LOAD.connectTimeoutMs + 10_000)
      const refused = ready.granted.filter((g) => g !== 1)
      if (refused.length > 0) throw new Error(`subscriptions to readings/+ granted ${ready.granted.join(', ')} (expected QoS 1 each)`)
    }

    generator = bench.spawn(`generator (${spec.slug})`, 'ingest/load-generator.ts')
    generator.send({
      type: 'plan',
      port: broker.port,
      meters: world.meters,
      mode: 'rate',
      windowPerConnection: WINDOW_PER_METER,
      readingsPerMessage: 1,
      ratePerSecond: o.rate,
      ...loadTiming(o),
      recordSendTimes: true,
    } satisfies GeneratorPlan)
    const connected = await generator.next<GeneratorConnected>('connected', LOAD.connectTimeoutMs * Math.ceil(world.meters.length / LOAD.connectConcurrency + 1))
    if (connected.connected === 0) throw new Error(`no meter could connect (${connected.firstError ?? 'no error'})`)
    const notes: string[] = []
    const problems: string[] = []
    if (connected.connected < world.meters.length) problems.push(`only ${connected.connected} of ${world.meters.length} meters connected (${connected.firstError ?? '?'})`)
    progress(`${label}: ${connected.connected} meters connected in ${fmtInt(connected.ms)} ms, loading ${fmtInt(o.rate)} readings/s`)

    const ours = ofDatabase(broker.databaseName)
    const pids = [broker.child.pid, recipients?.pid ?? -1]
    const sample = () => ({
      at: performance.now(),
      us: hrtimeUs(),
      procs: pids.map((p) => (p < 0 ? null : sampleProcess(p))),
      main: mainThreadCpuMs(broker.child.pid) ?? 0,
      machine: sampleMachine(),
      pg: cpuMsByPid('postgres', ours),
    })
    const runTimeoutMs = (o.warmupSeconds + o.seconds) * 1000 + 60_000
    generator.send({ type: 'go' })
    await generator.next('window-start', runTimeoutMs)
    const s0 = sample()
    const from = broker.profileDir !== null ? await broker.mark() : null
    await generator.next('window-end', runTimeoutMs)
    const s1 = sample()
    const to = broker.profileDir !== null ? await broker.mark() : null
    const result = await generator.next<GeneratorResult>('result', LOAD.drainTimeoutMs + 60_000)

    const wallMs = s1.at - s0.at
    const cpuOf = (i: number): number => ((s1.procs[i]?.cpuMs ?? 0) - (s0.procs[i]?.cpuMs ?? 0)) / wallMs
    const sentUs: Float64Array[] = new Array(world.meters.length)
    const byId = new Map((result.sendTimes ?? []).map((t) => [t.meterId, t.sentUs]))
    world.meters.forEach((m, i) => (sentUs[i] = byId.get(m.id) ?? new Float64Array(0)))

    let delivery: DeliveryFigures | null = null
    if (recipients !== null) {
      const consentedOf = (k: number): Uint8Array | null => (spec.recipients === 'consented-halves' ? world.recipients[k]!.consented : null)
      let expected = 0
      for (let k = 0; k < world.recipients.length; k++) {
        const c = consentedOf(k)
        for (let m = 0; m < sentUs.length; m++) if (c === null || c[m] === 1) expected += sentUs[m]!.length
      }
      await settleDeliveries(recipients, expected)
      recipients.send({ type: 'result' })
      const got = await recipients.next<{ type: string; recipients: RecipientDeliveries[] }>('result', 60_000)
      delivery = analyseDeliveries(
        sentUs,
        got.recipients.map((d, k) => ({ deliveries: d, consented: consentedOf(k) })),
        { fromUs: s0.us, toUs: s1.us },
      )
      const dupFlagged = got.recipients.reduce((n, r) => n + r.dupFlagged, 0)
      const unparsed = got.recipients.reduce((n, r) => n + r.unparsed, 0)
      const closedEarly = got.recipients.filter((r) => r.closedEarly).length
      if (delivery.leaked > 0) problems.push(`${fmtInt(delivery.leaked)} datums delivered to a recipient without a consent`)
      if (delivery.delivered < delivery.expected) problems.push(`${fmtInt(delivery.expected - delivery.delivered)} of ${fmtInt(delivery.expected)} expected deliveries missing`)
      if (delivery.duplicates > 0) notes.push(`${fmtInt(delivery.duplicates)} datums delivered twice to the same recipient (${dupFlagged} flagged DUP)`)
      if (delivery.unmatched + unparsed > 0) problems.push(`${fmtInt(delivery.unmatched + unparsed)} deliveries that match no reading sent`)
      if (closedEarly > 0) problems.push(`${closedEarly} recipient connections closed by the broker`)
      if (delivery.latenciesUs.length < FEW_SAMPLES) notes.push(`only ${delivery.latenciesUs.length} deliveries of datums sent inside the window: too few for latencies to mean much (raise --seconds)`)
    }

    const counts = await broker.counts()
    const ingestFigures = await broker.ingest()
    const policy = await broker.policy()
    const windowAcked = result.windowAckedMessages
    const ingestedPerSecond = (windowAcked * 1000) / result.windowMs
    if (result.unackedAtEnd > 0) problems.push(`${result.unackedAtEnd} publishes unacknowledged at the end`)
    if (result.closedEarly > 0) problems.push(`${result.closedEarly} meter connections closed by the broker`)
    if (counts.readings !== result.ackedMessages) problems.push(`stored ${fmtInt(counts.readings)} readings, ${fmtInt(result.ackedMessages)} acknowledged`)
    if (counts.quarantine > 0) problems.push(`${counts.quarantine} readings quarantined`)
    if (Math.abs(ingestedPerSecond - o.rate) > 0.05 * o.rate) notes.push(`offered ${fmtInt(o.rate)} readings/s, acknowledged ${fmtInt(ingestedPerSecond)}/s inside the window`)
    notes.push(`group commits: ${fmtInt(ingestFigures.commits)}, mean ${fmtFixed(ingestFigures.meanBatchReadings, 1)} readings in ${fmtFixed(ingestFigures.meanCommitMs, 1)} ms`)
    if (policy.decisions > 0) {
      notes.push(
        `release decisions: ${fmtInt(policy.decisions)} (${fmtFixed(policy.decisions / Math.max(1, result.ackedMessages), 2)} a datum stored), ` +
          `${fmtInt(policy.released)} released, ${fmtFixed((policy.ms * 1000) / policy.decisions, 2)} µs each`,
      )
    }
    const acks = result.latenciesUs.slice().sort()
    const latencies = delivery?.latenciesUs ?? new Uint32Array(0)
    const figures: LoadFigures = {
      spec,
      round,
      meters: connected.connected,
      recipients: recipients === null ? 0 : world.recipients.length,
      ingestedPerSecond,
      forwardedPerSecond: delivery === null ? 0 : (delivery.inWindow * 1_000_000) / (s1.us - s0.us),
      delivery,
      p50Us: percentile(latencies, 50),
      p99Us: percentile(latencies, 99),
      maxUs: latencies.length === 0 ? Number.NaN : latencies[latencies.length - 1]!,
      latencySamples: latencies.length,
      ackP99Us: percentile(acks, 99),
      brokerCores: cpuOf(0),
      mainCores: (s1.main - s0.main) / wallMs,
      policy,
      dbCores: cpuMsBetween(s0.pg, s1.pg) / wallMs,
      generatorCores: result.cpuMs / result.windowMs,
      recipientsCores: recipients === null ? 0 : cpuOf(1),
      machineCores: (s1.machine.busyMs - s0.machine.busyMs) / wallMs,
      rssBytes: s1.procs[0]?.rssBytes ?? Number.NaN,
      stored: counts.readings,
      problems,
      notes,
      profile: [],
    }
    await generator.stop()
    generator = null
    await recipients?.stop()
    recipients = null
    await broker.close()
    if (broker.profileDir !== null) {
      figures.profile = profileLines(broker.profileDir, from?.monotonicUs ?? null, to?.monotonicUs ?? null)
      if (from === null || to === null) notes.push('the broker did not answer in time to mark the window: its profile covers its whole life')
    }
    progress(`${label}: ${fmtInt(figures.ingestedPerSecond)} readings/s in, ${fmtInt(figures.forwardedPerSecond)} datums/s out, p99 ${fmtMs(figures.p99Us)} ms`)
    return figures
  } finally {
    await generator?.stop(5_000)
    await recipients?.stop(5_000)
    await broker.close()
  }
}

/** Waits until the recipients have `expected` datums, or their count stops growing. */
async function settleDeliveries(recipients: NodeChild, expected: number): Promise<number> {
  const deadline = Date.now() + LOAD.drainTimeoutMs
  let last = -1
  let quietSince = Date.now()
  for (;;) {
    recipients.send({ type: 'count' })
    const { delivered } = await recipients.next<{ type: string; delivered: number }>('count', 10_000)
    if (delivered >= expected) return delivered
    if (delivered !== last) {
      last = delivered
      quietSince = Date.now()
    } else if (Date.now() - quietSince >= SETTLE_QUIET_MS || Date.now() > deadline) return delivered
    await new Promise((r) => setTimeout(r, SETTLE_POLL_MS))
  }
}

// ---------------------------------------------------------------------------------------------
// The view's memory

function collector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (exposed !== undefined) return exposed
  // Started without --expose-gc (npm run bench runs every benchmark alike): expose it now.
  v8.setFlagsFromString('--expose-gc')
  return vm.runInNewContext('gc') as () => void
}

async function runView(bench: Bench): Promise<ViewFigures> {
  const o = bench.opts
  const households = o.consents / CONSENTS_PER_HOUSEHOLD
  progress(`view: generating ${fmtInt(o.consents)} consents of ${fmtInt(households)} households`)
  const name = await bench.createDatabase(bench.nextSlug('view'))
  const handle = await openDatabase({ databaseUrl: bench.databaseUrl(name), pgliteDir: null, pgliteFsync: false, poolSize: 10 })
  try {
    await migrateToLatest(handle.db)
    const t0 = performance.now()
    const world = await generateViewWorld(handle.db, { households, now: new Date() })
    progress(`view: generated in ${fmtFixed((performance.now() - t0) / 1000, 1)} s, measuring`)
    const figures = await measureView(handle, world, { timeZone: LOAD.timezone, builds: VIEW_BUILDS, lookups: o.lookups, gc: collector(), now: Date.now })
    progress(`view: ${fmtMb(figures.heapAfterBytes - figures.heapBeforeBytes)} MB of heap for ${fmtInt(figures.consents)} consents`)
    return figures
  } finally {
    await handle.close()
    await bench.dropDatabase(name)
  }
}

// ---------------------------------------------------------------------------------------------
// Output

function roundLabel(label: string, round: number, rounds: number): string {
  return rounds > 1 ? `${label} #${round}` : label
}

/** Broker main-thread CPU µs per datum ingested. */
function mainUsPerDatum(r: LoadFigures): number {
  return (r.mainCores * 1e6) / r.ingestedPerSecond
}

/**
 * Broker main-thread CPU µs per delivered datum above what ingest alone costs there (the
 * ingest-only phase of the same round): (µs/datum − µs/datum with no recipients) ÷ out/in.
 * The main thread runs MQTT, the release decisions and the forwarding; group commits run on
 * the ingest thread, whose cost per datum moves with the size of the groups, which the load on
 * the main thread changes: leaving it out keeps that swing out of the difference.
 */
function egressUsPerDelivery(r: LoadFigures, base: LoadFigures | undefined): number {
  if (base === undefined || r.forwardedPerSecond === 0) return Number.NaN
  const deliveriesPerDatum = r.forwardedPerSecond / r.ingestedPerSecond
  return (mainUsPerDatum(r) - mainUsPerDatum(base)) / deliveriesPerDatum
}

/** Time of one release decision in the broker, µs (as timed around the policy). */
function decisionUs(r: LoadFigures): number {
  return r.policy.decisions === 0 ? Number.NaN : (r.policy.ms * 1000) / r.policy.decisions
}

function baseOf(rows: LoadFigures[], r: LoadFigures): LoadFigures | undefined {
  return rows.find((x) => x.spec.slug === 'ingest-only' && x.round === r.round)
}

function loadTable(rows: LoadFigures[], rounds: number): string {
  return formatTable(
    [
      { title: 'phase', align: 'left' },
      { title: 'in/s' },
      { title: 'out/s' },
      { title: 'out/in' },
      { title: 'delivered/expected' },
      { title: 'p50 ms' },
      { title: 'p99 ms' },
      { title: 'max ms' },
      { title: 'ack p99' },
      { title: 'broker cpu' },
      { title: 'main cpu' },
      { title: 'main µs/in' },
      { title: 'egress µs/out' },
      { title: 'rule µs' },
      { title: 'pg cpu' },
      { title: 'gen cpu' },
      { title: 'recip cpu' },
      { title: 'other cpu' },
      { title: 'RSS MB' },
      { title: 'check', align: 'left' },
    ],
    rows.map((r) => {
      const d = r.delivery
      const other = r.machineCores - r.brokerCores - r.dbCores - r.generatorCores - r.recipientsCores
      return [
        roundLabel(r.spec.label, r.round, rounds),
        fmtInt(r.ingestedPerSecond),
        d === null ? '–' : fmtInt(r.forwardedPerSecond),
        d === null ? '–' : fmtFixed(r.forwardedPerSecond / r.ingestedPerSecond, 2),
        d === null ? '–' : `${fmtInt(d.delivered)}/${fmtInt(d.expected)}`,
        fmtMs(r.p50Us),
        fmtMs(r.p99Us),
        fmtMs(r.maxUs),
        fmtMs(r.ackP99Us),
        fmtPercent(r.brokerCores),
        fmtPercent(r.mainCores),
        fmtFixed(mainUsPerDatum(r), 1),
        d === null ? '–' : fmtFixed(egressUsPerDelivery(r, baseOf(rows, r)), 2),
        fmtFixed(decisionUs(r), 2),
        fmtPercent(r.dbCores),
        fmtPercent(r.generatorCores),
        d === null ? '–' : fmtPercent(r.recipientsCores),
        fmtPercent(Math.max(0, other)),
        fmtMb(r.rssBytes),
        r.problems.length === 0 ? (d === null ? `stored ${fmtInt(r.stored)} = acked ✓` : `0 leaked, none missing ✓`) : 'PROBLEM (see below)',
      ]
    }),
  )
}

function viewLines(v: ViewFigures): string[] {
  const retained = v.heapAfterBytes - v.heapBeforeBytes
  const rates = v.lookupsPerSecond.map((r) => fmtInt(r)).join(', ')
  return [
    `consents                ${fmtInt(v.consents)} active (view counts ${fmtInt(v.activeConsents)}), ${fmtInt(v.households)} households with a meter each, occupancies included`,
    `heap held by the view   ${fmtFixed(retained / (1024 * 1024), 1)} MB (${fmtInt(retained / v.consents)} bytes a consent, with its meter's occupancy): heap used after GC ${fmtMb(v.heapBeforeBytes)} → ${fmtMb(v.heapAfterBytes)} MB, median of 5 samples each`,
    `RSS                     ${fmtMb(v.rssBeforeBytes)} → ${fmtMb(v.rssAfterBytes)} MB`,
    `build (open: load+index) ${v.buildMs.map((ms) => fmtInt(ms)).join(', ')} ms (median ${fmtInt(median(v.buildMs))} ms)`,
    `full reload             ${fmtInt(v.reloadMs)} ms, holding the event loop for up to ${fmtInt(v.reloadStallMs)} ms (the broker reloads every 60 s)`,
    `releasedTo              ${rates} decisions/s over ${fmtInt(v.lookupsPerRound)} each (median ${fmtInt(median(v.lookupsPerSecond))}/s = ${fmtFixed(1e6 / median(v.lookupsPerSecond), 2)} µs each); ${fmtPercent(v.releasedShare)} released`,
  ]
}

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2))
  const adminUrl = process.env.BENCH_DATABASE_URL ?? DEFAULT_BENCH_DATABASE_URL
  configureLogging({ level: 'silent' })
  const bench = new Bench(opts, adminUrl)
  cleanUpOnSignal(bench)

  const out = (line = ''): void => void process.stdout.write(line + '\n')
  out('# metershare fan-out benchmark')
  out()
  for (const line of describeMachine()) out(line)
  try {
    out(await describePostgres(bench))
  } catch (err) {
    out(`PostgreSQL unavailable at ${redact(adminUrl)}: ${(err as Error).message}`)
    out('every phase needs PostgreSQL: nothing measured')
    return 1
  }
  out(`aedes      ${packageVersion('aedes')}`)
  out()
  const recipientsPerDatum = opts.recipients / 2
  out(
    `run: ${fmtInt(opts.meters)} meters offering ${fmtInt(opts.rate)} readings/s together (QoS 1, one reading a message, at most ${WINDOW_PER_METER} in flight each), ` +
      `${opts.recipients} recipients on readings/+ (QoS 1, raw sockets, one process), each with consents for a different half of the households ` +
      `(${fmtFixed(recipientsPerDatum, 1)} recipients a datum with the rule, ${opts.recipients} without); ${opts.seconds} s measured after ${opts.warmupSeconds} s warm-up per phase` +
      (opts.quick ? ' (--quick)' : ''),
  )
  out()

  const load: LoadFigures[] = []
  let view: ViewFigures | null = null
  const failed: string[] = []
  const attempt = async (label: string, phase: () => Promise<void>): Promise<void> => {
    if (bench.interrupted) return
    try {
      await phase()
    } catch (err) {
      failed.push(`${label}: ${(err as Error).message}`)
      progress(`${label}: FAILED ${(err as Error).message}`)
    }
  }
  const want = (p: Phase): boolean => opts.only.has(p)
  try {
    if (want('filter-on') || want('filter-off') || want('ingest-only')) {
      progress(`provisioning ${fmtInt(opts.meters)} meters, ${opts.recipients} recipients and their consents on PostgreSQL`)
      const t0 = performance.now()
      await bench.prepareWorld()
      progress(`provisioned ${fmtInt(bench.world!.consents)} consents in ${fmtFixed((performance.now() - t0) / 1000, 1)} s`)
    }
    const phases: Array<[Phase, LoadSpec]> = [
      ['filter-on', { label: 'filter on (release view)', slug: 'filter-on', policy: 'release-view', recipients: 'consented-halves' }],
      ['filter-off', { label: 'filter off (allow all)', slug: 'filter-off', policy: 'allow-all', recipients: 'everything' }],
      ['ingest-only', { label: 'no recipients (ingest only)', slug: 'ingest-only', policy: 'release-view', recipients: 'none' }],
    ]
    for (let round = 1; round <= opts.rounds; round++) {
      for (const [phase, spec] of phases) {
        if (want(phase)) await attempt(roundLabel(spec.label, round, opts.rounds), async () => void load.push(await runLoad(bench, spec, round)))
      }
    }
    if (want('view')) await attempt('view', async () => void (view = await runView(bench)))
  } finally {
    await bench.cleanup()
  }

  if (load.length > 0) {
    out('## Live fan-out (figures over the measured window)')
    out()
    out(loadTable(load, opts.rounds))
    out()
    out('in/s: readings acknowledged (stored) per second; out/s: datums received by all recipients together per second; delivered/expected:')
    out('distinct datums received over the whole run ÷ those the consents release (with the rule) or all (without), after the deliveries settled.')
    out('p50/p99/max: publish written by the meter → datum read by a recipient, over the datums published inside the window (every recipient')
    out('counts); ack p99: publish → PUBACK at the meter. broker cpu: all its threads, share of one core; main cpu: its main thread alone')
    out('(MQTT, release decisions, forwarding; group commits run on the ingest thread); main µs/in: main-thread CPU per reading ingested;')
    out('egress µs/out: main-thread CPU per delivered datum above what ingest alone costs = (main µs/in − the same with no recipients) ÷ out/in;')
    out('rule µs: the policy\'s time per release decision, timed in the broker (one decision per datum and subscriber).')
    out(`pg cpu: this phase's backends and the server's processes; other cpu: whatever else ran meanwhile (machine: ${os.cpus().length} cores = ${os.cpus().length * 100}%).`)
    for (const r of load) {
      if (r.notes.length + r.problems.length + r.profile.length === 0) continue
      out()
      out(`${roundLabel(r.spec.label, r.round, opts.rounds)}:`)
      for (const p of r.problems) out(`  - PROBLEM: ${p}`)
      for (const n of r.notes) out(`  - ${n}`)
      for (const p of r.profile) out(`  ${p}`)
    }
    out()
  }
  if (view !== null) {
    out('## The release view in memory (this process)')
    out()
    for (const line of viewLines(view)) out(line)
    out()
  }
  for (const f of failed) out(`FAILED: ${f}`)
  if (bench.interrupted) out('interrupted: the phases after the one under way were not run')
  if (failed.length > 0 || bench.interrupted) out()

  out('## Targets (printed, not asserted)')
  out()
  const of = (slug: string): LoadFigures[] => load.filter((r) => r.spec.slug === slug)
  const on = of('filter-on')
  const off = of('filter-off')
  const med = (rows: LoadFigures[], f: (r: LoadFigures) => number): number => median(rows.map(f).filter((v) => Number.isFinite(v)))
  const egressOn = med(on, (r) => egressUsPerDelivery(r, baseOf(load, r)))
  const egressOff = med(off, (r) => egressUsPerDelivery(r, baseOf(load, r)))
  const completeness = (r: LoadFigures): number => (r.delivery === null || r.delivery.expected === 0 ? Number.NaN : r.delivery.delivered / r.delivery.expected)
  const completeOn = med(on, completeness)
  const completeOff = med(off, completeness)
  const p99On = med(on, (r) => (r.latencySamples > 0 ? r.p99Us : Number.NaN))
  const p99Off = med(off, (r) => (r.latencySamples > 0 ? r.p99Us : Number.NaN))
  const leaked = on.reduce((n, r) => n + (r.delivery?.leaked ?? 0), 0)
  const deliveredOn = on.reduce((n, r) => n + (r.delivery?.delivered ?? 0), 0)
  const measured = (...v: number[]): boolean => v.every((x) => Number.isFinite(x))
  const over = opts.rounds > 1 ? `, medians of ${opts.rounds} rounds` : ''
  const targets: Array<[string, string, boolean | null]> = [
    [
      `forwarding with the rule ≥ ${TARGET.forwardingRatioMin}× as cheap as without, per datum forwarded: egress µs/out off ÷ on`,
      `${fmtFixed(egressOff / egressOn, 2)}× (${fmtFixed(egressOff, 2)} ÷ ${fmtFixed(egressOn, 2)} µs of broker main-thread CPU per delivered datum${over})`,
      measured(egressOn, egressOff) ? egressOff / egressOn >= TARGET.forwardingRatioMin : null,
    ],
    [
      `delivered/expected with the rule ≥ ${TARGET.forwardingRatioMin}× without, at the same offered load`,
      `${fmtFixed(completeOn / completeOff, 2)}× (${fmtPercent(completeOn)} vs ${fmtPercent(completeOff)}${over})`,
      measured(completeOn, completeOff) ? completeOn / completeOff >= TARGET.forwardingRatioMin : null,
    ],
    [
      `publish-to-delivery p99 with the rule ≥ ${TARGET.forwardingRatioMin}× as fast as without: p99 off ÷ p99 on`,
      `${fmtFixed(p99Off / p99On, 2)}× (${fmtMs(p99Off)} ÷ ${fmtMs(p99On)} ms${over})`,
      measured(p99On, p99Off) ? p99Off / p99On >= TARGET.forwardingRatioMin : null,
    ],
    [
      'no datum delivered without a consent (filter on)',
      `${fmtInt(leaked)} leaked of ${fmtInt(deliveredOn)} delivered`,
      on.some((r) => r.delivery !== null) ? leaked === 0 : null,
    ],
  ]
  const tw = Math.max(...targets.map((t) => t[0].length))
  for (const [what, figure, pass] of targets) out(`${mark(pass)}  ${what.padEnd(tw)}  ${pass === null ? '(not measured)' : figure}`)
  if (on.length + off.length > 0 && of('ingest-only').length === 0) out('(the forwarding cost needs the ingest-only phase: add ingest-only to --only)')
  const problems = load.reduce((n, r) => n + r.problems.length, 0)
  if (problems > 0) {
    out()
    out(`${problems} problem(s) in the load phases: see the notes above.`)
  }
  return problems > 0 || failed.length > 0 ? 1 : 0
}

process.exitCode = await main()
