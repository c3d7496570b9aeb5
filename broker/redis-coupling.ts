import { createRequire } from 'node:module'

/**
 * Several brokers behind a TCP load balancer share sessions and messages through Redis:
 * mqemitter-redis carries publishes between instances (so a datum ingested on one broker
 * reaches subscribers on every other), aedes-persistence-redis keeps sessions, subscriptions
 * and QoS 1 queues, so a client reconnecting to another instance finds its session.
 */
const require = createRequire(import.meta.url)

interface Closable {
  close?(cb?: () => void): void
  destroy?(cb?: () => void): void
}

export interface RedisCoupling {
  mq: unknown
  persistence: unknown
}

export function redisCoupling(redisUrl: string): RedisCoupling {
  const MQEmitterRedis = require('mqemitter-redis') as (opts: { connectionString: string }) => Closable
  // aedes 1.x needs the promise-based persistence (its setup() is async).
  const AsyncRedisPersistence = require('aedes-persistence-redis/asyncPersistence.js') as new (opts: { conn: unknown }) => Closable
  const Redis = require('ioredis') as new (url: string) => unknown
  return {
    mq: MQEmitterRedis({ connectionString: redisUrl }),
    persistence: new AsyncRedisPersistence({ conn: new Redis(redisUrl) }),
  }
}
