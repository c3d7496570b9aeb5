import net, { type AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { buildApi } from '../../services/api/app.ts'
import { envToConfig } from '../../shared/config.ts'
import { createMetrics } from '../../shared/metrics.ts'
import { parseCredentials } from '../../simulators/credentials.ts'
import { planMeters } from '../../simulators/fleet-plan.ts'
import { provisionFleet, ProvisionError } from '../../simulators/provision.ts'
import { describeDatabases } from '../support/database.ts'

/** The simulator provisions through the product's real operator API, listening on a real socket. */
const ADMIN_TOKEN = 'simulator-test-operator-token-0123456789'

describeDatabases('provisioning a simulated district through the operator API', (t) => {
  let app: FastifyInstance
  let apiUrl: string

  beforeAll(async () => {
    app = await buildApi({
      config: envToConfig({ adminToken: ADMIN_TOKEN }),
      db: t.handle,
      metrics: createMetrics({ defaultMetrics: false }),
      health: async () => ({ broker: true, database: true }),
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    apiUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  })

  afterAll(async () => {
    await app.close()
  })

  it('creates a utility, then a household, a meter and an occupancy from the start per meter, and returns their credentials', async () => {
    const fromMs = Date.parse('2026-09-30T22:00:00Z')
    const result = await provisionFleet({ apiUrl, adminToken: ADMIN_TOKEN, meters: 12, fromMs, seed: 3, concurrencyMax: 3 })
    const creds = result.credentials
    expect(creds).toHaveLength(12)
    // What it returns is a valid credentials file.
    expect(parseCredentials(JSON.parse(JSON.stringify(creds)))).toEqual(creds)

    const plan = planMeters(12, 3)
    const meters = await t.db.selectFrom('meters').selectAll().execute()
    expect(meters).toHaveLength(12)
    for (const [i, c] of creds.entries()) {
      expect(c).toMatchObject({ commodity: plan[i]!.commodity, intervalMinutes: plan[i]!.intervalMinutes, persons: plan[i]!.persons, seed: plan[i]!.seed, operatorId: result.operatorId })
      const row = meters.find((m) => m.id === c.meterId)!
      expect(row).toMatchObject({ operator_id: result.operatorId, commodity: c.commodity, interval_minutes: c.intervalMinutes })
      const occupancy = await t.db.selectFrom('occupancies').selectAll().where('meter_id', '=', c.meterId).executeTakeFirstOrThrow()
      expect(occupancy.household_id).toBe(c.householdId)
      expect(occupancy.valid_from.toISOString()).toBe('2026-09-30T22:00:00.000Z')
      expect(occupancy.valid_until).toBeNull()
      const household = await t.db.selectFrom('households').selectAll().where('id', '=', c.householdId!).executeTakeFirstOrThrow()
      expect(household.email).toBe(c.email!.toLowerCase())
      expect(c.password!.length).toBeGreaterThanOrEqual(12)
    }
    expect(creds.filter((c) => c.commodity === 'gas')).toHaveLength(1)
    const party = await t.db.selectFrom('parties').selectAll().where('id', '=', result.operatorId).executeTakeFirstOrThrow()
    expect(party.kind).toBe('utility')
  })

  it('stops at the first refusal and says what the API answered', async () => {
    const err = await provisionFleet({ apiUrl, adminToken: 'not-the-token', meters: 2, fromMs: Date.now(), seed: 1 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ProvisionError)
    expect((err as ProvisionError).message).toMatch(/POST \/admin\/parties: HTTP 401/)
    expect((err as ProvisionError).partial).toEqual([])
  })
})

it('says when nothing answers at the API address, rather than only that a fetch failed', async () => {
  // A port that was just free: nothing listens there.
  const server = net.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((r) => server.close(() => r()))
  const err = await provisionFleet({ apiUrl: `http://127.0.0.1:${port}`, adminToken: ADMIN_TOKEN, meters: 1, fromMs: Date.now(), seed: 1 }).catch((e: unknown) => e)
  expect(err).toBeInstanceOf(ProvisionError)
  expect((err as ProvisionError).message).toContain(`POST http://127.0.0.1:${port}/admin/parties: ECONNREFUSED (is Metershare running there?)`)
})
