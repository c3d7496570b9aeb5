import net, { type AddressInfo } from 'node:net'
import { describe, expect, it } from 'vitest'
import { DEFAULT_HTTP_LIMITS } from '../../../shared/config.ts'
import { describeDatabases } from '../../support/database.ts'
import { useApi } from './api-harness.ts'

/**
 * Connections to the HTTP port are held up to `http.connectionsMax`: past it a new one is closed as
 * it is accepted. Without a bound, ~20,000 connections that never sent a byte (each held 60 s, and
 * opened again) took every file descriptor of `metershare up`: /healthz and MQTT connects were refused.
 */
describeDatabases('connections to the HTTP port', (t) => {
  const HELD_MAX = 3
  const api = useApi(t, { config: { http: { connectionsMax: HELD_MAX } } })

  const heldByServer = () => new Promise<number>((resolve, reject) => api.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))))
  async function untilHeld(n: number): Promise<void> {
    while ((await heldByServer()) !== n) await new Promise((r) => setTimeout(r, 5))
  }
  const open = (port: number) =>
    new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(socket))
      socket.on('error', reject)
    })
  /** What the server answers on a socket to a request for /healthz, or '' when it closes the socket unanswered. */
  const answer = (socket: net.Socket) =>
    new Promise<string>((resolve) => {
      let text = ''
      socket.on('data', (chunk) => {
        text += chunk.toString()
        if (text.includes('\r\n\r\n')) resolve(text)
      })
      socket.on('error', () => resolve(text))
      socket.on('close', () => resolve(text))
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', () => {})
    })

  it('is bounded by a named limit', () => {
    expect(DEFAULT_HTTP_LIMITS.connectionsMax).toBeGreaterThan(0)
  })

  it('closes a connection beyond connectionsMax as it is accepted, and takes new ones once some have gone', async () => {
    await api.app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = api.app.server.address() as AddressInfo
    // Idle connections, as a hostile client holds them: nothing sent.
    const idle: net.Socket[] = []
    for (let i = 0; i < HELD_MAX; i++) idle.push(await open(port))
    await untilHeld(HELD_MAX)

    const extra = await open(port)
    expect(await answer(extra)).toBe('')
    expect(await heldByServer()).toBe(HELD_MAX)

    // The ones held are served as ever.
    expect(await answer(idle[0]!)).toMatch(/^HTTP\/1\.1 200 /)

    idle.pop()!.destroy()
    await untilHeld(HELD_MAX - 1)
    const later = await open(port)
    expect(await answer(later)).toMatch(/^HTTP\/1\.1 200 /)
    for (const s of [...idle, later, extra]) s.destroy()
  })
})

describe('the default bound on HTTP connections', () => {
  it('leaves file descriptors for the MQTT listener under the 65,536 the compose file gives a process', async () => {
    const { DEFAULT_MQTT_LIMITS } = await import('../../../shared/config.ts')
    expect(DEFAULT_HTTP_LIMITS.connectionsMax + DEFAULT_MQTT_LIMITS.connectionsMax + 100).toBeLessThan(65_536 - 1_000)
  })
})
