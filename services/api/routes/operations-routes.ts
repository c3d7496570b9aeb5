import { z } from 'zod'
import { log } from '../../../shared/logger.ts'
import type { HealthReport } from '../app.ts'
import { defineRoute } from '../route.ts'
import type { RoutePlugin } from './route-plugin.ts'

/** Longest wait for the health checks; a component that does not answer by then is down. */
export const HEALTH_CHECK_TIMEOUT_MS = 2_000

const healthSchema = z.object({
  status: z.enum(['ok', 'unavailable']),
  broker: z.boolean().optional().describe('Whether the broker answers; absent from `metershare api` alone, whose brokers are other processes with a /healthz of their own'),
  database: z.boolean(),
  redis: z.boolean().optional().describe('Present when the broker is coupled to others through Redis: whether Redis answers'),
  storage: z
    .boolean()
    .optional()
    .describe("Present with a broker: false while the database's disk is full and ingest holds meters' publishes unacknowledged (they are stored once space is freed)"),
})

/** The answer of a /healthz (this API's, and a broker process's own): 200 when every part answers. */
export function healthAnswer(report: HealthReport): { code: 200 | 503; body: z.infer<typeof healthSchema> } {
  const ok = report.broker !== false && report.database && report.redis !== false && report.storage !== false
  return {
    code: ok ? 200 : 503,
    body: {
      status: ok ? 'ok' : 'unavailable',
      ...(report.broker !== undefined ? { broker: report.broker } : {}),
      database: report.database,
      ...(report.redis !== undefined ? { redis: report.redis } : {}),
      ...(report.storage !== undefined ? { storage: report.storage } : {}),
    },
  }
}

export const operationsRoutes: RoutePlugin = async (app, { deps }) => {
  defineRoute(app, {
    method: 'GET',
    url: '/healthz',
    summary: 'Whether the broker and the database answer',
    description: '200 when both answer (and Redis, for a broker coupled to others through it), 503 with the same shape when one does not.',
    tags: ['operations'],
    auth: 'public',
    response: healthSchema,
    extraResponses: {
      503: { description: "The broker, the database or the broker's Redis does not answer, or the database's disk is full", response: healthSchema },
    },
    async handler({ reply }) {
      const { code, body } = healthAnswer(await checkHealth(deps.health))
      void reply.code(code).header('cache-control', 'no-store')
      return reply.send(body)
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/metrics',
    summary: 'Prometheus metrics',
    tags: ['operations'],
    auth: 'public',
    produces: { contentType: deps.metrics.registry.contentType, description: 'Prometheus text exposition format' },
    async handler({ reply }) {
      const text = await deps.metrics.registry.metrics()
      return reply.type(deps.metrics.registry.contentType).header('cache-control', 'no-store').send(text)
    },
  })
}

/**
 * Runs the health checks with a deadline; a failing or slow check counts as down, answered as `down`
 * says (by default the broker and the database; a process without a broker passes its own).
 */
export async function checkHealth(health: () => Promise<HealthReport>, down: HealthReport = { broker: false, database: false }): Promise<HealthReport> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<HealthReport>((resolve) => {
    timer = setTimeout(() => resolve(down), HEALTH_CHECK_TIMEOUT_MS)
  })
  try {
    const checked = health().catch((err: unknown) => {
      log.api.warn({ err }, 'health check failed')
      return down
    })
    return await Promise.race([checked, timeout])
  } finally {
    clearTimeout(timer)
  }
}
