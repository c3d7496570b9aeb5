import path from 'node:path'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { dayOf } from '../shared/calendar.ts'
import { ENV_VARS, envToConfig, readEnv, type Config, type RawEnv } from '../shared/config.ts'
import { ensureDataDir } from '../shared/data-dir.ts'
import { ConfigError, MetershareError } from '../shared/errors.ts'
import { errorDetail } from '../shared/db/hold-alarm.ts'
import { isDiskFull } from '../shared/db/storage.ts'
import { configureLogging, log } from '../shared/logger.ts'

// Each command loads what it needs when it runs: `simulate` never loads the database or the broker.

/**
 * The command line of CONTRACT.md. This is the only module (with the simulator's and
 * benchmarks' entry points) that reads process.env.
 */

const USAGE = `usage: metershare <command> [options]

commands:
  up [--no-demo] [--no-simulate]   everything in one process (npm start)
  migrate                          bring the database schema up to date, then exit
  broker | api | settlement        one component alone (PostgreSQL required)
  simulate --meters N --from DATE --days D --speed X --mqtt URL
  settle --month YYYY-MM           run settlement for a month (idempotent)

options of up (also environment variables):
  --data-dir DIR     METERSHARE_DATA_DIR (default ./data)
  --mqtt-port PORT   MQTT_PORT (default 1883)
  --http-port PORT   HTTP_PORT (default 8080)

metershare <command> --help gives a command's options and the variables it reads.
`

const DATA_DIR_FLAG = '  --data-dir DIR     METERSHARE_DATA_DIR (default ./data)'
const MQTT_PORT_FLAG = '  --mqtt-port PORT   MQTT_PORT (default 1883)'
const HTTP_PORT_FLAG = '  --http-port PORT   HTTP_PORT (default 8080)'

const DATABASE_ENV = `  DATABASE_URL       postgres://…: PostgreSQL (unset: the embedded database under --data-dir)`
const TIMEZONE_ENV = `  METERSHARE_TIMEZONE     calendar of days and months, fixed at the database's first start (default Europe/Paris)`
const PAYOUT_ENV = `  METERSHARE_PAYOUT_MIN_MICROS  minimum payout in micro-euros (default 5000000)`
const FSYNC_ENV = `  METERSHARE_PGLITE_FSYNC  on | off: fsync of the embedded database (default on)`
const HOST_ENV = `  METERSHARE_HOST         address to listen on (default 0.0.0.0)`
const PROXIES_ENV = `  METERSHARE_TRUSTED_PROXIES  load balancers in front (addresses or CIDR ranges)`
const POOL_ENV = `  METERSHARE_DB_POOL_SIZE PostgreSQL connections of the process (default 10)
  METERSHARE_DB_CONNECT_TIMEOUT_MS  longest wait to open a PostgreSQL connection (default 5000)
  METERSHARE_DB_ANSWER_WAIT_MS      silence in a statement before the server is checked (default 5000)`
const LOG_ENV = `  METERSHARE_LOG_LEVEL    fatal, error, warn, info, debug, trace or silent (default info)`

/** `metershare <command> --help`: each command's own usage (simulate has its own, in the simulator). */
const COMMAND_USAGE: Record<string, string> = {
  up: `usage: metershare up [--no-demo] [--no-simulate] [--settle-periodically] [--data-dir DIR] [--mqtt-port PORT] [--http-port PORT]

Everything in one process: migrate, broker, services, HTTP API and portal, and a simulated fleet.
On an empty database it creates a demo world and prints how to sign in. Ctrl-C stops it cleanly.

  --no-demo          no demo world on an empty database
  --no-simulate      no simulated fleet
  --settle-periodically  settle each month once it is over, and recent ones again for late data,
                     every 10 minutes, as \`metershare settlement\` does (otherwise: POST
                     /admin/settlements or \`metershare settle\`; the demo fleet's months are settled
                     as they complete either way)
${DATA_DIR_FLAG}
${MQTT_PORT_FLAG}
${HTTP_PORT_FLAG}

environment:
${DATABASE_ENV}
  METERSHARE_ADMIN_TOKEN  the operator's bearer token (generated and printed when unset)
  METERSHARE_TIMEZONE     calendar of days and months (default Europe/Paris)
  and the others of README's Configuration
`,
  migrate: `usage: metershare migrate [--data-dir DIR]

Brings the database schema up to date, prints the migrations applied, and exits.

${DATA_DIR_FLAG}

environment:
${DATABASE_ENV}
${TIMEZONE_ENV}
${FSYNC_ENV}
${POOL_ENV}
${LOG_ENV}
`,
  broker: `usage: metershare broker [--mqtt-port PORT] [--http-port PORT]

The MQTT broker and ingest alone (TCP on --mqtt-port, WebSocket at /mqtt, /healthz and /metrics on
--http-port), for the multi-process layout. Runs until SIGINT or SIGTERM.

${MQTT_PORT_FLAG}
${HTTP_PORT_FLAG}

environment:
  DATABASE_URL       required: the PostgreSQL server every component shares
  REDIS_URL          couples several brokers (sessions and messages)
${PROXIES_ENV}
${HOST_ENV}
${TIMEZONE_ENV}
${POOL_ENV}
${LOG_ENV}
`,
  api: `usage: metershare api [--http-port PORT]

The HTTP API, portal and documentation alone, for the multi-process layout. Runs until SIGINT or
SIGTERM.

${HTTP_PORT_FLAG}

environment:
  DATABASE_URL            required: the PostgreSQL server every component shares
  METERSHARE_ADMIN_TOKEN  required: the operator's bearer token (16 characters or more)
${PROXIES_ENV}
${HOST_ENV}
${TIMEZONE_ENV}
  METERSHARE_PAYOUT_MIN_MICROS  minimum payout in micro-euros, for POST /admin/settlements (default 5000000)
${POOL_ENV}
${LOG_ENV}
`,
  settlement: `usage: metershare settlement

The settlement worker alone, for the multi-process layout: settles each month once it is over,
settles recent months again for late data, and ends consents whose validity is over; /healthz and
/metrics on its HTTP port. Runs until SIGINT or SIGTERM.

${HTTP_PORT_FLAG}

environment:
  DATABASE_URL       required: the PostgreSQL server every component shares
${HOST_ENV}
${PAYOUT_ENV}
${TIMEZONE_ENV}
${POOL_ENV}
${LOG_ENV}
`,
  settle: `usage: metershare settle --month YYYY-MM [--data-dir DIR]

Settles one month (idempotent: a second run posts only what changed since) and prints a summary.

  --month YYYY-MM    the month to settle, in METERSHARE_TIMEZONE
  --data-dir DIR     METERSHARE_DATA_DIR (default ./data): where \`up\` keeps the embedded database

environment:
${DATABASE_ENV}
${PAYOUT_ENV}
${TIMEZONE_ENV}
${FSYNC_ENV}
${POOL_ENV}
  METERSHARE_LOG_LEVEL    fatal, error, warn, info, debug, trace or silent (default warn here)
`,
}

type Command = (args: string[], env: RawEnv) => Promise<number>

/** The options of `up`; the other commands take those their usage names (an option a command does not use is refused, not ignored). */
const SERVER_OPTIONS = {
  'data-dir': { type: 'string' },
  'mqtt-port': { type: 'string' },
  'http-port': { type: 'string' },
} as const satisfies ParseArgsConfig['options']

/** Flags override the environment; both go through the same config schema. */
export function serverEnv(values: { 'data-dir'?: string; 'mqtt-port'?: string; 'http-port'?: string }, env: RawEnv): RawEnv {
  const raw = { ...env }
  if (values['data-dir'] !== undefined) raw.dataDir = values['data-dir']
  if (values['mqtt-port'] !== undefined) raw.mqttPort = values['mqtt-port']
  if (values['http-port'] !== undefined) raw.httpPort = values['http-port']
  return raw
}

/**
 * From now on, SIGINT, SIGTERM or SIGHUP (the terminal closing, an SSH session ending) asks for a
 * stop in order, and resolves; a second signal exits at once. Asked before a start is complete,
 * the stop waits for it: `up` interrupted while it creates the demo world would leave half a world.
 */
function stopRequested(): Promise<void> {
  return new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      log.cli.info({ signal }, 'shutting down')
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      process.off('SIGHUP', onSignal)
      process.once('SIGINT', () => process.exit(130))
      process.once('SIGTERM', () => process.exit(143))
      resolve()
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    process.on('SIGHUP', onSignal)
  })
}

/** Runs until a stop is asked (see stopRequested), then stops in order. */
async function runUntilSignal(stop: () => Promise<void>, requested: Promise<void> = stopRequested(), mustStop?: Promise<number>): Promise<number> {
  // Runs until a signal, whatever else holds the event loop: the settlement worker's timers do not,
  // and it would otherwise end (exit 13) the moment its database connection dropped.
  const keepAlive = setInterval(() => {}, 2 ** 31 - 1)
  const code = await Promise.race([requested.then(() => 0), ...(mustStop === undefined ? [] : [mustStop])])
  clearInterval(keepAlive)
  await stop()
  return code
}

/**
 * Starts one component and runs it until a signal. Signals are listened to before the start, as
 * `up` does: one during the start (a broker takes seconds to open its database and listen) stops it
 * in order once started, rather than killing it half-started (exit 143, nothing said).
 */
async function runStarted(start: () => Promise<{ stop: () => Promise<void>; mustStop?: Promise<number> }>, started: () => void): Promise<number> {
  const requested = stopRequested()
  const running = await start()
  started()
  return runUntilSignal(running.stop, requested, running.mustStop)
}

function requirePostgres(config: Readonly<Config>, command: string): void {
  if (config.databaseUrl === null) {
    throw new ConfigError(`DATABASE_URL: \`metershare ${command}\` runs beside other processes and needs PostgreSQL (the embedded database serves one process: use \`metershare up\`)`)
  }
}

const commands: Record<string, Command> = {
  settle: async (args, env) => (await import('./settle-command.ts')).settleCommand(args, env),
  async up(args, env) {
    const { values } = parseArgs({
      args,
      options: { ...SERVER_OPTIONS, 'no-demo': { type: 'boolean' }, 'no-simulate': { type: 'boolean' }, 'settle-periodically': { type: 'boolean' } },
      strict: true,
    })
    const config = envToConfig(serverEnv(values, env))
    // Logs (on a terminal), the demo's credentials and the embedded database live there.
    ensureDataDir(config.dataDir)
    const tty = process.stdout.isTTY === true
    const { DEMO_PASSWORD, DEMO_SPEED, demoFilePath, logToFile, startSystem } = await import('./system.ts')
    const { simulatorLine, startStatusLine } = await import('./status-line.ts')
    const logFile = tty ? logToFile(config) : null
    if (!tty) configureLogging({ level: config.logLevel })
    const demo = values['no-demo'] !== true
    const out = process.stdout
    out.write(`Metershare: starting on ${config.databaseUrl === null ? `the embedded database in ${path.resolve(config.dataDir)}` : 'PostgreSQL'}…\n`)
    // Listening already: a signal during the start (the demo world being created) stops it once started.
    const requested = stopRequested()
    const system = await startSystem(config, { demo, simulate: values['no-simulate'] !== true, interactive: tty, settlePeriodically: values['settle-periodically'] === true })
    const host = config.http.host === '0.0.0.0' || config.http.host === '::' ? 'localhost' : config.http.host
    const lines = [
      `  MQTT       mqtt://${host}:${system.mqttPort}   (WebSocket ws://${host}:${system.httpPort}/mqtt)`,
      `  HTTP API   http://${host}:${system.httpPort}   (docs http://${host}:${system.httpPort}/docs)`,
      `  Operator   Authorization: Bearer ${env.adminToken === undefined ? system.adminToken + '   (generated: set METERSHARE_ADMIN_TOKEN to keep one)' : '<METERSHARE_ADMIN_TOKEN>'}`,
    ]
    if (system.world !== null && system.world.households.length > 0) {
      lines.push(`  Portal     http://${host}:${system.httpPort}/   sign in as ${system.world.households[0]!.email} / ${DEMO_PASSWORD} (demo01 … demo${String(system.world.households.length).padStart(2, '0')})`)
    } else {
      lines.push(`  Portal     http://${host}:${system.httpPort}/`)
    }
    if (system.fleet !== null) {
      const { meters, fromMs } = system.fleet.stats()
      // Started again on the same data, the fleet goes on after what is stored.
      const line = simulatorLine({ meters, fromMs, worldFromMs: system.world!.fromMs, nowMs: Date.now(), speed: DEMO_SPEED, firstDay: dayOf(fromMs, config.timezone) })
      lines.push(`  Simulator  ${line}`)
    } else if (demo && system.world === null) {
      // Said here too: on a terminal the log goes to its file.
      lines.push(
        `  Simulator  none: the database is not empty and ${demoFilePath(config.dataDir)} is missing (a demo world is created on an empty database only: for the demo, start on an empty one)`,
      )
    }
    if (logFile !== null) lines.push(`  Logs       ${logFile}`)
    out.write(`Metershare is running (Ctrl-C to stop)\n${lines.join('\n')}\n`)
    const status = startStatusLine({ metrics: system.metrics, fleet: system.fleet, out, tty })
    return runUntilSignal(async () => {
      status.stop()
      out.write('Metershare: stopping…\n')
      await system.stop()
      out.write('Metershare: stopped; everything acknowledged is stored.\n')
    }, requested, system.mustStop)
  },
  async broker(args, env) {
    const { values } = parseArgs({ args, options: { 'mqtt-port': SERVER_OPTIONS['mqtt-port'], 'http-port': SERVER_OPTIONS['http-port'] }, strict: true })
    const config = envToConfig(serverEnv(values, env))
    configureLogging({ level: config.logLevel })
    requirePostgres(config, 'broker')
    return runStarted(async () => (await import('./system.ts')).startBrokerProcess(config), () => log.cli.info({ mqttPort: config.mqtt.port, httpPort: config.http.port }, 'broker running'))
  },
  async api(args, env) {
    const { values } = parseArgs({ args, options: { 'http-port': SERVER_OPTIONS['http-port'] }, strict: true })
    const config = envToConfig(serverEnv(values, env))
    configureLogging({ level: config.logLevel })
    requirePostgres(config, 'api')
    if (config.adminToken === null) {
      // Without it every /admin request would be refused, with nothing to say why.
      throw new ConfigError(
        `${ENV_VARS.adminToken}: \`metershare api\` needs the operator's bearer token (at least 16 characters; give every process of a layout the same one)`,
      )
    }
    return runStarted(async () => (await import('./system.ts')).startApiProcess(config), () => log.cli.info({ httpPort: config.http.port }, 'api running'))
  },
  async settlement(args, env) {
    const { values } = parseArgs({ args, options: { 'http-port': SERVER_OPTIONS['http-port'] }, strict: true })
    const config = envToConfig(serverEnv(values, env))
    configureLogging({ level: config.logLevel })
    requirePostgres(config, 'settlement')
    return runStarted(async () => (await import('./system.ts')).startSettlementProcess(config), () => log.cli.info({ httpPort: config.http.port }, 'settlement running'))
  },
  async simulate(args, env) {
    // Loaded on demand: the simulators speak MQTT and HTTP only and share no code with the product.
    const { runSimulateCommand } = await import('../simulators/simulate-command.ts')
    return runSimulateCommand(args, { adminToken: env.adminToken, timezone: env.timezone })
  },
  async migrate(args, env) {
    const { values } = parseArgs({ args, options: { 'data-dir': SERVER_OPTIONS['data-dir'] }, strict: true })
    const config = envToConfig(serverEnv(values, env))
    configureLogging({ level: config.logLevel })
    const { openConfiguredDatabase } = await import('../shared/db/database.ts')
    const { migrateToLatest } = await import('../shared/db/migrator.ts')
    const handle = await openConfiguredDatabase(config, 'metershare:migrate')
    try {
      const applied = await migrateToLatest(handle.db)
      // Said at once: processes of an earlier version stop on the notice, before anything is cut again by new rules.
      const noticeAt = new Date()
      if (applied.length > 0) await (await import('../shared/db/migrator.ts')).announceSchema(handle.db)
      if (applied.length > 0) process.stdout.write(applied.join('\n') + '\n')
      const { openDataCalendar, recutPending, SCHEMA_NOTICE_GRACE_MS } = await import('../services/metering/rollup-recut.ts')
      if (applied.length > 0 && (await recutPending(handle.db))) {
        // What an earlier version still holds is committed as it stops: given the time to, before the cut.
        process.stdout.write(`waiting ${SCHEMA_NOTICE_GRACE_MS / 1000} s for processes of earlier versions to stop\n`)
        await new Promise((r) => setTimeout(r, SCHEMA_NOTICE_GRACE_MS))
      }
      await openDataCalendar(handle.db, config.timezone, {
        storedSince: noticeAt,
        onProgress: (p) => {
          if (p.phase === 'waiting') process.stdout.write('another process is cutting the daily rollups again: waiting for it\n')
          else if (p.phase === 'cutting' && p.done === 0 && p.pass === 1) process.stdout.write(`cutting the daily rollups of ${p.meters.toLocaleString('en')} meters again by interval end\n`)
          else if (p.phase === 'cutting' && p.done === 0) process.stdout.write(`… once more for the ${p.meters.toLocaleString('en')} meters that took readings meanwhile (pass ${p.pass})\n`)
          else if (p.phase === 'cutting') process.stdout.write(`… ${p.done.toLocaleString('en')} of ${p.meters.toLocaleString('en')} meters\n`)
          else if (p.phase === 'done') process.stdout.write(`daily rollups cut again in ${((p.ms ?? 0) / 1000).toFixed(1)} s\n`)
        },
      })
      // Said once the calendar is known to match too: a zone refused above is not preceded by "up to date".
      if (applied.length === 0) process.stdout.write('schema is up to date\n')
    } finally {
      await handle.close()
    }
    return 0
  },
}

const HELP_FLAGS = new Set(['--help', '-h'])

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [name, ...args] = argv
  if (name !== undefined && (HELP_FLAGS.has(name) || name === 'help')) {
    process.stdout.write(USAGE)
    return 0
  }
  // A usage error, like any other: said on stderr, exit 2.
  const command = name === undefined ? undefined : commands[name]
  if (name === undefined || command === undefined) {
    process.stderr.write(`metershare: ${name === undefined ? 'a command is required' : `unknown command '${name}'`}\n\n${USAGE}`)
    return 2
  }
  // `simulate` answers --help itself, from its own options.
  const usage = COMMAND_USAGE[name]
  if (usage !== undefined && args.some((a) => HELP_FLAGS.has(a))) {
    process.stdout.write(usage)
    return 0
  }
  try {
    return await command(args, readEnv(env))
  } catch (err) {
    if (err instanceof MetershareError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`metershare ${name}: ${(err as Error).message}\n`)
      return 2
    }
    if (isDiskFull(err)) {
      // A failed statement rolled its transaction back (a migration is one transaction): nothing half-done.
      log.cli.fatal({ detail: errorDetail(err) }, "command failed: the database's disk is full")
      process.stderr.write(`metershare ${name}: the database's disk is full (no space left on device): ${errorDetail(err)}; free space and run it again\n`)
      return 1
    }
    log.cli.fatal({ err }, 'command failed')
    process.stderr.write(`metershare ${name}: ${(err as Error).stack ?? String(err)}\n`)
    return 1
  }
}
