import { randomBytes } from 'node:crypto'
import type { MeterCredentials } from './credentials.ts'
import { planMeters } from './fleet-plan.ts'

/**
 * Provisions a simulated district through the operator API of CONTRACT.md: one utility
 * (the meters' operator), then per meter a household with email and password, the meter,
 * and the household's occupancy of it from `from` on.
 */
export interface ProvisionOptions {
  /** Base URL of the HTTP API, e.g. http://localhost:8080. */
  apiUrl: string
  adminToken: string
  meters: number
  /** Start of the occupancies (the simulation's start). */
  fromMs: number
  seed: number
  /** Requests in flight at once. */
  concurrencyMax?: number
  /** Per-request timeout, ms. */
  requestTimeoutMs?: number
  onProgress?: (done: number, total: number) => void
}

export interface ProvisionResult {
  operatorId: string
  credentials: MeterCredentials[]
}

export const PROVISION_CONCURRENCY_MAX_DEFAULT = 8
export const PROVISION_REQUEST_TIMEOUT_MS_DEFAULT = 30_000

export class ProvisionError extends Error {
  override readonly name = 'ProvisionError'
  /** What was provisioned before the failure, so that it can be saved and reused. */
  readonly partial: MeterCredentials[]

  constructor(message: string, partial: MeterCredentials[]) {
    super(message)
    this.partial = partial
  }
}

interface ApiClient {
  post<T>(path: string, body: unknown): Promise<T>
}

function apiClient(apiUrl: string, adminToken: string, timeoutMs: number): ApiClient {
  const base = apiUrl.replace(/\/+$/, '')
  return {
    async post<T>(path: string, body: unknown): Promise<T> {
      let res: Response
      try {
        res = await fetch(base + path, {
          method: 'POST',
          headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(timeoutMs),
        })
      } catch (err) {
        // fetch says only "fetch failed"; why (ECONNREFUSED, ENOTFOUND, …) is in its cause.
        const cause = (err as Error).cause as { code?: string; message?: string } | undefined
        const why = cause?.code ?? cause?.message ?? (err as Error).message
        throw new Error(`POST ${base}${path}: ${why}${cause?.code === 'ECONNREFUSED' ? ' (is Metershare running there?)' : ''}`)
      }
      const text = await res.text()
      if (res.status !== 201 && res.status !== 200) {
        let detail = text.slice(0, 300)
        try {
          const e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error
          if (e !== undefined) detail = `${e.code ?? ''}: ${e.message ?? ''}`
        } catch {
          // not JSON: keep the raw excerpt
        }
        throw new Error(`POST ${path}: HTTP ${res.status} ${detail}`)
      }
      try {
        return JSON.parse(text) as T
      } catch {
        throw new Error(`POST ${path}: answer is not JSON`)
      }
    },
  }
}

function requireString(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new Error(`${what}: missing in the API's answer`)
  return value
}

export async function provisionFleet(options: ProvisionOptions): Promise<ProvisionResult> {
  const api = apiClient(options.apiUrl, options.adminToken, options.requestTimeoutMs ?? PROVISION_REQUEST_TIMEOUT_MS_DEFAULT)
  const concurrency = options.concurrencyMax ?? PROVISION_CONCURRENCY_MAX_DEFAULT
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrencyMax: must be a positive integer')
  const plans = planMeters(options.meters, options.seed)
  // Emails must be unique across runs against the same API.
  const runTag = randomBytes(4).toString('hex')
  const from = new Date(options.fromMs).toISOString()

  let operatorId: string
  try {
    const operator = await api.post<{ id?: unknown }>('/admin/parties', { kind: 'utility', name: `Simulated grid operator ${runTag}` })
    operatorId = requireString(operator.id, 'POST /admin/parties id')
  } catch (err) {
    throw new ProvisionError((err as Error).message, [])
  }

  const results: (MeterCredentials | undefined)[] = new Array(plans.length)
  let next = 0
  let done = 0
  let failure: Error | undefined
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < plans.length) {
      const i = next++
      const plan = plans[i]!
      try {
        const email = `household-${runTag}-${i + 1}@simulated.example`
        const password = randomBytes(12).toString('base64url')
        const household = await api.post<{ id?: unknown }>('/admin/households', { name: `Simulated household ${i + 1}`, email, password })
        const householdId = requireString(household.id, 'POST /admin/households id')
        const meter = await api.post<{ id?: unknown; secret?: unknown }>('/admin/meters', {
          operatorId,
          commodity: plan.commodity,
          intervalMinutes: plan.intervalMinutes,
        })
        const meterId = requireString(meter.id, 'POST /admin/meters id')
        const secret = requireString(meter.secret, 'POST /admin/meters secret')
        await api.post('/admin/occupancies', { meterId, householdId, from })
        results[i] = {
          meterId,
          secret,
          commodity: plan.commodity,
          intervalMinutes: plan.intervalMinutes,
          persons: plan.persons,
          pv: plan.pv,
          power: plan.power,
          seed: plan.seed,
          householdId,
          email,
          password,
          operatorId,
        }
        done++
        options.onProgress?.(done, plans.length)
      } catch (err) {
        failure ??= err as Error
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, plans.length)) }, worker))
  const credentials = results.filter((c): c is MeterCredentials => c !== undefined)
  if (failure !== undefined) throw new ProvisionError(failure.message, credentials)
  return { operatorId, credentials }
}
