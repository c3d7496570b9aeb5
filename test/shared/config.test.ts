import { describe, expect, it } from 'vitest'
import { envToConfig, readEnv, ENV_VARS } from '../../shared/config.ts'
import { ConfigError } from '../../shared/errors.ts'

describe('configuration', () => {
  it('has working defaults for an empty environment', () => {
    const c = envToConfig({})
    expect(c).toMatchObject({ dataDir: './data', databaseUrl: null, timezone: 'Europe/Paris', adminToken: null })
    expect(c.mqtt.port).toBe(1883)
    expect(c.http.port).toBe(8080)
    expect(c.settlement.payoutMinMicros).toBe(5_000_000n)
    expect(c.db.pgliteFsync).toBe(true)
    expect(c.ingest.payloadBytesMax).toBe(256 * 1024)
    expect(c.ingest.packetBytesMax).toBe(1024 * 1024)
  })

  it('reads only the variables it knows, by their documented names', () => {
    const raw = readEnv({ MQTT_PORT: '1884', HTTP_PORT: '9090', DATABASE_URL: 'postgres://u:p@h/db', UNRELATED: 'x', METERSHARE_TIMEZONE: '' })
    expect(raw).toEqual({ mqttPort: '1884', httpPort: '9090', databaseUrl: 'postgres://u:p@h/db' })
    expect(Object.values(ENV_VARS)).toContain('METERSHARE_ADMIN_TOKEN')
  })

  // Each names its variable; numbers say in a sentence what they must be.
  it.each([
    [{ mqttPort: 'abc' }, 'MQTT_PORT', 'must be a port, a whole number from 0 to 65535 (got "abc")'],
    [{ httpPort: '1.5' }, 'HTTP_PORT', 'must be a port, a whole number from 0 to 65535 (got "1.5")'],
    [{ httpPort: '70000' }, 'HTTP_PORT', 'must be a port, a whole number from 0 to 65535 (got "70000")'],
    [{ dbPoolSize: '0' }, 'METERSHARE_DB_POOL_SIZE', 'must be a count of connections, a whole number from 1 to 200 (got "0")'],
    [{ dbConnectTimeoutMs: '50' }, 'METERSHARE_DB_CONNECT_TIMEOUT_MS', 'must be milliseconds, a whole number from 100 to 600000 (got "50")'],
    [{ dbAnswerWaitMs: '5s' }, 'METERSHARE_DB_ANSWER_WAIT_MS', 'must be milliseconds, a whole number from 100 to 600000 (got "5s")'],
    [{ timezone: 'Mars/Olympus' }, 'METERSHARE_TIMEZONE', null],
    [{ databaseUrl: 'mysql://x' }, 'DATABASE_URL', null],
    // A secret is never shown, nor a password in a URL, parsed or not.
    [{ adminToken: 'short' }, 'METERSHARE_ADMIN_TOKEN', 'must be at least 16 characters (got 5 characters)'],
    [{ databaseUrl: 'postgress://postgres:S3cretPW@localhost/op_b' }, 'DATABASE_URL', 'must start with postgres:// or postgresql:// (got "postgress://postgres:***@localhost/op_b")'],
    [{ databaseUrl: 'postgres://postgres:S3cretPW@localhost:99999/op_b' }, 'DATABASE_URL', 'not a valid URL with a host (scheme://user:password@host:port/…) (got "postgres://postgres:***@localhost:99999/op_b")'],
    [{ databaseUrl: 'postgres://postgres:S3cretPW@localhost:abc/op_b' }, 'DATABASE_URL', 'not a valid URL with a host (scheme://user:password@host:port/…) (got "postgres://postgres:***@localhost:abc/op_b")'],
    [{ databaseUrl: 'postgres://postgres:S3cretPW@:5432/op_b' }, 'DATABASE_URL', 'not a valid URL with a host (scheme://user:password@host:port/…) (got "postgres://postgres:***@:5432/op_b")'],
    [{ redisUrl: 'redis://:S3cretPW@:6379' }, 'REDIS_URL', 'not a valid URL with a host (scheme://user:password@host:port/…) (got "redis://:***@:6379")'],
    [{ payoutMinMicros: '1.5' }, 'METERSHARE_PAYOUT_MIN_MICROS', null],
    [{ pgliteFsync: 'maybe' }, 'METERSHARE_PGLITE_FSYNC', null],
    [{ logLevel: 'loud' }, 'METERSHARE_LOG_LEVEL', null],
    [{ redisUrl: 'http://x' }, 'REDIS_URL', null],
    [{ trustedProxies: '10.0.0.5, lb.internal' }, 'METERSHARE_TRUSTED_PROXIES', '"lb.internal" is not an IP address or a CIDR range (such as 10.0.0.5 or 172.30.0.0/24) (got "10.0.0.5, lb.internal")'],
    [{ trustedProxies: '10.0.0.0/33' }, 'METERSHARE_TRUSTED_PROXIES', null],
    [{ trustedProxies: '2001:db8::/129' }, 'METERSHARE_TRUSTED_PROXIES', null],
  ] as const)('names the bad variable %o in its error', (raw, name, sentence) => {
    expect(() => envToConfig(raw)).toThrow(ConfigError)
    expect(() => envToConfig(raw)).toThrow(new RegExp(`^${name}: `))
    if (sentence !== null) expect(() => envToConfig(raw)).toThrow(`${name}: ${sentence}`)
  })

  it('takes ports and pool sizes given as digits', () => {
    const c = envToConfig({ mqttPort: '0', httpPort: '65535', dbPoolSize: '200' })
    expect([c.mqtt.port, c.http.port, c.db.poolSize]).toEqual([0, 65535, 200])
  })

  it('bounds the waits on a PostgreSQL server, 5 s each unless set', () => {
    expect(envToConfig({}).db.serverWait).toEqual({ connectTimeoutMs: 5_000, answerWaitMs: 5_000 })
    expect(envToConfig({ dbConnectTimeoutMs: '1000', dbAnswerWaitMs: '30000' }).db.serverWait).toEqual({ connectTimeoutMs: 1_000, answerWaitMs: 30_000 })
  })

  it('reads the trusted proxies as a list, none by default', () => {
    expect(envToConfig({}).trustedProxies).toEqual([])
    expect(envToConfig({ trustedProxies: ' 172.30.0.10 ,2001:db8::/32,, ' }).trustedProxies).toEqual(['172.30.0.10', '2001:db8::/32'])
  })

  it('is frozen all the way down', () => {
    const c = envToConfig({})
    expect(Object.isFrozen(c)).toBe(true)
    expect(Object.isFrozen(c.ingest)).toBe(true)
    expect(() => {
      ;(c.ingest as { payloadBytesMax: number }).payloadBytesMax = 1
    }).toThrow(TypeError)
  })
})
