import { z } from 'zod'
import { QUARANTINE_REASONS } from '../../../shared/errors.ts'
import { QUARANTINE_PAGE_LIMIT_MAX, listQuarantine } from '../../metering/quarantine-service.ts'
import { defineRoute } from '../route.ts'
import { pageAnswer, pageQueryShape, rfc3339QueryTime, timeOutput } from '../validation.ts'
import type { RoutePlugin } from './route-plugin.ts'

/** What meters sent that was acknowledged but kept aside, with the reason. */
export const quarantineRoutes: RoutePlugin = async (app, { deps }) => {
  const db = deps.db.db
  const page = pageQueryShape(Math.min(deps.config.http.pageItemsMax, QUARANTINE_PAGE_LIMIT_MAX))

  defineRoute(app, {
    method: 'GET',
    url: '/admin/quarantine',
    summary: 'Quarantined input, newest receipt last',
    description: 'Filtered by meter and by reception time in [from, to).',
    tags: ['operator'],
    auth: ['operator'],
    query: z.strictObject({
      meterId: z.string().min(1).max(128).optional(),
      from: rfc3339QueryTime.optional().meta({ description: 'received at or after' }),
      to: rfc3339QueryTime.optional().meta({ description: 'received before' }),
      include: z.enum(['detail']).optional().meta({ description: "`detail`: each item's detail too, naming what was wrong (as the meter's status topic said it)" }),
      ...page,
    }),
    response: pageAnswer(
      z.object({
        meterId: z.string(),
        receivedAt: timeOutput,
        reason: z.enum(QUARANTINE_REASONS),
        ts: timeOutput.optional().meta({ description: "the datum's timestamp, when one could be read" }),
        payloadExcerpt: z.string().meta({ description: 'what the meter sent (at most its first 4 KiB), as UTF-8' }),
        detail: z.string().optional().meta({ description: 'with `include=detail`: what was wrong, naming the field' }),
      }),
    ),
    async handler({ query }) {
      return listQuarantine(db, { ...query, includeDetail: query.include === 'detail' })
    },
  })
}
