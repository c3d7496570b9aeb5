import type { ChildProcess } from 'node:child_process'
import { Aedes } from 'aedes'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkRedis, redisCoupling } from '../../broker/redis-coupling.ts'
import { configureLogging } from '../../shared/logger.ts'
import { waitFor } from '../support/broker.ts'
import { ServiceUnavailableError } from '../../shared/errors.ts'
import { runCli } from '../support/cli.ts'
import { describePostgres } from '../support/database.ts'
import { freePort, hasCommand, skipReason, startRedisServer } from '../support/tools.ts'

/** What a broker coupled through Redis says at start when REDIS_URL names nothing, or Redis refuses it: real servers. */
async function refusal(url: string): Promise<string> {
  const err = await checkRedis(url, 5_000).then(
    () => null,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(ServiceUnavailableError)
  expect((err as ServiceUnavailableError).code).toBe('SERVICE_UNAVAILABLE')
  return (err as Error).message
}

describe('checking Redis at a broker’s start', () => {
  it('says that nothing listens at the address', async () => {
    const port = await freePort()
    expect(await refusal(`redis://127.0.0.1:${port}`)).toBe(`REDIS_URL: nothing accepts connections at 127.0.0.1:${port}: is Redis running there?`)
  })

  describe.skipIf(!hasCommand('redis-server'))(`against redis-server${skipReason('redis-server', 'redis-server')}`, () => {
    let open: ChildProcess
    let locked: ChildProcess
    let openPort: number
    let lockedPort: number

    beforeAll(async () => {
      openPort = await freePort()
      open = await startRedisServer(openPort)
      lockedPort = await freePort()
      // A Redis with a password, as production ones have.
      locked = await startRedisServer(lockedPort, ['--requirepass', 'the-password'])
    })

    afterAll(() => {
      open?.kill('SIGKILL')
      locked?.kill('SIGKILL')
    })

    it('passes a Redis that answers', async () => {
      await expect(checkRedis(`redis://127.0.0.1:${openPort}`)).resolves.toBeUndefined()
      await expect(checkRedis(`redis://:the-password@127.0.0.1:${lockedPort}`)).resolves.toBeUndefined()
    })

    it('says that Redis refused a wrong password, without showing it', async () => {
      const message = await refusal(`redis://:not-the-password@127.0.0.1:${lockedPort}`)
      expect(message).toMatch(new RegExp(`^REDIS_URL: Redis at 127\\.0\\.0\\.1:${lockedPort} refused us: WRONGPASS`))
      expect(message).not.toContain('not-the-password')
    })

    it('logs a Redis that is away once per use, not at every retry, and says when it is back', async () => {
      const lines: Array<{ msg: string; redis?: string; failures?: number }> = []
      configureLogging({ level: 'info', target: { write: (line: string) => lines.push(JSON.parse(line)) } })
      const port = await freePort()
      const coupling = redisCoupling(`redis://127.0.0.1:${port}`)
      // A real aedes on the coupling, as a broker builds it: it finishes starting once Redis is there.
      const starting = Aedes.createBroker({ mq: coupling.mq, persistence: coupling.persistence } as Parameters<typeof Aedes.createBroker>[0])
      let redis: ChildProcess | undefined
      try {
        // ioredis retries after 50, 100, 150 … ms: about ten failures per connection in 3 s.
        await new Promise((r) => setTimeout(r, 3_000))
        const failed = lines.filter((l) => l.msg === 'redis connection failed: reconnecting')
        expect(failed.map((l) => l.redis).sort()).toEqual(['messages', 'sessions'])
        redis = await startRedisServer(port)
        const back = await waitFor(() => {
          const b = lines.filter((l) => l.msg === 'redis connection back')
          return b.length >= 2 ? b : undefined
        }, 10_000, 'both uses back')
        expect(back.map((l) => l.redis).sort()).toEqual(['messages', 'sessions'])
        for (const b of back) expect(b.failures).toBeGreaterThan(3)
      } finally {
        const aedes = await starting
        await new Promise<void>((r) => aedes.close(() => r()))
        await coupling.close()
        configureLogging({ level: 'silent', target: process.stdout })
        redis?.kill('SIGKILL')
      }
    })

    it('says that Redis wants a password the URL does not give', async () => {
      expect(await refusal(`redis://127.0.0.1:${lockedPort}`)).toBe(`REDIS_URL: Redis at 127.0.0.1:${lockedPort} refused us: NOAUTH Authentication required.`)
    })
  })
})

describePostgres(
  'metershare broker with REDIS_URL naming nothing',
  (t) => {
    it('stops with exit 2 and the sentence, not a retry loop and a stack trace', async () => {
      const redisPort = await freePort()
      const { DATABASE_URL: _url, ...env } = process.env
      const r = await runCli(['broker'], {
        ...env,
        DATABASE_URL: t.url!,
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
        METERSHARE_ADMIN_TOKEN: 'redis-check-admin-token-0123',
        METERSHARE_HOST: '127.0.0.1',
        MQTT_PORT: String(await freePort()),
        HTTP_PORT: String(await freePort()),
        METERSHARE_LOG_LEVEL: 'warn',
      })
      expect(r.code).toBe(2)
      expect(r.stderr).toBe(`metershare broker: REDIS_URL: nothing accepts connections at 127.0.0.1:${redisPort}: is Redis running there?\n`)
      expect(r.stdout).not.toContain('reconnecting')
    })
  },
  { resetEach: false },
)
