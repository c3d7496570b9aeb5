import { consentRoutes } from './consent-routes.ts'
import { directoryRoutes } from './directory-routes.ts'
import { docsRoutes } from './docs-routes.ts'
import { occupancyRoutes } from './occupancy-routes.ts'
import { operationsRoutes } from './operations-routes.ts'
import { portalRoutes } from './portal-routes.ts'
import { quarantineRoutes } from './quarantine-routes.ts'
import { readingRoutes } from './reading-routes.ts'
import type { RoutePlugin } from './route-plugin.ts'
import { settlementRoutes } from './settlement-routes.ts'

/**
 * Every route module, registered in this order by `buildApi`. A new area adds its
 * `<area>-routes.ts` and one line here; its routes appear in the OpenAPI document by
 * themselves when declared with `defineRoute`.
 */
export const ROUTE_PLUGINS: readonly RoutePlugin[] = [
  operationsRoutes,
  docsRoutes,
  directoryRoutes,
  occupancyRoutes,
  quarantineRoutes,
  readingRoutes,
  consentRoutes,
  settlementRoutes,
  portalRoutes,
]
