import { createRequire } from 'node:module'
import { Readable } from 'node:stream'

/**
 * Several brokers behind a TCP load balancer share sessions and messages through Redis:
 * mqemitter-redis carries publishes between instances (so a datum ingested on one broker
 * reaches subscribers on every other), aedes-persistence-redis keeps sessions, subscriptions
 * and QoS 1 queues, so a client reconnecting to another instance finds its session.
 */
const require = createRequire(import.meta.url)

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
  const MQEmitterRedis = require('mqemitter-redis') as (opts: { connectionString: string }) => unknown
  // aedes 1.x needs the promise-based persistence (its setup() is async).
  const Base = require('aedes-persistence-redis/asyncPersistence.js') as new (opts: { conn: unknown }) => AsyncRedisPersistence
  const Redis = require('ioredis') as new (url: string) => unknown

  // aedes 1.2 pipes the retained stream; this persistence returns an async iterable.
  class RedisPersistence extends Base {
    override createRetainedStreamCombi(patterns: string[]): AsyncIterable<unknown> {
      return Readable.from(super.createRetainedStreamCombi(patterns))
    }
  }
  const persistence = new RedisPersistence({ conn: new Redis(redisUrl) })
  let closed = false
  return {
    mq: MQEmitterRedis({ connectionString: redisUrl }),
    persistence,
    async close() {
      if (closed) return
      closed = true
      await persistence.destroy()
    },
  }
}
