import { pino, type Logger, type LevelWithSilent } from 'pino'

/**
 * One pino root; every component's child logger is declared here. Messages are constant,
 * fields carry the data. Secrets are redacted wherever they could appear.
 */
export const REDACTED_PATHS = [
  'password',
  'secret',
  'apiKey',
  'token',
  'adminToken',
  '*.password',
  '*.secret',
  '*.apiKey',
  '*.token',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
]

/** Where log lines go; `up` sends them to a file so that the terminal keeps its status line. */
const sink: { target: { write(line: string): unknown } } = { target: process.stdout }

export const rootLogger: Logger = pino(
  {
    level: 'info',
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    base: { service: 'metershare' },
  },
  { write: (line: string) => sink.target.write(line) },
)

export function configureLogging(options: { level: LevelWithSilent; target?: { write(line: string): unknown } }): void {
  rootLogger.level = options.level
  if (options.target !== undefined) sink.target = options.target
}

export const log = {
  cli: rootLogger.child({ component: 'cli' }),
  db: rootLogger.child({ component: 'db' }),
  broker: rootLogger.child({ component: 'broker' }),
  ingest: rootLogger.child({ component: 'ingest' }),
  metering: rootLogger.child({ component: 'metering' }),
  consent: rootLogger.child({ component: 'consent' }),
  settlement: rootLogger.child({ component: 'settlement' }),
  api: rootLogger.child({ component: 'api' }),
  simulator: rootLogger.child({ component: 'simulator' }),
} as const
