import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest'
import { connectClient, endClient, startTestBroker, subscribeCollect, type TestBroker } from '../support/broker.ts'
import { describeDatabases } from '../support/database.ts'
import { createTestHousehold, createUtility } from '../support/world.ts'

const CONNACK_NOT_AUTHORIZED = 5
const SESSIONS_MAX = 2

/** Connects and resolves with CONNACK's session present flag. */
function connectSession(url: string, options: IClientOptions): Promise<{ client: MqttClient; sessionPresent: boolean }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...options })
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent }))
    client.once('error', (err) => {
      client.end(true)
      reject(err)
    })
  })
}

describeDatabases('persistent sessions of recipients and households', (t) => {
  // Two brokers over one database: what one counts, the other sees.
  let a: TestBroker
  let b: TestBroker
  let utility: { id: string; apiKey: string }
  let household: { id: string; apiKey: string }
  const clients: MqttClient[] = []

  beforeAll(async () => {
    const overrides = { mqtt: { persistentSessionsPerPrincipalMax: SESSIONS_MAX } }
    a = await startTestBroker(t.handle, { overrides })
    b = await startTestBroker(t.handle, { overrides })
  })
  afterAll(async () => {
    await a.close()
    await b.close()
  })
  beforeEach(async () => {
    utility = await createUtility(t.db)
    household = await createTestHousehold(t.db)
  })
  afterEach(async () => {
    for (const c of clients.splice(0)) await endClient(c)
  })

  const as = (who: { id: string; apiKey: string }, clientId: string, clean: boolean): IClientOptions => ({ clientId, username: who.id, password: who.apiKey, clean })

  it('refuses a persistent session beyond persistentSessionsPerPrincipalMax with CONNACK 5, on every broker, and lets its own sessions back in', async () => {
    const first = await connectClient(a.url, as(utility, 'app-1', false))
    expect((await subscribeCollect(first, 'readings/+')).granted).toBe(1)
    await endClient(first)
    await endClient(await connectClient(b.url, as(utility, 'app-2', false)))
    // Both offline now, on two brokers: a third persistent session is refused on either.
    for (const broker of [a, b]) await expect(connectClient(broker.url, as(utility, 'app-3', false))).rejects.toMatchObject({ code: CONNACK_NOT_AUTHORIZED })
    // A clean session is not counted, and another principal has sessions of its own.
    clients.push(await connectClient(a.url, as(utility, 'app-3', true)))
    clients.push(await connectClient(a.url, as(household, 'home-1', false)))
    // Its own sessions it may take up again, on the broker that keeps it (session present) or another.
    const back = await connectSession(a.url, as(utility, 'app-1', false))
    clients.push(back.client)
    expect(back.sessionPresent).toBe(true)
    clients.push(await connectClient(b.url, as(utility, 'app-2', false)))
    for (const c of clients.splice(0)) await endClient(c)
    // A clean connect under one of them ends it, which makes room for another.
    await endClient(await connectClient(b.url, as(utility, 'app-2', true)))
    clients.push(await connectClient(a.url, as(utility, 'app-3', false)))
  })

  it('lets exactly persistentSessionsPerPrincipalMax in of persistent connects sent at once to two brokers', async () => {
    const attempts = Array.from({ length: 6 }, (_, i) =>
      connectClient((i % 2 === 0 ? a : b).url, as(utility, `app-storm-${i}`, false)).then(
        (c) => (clients.push(c), 'connected'),
        (err: { code?: number }) => err.code,
      ),
    )
    const outcomes = await Promise.all(attempts)
    expect(outcomes.filter((o) => o === 'connected')).toHaveLength(SESSIONS_MAX)
    expect(outcomes.filter((o) => o === CONNACK_NOT_AUTHORIZED)).toHaveLength(6 - SESSIONS_MAX)
    expect(await t.db.selectFrom('mqtt_sessions').select('client_id').execute()).toHaveLength(SESSIONS_MAX)
  })
})
