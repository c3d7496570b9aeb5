import { expect, it } from 'vitest'
import { CONSENT_METERS_MAX } from '../../../services/consent/consent-service.ts'
import { DEFAULT_HTTP_LIMITS } from '../../../shared/config.ts'
import { PORTAL_FORM_BYTES_MAX } from '../../../services/api/validation.ts'
import { describeDatabases } from '../../support/database.ts'
import { OPERATOR, bearer, errorOf, provision, useApi } from './api-harness.ts'

/**
 * A body is read and parsed whole before its schema refuses it: `http.bodyBytesMax` is kept near what
 * the largest request needs. At 1 MiB, small nested arrays cost 180-200 ms of the event loop each.
 */
describeDatabases('the size of a request body', (t) => {
  const api = useApi(t)
  const max = DEFAULT_HTTP_LIMITS.bodyBytesMax

  it('answers a body over bodyBytesMax 413 before parsing it, at the default bound', async () => {
    const pad = '[1],'.repeat(Math.ceil(max / 4))
    const payload = `{"kind":"utility","name":"X","pad":[${pad.slice(0, max)}[1]]}`
    expect(payload.length).toBeGreaterThan(max)
    const res = await api.inject({ method: 'POST', url: '/admin/parties', headers: { ...OPERATOR, 'content-type': 'application/json' }, payload })
    expect(res.statusCode).toBe(413)
    expect(errorOf(res)).toEqual({ code: 'PAYLOAD_TOO_LARGE', message: `body: over the ${max} bytes this route takes` })
    expect(max).toBeLessThanOrEqual(64 * 1024)
  })

  it('names the smaller bound of a portal form, whatever its route takes otherwise', async () => {
    const res = await api.inject({ method: 'POST', url: '/consents', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }, payload: `csrfToken=x&offerId=${'o'.repeat(10 * 1024)}` })
    expect([res.statusCode, errorOf(res)]).toEqual([413, { code: 'PAYLOAD_TOO_LARGE', message: `body: over the ${PORTAL_FORM_BYTES_MAX} bytes this route takes` }])
  })

  it('takes the largest body a route takes: a consent naming CONSENT_METERS_MAX meters of the longest ids', async () => {
    const world = await provision(api, 1)
    const meterIds = Array.from({ length: CONSENT_METERS_MAX }, (_, i) => `${String(i).padStart(3, '0')}${'M'.repeat(125)}`)
    const payload = JSON.stringify({ offerId: 'off_unknown', meterIds, validUntil: '2030-01-01T00:00:00Z', dataFrom: '2020-01-01T00:00:00Z', dataUntil: '2029-01-01T00:00:00Z' })
    expect(payload.length * 2).toBeLessThan(max)
    const res = await api.inject({ method: 'POST', url: '/me/consents', headers: { ...bearer(world.households[0]!.apiKey), 'content-type': 'application/json' }, payload })
    expect(res.statusCode).not.toBe(413)
  })
})
