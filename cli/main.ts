import { parseArgs, type ParseArgsConfig } from 'node:util'
import { settleCommand } from './settle-command.ts'
import { envToConfig, readEnv, type RawEnv } from '../shared/config.ts'
import { openConfiguredDatabase } from '../shared/db/database.ts'
import { migrateToLatest } from '../shared/db/migrator.ts'
import { MetershareError } from '../shared/errors.ts'
import { configureLogging, log } from '../shared/logger.ts'

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
`

type Command = (args: string[], env: RawEnv) => Promise<number>

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

const commands: Record<string, Command> = {
  settle: settleCommand,
  async simulate(args, env) {
    // Loaded on demand: the simulators speak MQTT and HTTP only and share no code with the product.
    const { runSimulateCommand } = await import('../simulators/simulate-command.ts')
    return runSimulateCommand(args, { adminToken: env.adminToken, timezone: env.timezone })
  },
  async migrate(args, env) {
    const { values } = parseArgs({ args, options: SERVER_OPTIONS, strict: true })
    const config = envToConfig(serverEnv(values, env))
    configureLogging({ level: config.logLevel })
    const handle = await openConfiguredDatabase(config, 'metershare:migrate')
    try {
      const applied = await migrateToLatest(handle.db)
      process.stdout.write(applied.length === 0 ? 'schema is up to date\n' : applied.join('\n') + '\n')
    } finally {
      await handle.close()
    }
    return 0
  },
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [name, ...args] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE)
    return name === undefined ? 1 : 0
  }
  const command = commands[name]
  if (command === undefined) {
    process.stderr.write(`metershare: unknown command '${name}'\n\n${USAGE}`)
    return 2
  }
  try {
    return await command(args, readEnv(env))
  } catch (err) {
    if (err instanceof MetershareError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`metershare ${name}: ${(err as Error).message}\n`)
      return 2
    }
    log.cli.fatal({ err }, 'command failed')
    process.stderr.write(`metershare ${name}: ${(err as Error).stack ?? String(err)}\n`)
    return 1
  }
}
