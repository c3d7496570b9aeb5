import type { Logger } from 'pino'
import pg from 'pg'
import { logDatabaseFailure } from './unreachable.ts'

/**
 * A PostgreSQL server that stops answering without closing its connections: a frozen host or VM,
 * a postmaster and its backends stopped (SIGSTOP), a network that drops packets. Nothing fails
 * then: a statement waits for its answer forever on an established connection (the kernel keeps
 * acknowledging, or retransmits for ~15 minutes), and a new connection waits for the kernel's
 * connect timeout (~2 minutes) or, when the kernel accepted it, forever for the server's first word.
 *
 * So every connection Metershare opens on a server is bounded, and watched:
 * - opening one (TCP, then the server's startup answer) takes at most `connectTimeoutMs`;
 * - TCP keep-alive probes an idle connection after TCP_KEEPALIVE_IDLE_MS (a host gone for good);
 * - a connection that has waited `answerWaitMs` for the server's next word in the middle of a
 *   statement has the server checked: a new connection and `SELECT 1`, within `connectTimeoutMs`.
 *   A server that answers the check (even with an error) is alive, busy with a long statement
 *   (a large commit, a settlement run): nothing is cut. One that does not is not answering: every
 *   connection of the handle is closed, their statements fail as for a server gone away
 *   (unreachable.ts: ingest holds its publishes unacknowledged and retries, the API answers 503),
 *   and the next statements open new connections, within `connectTimeoutMs` each.
 * No statement is ever cut for taking long while the server answers: there is no time limit per
 * statement or transaction.
 */

export interface ServerWaitLimits {
  /** Longest wait, in ms, to open a connection (TCP and the server's startup answer), and for the check's `SELECT 1`. */
  connectTimeoutMs: number
  /** How long, in ms, a statement may go without a word from the server before the server is checked. */
  answerWaitMs: number
}

export const DEFAULT_SERVER_WAIT_LIMITS: Readonly<ServerWaitLimits> = Object.freeze({ connectTimeoutMs: 5_000, answerWaitMs: 5_000 })

/** Idle time, in ms, after which TCP keep-alive probes a connection (Linux then probes every 75 s, 9 times). */
export const TCP_KEEPALIVE_IDLE_MS = 30_000

/**
 * Longest wait, in ms, for the server to close a connection that was ended (a pool's, or all of them
 * as a handle closes): the Terminate message is sent by then, and a server that answers closes at
 * once. Past it the connection is closed here, so that a stop is not held by a server that does not answer.
 */
export const ENDING_WAIT_MS_MAX = 1_000

/** Longest interval, in ms, between two looks at the watched connections. */
const WATCH_TICK_MS_MAX = 1_000

/** Messages of the server that show it is working on a statement (node-postgres' event names). */
const PROGRESS_EVENTS = [
  'parseComplete',
  'bindComplete',
  'rowDescription',
  'dataRow',
  'commandComplete',
  'readyForQuery',
  'copyInResponse',
  'copyOutResponse',
  'copyData',
  'errorMessage',
  'noData',
  'emptyQuery',
  'portalSuspended',
  'notice',
  'notification',
] as const

/** What node-postgres has and its types do not say. */
interface ClientInternals {
  /** False from a statement's dispatch to the server's ReadyForQuery (and before the connection is ready). */
  readyForQuery?: boolean
  connection: pg.Client['connection'] & { stream: { destroy(err?: Error): void } }
}

interface Watched {
  /** Since when the connection has waited, in the middle of a statement, without a word from the server; null when not waiting. */
  quietSince: number | null
  /** Since when it has been ended (Terminate sent), waiting for the server to close it; null before. */
  endingSince: number | null
}

/** The error a watched connection is closed with when the server did not answer (ETIMEDOUT: unreachable.ts counts it as unreachable). */
export class ServerNotAnsweringError extends Error {
  readonly code = 'ETIMEDOUT'
  constructor(limits: ServerWaitLimits) {
    super(`the database server did not answer for ${limits.answerWaitMs} ms, nor a check within ${limits.connectTimeoutMs} ms: connection closed`)
    this.name = 'ServerNotAnsweringError'
  }
}

export class ServerWatch {
  private readonly clients = new Map<pg.Client, Watched>()
  private readonly timer: NodeJS.Timeout
  private checking = false
  /** The pg.Client class of the handle's pool and listener: bounded connect, keep-alive, watched. */
  readonly Client: typeof pg.Client

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly limits: Readonly<ServerWaitLimits>,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    const watch = this
    this.Client = class WatchedClient extends pg.Client {
      constructor(c?: string | pg.ClientConfig) {
        super({ ...(typeof c === 'string' ? { connectionString: c } : c), ...watch.socketOptions() })
        watch.track(this)
      }

      override end(): Promise<void>
      override end(callback: (err: Error) => void): void
      override end(callback?: (err: Error) => void): Promise<void> | void {
        const watched = watch.clients.get(this)
        if (watched !== undefined) watched.endingSince ??= watch.now()
        return callback === undefined ? super.end() : super.end(callback)
      }
    }
    this.timer = setInterval(() => this.look(), Math.min(WATCH_TICK_MS_MAX, Math.max(50, Math.floor(limits.answerWaitMs / 4))))
    this.timer.unref()
  }

  /** The options that bound a connection's opening and keep it probed while idle. */
  socketOptions(): Pick<pg.ClientConfig, 'connectionTimeoutMillis' | 'keepAlive' | 'keepAliveInitialDelayMillis'> {
    return { connectionTimeoutMillis: this.limits.connectTimeoutMs, keepAlive: true, keepAliveInitialDelayMillis: TCP_KEEPALIVE_IDLE_MS }
  }

  stop(): void {
    clearInterval(this.timer)
    for (const client of this.clients.keys()) destroy(client)
    this.clients.clear()
  }

  private track(client: pg.Client): void {
    const watched: Watched = { quietSince: null, endingSince: null }
    this.clients.set(client, watched)
    const heard = (): void => {
      if (watched.quietSince !== null) watched.quietSince = this.now()
    }
    for (const event of PROGRESS_EVENTS) client.connection.on(event, heard)
    // A connection the pool is ending has no 'error' listener left, and Node would end the process
    // for the error it is closed with here. Its statements are told by node-postgres all the same.
    client.on('error', () => undefined)
    client.once('end', () => this.clients.delete(client))
  }

  private look(): void {
    const t = this.now()
    let quiet = false
    for (const [client, watched] of this.clients) {
      const waiting = (client as unknown as ClientInternals).readyForQuery === false && watched.endingSince === null
      if (!waiting) watched.quietSince = null
      else watched.quietSince ??= t
      if (watched.quietSince !== null && t - watched.quietSince >= this.limits.answerWaitMs) quiet = true
      // Ended, and not closed by a server that does not answer (a stop would wait for it for ever).
      if (watched.endingSince !== null && t - watched.endingSince >= ENDING_WAIT_MS_MAX) destroy(client)
    }
    if (quiet && !this.checking) {
      this.checking = true
      void this.serverAnswers()
        .then((answers) => {
          if (answers) return
          const err = new ServerNotAnsweringError(this.limits)
          logDatabaseFailure(this.log, 'warn', err, { connections: this.clients.size }, 'database server not answering: its connections closed')
          for (const client of [...this.clients.keys()]) destroy(client, err)
        })
        .finally(() => {
          this.checking = false
        })
    }
  }

  /** Whether the server answers a new connection's `SELECT 1` (or refuses it: an error of its own) within `connectTimeoutMs`. */
  private async serverAnswers(): Promise<boolean> {
    const probe = new pg.Client({ ...this.config, ...this.socketOptions(), application_name: `${this.config.application_name ?? 'metershare'}:check` })
    probe.on('error', () => undefined)
    const timer = setTimeout(() => destroy(probe, new Error('the check did not answer in time')), this.limits.connectTimeoutMs)
    let answered = false
    try {
      await probe.connect()
      await probe.query('SELECT 1')
      answered = true
    } catch (err) {
      answered = err instanceof pg.DatabaseError
    } finally {
      clearTimeout(timer)
      if (answered) void probe.end().catch(() => undefined)
      else destroy(probe, new Error('the check is over'))
    }
    return answered
  }
}

/** Closes a connection's socket: with `err`, its statements fail with it; without, node-postgres says `Connection terminated`. */
function destroy(client: pg.Client, err?: Error): void {
  ;(client as unknown as ClientInternals).connection.stream.destroy(err)
}
