import { expect, it } from 'vitest'
import { DEFAULT_HTTP_LIMITS } from '../../../shared/config.ts'
import { describeDatabases } from '../../support/database.ts'
import { errorOf, useApi } from './api-harness.ts'

/**
 * A route that takes no credentials reads and parses its body before anyone is known: its body may
 * have `http.publicBodyBytesMax` bytes, not the 1 MiB of the others. 1 MiB of small nested arrays
 * sent to the sign-in cost 260-335 ms of the event loop each, for anyone.
 */
describeDatabases('bodies of routes without credentials', (t) => {
  const api = useApi(t)
  const max = DEFAULT_HTTP_LIMITS.publicBodyBytesMax
  /** A sign-in body of exactly `bytes` bytes, padded in a field the route does not take. */
  const body = (bytes: number) => {
    const head = '{"email":"nobody@example.org","password":"wrong password","pad":['
    const items = '[1],'.repeat(Math.ceil(bytes / 4))
    const text = `${head}${items}`.slice(0, bytes - 2).replace(/,?$/, '')
    return `${text}]}`.padEnd(bytes, ' ')
  }

  it('is far below the bound of the routes that take credentials', () => {
    expect(max).toBeLessThanOrEqual(16 * 1024)
    expect(max).toBeLessThan(DEFAULT_HTTP_LIMITS.bodyBytesMax)
  })

  for (const [method, url] of [['POST', '/portal/session'], ['POST', '/portal/sign-out'], ['POST', '/account/password']] as const) {
    it(`answers ${method} ${url} with a JSON body over publicBodyBytesMax 413, and reads one at it`, async () => {
      const over = await api.inject({ method, url, headers: { 'content-type': 'application/json' }, payload: body(max + 1) })
      expect(over.statusCode).toBe(413)
      // The limit named, in bytes.
      expect(errorOf(over)).toEqual({ code: 'PAYLOAD_TOO_LARGE', message: `body: over the ${max} bytes this route takes` })
      const at = await api.inject({ method, url, headers: { 'content-type': 'application/json' }, payload: body(max) })
      expect(at.statusCode).not.toBe(413)
    })
  }
})
