import { describe, expect, it } from 'vitest'
import { openConfiguredDatabase } from '../../../shared/db/database.ts'
import { POSTGRES_CONNECT_TIMEOUT_MS, checkPostgres } from '../../../shared/db/postgres-check.ts'
import { ServiceUnavailableError } from '../../../shared/errors.ts'
import { describePostgres } from '../../support/database.ts'
import { runCli } from '../../support/cli.ts'
import { describePrivatePostgres } from '../../support/private-postgres.ts'
import { freePort } from '../../support/tools.ts'

/** What the start of a process says when DATABASE_URL is wrong or the server is not there: real connections each time. */
async function refusal(url: string): Promise<ServiceUnavailableError> {
  const err = await openConfiguredDatabase({ databaseUrl: url, dataDir: 'unused-on-postgres', db: { poolSize: 1, pgliteFsync: false } }).then(
    () => null,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(ServiceUnavailableError)
  expect((err as ServiceUnavailableError).code).toBe('SERVICE_UNAVAILABLE')
  return err as ServiceUnavailableError
}

describe('connecting to PostgreSQL at start', () => {
  it('says that nothing listens at the address', async () => {
    const port = await freePort()
    const err = await refusal(`postgres://app:secret-pw@127.0.0.1:${port}/metershare`)
    expect(err.message).toBe(`DATABASE_URL: nothing accepts connections at 127.0.0.1:${port}: is PostgreSQL running there?`)
  })

  it('says that the host is not known', async () => {
    const err = await refusal('postgres://app:secret-pw@no-such-host.invalid:5432/metershare')
    expect(err.message).toMatch(/^DATABASE_URL: the host of no-such-host\.invalid:5432 is not known \((ENOTFOUND|EAI_AGAIN)\)$/)
  })

  it('stops a command with exit 2 and that sentence, not a stack trace', async () => {
    const port = await freePort()
    const { DATABASE_URL: _url, ...env } = process.env
    const r = await runCli(['migrate'], { ...env, DATABASE_URL: `postgres://app:secret-pw@127.0.0.1:${port}/metershare` })
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`metershare migrate: DATABASE_URL: nothing accepts connections at 127.0.0.1:${port}: is PostgreSQL running there?\n`)
    expect(r.stdout + r.stderr).not.toContain('secret-pw')
  })
})

describePostgres(
  'connecting to a PostgreSQL server at start',
  (t) => {
    const withUrl = (change: (u: URL) => void): string => {
      const u = new URL(t.url!)
      change(u)
      return u.toString()
    }

    it('says which password was refused, without showing it', async () => {
      const url = withUrl((u) => (u.password = 'certainly-not-the-password'))
      const u = new URL(url)
      const err = await refusal(url)
      expect(err.message).toBe(`DATABASE_URL: PostgreSQL at ${u.hostname}:${u.port || '5432'} refused the password of user "${decodeURIComponent(u.username)}"`)
      expect(err.message).not.toContain('certainly-not-the-password')
    })

    it('says that the database does not exist, and how to create it', async () => {
      const url = withUrl((u) => (u.pathname = '/metershare_no_such_database'))
      const u = new URL(url)
      const err = await refusal(url)
      expect(err.message).toBe(
        `DATABASE_URL: database "metershare_no_such_database" does not exist on ${u.hostname}:${u.port || '5432'}: create it (createdb metershare_no_such_database) or name another`,
      )
    })

    it('passes a server that answers', async () => {
      await expect(checkPostgres({ connectionString: t.url! })).resolves.toBeUndefined()
    })
  },
  { resetEach: false },
)

describePrivatePostgres('connecting at start to a PostgreSQL server that does not answer', (server) => {
  it('stops a command with exit 2 within its connect timeout, naming DATABASE_URL, rather than waiting for ever', async () => {
    const { DATABASE_URL: _url, ...env } = process.env
    server().freeze()
    try {
      const started = Date.now()
      const r = await runCli(['migrate'], { ...env, DATABASE_URL: server().url })
      const ms = Date.now() - started
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(/^metershare migrate: DATABASE_URL: /)
      // The connect timeout, and the closing of the connection it gave up; a busy machine may add some.
      expect(ms).toBeLessThan(3 * POSTGRES_CONNECT_TIMEOUT_MS)
    } finally {
      server().thaw()
    }
  }, 5 * POSTGRES_CONNECT_TIMEOUT_MS)
})
