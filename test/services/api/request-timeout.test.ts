import net, { type AddressInfo } from 'node:net'
import { expect, it } from 'vitest'
import { HTTP_TIMEOUT_CHECK_INTERVAL_MS } from '../../../services/api/app.ts'
import { DEFAULT_HTTP_LIMITS } from '../../../shared/config.ts'
import { describeDatabases } from '../../support/database.ts'
import { OPERATOR, useApi } from './api-harness.ts'

/**
 * A request not received whole within `http.requestTimeoutMs` is answered 408 REQUEST_TIMEOUT
 * (docs/http-api.md). Node checks for it only every `connectionsCheckingInterval` (30 s unless
 * told), and only with the timeout given when the server is created: set later, as fastify did,
 * a request that stopped halfway was answered after 60 to 84 s instead of 30.
 */
describeDatabases('a request not received whole', (t) => {
  const TIMEOUT_MS = 1_500
  const api = useApi(t, { config: { http: { requestTimeoutMs: TIMEOUT_MS } } })

  it('is bounded by a named limit of 30 s', () => {
    expect(DEFAULT_HTTP_LIMITS.requestTimeoutMs).toBe(30_000)
  })

  it('is answered 408 once the request timeout has passed, not a check interval later', { timeout: 20_000 }, async () => {
    await api.app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = api.app.server.address() as AddressInfo
    const startedMs = Date.now()
    const answer = await new Promise<{ text: string; afterMs: number }>((resolve, reject) => {
      let text = ''
      const socket = net.connect(port, '127.0.0.1', () => {
        // Headers whole, the body a few bytes of the 100 announced, then nothing more.
        socket.write(
          `POST /admin/parties HTTP/1.1\r\nHost: x\r\nAuthorization: ${OPERATOR.authorization}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"kind"`,
        )
      })
      socket.on('data', (chunk) => (text += chunk.toString()))
      socket.on('error', reject)
      socket.on('close', () => resolve({ text, afterMs: Date.now() - startedMs }))
    })
    expect(answer.text).toMatch(/^HTTP\/1\.1 408 /)
    expect(JSON.parse(answer.text.slice(answer.text.indexOf('\r\n\r\n') + 4))).toEqual({
      error: { code: 'REQUEST_TIMEOUT', message: 'request: not received whole within 1.5 s' },
    })
    expect(answer.afterMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 100)
    // At most one check interval late (plus room for a busy machine).
    expect(answer.afterMs).toBeLessThan(TIMEOUT_MS + HTTP_TIMEOUT_CHECK_INTERVAL_MS + 3_000)
  })
})
