import net from 'node:net'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectMeter, endClient, startTestBroker, type TestBroker } from '../support/broker.ts'
import { useTestDatabase } from '../support/database.ts'
import { createTestMeter, createUtility } from '../support/world.ts'

describe('broker limits', () => {
  const t = useTestDatabase('pglite', { resetEach: false })
  let tb: TestBroker

  beforeAll(async () => {
    tb = await startTestBroker(t.handle, { overrides: { mqtt: { connectionsMax: 2 } } })
  })
  afterAll(async () => {
    await tb.close()
  })

  it('answers CONNACK 3 (server unavailable) beyond connectionsMax, and takes connections again once one leaves', async () => {
    const utility = await createUtility(t.db)
    const meters = [await createTestMeter(t.db, utility.id), await createTestMeter(t.db, utility.id), await createTestMeter(t.db, utility.id)]
    const clients: MqttClient[] = [await connectMeter(tb.url, meters[0]!), await connectMeter(tb.url, meters[1]!)]
    try {
      await expect(connectMeter(tb.url, meters[2]!)).rejects.toMatchObject({ code: 3 })
      await endClient(clients.shift()!)
      clients.push(await connectMeter(tb.url, meters[2]!))
      expect(clients.every((c) => c.connected)).toBe(true)
    } finally {
      for (const c of clients) await endClient(c)
    }
  })

  it('closes, letting go of a connection that has not finished its CONNECT', async () => {
    const other = await startTestBroker(t.handle)
    const socket = net.connect(other.port, '127.0.0.1')
    await new Promise<void>((r) => socket.once('connect', () => r()))
    const gone = new Promise<void>((r) => socket.once('close', () => r()))
    socket.on('error', () => {})
    // The first two bytes of a CONNECT: aedes knows no client here, and the listener's close waited
    // for this socket until aedes' connect timeout (30 s), or for ever once a CONNECT waited for its CONNACK.
    socket.write(Buffer.from([0x10, 0x20]))
    await new Promise((r) => setTimeout(r, 100))
    await other.close()
    await gone
    expect(socket.destroyed).toBe(true)
  }, 20_000)
})
