import { sql } from 'kysely'
import { beforeEach, expect, it } from 'vitest'
import { authenticatePassword, renewApiKey, setHouseholdPassword } from '../../../services/directory/directory-service.ts'
import { setCredentialHash } from '../../../services/directory/directory-repository.ts'
import { deleteHouseholdSessions } from '../../../services/directory/session-repository.ts'
import { openSession, resolveSession, sessionIdOf, signIn } from '../../../services/directory/session-service.ts'
import { SignInThrottle } from '../../../services/directory/session-throttle.ts'
import { DEFAULT_PORTAL_LIMITS } from '../../../shared/config.ts'
import { UnauthenticatedError } from '../../../shared/errors.ts'
import { hashPassword } from '../../../shared/secrets.ts'
import { describeDatabases, describePostgres, holdConnection, type TestDatabase } from '../../support/database.ts'
import { createTestHousehold } from '../../support/world.ts'

/**
 * A sign-in checks the password, then opens a session in a step of its own; a password change ends
 * every session. A change made between the two steps must not leave the old password's session open
 * (concurrency tester: a sign-in with the old password overlapping a change kept a working session).
 */

const NOW = new Date('2026-10-10T10:00:00Z')
const NEW_PASSWORD = 'a new long password'

async function sessionsOf(t: TestDatabase, householdId: string): Promise<number> {
  return (await t.db.selectFrom('sessions').select('id').where('household_id', '=', householdId).execute()).length
}

describeDatabases('portal sessions and password changes', (t) => {
  let household: Awaited<ReturnType<typeof createTestHousehold>>

  beforeEach(async () => {
    household = await createTestHousehold(t.db)
  })

  it('opens no session for a password that was changed after it was checked, and refuses it as a wrong one', async () => {
    const checked = await authenticatePassword(t.db, household.email, household.password)
    expect(checked).toMatchObject({ householdId: household.id })
    await setHouseholdPassword(t.db, household.id, NEW_PASSWORD, household.password)
    await expect(openSession(t.db, checked!, NOW, DEFAULT_PORTAL_LIMITS)).rejects.toThrow(UnauthenticatedError)
    expect(await sessionsOf(t, household.id)).toBe(0)

    const again = await authenticatePassword(t.db, household.email, NEW_PASSWORD)
    const opened = await openSession(t.db, again!, NOW, DEFAULT_PORTAL_LIMITS)
    expect(await resolveSession(t.db, opened.token, NOW)).toMatchObject({ householdId: household.id })
  })

  it('renews no API key from a session a password change ended after the password was checked (found by probing: such keys outlived the change)', async () => {
    const session = await openSession(t.db, (await authenticatePassword(t.db, household.email, household.password))!, NOW, DEFAULT_PORTAL_LIMITS)
    const viaSession = { sessionId: sessionIdOf(session.token)!, now: NOW }
    const keyBefore = (await t.db.selectFrom('households').select('api_key_hash').where('id', '=', household.id).executeTakeFirstOrThrow()).api_key_hash
    // The route checked the old password; the change commits before the renewal's transaction.
    await setHouseholdPassword(t.db, household.id, NEW_PASSWORD, household.password)
    await expect(renewApiKey(t.db, 'household', household.id, undefined, viaSession)).rejects.toThrow(/session expired or unknown: it ended meanwhile/)
    expect((await t.db.selectFrom('households').select('api_key_hash').where('id', '=', household.id).executeTakeFirstOrThrow()).api_key_hash).toBe(keyBefore)
    // An expired session renews nothing either; an open one does.
    const fresh = await openSession(t.db, (await authenticatePassword(t.db, household.email, NEW_PASSWORD))!, NOW, DEFAULT_PORTAL_LIMITS)
    const freshVia = { sessionId: sessionIdOf(fresh.token)!, now: NOW }
    await expect(renewApiKey(t.db, 'household', household.id, undefined, { ...freshVia, now: fresh.expiresAt })).rejects.toThrow(UnauthenticatedError)
    expect(await renewApiKey(t.db, 'household', household.id, undefined, freshVia)).toMatchObject({ id: household.id })
  })
})

describePostgres('portal sessions and password changes, at once', (t) => {
  /**
   * Runs `act` while a password change, written as setHouseholdPassword writes it (the household's row,
   * then the end of every session), is held uncommitted on another connection, and commits the change
   * once `act` waits for its lock (or, unguarded, has finished). Resolves to what `act` came to, and
   * whether it had finished before the change committed.
   */
  async function duringPasswordChange<T>(householdId: string, act: () => Promise<T>): Promise<{ outcome: PromiseSettledResult<T>; finishedFirst: boolean }> {
    const newHash = await hashPassword(NEW_PASSWORD)
    const other = await t.openAnother()
    try {
      const change = await holdConnection(other.db, 'transaction', async (trx) => {
        await setCredentialHash(trx, { table: 'households', column: 'password_hash' }, householdId, newHash)
        await deleteHouseholdSessions(trx, householdId)
      })
      let settled = false
      const acting = Promise.allSettled([act()])
      void acting.then(() => (settled = true))
      for (;;) {
        const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(other.db)
        if (rows[0]!.n > 0 || settled) break
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      const finishedFirst = settled
      change.release()
      await change.done
      const [outcome] = await acting
      return { outcome: outcome!, finishedFirst }
    } finally {
      await other.close()
    }
  }

  it('refuses a sign-in with the old password while a change is being committed, and leaves no session', async () => {
    const household = await createTestHousehold(t.db)
    const throttle = new SignInThrottle(DEFAULT_PORTAL_LIMITS)
    const { outcome } = await duringPasswordChange(household.id, () => signIn(t.db, { email: household.email, password: household.password, address: '192.0.2.1' }, NOW, DEFAULT_PORTAL_LIMITS, throttle))
    expect(outcome).toMatchObject({ status: 'rejected', reason: expect.any(UnauthenticatedError) })
    expect(await sessionsOf(t, household.id)).toBe(0)
    // The new password signs in.
    await signIn(t.db, { email: household.email, password: NEW_PASSWORD, address: '192.0.2.1' }, NOW, DEFAULT_PORTAL_LIMITS, throttle)
    expect(await sessionsOf(t, household.id)).toBe(1)
  })

  it('makes a renewal from a session wait for a password change being committed, then refuses it: its session is ended', async () => {
    const household = await createTestHousehold(t.db)
    const session = await openSession(t.db, (await authenticatePassword(t.db, household.email, household.password))!, NOW, DEFAULT_PORTAL_LIMITS)
    const { outcome, finishedFirst } = await duringPasswordChange(household.id, () =>
      renewApiKey(t.db, 'household', household.id, undefined, { sessionId: sessionIdOf(session.token)!, now: NOW }),
    )
    expect(finishedFirst).toBe(false)
    expect(outcome).toMatchObject({ status: 'rejected', reason: expect.any(UnauthenticatedError) })
  })
})
