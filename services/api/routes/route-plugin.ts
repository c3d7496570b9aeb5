import type { FastifyPluginAsync } from 'fastify'
import type { ApiDeps } from '../app.ts'

/** A route module: one fastify plugin per area, listed in `routes/index.ts`. */
export type RoutePlugin = FastifyPluginAsync<{ deps: ApiDeps }>
