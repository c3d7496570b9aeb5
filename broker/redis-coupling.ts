import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import { log } from '../shared/logger.ts'

/**
 * Several brokers behind a TCP load balancer share sessions and messages through Redis:
 * mqemitter-redis carries publishes between instances (so a datum ingested on one broker
 * reaches subscribers on every other), aedes-persistence-redis keeps sessions, subscriptions
 * and QoS 1 queues, so a client reconnecting to another instance finds its session.
 */
const require = createRequire(import.meta.url)

interface RedisConnection {
  on(event: 'error', listener: (err: Error) => void): unknown
}

interface AsyncRedisPersistence {
  createRetainedStreamCombi(patterns: string[]): AsyncIterable<unknown>
  destroy(): Promise<void>
}

export interface RedisCoupling {
  mq: unknown
  persistence: unknown
  /** Closes the persistence's Redis connections (aedes closes the emitter itself). */
  close(): Promise<void>
}

export function redisCoupling(redisUrl: string): RedisCoupling {
  const MQEmitterRedis = require('mqemitter-redis') as (opts: { subConn: unknown; pubConn: unknown }) => { state: RedisConnection }
  // aedes 1.x needs the promise-based persistence (its setup() is async).
  const Base = require('aedes-persistence-redis/asyncPersistence.js') as new (opts: { conn: unknown }) => AsyncRedisPersistence
  const Redis = require('ioredis') as new (url: string, options?: Record<string, unknown>) => RedisConnection

  // aedes 1.2 pipes the retained stream; this persistence returns an async iterable.
  class RedisPersistence extends Base {
    override createRetainedStreamCombi(patterns: string[]): AsyncIterable<unknown> {
      return Readable.from(super.createRetainedStreamCombi(patterns))
    }
  }
  // Redis going away is not the broker's end: ioredis reconnects (backing off up to 2 s a try) and
  // replays what waited. Its errors are logged; unheard, mqemitter-redis would throw them.
  const heard = (what: string) => (err: Error) => log.broker.warn({ err, redis: what }, 'redis connection failed: reconnecting')
  const persistenceConn = new Redis(redisUrl)
  persistenceConn.on('error', heard('sessions'))
  const persistence = new RedisPersistence({ conn: persistenceConn })
  // The subscriber connection sends nothing but (un)subscribe: no INFO ready check and no CLIENT
  // SETINFO, which ioredis 5.8.2-5.11 can send after a subscribe on a new connection and then fail
  // on ("Connection in subscriber mode", redis/ioredis#2037, fixed in 6.0). SUBSCRIBE needs no ready
  // check: Redis accepts it while it loads.
  const mq = MQEmitterRedis({
    subConn: new Redis(redisUrl, { enableReadyCheck: false, disableClientInfo: true }),
    pubConn: new Redis(redisUrl),
  })
  mq.state.on('error', heard('messages'))
  let closed = false
  return {
    mq,
    persistence,
    async close() {
      if (closed) return
      closed = true
      await persistence.destroy()
    },
  }
}
