import { describe, expect, it } from 'vitest'
import {
  authenticateApiKey,
  authenticateMqtt,
  authenticatePassword,
  createHousehold,
  createMeter,
  createParty,
  listMetersPage,
  listPartiesPage,
  renewApiKey,
  renewMeterSecret,
  requireMeter,
} from '../../../services/directory/directory-service.ts'
import { ConflictError, InvalidInputError, NotFoundError } from '../../../shared/errors.ts'
import { formatApiKey, parseApiKey } from '../../../shared/secrets.ts'
import { describeDatabases, describePostgres, holdConnection } from '../../support/database.ts'
import { sql } from 'kysely'

const pw = (s: string | undefined) => (s === undefined ? undefined : Buffer.from(s, 'utf8'))

describeDatabases('directory', (t) => {
  async function world() {
    const utility = await createParty(t.db, { kind: 'utility', name: 'Enedis' })
    const lab = await createParty(t.db, { kind: 'third_party', name: 'Lab' })
    const household = await createHousehold(t.db, { name: 'Dupont', email: 'Dupont@Example.org', password: 'correct horse battery' })
    const meter = await createMeter(t.db, { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 30, id: 'LINKY-42' })
    return { utility, lab, household, meter }
  }

  describe('MQTT authentication', () => {
    it('lets a meter in with client id = username = its id and its secret', async () => {
      const w = await world()
      const principal = await authenticateMqtt(t.db, { username: 'LINKY-42', password: pw(w.meter.secret) })
      expect(principal).toEqual({ role: 'meter', meterId: 'LINKY-42', commodity: 'electricity', intervalMinutes: 30, operatorId: w.utility.id })
    })

    it('refuses a wrong, truncated, missing or empty secret, and an unknown meter', async () => {
      const w = await world()
      for (const password of [w.meter.secret + 'x', w.meter.secret.slice(0, -1), '', undefined]) {
        expect(await authenticateMqtt(t.db, { username: 'LINKY-42', password: pw(password) })).toBeNull()
      }
      expect(await authenticateMqtt(t.db, { username: 'LINKY-99', password: pw(w.meter.secret) })).toBeNull()
      expect(await authenticateMqtt(t.db, { username: undefined, password: pw(w.meter.secret) })).toBeNull()
      expect(await authenticateMqtt(t.db, { username: '', password: pw(w.meter.secret) })).toBeNull()
    })

    it("refuses one meter's secret for another meter", async () => {
      const w = await world()
      const other = await createMeter(t.db, { operatorId: w.utility.id, commodity: 'gas', intervalMinutes: 60, id: 'GAZPAR-1' })
      expect(await authenticateMqtt(t.db, { username: 'GAZPAR-1', password: pw(w.meter.secret) })).toBeNull()
      expect(await authenticateMqtt(t.db, { username: 'GAZPAR-1', password: pw(other.secret) })).toMatchObject({ role: 'meter', commodity: 'gas' })
    })

    it('lets a party in with its id and API key, with any client id', async () => {
      const w = await world()
      expect(await authenticateMqtt(t.db, { username: w.lab.id, password: pw(w.lab.apiKey) })).toEqual({
        role: 'recipient',
        partyId: w.lab.id,
        partyKind: 'third_party',
      })
      expect(await authenticateMqtt(t.db, { username: w.utility.id, password: pw(w.utility.apiKey) })).toEqual({
        role: 'recipient',
        partyId: w.utility.id,
        partyKind: 'utility',
      })
    })

    it("refuses a party key under another username, and another party's secret under its id", async () => {
      const w = await world()
      expect(await authenticateMqtt(t.db, { username: w.utility.id, password: pw(w.lab.apiKey) })).toBeNull()
      const forged = formatApiKey(w.utility.id, parseApiKey(w.lab.apiKey)!.secret)
      expect(await authenticateMqtt(t.db, { username: w.utility.id, password: pw(forged) })).toBeNull()
      expect(await authenticateMqtt(t.db, { username: w.lab.id, password: pw(parseApiKey(w.lab.apiKey)!.secret) })).toBeNull()
    })

    it('lets a household in with its id and API key', async () => {
      const w = await world()
      expect(await authenticateMqtt(t.db, { username: w.household.id, password: pw(w.household.apiKey) })).toEqual({
        role: 'household',
        householdId: w.household.id,
      })
      expect(await authenticateMqtt(t.db, { username: w.household.id, password: pw('correct horse battery') })).toBeNull()
    })
  })

  describe('HTTP API keys', () => {
    it('maps a key to its owner and refuses anything else', async () => {
      const w = await world()
      expect(await authenticateApiKey(t.db, w.lab.apiKey)).toEqual({ role: 'recipient', partyId: w.lab.id, partyKind: 'third_party' })
      expect(await authenticateApiKey(t.db, w.household.apiKey)).toEqual({ role: 'household', householdId: w.household.id })
      for (const key of ['', 'no-dot', `${w.lab.id}.`, `.${parseApiKey(w.lab.apiKey)!.secret}`, `${w.lab.id}.wrong`, `pty_nobody.${parseApiKey(w.lab.apiKey)!.secret}`]) {
        expect(await authenticateApiKey(t.db, key), key).toBeNull()
      }
    })
  })

  describe('password sign-in', () => {
    it('signs a household in by email, whatever its case', async () => {
      const w = await world()
      expect(await authenticatePassword(t.db, 'dupont@example.org', 'correct horse battery')).toMatchObject({ householdId: w.household.id })
      expect(await authenticatePassword(t.db, 'DUPONT@EXAMPLE.ORG', 'correct horse battery')).toMatchObject({ householdId: w.household.id })
    })

    it('refuses a wrong password and an unknown email alike', async () => {
      await world()
      expect(await authenticatePassword(t.db, 'dupont@example.org', 'Correct horse battery')).toBeNull()
      expect(await authenticatePassword(t.db, 'dupont@example.org', '')).toBeNull()
      expect(await authenticatePassword(t.db, 'nobody@example.org', 'correct horse battery')).toBeNull()
    })

    it('takes a password as typed in either Unicode normal form', async () => {
      await createHousehold(t.db, { name: 'Zoé', email: 'zoe@example.org', password: 'caf\u00e9-au-lait' })
      expect(await authenticatePassword(t.db, 'zoe@example.org', 'cafe\u0301-au-lait')).not.toBeNull()
    })
  })

  describe('creation rules', () => {
    it('refuses a second household with the same email and a password out of bounds', async () => {
      await world()
      await expect(createHousehold(t.db, { name: 'X', email: 'DUPONT@example.org', password: 'long enough' })).rejects.toMatchObject({
        constructor: ConflictError,
        code: 'EMAIL_TAKEN',
      })
      await expect(createHousehold(t.db, { name: 'X', email: 'x@example.org', password: 'short' })).rejects.toBeInstanceOf(InvalidInputError)
    })

    it('refuses a meter under a third party, under nobody, with a bad id or a taken one', async () => {
      const w = await world()
      await expect(createMeter(t.db, { operatorId: w.lab.id, commodity: 'gas', intervalMinutes: 60 })).rejects.toThrow('operatorId: a meter is operated by a utility')
      await expect(createMeter(t.db, { operatorId: 'pty_none', commodity: 'gas', intervalMinutes: 60 })).rejects.toThrow('operatorId: no such party')
      await expect(createMeter(t.db, { operatorId: w.utility.id, commodity: 'gas', intervalMinutes: 60, id: 'a b' })).rejects.toBeInstanceOf(InvalidInputError)
      await expect(createMeter(t.db, { operatorId: w.utility.id, commodity: 'gas', intervalMinutes: 60, id: 'LINKY-42' })).rejects.toMatchObject({ code: 'METER_EXISTS' })
      // A meter may not take a party's or household's MQTT username.
      await expect(createMeter(t.db, { operatorId: w.utility.id, commodity: 'gas', intervalMinutes: 60, id: w.lab.id })).rejects.toThrow('id: the prefixes pty_ and hh_ are reserved')
      await expect(createMeter(t.db, { operatorId: w.utility.id, commodity: 'gas', intervalMinutes: 60, id: 'hh_anything' })).rejects.toThrow('id: the prefixes pty_ and hh_ are reserved')
      await expect(requireMeter(t.db, 'NOPE')).rejects.toBeInstanceOf(NotFoundError)
      expect((await requireMeter(t.db, 'LINKY-42')).operator_id).toBe(w.utility.id)
    })
  })

  describe('lists', () => {
    it('pages in creation order, filtered, without repeating or skipping', async () => {
      const w = await world()
      for (let i = 0; i < 4; i++) await createMeter(t.db, { operatorId: w.utility.id, commodity: 'electricity', intervalMinutes: 15, id: `M-${i}` })
      const other = await createParty(t.db, { kind: 'utility', name: 'Other' })
      await createMeter(t.db, { operatorId: other.id, commodity: 'electricity', intervalMinutes: 15, id: 'M-OTHER' })
      const seen: string[] = []
      let after = null
      do {
        const page: Awaited<ReturnType<typeof listMetersPage>> = await listMetersPage(t.db, { after, limit: 2, operatorId: w.utility.id })
        seen.push(...page.items.map((m) => m.id))
        after = page.next
      } while (after !== null)
      expect(seen).toEqual(['LINKY-42', 'M-0', 'M-1', 'M-2', 'M-3'])
      const utilities = await listPartiesPage(t.db, { after: null, limit: 10, kind: 'utility' })
      expect(utilities.items.map((p) => p.name)).toEqual(['Enedis', 'Other'])
      expect(utilities.next).toBeNull()
    })
  })
})

describePostgres('directory, credentials renewed at once', (t) => {
  /** Renewals that all read the credential before any replaced it (its row held locked meanwhile), then let go together. */
  async function atOnce<T>(table: 'households' | 'meters', id: string, renew: () => Promise<T>): Promise<PromiseSettledResult<T>[]> {
    const other = await t.openAnother()
    try {
      const holder = await holdConnection(other.db, 'transaction', (trx) => sql`SELECT 1 FROM ${sql.table(table)} WHERE id = ${id} FOR UPDATE`.execute(trx))
      const renewals = Promise.allSettled(Array.from({ length: 3 }, renew))
      for (;;) {
        const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(t.db)
        if (rows[0]!.n >= 3) break
        await new Promise((r) => setTimeout(r, 10))
      }
      holder.release()
      await holder.done
      return await renewals
    } finally {
      await other.close()
    }
  }

  it('answers one key of an operator\'s renewals at once, the others 409: no answer holds a key the next one ended', async () => {
    const household = await createHousehold(t.db, { name: 'H', email: 'renewed-at-once@example.org', password: 'correct horse battery' })
    const outcomes = await atOnce('households', household.id, () => renewApiKey(t.db, 'household', household.id))
    const answered = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value.apiKey] : []))
    expect(answered).toHaveLength(1)
    for (const o of outcomes.filter((o) => o.status === 'rejected')) expect((o as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError)
    expect(await authenticateApiKey(t.db, answered[0]!)).toMatchObject({ role: 'household', householdId: household.id })
  })

  it('answers one secret of a meter\'s renewals at once, the others 409', async () => {
    const operator = await createParty(t.db, { kind: 'utility', name: 'U' })
    const meter = await createMeter(t.db, { operatorId: operator.id, commodity: 'electricity', intervalMinutes: 15 })
    const outcomes = await atOnce('meters', meter.id, () => renewMeterSecret(t.db, meter.id))
    const answered = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value.secret] : []))
    expect(answered).toHaveLength(1)
    expect(await authenticateMqtt(t.db, { username: meter.id, password: pw(answered[0]) })).toMatchObject({ role: 'meter', meterId: meter.id })
  })
})

