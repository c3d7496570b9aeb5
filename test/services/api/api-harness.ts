import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { sql, type Kysely } from 'kysely'
import { afterAll, beforeAll } from 'vitest'
import { buildApi, type ApiDeps, type HealthReport } from '../../../services/api/app.ts'
import { envToConfig, type ConfigOverrides, type RawEnv } from '../../../shared/config.ts'
import type { Database } from '../../../shared/db/schema.ts'
import { createMetrics, type Metrics } from '../../../shared/metrics.ts'
import type { TestDatabase } from '../../support/database.ts'

/**
 * A real API on a test database, driven through `app.inject` (the whole fastify request
 * path, without a socket). Built once per describe; the database is emptied before each test.
 */

export const ADMIN_TOKEN = 'test-operator-token-0123456789abcdef'
export const OPERATOR = { authorization: `Bearer ${ADMIN_TOKEN}` } as const

/** Nothing listens on port 1: a database server that is down, failing every query at once. */
export const UNREACHABLE_DATABASE_URL = 'postgres://metershare:metershare@127.0.0.1:1/unreachable'

export function bearer(token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` }
}

export interface TestApi {
  readonly app: FastifyInstance
  readonly metrics: Metrics
  inject(options: InjectOptions): Promise<LightMyRequestResponse>
  /** A JSON request with the operator token. */
  asOperator(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown): Promise<LightMyRequestResponse>
}

export interface TestApiOptions {
  health?: () => Promise<HealthReport>
  clock?: () => Date
  config?: ConfigOverrides
  /** Environment values beside the admin token (METERSHARE_TRUSTED_PROXIES, …). */
  env?: RawEnv
  extra?: Partial<ApiDeps>
}

/** The database answers a trivial query. */
export async function databaseAnswers(db: Kysely<Database>): Promise<boolean> {
  try {
    await sql`SELECT 1`.execute(db)
    return true
  } catch {
    return false
  }
}

export function useApi(t: TestDatabase, options: TestApiOptions = {}): TestApi {
  let app: FastifyInstance | undefined
  const metrics = createMetrics({ defaultMetrics: false })

  beforeAll(async () => {
    app = await buildApi({
      config: envToConfig({ adminToken: ADMIN_TOKEN, ...options.env }, options.config),
      db: t.handle,
      metrics,
      health: options.health ?? (async () => ({ broker: true, database: await databaseAnswers(t.db) })),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...options.extra,
    })
  })

  afterAll(async () => {
    await app?.close()
  })

  const api: TestApi = {
    get app() {
      if (app === undefined) throw new Error('API not built yet: use it inside a test or hook')
      return app
    },
    metrics,
    inject(injectOptions) {
      return api.app.inject(injectOptions)
    },
    asOperator(method, url, body) {
      return api.app.inject({ method, url, headers: OPERATOR, ...(body === undefined ? {} : { payload: body as object }) })
    },
  }
  return api
}

/** The error envelope of an answer, checked for shape. */
export function errorOf(res: LightMyRequestResponse): { code: string; message: string } {
  const body = res.json() as { error?: { code?: unknown; message?: unknown } }
  if (typeof body.error?.code !== 'string' || typeof body.error.message !== 'string' || Object.keys(body).length !== 1) {
    throw new Error(`not an error envelope: ${res.body}`)
  }
  return { code: body.error.code, message: body.error.message }
}

/** A utility, a meter and two households, provisioned through the API itself. */
export interface TestWorld {
  utility: { id: string; apiKey: string }
  meterId: string
  meterSecret: string
  households: { id: string; apiKey: string }[]
}

export async function provision(api: TestApi, households = 2): Promise<TestWorld> {
  const utility = (await api.asOperator('POST', '/admin/parties', { kind: 'utility', name: 'Enedis' })).json()
  const meter = (await api.asOperator('POST', '/admin/meters', { operatorId: utility.id, commodity: 'electricity', intervalMinutes: 60, id: 'LINKY-1' })).json()
  const list: { id: string; apiKey: string }[] = []
  for (let i = 0; i < households; i++) {
    const res = await api.asOperator('POST', '/admin/households', { name: `H${i}`, email: `h${i}@example.org`, password: 'password-of-h' + i })
    list.push(res.json())
  }
  return { utility, meterId: meter.id, meterSecret: meter.secret, households: list }
}
