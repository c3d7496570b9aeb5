import type { Logger } from 'pino'
import { errorDetail, HOLD_REMIND_MS, HoldAlarm } from './hold-alarm.ts'

/**
 * The database server gone away: stopped (`pg_ctl stop`, a restart, a failover), crashed, starting
 * up again after it, or out of reach. A statement then fails on a connection that is cut or cannot
 * be opened, and would succeed once the server is back: nothing is wrong with what was asked. Ingest
 * holds such a group, unacknowledged, and retries it (IngestQueue), as for a full disk, rather than
 * giving up after `commitAttemptsMax` attempts (about 2.5 s) and cutting its meters off, which then
 * reconnect into CONNACK 3 (their sign-in needs the database) for as long as the outage lasts; MQTT.js
 * by default stops reconnecting after such a refusal. The HTTP API answers 503 DATABASE_UNAVAILABLE.
 */

/**
 * SQLSTATEs of a server going away or not yet back: class 08 (connection exception) but 08P01
 * protocol_violation (a malformed request, which would fail again at every try and hold its lane for
 * good), 57P01 admin_shutdown (`pg_ctl stop -m fast`, and `pg_terminate_backend`), 57P02
 * crash_shutdown (a sibling backend crashed, or `-m immediate`), 57P03 cannot_connect_now (shutting
 * down, starting up, in recovery), 53300 too_many_connections (every process reconnecting at once).
 */
const UNREACHABLE_SQLSTATES = new Set(['08000', '08001', '08003', '08004', '08006', '08007', '57P01', '57P02', '57P03', '53300'])

/** Node's errors of a connection refused, cut or not answered. */
const UNREACHABLE_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])

/**
 * node-postgres' own words for a connection that ended under a query, a connection not opened within
 * its connectionTimeoutMillis (`timeout expired`), or a pool that could not open one in time.
 */
const UNREACHABLE_MESSAGE = /^(Connection terminated|Client has encountered a connection error|timeout expired$|timeout exceeded when trying to connect|Client was closed and is not queryable)/

/** Whether an error says the database server cannot be reached now (rather than refusing what was asked). */
export function isDatabaseUnreachable(err: unknown): boolean {
  if (err === null || typeof err !== 'object') return false
  const { code, message } = err as { code?: unknown; message?: unknown }
  if (typeof code === 'string' && (UNREACHABLE_SQLSTATES.has(code) || UNREACHABLE_NODE_CODES.has(code))) return true
  return typeof message === 'string' && UNREACHABLE_MESSAGE.test(message)
}

/** What an API caller is told while the database cannot be reached (503 DATABASE_UNAVAILABLE). */
export const DATABASE_UNAVAILABLE_MESSAGE = 'the database cannot be reached now: try again later'

/** Seconds a client is asked to wait (`Retry-After`) before trying again while the database cannot be reached. */
export const DATABASE_UNAVAILABLE_RETRY_AFTER_S = 5

/**
 * Whether ingest is held because the database server cannot be reached (shared by a broker's lanes,
 * /metrics' `metershare_database_unreachable` and the status line): said once when it starts, once a
 * minute while it lasts, and once when it ends.
 */
export class DatabaseAlarm extends HoldAlarm {
  constructor(log: Logger, onChange: (down: boolean) => void = () => {}, remindMs = HOLD_REMIND_MS, now: () => number = Date.now) {
    super(
      log,
      {
        started: (retryMs) => `database unreachable: ingest holds publishes unacknowledged and retries every ${retryMs} ms until the server is back`,
        lasting: 'database still unreachable: ingest still held',
        ended: 'database reachable again: ingest resumed',
        givenUp: 'ingest closing with publishes held for the database: they are not acknowledged (their meters send them again)',
        forMs: 'downForMs',
      },
      onChange,
      remindMs,
      now,
    )
  }

  get down(): boolean {
    return this.active
  }
}

/** When each message was last said for an unreachable database, and how many times it was kept quiet since. */
const said = new Map<string, { at: number; quiet: number }>()

/**
 * Logs a failure of background work (a sweep, a flush, a sign-in's lookup, the LISTEN connection):
 * as it is when the database refused what was asked, but when the server cannot be reached, once
 * per message and HOLD_REMIND_MS (with how many were kept quiet meanwhile): every such job fails at
 * each of its turns for as long as the server is away, and the log would say nothing else.
 */
export function logDatabaseFailure(
  logger: Pick<Logger, 'warn' | 'error'>,
  level: 'warn' | 'error',
  err: unknown,
  fields: Record<string, unknown>,
  msg: string,
  now: () => number = Date.now,
): void {
  if (!isDatabaseUnreachable(err)) {
    logger[level]({ err, ...fields }, msg)
    return
  }
  const t = now()
  const last = said.get(msg)
  if (last !== undefined && t - last.at < HOLD_REMIND_MS) {
    last.quiet++
    return
  }
  said.set(msg, { at: t, quiet: 0 })
  const code = (err as { code?: unknown }).code
  logger[level]({ ...fields, databaseUnreachable: true, detail: errorDetail(err), ...(typeof code === 'string' ? { code } : {}), ...(last !== undefined ? { keptQuiet: last.quiet } : {}) }, msg)
}
