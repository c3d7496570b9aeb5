import pg from 'pg'
import { hostAndPortOf, networkCause, parsedUrl } from '../connect-errors.ts'
import { ServiceUnavailableError } from '../errors.ts'

/** Longest wait at start for PostgreSQL to accept a connection and answer. */
export const POSTGRES_CONNECT_TIMEOUT_MS = 10_000

/**
 * Connects once, as a process starts, so that a wrong DATABASE_URL or a server that is not
 * there ends the start with one sentence naming the cause, rather than the first query's stack
 * trace. Later connection losses are the pools' and the retries' business.
 */
export async function checkPostgres(config: pg.ClientConfig & { connectionString: string }, timeoutMs = POSTGRES_CONNECT_TIMEOUT_MS): Promise<void> {
  const client = new pg.Client({ ...config, connectionTimeoutMillis: timeoutMs })
  // An error after the connection is up (the server going away) is the query's to report.
  client.on('error', () => undefined)
  try {
    await client.connect()
    await client.query('SELECT 1')
  } catch (err) {
    throw new ServiceUnavailableError(describeConnectError(err, config.connectionString, timeoutMs), { cause: err })
  } finally {
    await client.end().catch(() => undefined)
  }
}

/** What went wrong connecting to `url`, for the person who set it (the password never shown). */
export function describeConnectError(err: unknown, url: string, timeoutMs: number): string {
  const { where, user, database } = target(url)
  const e = err as { code?: unknown; message?: unknown }
  const code = typeof e.code === 'string' ? e.code : undefined
  const message = typeof e.message === 'string' ? e.message : String(err)
  switch (code) {
    case '28P01':
      return `DATABASE_URL: PostgreSQL at ${where} refused the password of user "${user}"`
    case '28000':
      return `DATABASE_URL: PostgreSQL at ${where} refused user "${user}": ${message}`
    case '3D000':
      return `DATABASE_URL: database "${database}" does not exist on ${where}: create it (createdb ${database}) or name another`
    case '57P03':
      return `DATABASE_URL: PostgreSQL at ${where} is starting up or shutting down: try again in a moment`
    case '53300':
      return `DATABASE_URL: PostgreSQL at ${where} has no connection left (max_connections): ${message}`
  }
  return networkCause(code, message, 'DATABASE_URL', where, 'PostgreSQL', timeoutMs) ?? `DATABASE_URL: cannot connect to PostgreSQL at ${where}: ${message}`
}

function target(url: string): { where: string; user: string; database: string } {
  const u = parsedUrl(url)
  if (u === null) return { where: 'the server named by DATABASE_URL', user: '(from DATABASE_URL)', database: '(from DATABASE_URL)' }
  const user = decodeURIComponent(u.username)
  return { where: hostAndPortOf(u, 5432), user: user || '(default)', database: decodeURIComponent(u.pathname.replace(/^\//, '')) || user || 'postgres' }
}
