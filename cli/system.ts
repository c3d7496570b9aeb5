import { createWriteStream, existsSync } from 'node:fs'
import { createServer, type Server as HttpServer } from 'node:http'
import net, { type AddressInfo } from 'node:net'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'
import { createBroker, type Broker } from '../broker/broker.ts'
import { checkRedis, redisCoupling } from '../broker/redis-coupling.ts'
import { ENV_VARS, type Config } from '../shared/config.ts'
import { logDatabaseFailure } from '../shared/db/unreachable.ts'
import type { RegisterValues } from '../shared/wire.ts'
import { ensureDataDir } from '../shared/data-dir.ts'
import { ConfigError, ERROR_CODES, SchemaTooNewError, errorBody, noRouteMessage } from '../shared/errors.ts'
import { monthBounds, monthOf, addMonths } from '../shared/calendar.ts'
import { openConfiguredDatabase, probeDatabase, type DatabaseHandle } from '../shared/db/database.ts'
import { SCHEMA_CHANNEL, migrateToLatest, requireSchemaCurrent } from '../shared/db/migrator.ts'
import { openDataCalendar } from '../services/metering/rollup-recut.ts'
import { configureLogging, log } from '../shared/logger.ts'
import { createMetrics, type Metrics } from '../shared/metrics.ts'
import { generateSecret, verifySecret } from '../shared/secrets.ts'
import { buildApi, type HealthReport } from '../services/api/app.ts'
import { checkHealth, healthAnswer } from '../services/api/routes/operations-routes.ts'
import { AccessLogRecorder } from '../services/consent/access-log-recorder.ts'
import { countActiveConsents } from '../services/consent/consent-repository.ts'
import { startConsentSweeper } from '../services/consent/consent-lifecycle.ts'
import { openReleaseView, type ReleaseView } from '../services/consent/release-view.ts'
import { latestReadings } from '../services/metering/reading-service.ts'
import { settleCompletedMonths, settleMonth, settlementContext } from '../services/settlement/settlement-service.ts'
import { startFleet, type Fleet } from '../simulators/fleet.ts'
import { startSampleRecipient, type SampleRecipientOptions } from '../simulators/sample-recipient.ts'
import { createDemoWorld, demoFilePath, readDemoWorld, DEMO_PASSWORD, type DemoWorld } from './demo-world.ts'

/**
 * The composition root: builds the running system from its parts, in order, and takes it
 * down in reverse order. `metershare up` runs every part in one process; `broker`, `api`
 * and `settlement` run one part each over a shared PostgreSQL.
 */

/** How often the consent lifecycle (expiry, move-outs) is swept. */
export const CONSENT_SWEEP_INTERVAL_MS = 5_000
/** How often completed months are (re-)settled when meters are real. */
export const SETTLEMENT_INTERVAL_MS = 10 * 60_000
/**
 * A restarted demo's sample recipient with no progress file (a data folder from before they kept
 * one) pulls again from this long before where the fleet resumes, not the whole history once more
 * into every household's access log.
 */
export const DEMO_PULL_RESUME_LOOKBACK_MS = 24 * 60 * 60_000
/** Longest wait, in ms, for the demo's live recipient to subscribe before the fleet starts. */
export const DEMO_RECIPIENTS_SUBSCRIBE_WAIT_MS = 5_000
/** Simulated speed of the demo: a 30-day month in about two minutes. */
export const DEMO_SPEED = 21_600
/** How long a month's last simulated readings may take to arrive before the month is settled. */
export const DEMO_SETTLE_GRACE_MS = 5_000
export interface Part {
  name: string
  stop(): Promise<void>
}

/** Stops parts in reverse order of start; each once, whatever the others do. */
export class Parts {
  private readonly parts: Part[] = []
  private stopping: Promise<void> | null = null

  add(name: string, stop: () => Promise<void>): void {
    this.parts.push({ name, stop })
  }

  stopAll(): Promise<void> {
    this.stopping ??= (async () => {
      for (const part of [...this.parts].reverse()) {
        try {
          await part.stop()
          log.cli.info({ part: part.name }, 'stopped')
        } catch (err) {
          log.cli.error({ err, part: part.name }, 'stop failed')
        }
      }
    })()
    return this.stopping
  }
}

/**
 * Closes an HTTP server that carries the broker's MQTT over WebSocket: the broker first stops intake,
 * commits what it received and lets its clients go, WebSocket ones included. A server's close waits
 * for every connection, and an upgraded one ends only when its MQTT client does.
 */
async function closeAfterBroker(broker: Broker, closeServer: () => Promise<void>): Promise<void> {
  await broker.close()
  await closeServer()
}

async function openAndMigrate(config: Readonly<Config>, parts: Parts, role: string): Promise<DatabaseHandle> {
  const db = await openConfiguredDatabase(config, `metershare:${role}`)
  parts.add('database', () => db.close())
  const applied = await migrateToLatest(db.db)
  if (applied.length > 0) log.cli.info({ applied }, 'schema migrated')
  await openDataCalendar(db.db, config.timezone)
  return db
}

async function startBrokerPart(
  config: Readonly<Config>,
  db: DatabaseHandle,
  metrics: Metrics,
  parts: Parts,
): Promise<{ broker: Broker; view: ReleaseView; recorder: AccessLogRecorder; mqttPort: number; health: () => Promise<HealthReport> }> {
  // Before the broker's parts open: a REDIS_URL that names nothing ends the start at once.
  if (config.redisUrl !== null) await checkRedis(config.redisUrl)
  const view = await openReleaseView(db, { timeZone: config.timezone, metrics })
  parts.add('release view', () => view.close())
  const recorder = new AccessLogRecorder(db.db, { metrics })
  parts.add('access log', () => recorder.close())
  const coupling = config.redisUrl !== null ? redisCoupling(config.redisUrl, { queuedDailyOwnerTtlMs: config.mqtt.persistentSessionOfflineMsMax }) : null
  const broker = await createBroker({
    config,
    db,
    metrics,
    policy: view,
    recorder,
    ...(coupling !== null ? { aedesOptions: coupling } : {}),
  })
  parts.add('broker', () => broker.close())
  const address = await broker.listenTcp(config.mqtt.port, config.mqtt.host).catch((err: unknown) => {
    throw listenError(err, ENV_VARS.mqttPort, config.mqtt.port, config.mqtt.host)
  })
  metrics.checkDatabaseWith(() => broker.databaseAnswers())
  const health = async (): Promise<HealthReport> => ({
    broker: !broker.aedes.closed,
    database: await broker.databaseAnswers(),
    ...(coupling !== null ? { redis: coupling.healthy() } : {}),
    storage: !broker.storageFull(),
  })
  return { broker, view, recorder, mqttPort: address.port, health }
}

/** A port we cannot listen on is a configuration problem: say which variable, not a stack trace. */
function listenError(err: unknown, variable: string, port: number, host: string): unknown {
  const code = (err as { code?: string }).code
  if (code === 'EADDRINUSE') {
    const likely = variable === ENV_VARS.mqttPort ? 'another Metershare or MQTT broker?' : 'another Metershare or web server?'
    return new ConfigError(`${variable}: port ${port} on ${host} is already in use (${likely})`)
  }
  // The name of METERSHARE_HOST is looked up as the port opens.
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME') return new ConfigError(`${ENV_VARS.host}: ${host} is not a known host name`)
  if (code === 'EACCES') return new ConfigError(`${variable}: not allowed to listen on port ${port} on ${host}`)
  if (code === 'EADDRNOTAVAIL') return new ConfigError(`${ENV_VARS.host}: ${host} is not an address of this machine`)
  return err
}

/**
 * Finds a bad `METERSHARE_HOST` (an unknown name, an address this machine does not have), and a
 * port another process holds, before anything is created: by listening on a free port of the host,
 * then on each port asked for, for a moment. So the sentence comes at once, not after the database
 * has opened and migrated (seconds on the embedded one). A port taken between this check and the
 * real listen is still named, later.
 */
async function checkListen(host: string, ports: ReadonlyArray<{ variable: string; port: number }>): Promise<void> {
  const tryListen = async (variable: string, port: number): Promise<void> => {
    const server = net.createServer()
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, host, () => resolve())
      })
    } catch (err) {
      throw listenError(err, variable, port, host)
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
  // Two of ours on one port: the second would be refused as "in use", by ourselves.
  for (const [i, a] of ports.entries()) {
    const b = ports.slice(i + 1).find((p) => p.port !== 0 && p.port === a.port)
    if (b !== undefined) throw new ConfigError(`${b.variable}: port ${b.port} is ${a.variable} too; each needs a port of its own`)
  }
  await tryListen(ENV_VARS.host, 0)
  for (const { variable, port } of ports) if (port !== 0) await tryListen(variable, port)
}

/** The ports a process listens on, by the variable that sets each: the broker's MQTT port, and the HTTP port. */
function listenPorts(config: Readonly<Config>, withMqtt: boolean): Array<{ variable: string; port: number }> {
  return [...(withMqtt ? [{ variable: ENV_VARS.mqttPort, port: config.mqtt.port }] : []), { variable: ENV_VARS.httpPort, port: config.http.port }]
}

async function listenHttp(server: HttpServer | FastifyInstance, port: number, host: string): Promise<number> {
  try {
    if ('listen' in server && 'inject' in server) {
      await (server as FastifyInstance).listen({ port, host })
      return ((server as FastifyInstance).server.address() as AddressInfo).port
    }
    const s = server as HttpServer
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject)
      s.listen(port, host, () => resolve())
    })
    return (s.address() as AddressInfo).port
  } catch (err) {
    throw listenError(err, ENV_VARS.httpPort, port, host)
  }
}

export interface SystemOptions {
  demo: boolean
  simulate: boolean
  /** Shows a live status line (on a terminal) and logs to a file in the data directory. */
  interactive: boolean
  /**
   * Settles each month once it is over, and recent ones again for late data, on a timer, as the
   * settlement worker does (`up --settle-periodically`). Off by default: a month closed by itself
   * before its data came in would close the books up to it (README.md, Settlement), and the operator
   * settles with `POST /admin/settlements` or `metershare settle`. The demo fleet's months are settled
   * as they complete either way.
   */
  settlePeriodically?: boolean
  clock?: () => Date
}

export interface RunningSystem {
  config: Readonly<Config>
  adminToken: string
  db: DatabaseHandle
  metrics: Metrics
  broker: Broker
  api: FastifyInstance
  view: ReleaseView
  world: DemoWorld | null
  fleet: Fleet | null
  mqttPort: number
  httpPort: number
  stop(): Promise<void>
  /** Resolves with an exit code when it must stop by itself (its database migrated by a later version). */
  mustStop: Promise<number>
}

/** Everything in one process (`metershare up`). */
export async function startSystem(configIn: Readonly<Config>, options: SystemOptions): Promise<RunningSystem> {
  const clock = options.clock ?? (() => new Date())
  const adminToken = configIn.adminToken ?? generateSecret()
  const config: Readonly<Config> = Object.freeze({ ...configIn, adminToken })
  const parts = new Parts()
  const demoSettles = options.demo && options.simulate
  const metrics = createMetrics({ settlement: options.settlePeriodically === true || demoSettles })
  try {
    await checkListen(config.mqtt.host, listenPorts(config, true))
    const db = await openAndMigrate(config, parts, 'up')
    const { mustStop } = await watchSchema(db, parts)
    let world: DemoWorld | null = null
    if (options.demo) {
      const empty = (await db.db.selectFrom('parties').select('id').limit(1).execute()).length === 0
      if (empty) {
        log.cli.info('creating the demo world')
        world = await createDemoWorld(db.db, { dataDir: config.dataDir, timezone: config.timezone, now: clock() })
      } else {
        world = await readDemoWorld(config.dataDir)
        if (world !== null) world = await demoMetersInService(db, world)
        if (world === null) {
          log.cli.warn(
            { file: demoFilePath(config.dataDir) },
            'no simulated fleet: the database is not empty and the data folder holds no demo credentials (a demo world is created on an empty database only)',
          )
        }
      }
    }

    const { broker, view, mqttPort, health } = await startBrokerPart(config, db, metrics, parts)

    const api = await buildApi({
      config,
      db,
      metrics,
      clock,
      health,
      releaseChanged: (change) => view.apply(change),
      // PGlite below its reserve: what is left is kept for its write-ahead log (storage.ts).
      ...(db.dialect === 'pglite' ? { writesRefused: () => broker.storageFull() } : {}),
    })
    broker.attachWebSocket(api.server)
    parts.add('http', () => closeAfterBroker(broker, () => api.close()))
    const httpPort = await listenHttp(api, config.http.port, config.http.host)

    const sweeper = startConsentSweeper(db.db, { intervalMs: CONSENT_SWEEP_INTERVAL_MS, clock })
    parts.add('consent sweeper', () => sweeper.stop())

    let fleet: Fleet | null = null
    if (options.simulate && world !== null && world.meters.length > 0) {
      // A new world starts at its beginning (nothing stored); one started again goes on.
      const resume = await resumePoint(db, world)
      // The sample recipients first: the live one subscribed before the fleet publishes, it receives
      // (and its households' access logs count) what their statements bill from the first reading on.
      const recipients = (world.recipients ?? []).map((r) => {
        const recipient = startSampleRecipient({
          partyId: r.partyId,
          apiKey: r.apiKey,
          ...(r.live !== undefined ? { mqttUrl: `mqtt://127.0.0.1:${mqttPort}`, topics: r.live } : {}),
          ...(r.pull !== undefined ? { apiUrl: `http://127.0.0.1:${httpPort}`, pull: demoPull(config, world.fromMs, resume.fromMs, r.partyId, r.pull), timeZone: config.timezone } : {}),
        })
        parts.add(`sample recipient ${r.name}`, () => recipient.stop())
        return recipient
      })
      await Promise.race([Promise.all(recipients.map((r) => r.subscribed)), new Promise((r) => setTimeout(r, DEMO_RECIPIENTS_SUBSCRIBE_WAIT_MS).unref())])
      fleet = startFleet({
        mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
        meters: world.meters,
        from: resume.fromMs,
        resumeAfter: resume.after,
        resumeRegisters: resume.registers,
        // The households move in at the world's start: their first day opens with the index there.
        openingReading: true,
        speed: DEMO_SPEED,
        timeZone: config.timezone,
      })
      parts.add('simulator', async () => {
        await fleet!.stop()
      })
      startDemoSettlement(db, config, fleet, world.fromMs, clock, parts, metrics)
    } else if (options.settlePeriodically === true) {
      startPeriodicSettlement(db, config, clock, parts, metrics)
    }

    return {
      config,
      adminToken,
      db,
      metrics,
      broker,
      api,
      view,
      world,
      fleet,
      mqttPort,
      httpPort,
      stop: () => parts.stopAll(),
      mustStop,
    }
  } catch (err) {
    await parts.stopAll()
    throw err
  }
}

/**
 * The demo meters still in service with the credentials the data folder holds: one the operator has
 * retired, or whose secret was renewed (the new one is not in the folder), is left out of the
 * simulated fleet. It would only be refused at each start, and its latest reading, behind the
 * others, would hold the whole fleet's replay back to it.
 */
export async function demoMetersInService(db: DatabaseHandle, world: DemoWorld): Promise<DemoWorld> {
  const ids = world.meters.map((m) => m.meterId)
  const rows = ids.length === 0 ? [] : await db.db.selectFrom('meters').select(['id', 'secret_hash', 'retired_at']).where('id', 'in', ids).execute()
  const stored = new Map(rows.map((r) => [r.id, r]))
  const inService = (m: DemoWorld['meters'][number]): boolean => {
    const row = stored.get(m.meterId)
    return row !== undefined && row.retired_at === null && verifySecret(m.secret, row.secret_hash)
  }
  const left = world.meters.filter((m) => !inService(m)).map((m) => m.meterId)
  if (left.length === 0) return world
  log.cli.warn({ meters: left }, 'demo meters retired, or whose secret was renewed, are left out of the simulated fleet')
  return { ...world, meters: world.meters.filter(inService) }
}

/**
 * Where a demo fleet started again on the same data goes on: each meter after its latest stored
 * reading, its registers carrying on from that reading's, and the simulated clock from the earliest
 * of those (a meter with none: the world's start). Replaying the world from its start would only
 * resend what is stored, for minutes.
 */
export async function resumePoint(db: DatabaseHandle, world: DemoWorld): Promise<{ fromMs: number; after: Map<string, number>; registers: Map<string, RegisterValues> }> {
  const latest = await latestReadings(db.db, world.meters.map((m) => m.meterId))
  const after = new Map([...latest].map(([meterId, r]) => [meterId, r.ts]))
  const registers = new Map([...latest].map(([meterId, r]) => [meterId, r.values]))
  let fromMs: number | null = null
  for (const m of world.meters) {
    const last = after.get(m.meterId) ?? world.fromMs
    fromMs = fromMs === null ? last : Math.min(fromMs, last)
  }
  return { fromMs: Math.max(world.fromMs, fromMs ?? world.fromMs), after, registers }
}

/** Settles each simulated month once the simulator's clock has passed its end and its readings are in. */
function startDemoSettlement(db: DatabaseHandle, config: Readonly<Config>, fleet: Fleet, fromMs: number, clock: () => Date, parts: Parts, metrics: Metrics): void {
  const ctx = settlementContext(config, clock)
  let month = monthOf(fromMs, config.timezone)
  let due: number | null = null
  let running = Promise.resolve()
  const tick = (): void => {
    running = running.then(async () => {
      const stats = fleet.stats()
      const { end } = monthBounds(month, config.timezone)
      if (stats.simulatedMs === null || stats.simulatedMs < end.getTime() || end.getTime() > clock().getTime()) return
      due ??= Date.now() + DEMO_SETTLE_GRACE_MS
      if (Date.now() < due && stats.buffered + stats.inflight > 0) return
      try {
        const summary = await settleMonth(db.db, month, ctx)
        log.settlement.info({ month, grossMicros: String(summary.grossMicros), journals: summary.journals }, 'simulated month settled')
        month = addMonths(month, 1)
        due = null
        countSettlementRun(metrics, true)
      } catch (err) {
        countSettlementRun(metrics, false)
        log.settlement.error({ err, month }, 'settling a simulated month failed')
      }
    })
  }
  const timer = setInterval(tick, 1_000)
  timer.unref()
  parts.add('settlement', async () => {
    clearInterval(timer)
    await running
  })
}

/**
 * A demo recipient's pulls: each meter from where its progress file (in the data folder) says it got
 * to, the others from the world's start; without the file, from a day before the fleet resumes.
 */
function demoPull(config: Readonly<Config>, worldFromMs: number, resumeFromMs: number, partyId: string, granularity: NonNullable<SampleRecipientOptions['pull']>['granularity']): NonNullable<SampleRecipientOptions['pull']> {
  const progressFile = path.join(config.dataDir, `sample-recipient-${partyId}.json`)
  const fromMs = existsSync(progressFile) ? worldFromMs : Math.max(worldFromMs, resumeFromMs - DEMO_PULL_RESUME_LOOKBACK_MS)
  return { granularity, fromMs, progressFile }
}

/** Counts a settlement run of the process's timer, and when it last succeeded (an alert watches its age). */
function countSettlementRun(metrics: Metrics, ok: boolean): void {
  metrics.settlementRuns.labels(ok ? 'ok' : 'failed').inc()
  if (ok) metrics.settlementLastSuccess.set(Math.floor(Date.now() / 1000))
}

/** Settles months that are over, and re-settles recent ones for late data, on a timer. */
function startPeriodicSettlement(db: DatabaseHandle, config: Readonly<Config>, clock: () => Date, parts: Parts, metrics: Metrics, intervalMs = SETTLEMENT_INTERVAL_MS): void {
  const ctx = settlementContext(config, clock)
  let running = Promise.resolve()
  const tick = (): void => {
    running = running.then(async () => {
      try {
        const runs = await settleCompletedMonths(db.db, clock(), ctx)
        const posted = runs.filter((r) => r.journals > 0)
        if (posted.length > 0) log.settlement.info({ months: posted.map((r) => r.month) }, 'completed months settled')
        countSettlementRun(metrics, true)
      } catch (err) {
        countSettlementRun(metrics, false)
        logDatabaseFailure(log.settlement, 'error', err, {}, 'periodic settlement failed')
      }
    })
  }
  tick()
  const timer = setInterval(tick, intervalMs)
  timer.unref()
  parts.add('settlement', async () => {
    clearInterval(timer)
    await running
  })
}

/** A process of the multi-process layout, running. */
export interface RunningProcess {
  stop(): Promise<void>
  /** Resolves with an exit code when the process must stop by itself (its database migrated by a later version). */
  mustStop: Promise<number>
}

/**
 * A process stops when a later version migrates its database under it (a
 * rolling upgrade run in the wrong order: migrate before stopping the old processes). Whatever it
 * did next could bypass rules it does not know of (a meter retired, an offer withdrawn). Its
 * supervisor sees exit 2, and a restart with the old version is refused at its start.
 */
async function watchSchema(db: DatabaseHandle, parts: Parts): Promise<{ mustStop: Promise<number> }> {
  let resolve!: (code: number) => void
  const mustStop = new Promise<number>((r) => (resolve = r))
  const unlisten = await db.listen(SCHEMA_CHANNEL, () => {
    requireSchemaCurrent(db.db).catch((err: unknown) => {
      if (!(err instanceof SchemaTooNewError)) return
      log.cli.fatal({ err }, 'the database was migrated by a later version of Metershare: stopping')
      resolve(2)
    })
  })
  parts.add('schema watch', unlisten)
  return { mustStop }
}

/**
 * The HTTP port of a process without the API (a broker, the settlement worker): /healthz and /metrics,
 * read-only as the API's own. A broker also takes MQTT over WebSocket on it (attachWebSocket).
 */
function operationsServer(health: () => Promise<HealthReport>, metrics: Metrics, down?: HealthReport): HttpServer {
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    // As the API answers a method its route does not take (both are read-only).
    if ((url.pathname === '/healthz' || url.pathname === '/metrics') && req.method !== 'GET' && req.method !== 'HEAD') {
      const message = `${req.method} is not allowed here; allowed: GET, HEAD`
      res.writeHead(405, { 'content-type': 'application/json', allow: 'GET, HEAD' }).end(JSON.stringify(errorBody(ERROR_CODES.METHOD_NOT_ALLOWED, message)))
      return
    }
    if (url.pathname === '/healthz') {
      void checkHealth(health, down).then((report) => {
        const { code, body } = healthAnswer(report)
        res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body))
      })
      return
    }
    if (url.pathname === '/metrics') {
      void metrics.registry.metrics().then((text) => res.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' }).end(text))
      return
    }
    // As the API's own 404.
    res.writeHead(404, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(errorBody(ERROR_CODES.NOT_FOUND, noRouteMessage(req.method ?? 'GET', req.url ?? '/'))))
  })
}

/** `metershare broker`: MQTT on TCP, and an HTTP port for MQTT over WebSocket, /healthz and /metrics. */
export async function startBrokerProcess(config: Readonly<Config>): Promise<RunningProcess> {
  const parts = new Parts()
  const metrics = createMetrics()
  try {
    await checkListen(config.mqtt.host, listenPorts(config, true))
    const db = await openConfiguredDatabase(config, 'metershare:broker')
    parts.add('database', () => db.close())
    await requireSchemaCurrent(db.db)
    await openDataCalendar(db.db, config.timezone)
    const { mustStop } = await watchSchema(db, parts)
    const { broker, health } = await startBrokerPart(config, db, metrics, parts)
    const http = operationsServer(health, metrics)
    broker.attachWebSocket(http)
    parts.add('http', () => closeAfterBroker(broker, () => new Promise<void>((r) => http.close(() => r()))))
    await listenHttp(http, config.http.port, config.http.host)
    return { stop: () => parts.stopAll(), mustStop }
  } catch (err) {
    await parts.stopAll()
    throw err
  }
}

/** `metershare api`: the HTTP API and the portal. */
export async function startApiProcess(config: Readonly<Config>): Promise<RunningProcess> {
  const parts = new Parts()
  try {
    await checkListen(config.http.host, listenPorts(config, false))
    const db = await openConfiguredDatabase(config, 'metershare:api')
    parts.add('database', () => db.close())
    await requireSchemaCurrent(db.db)
    await openDataCalendar(db.db, config.timezone)
    const { mustStop } = await watchSchema(db, parts)
    // The brokers are other processes: their own /healthz and /metrics answer for them.
    const metrics = createMetrics({ broker: false, consentsActiveCount: () => countActiveConsents(db.db, new Date()) })
    metrics.checkDatabaseWith(() => probeDatabase(db))
    const api = await buildApi({
      config,
      db,
      metrics,
      health: async () => ({ database: await probeDatabase(db) }),
    })
    parts.add('http', () => api.close())
    await listenHttp(api, config.http.port, config.http.host)
    return { stop: () => parts.stopAll(), mustStop }
  } catch (err) {
    await parts.stopAll()
    throw err
  }
}

/** `metershare settlement`: consent lifecycle and settlement of completed months; /healthz and /metrics on its HTTP port. */
export async function startSettlementProcess(config: Readonly<Config>): Promise<RunningProcess> {
  const parts = new Parts()
  try {
    await checkListen(config.http.host, listenPorts(config, false))
    const db = await openConfiguredDatabase(config, 'metershare:settlement')
    parts.add('database', () => db.close())
    await requireSchemaCurrent(db.db)
    await openDataCalendar(db.db, config.timezone)
    const { mustStop } = await watchSchema(db, parts)
    const metrics = createMetrics({ broker: false, api: false, settlement: true, consentsActiveCount: () => countActiveConsents(db.db, new Date()) })
    metrics.checkDatabaseWith(() => probeDatabase(db))
    const clock = (): Date => new Date()
    const sweeper = startConsentSweeper(db.db, { intervalMs: CONSENT_SWEEP_INTERVAL_MS, clock })
    parts.add('consent sweeper', () => sweeper.stop())
    startPeriodicSettlement(db, config, clock, parts, metrics)
    const http = operationsServer(async () => ({ database: await probeDatabase(db) }), metrics, { database: false })
    parts.add('http', () => new Promise<void>((r) => http.close(() => r())))
    await listenHttp(http, config.http.port, config.http.host)
    return { stop: () => parts.stopAll(), mustStop }
  } catch (err) {
    await parts.stopAll()
    throw err
  }
}

/** Logs go to a file while the terminal shows the status line. */
export function logToFile(config: Readonly<Config>): string {
  const file = path.join(ensureDataDir(config.dataDir), 'metershare.log')
  configureLogging({ level: config.logLevel, target: new LogFile(file) })
  return file
}

/** How long, in ms, log lines are dropped after the log file failed (a full disk) before it is opened again. */
export const LOG_FILE_RETRY_MS = 10_000

/**
 * The log file, which lives in the data folder, on the disk that may be full. A write stream's
 * error with no listener ends the process ("Unhandled 'error' event", ENOSPC): here it is said once
 * on the terminal, lines are dropped meanwhile, and the file is opened again every LOG_FILE_RETRY_MS
 * (the first line then says how many were lost).
 */
class LogFile {
  private stream: ReturnType<typeof createWriteStream> | null = null
  private failedAt = 0
  private dropped = 0

  constructor(private readonly file: string) {
    this.open()
  }

  write(line: string): void {
    if (this.stream === null) {
      if (Date.now() - this.failedAt < LOG_FILE_RETRY_MS) {
        this.dropped++
        return
      }
      this.open()
      if (this.dropped > 0) this.stream!.write(`${JSON.stringify({ level: 40, time: Date.now(), msg: `${this.dropped} log lines were dropped: the log file could not be written` })}\n`)
      this.dropped = 0
    }
    this.stream!.write(line)
  }

  private open(): void {
    const stream = createWriteStream(this.file, { flags: 'a' })
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (this.stream !== stream) return
      this.stream = null
      this.failedAt = Date.now()
      stream.destroy()
      process.stderr.write(`\nmetershare: cannot write the log file ${this.file} (${err.code ?? err.message}); log lines are dropped until it can be written again\n`)
    })
    this.stream = stream
  }
}

export { DEMO_PASSWORD, demoFilePath }
