import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import { hostAndPort, networkCause } from '../shared/connect-errors.ts'
import { DEFAULT_MQTT_LIMITS } from '../shared/config.ts'
import { ServiceUnavailableError } from '../shared/errors.ts'
import { log } from '../shared/logger.ts'
import { parseTopic } from '../shared/topics.ts'
import { noteEgressMeta, notedEgressMeta, type EgressMeta } from './egress.ts'

/**
 * Several brokers behind a TCP load balancer share sessions and messages through Redis:
 * mqemitter-redis carries publishes between instances (so a datum ingested on one broker
 * reaches subscribers on every other), aedes-persistence-redis keeps sessions, subscriptions
 * and QoS 1 queues, so a client reconnecting to another instance finds its session.
 */
const require = createRequire(import.meta.url)

interface RedisConnection {
  on(event: 'error', listener: (err: Error) => void): unknown
  on(event: 'ready', listener: () => void): unknown
  set(key: string, value: string, unit: 'PX', ttlMs: number): Promise<unknown>
  get(key: string): Promise<string | null>
  del(key: string): Promise<number>
  disconnect(): void
  quit(): Promise<unknown>
  ping(): Promise<unknown>
  /** ioredis' connection state: 'ready' once it can run commands. */
  readonly status: string
}

/** While Redis stays away, a use of it (sessions, messages) logs its failure once this often, not at every retry. */
export const REDIS_FAILURE_LOG_INTERVAL_MS = 60_000

function failureLog(what: string): { failed(err: Error): void; ready(): void } {
  let failures = 0
  let loggedAt = -Infinity
  return {
    failed(err) {
      failures++
      const now = performance.now()
      if (now - loggedAt < REDIS_FAILURE_LOG_INTERVAL_MS) return
      loggedAt = now
      log.broker.warn({ err, redis: what, failures }, 'redis connection failed: reconnecting')
    },
    ready() {
      if (failures === 0) return
      log.broker.info({ redis: what, failures }, 'redis connection back')
      failures = 0
      loggedAt = -Infinity
    },
  }
}

/** A publication as aedes queues it for a session (aedes-packet). */
interface QueuedPacket {
  brokerId: string
  brokerCounter: number
  topic: string
  payload: unknown
}

interface AsyncRedisPersistence {
  createRetainedStreamCombi(patterns: string[]): AsyncIterable<unknown>
  outgoingEnqueueCombi(subs: ReadonlyArray<{ clientId: string }>, packet: QueuedPacket): Promise<void>
  outgoingStream(client: { id: string }): AsyncIterable<QueuedPacket>
  subscriptionsByClient(client: { id: string }): Promise<unknown[]>
  destroy(): Promise<void>
}

export interface RedisCouplingOptions {
  /**
   * How long the owner of a daily datum queued for an offline persistent session is kept in Redis
   * beside it, in ms: as long as such a session lives offline (persistentSessionOfflineMsMax).
   */
  queuedDailyOwnerTtlMs?: number
}

/** Where the description of a queued publication is kept, beside the persistence's `packet:{brokerId}:{brokerCounter}`. */
function queuedMetaKey(packet: QueuedPacket): string {
  return `metershare:egress-meta:${packet.brokerId}:${packet.brokerCounter}`
}

/** aedes-persistence-redis' list of the publications queued for a session (its `outgoingKey`). */
function redisOutgoingKey(clientId: string): string {
  return `outgoing:${encodeURIComponent(clientId)}`
}

export interface RedisCoupling {
  mq: unknown
  persistence: unknown
  /**
   * Whether all three connections (sessions, and the emitter's two) are up now. While one is down,
   * the broker still stores and acknowledges readings, but a client connecting cannot have its
   * session read and datums do not cross to the other brokers: /healthz says so.
   */
  healthy(): boolean
  /** Closes the persistence's Redis connections (aedes closes the emitter itself). */
  close(): Promise<void>
  /** Drops all three connections at once, failing what they queued: for a broker stopping while Redis is away. */
  abandon(): void
}

/**
 * How much of a persistent session's queue a reconnect sends: all of it (LRANGE 0 -1). The
 * persistence's default, 1,000, sent the first 1,001 and kept the rest in Redis for the next
 * reconnect, after the live datums meanwhile: a session that stayed connected never had them.
 */
export const REDIS_SESSION_DELIVERY_ALL = -1

/** How often a running broker asks Redis for an answer (PING), in ms, and how long one may take before /healthz says Redis is away. */
export const REDIS_ANSWER_CHECK_MS = 1_000
export const REDIS_ANSWER_WAIT_MS = 3_000

/** Longest wait at start for Redis to accept a connection and answer PING. */
export const REDIS_CONNECT_TIMEOUT_MS = 10_000

interface CheckConnection {
  on(event: 'error', listener: (err: Error) => void): unknown
  connect(): Promise<void>
  ping(): Promise<string>
  disconnect(): void
}

/**
 * Connects once as a broker starts: a REDIS_URL that names nothing, or a password Redis refuses,
 * ends the start with one sentence, instead of a retry loop and then the first command's stack
 * trace. Once running, the coupling rides out Redis going away (below).
 */
export async function checkRedis(redisUrl: string, timeoutMs = REDIS_CONNECT_TIMEOUT_MS): Promise<void> {
  const Redis = require('ioredis') as new (url: string, options?: Record<string, unknown>) => CheckConnection
  const conn = new Redis(redisUrl, { lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false })
  // ioredis rejects connect() with "Connection is closed"; the cause is in the error event before it.
  let cause: Error | null = null
  conn.on('error', (err) => (cause ??= err))
  try {
    await conn.connect()
    await conn.ping()
  } catch (err) {
    throw new ServiceUnavailableError(describeRedisError(cause ?? (err as Error), redisUrl, timeoutMs), { cause: cause ?? err })
  } finally {
    conn.disconnect()
  }
}

function describeRedisError(err: Error, redisUrl: string, timeoutMs: number): string {
  const where = hostAndPort(redisUrl, 6379) ?? 'the server named by REDIS_URL'
  const code = (err as { code?: unknown }).code
  const message = err.message
  if (/^(WRONGPASS|NOAUTH|ERR AUTH|ERR invalid password)/.test(message)) return `REDIS_URL: Redis at ${where} refused us: ${message}`
  return networkCause(typeof code === 'string' ? code : undefined, message, 'REDIS_URL', where, 'Redis', timeoutMs) ?? `REDIS_URL: cannot connect to Redis at ${where}: ${message}`
}

export function redisCoupling(redisUrl: string, options: RedisCouplingOptions = {}): RedisCoupling {
  const ownerTtlMs = options.queuedDailyOwnerTtlMs ?? DEFAULT_MQTT_LIMITS.persistentSessionOfflineMsMax
  const MQEmitterRedis = require('mqemitter-redis') as (opts: { subConn: unknown; pubConn: unknown }) => {
    state: { on(event: 'error', listener: (err: Error) => void): unknown }
    close(cb?: () => void): unknown
  }
  // aedes 1.x needs the promise-based persistence (its setup() is async).
  const Base = require('aedes-persistence-redis/asyncPersistence.js') as new (opts: { conn: unknown; maxSessionDelivery: number }) => AsyncRedisPersistence
  const Redis = require('ioredis') as new (url: string, options?: Record<string, unknown>) => RedisConnection

  // aedes 1.2 pipes the retained stream; this persistence returns an async iterable.
  class RedisPersistence extends Base {
    override createRetainedStreamCombi(patterns: string[]): AsyncIterable<unknown> {
      return Readable.from(super.createRetainedStreamCombi(patterns))
    }

    /**
     * A publication queued for offline sessions is stored as aedes' packet fields only, and read back
     * at the reconnect as a payload decoded anew: the description noted beside the payload (egress.ts)
     * is lost on the way. For a daily datum it says whose part of a moving day it is, which nothing
     * else can tell (the release view knows only who owned the meter when), so a moving day's part
     * queued for a recipient was withheld at its reconnect. The description of each daily datum queued
     * is kept beside the packet, set before the packet joins any queue (one connection: Redis runs the
     * SET first). Interval readings need none: the view decides their owner from `ts` at the reconnect.
     */
    override async outgoingEnqueueCombi(subs: ReadonlyArray<{ clientId: string }>, packet: QueuedPacket): Promise<void> {
      const meta = subs.length === 0 ? undefined : notedEgressMeta(packet.payload)
      const kept = meta?.granularity === 'daily' && meta.householdId !== undefined ? persistenceConn.set(queuedMetaKey(packet), JSON.stringify(meta), 'PX', ownerTtlMs) : undefined
      // Both awaited together: either may fail (Redis away), and neither failure is left unheard.
      await Promise.all([kept, super.outgoingEnqueueCombi(subs, packet)])
    }

    /**
     * A session is its subscriptions: a client that has none has no session, and aedes then answers
     * its reconnect with session present 0 [MQTT-3.2.2-3], yet sends it the queue kept under its id.
     * Such a queue is left when Redis loses its data (a restart without persistence, FLUSHALL) while
     * the brokers' subscriptions in memory still name the session and go on queueing for it (found
     * by probing: 3,155 datums sent at each reconnect to a client with no subscription). It is
     * dropped as the reconnect reads that there are none.
     */
    override async subscriptionsByClient(client: { id: string }): Promise<unknown[]> {
      const subs = await super.subscriptionsByClient(client)
      if (subs.length === 0) await persistenceConn.del(redisOutgoingKey(client.id))
      return subs
    }

    override outgoingStream(client: { id: string }): AsyncIterable<QueuedPacket> {
      const queued = super.outgoingStream(client)
      return (async function* () {
        for await (const packet of queued) {
          if (parseTopic(packet.topic)?.channel === 'daily' && notedEgressMeta(packet.payload) === undefined) {
            const kept = await persistenceConn.get(queuedMetaKey(packet))
            if (kept !== null) noteEgressMeta(packet.payload, JSON.parse(kept) as EgressMeta)
          }
          yield packet
        }
      })()
    }
  }
  // Redis going away is not the broker's end: ioredis reconnects (backing off up to 2 s a try) and
  // replays what waited. Its errors are logged; unheard, mqemitter-redis would throw them.
  const sessions = failureLog('sessions')
  const persistenceConn = new Redis(redisUrl)
  persistenceConn.on('error', sessions.failed)
  persistenceConn.on('ready', sessions.ready)
  const persistence = new RedisPersistence({ conn: persistenceConn, maxSessionDelivery: REDIS_SESSION_DELIVERY_ALL })
  // The subscriber connection sends nothing but (un)subscribe: no INFO ready check and no CLIENT
  // SETINFO, which ioredis 5.8.2-5.11 can send after a subscribe on a new connection and then fail
  // on ("Connection in subscriber mode", redis/ioredis#2037, fixed in 6.0). SUBSCRIBE needs no ready
  // check: Redis accepts it while it loads.
  const messages = failureLog('messages')
  const subConn = new Redis(redisUrl, { enableReadyCheck: false, disableClientInfo: true })
  const pubConn = new Redis(redisUrl)
  // mqemitter-redis closes with QUIT and awaits no answer: a Redis frozen as the broker stops never
  // answers it, abandon() then drops the connections, and the QUIT's promise rejected unheard ("Connection
  // is closed"), which ended a clean stop with exit 1 (found by probing). What QUIT answers is heard here.
  for (const conn of [subConn, pubConn]) {
    const quit = conn.quit.bind(conn)
    conn.quit = () => {
      const answered = quit()
      answered.catch(() => undefined)
      return answered
    }
  }
  const mq = MQEmitterRedis({ subConn, pubConn })
  // mqemitter-redis passes on both connections' errors.
  mq.state.on('error', messages.failed)
  subConn.on('ready', messages.ready)
  pubConn.on('ready', messages.ready)
  let closed = false
  // A Redis that is connected but does not answer (a frozen host, a network that drops packets) keeps
  // its connections 'ready': /healthz said ok while meters' connects waited for their sessions.
  let pingSince: number | null = null
  // Said once each way, as a connection lost and back is (failureLog).
  let unanswered = false
  const answers = setInterval(() => {
    if (unanswered !== !answering()) {
      unanswered = !unanswered
      if (unanswered) log.broker.warn({ waitedMs: REDIS_ANSWER_WAIT_MS }, 'redis does not answer: taken for away until it does')
      else log.broker.info('redis answers again')
    }
    if (pingSince !== null || persistenceConn.status !== 'ready') return
    const sent = performance.now()
    pingSince = sent
    persistenceConn.ping().then(
      () => void (pingSince === sent && (pingSince = null)),
      () => void (pingSince === sent && (pingSince = null)),
    )
  }, REDIS_ANSWER_CHECK_MS)
  answers.unref()
  const answering = (): boolean => pingSince === null || performance.now() - pingSince < REDIS_ANSWER_WAIT_MS
  return {
    mq,
    persistence,
    healthy: () => !closed && persistenceConn.status === 'ready' && subConn.status === 'ready' && pubConn.status === 'ready' && answering(),
    async close() {
      if (closed) return
      closed = true
      clearInterval(answers)
      await persistence.destroy()
    },
    abandon() {
      closed = true
      clearInterval(answers)
      // aedes closes its emitter last, and mqemitter-redis would QUIT connections that are gone, a
      // promise nobody awaits rejecting with "Connection is closed": the emitter is done with here.
      mq.close = (cb?: () => void) => void cb?.()
      for (const conn of [persistenceConn, subConn, pubConn]) conn.disconnect()
    },
  }
}
