import { z } from 'zod'
import { NotFoundError } from '../../../shared/errors.ts'
import { GRANULARITIES } from '../../../shared/wire.ts'
import { occupanciesOfHousehold } from '../../metering/occupancy-service.ts'
import { READINGS_PAGE_LIMIT_MAX, listReadings } from '../../metering/reading-service.ts'
import { defineRoute } from '../route.ts'
import { pageAnswer, pageQueryShape, rfc3339QueryTime } from '../validation.ts'
import type { RoutePlugin } from './route-plugin.ts'

/** A household's own data, shaped as the MQTT egress payloads. */

const registerValues = z.record(z.string(), z.number().int()).meta({ description: 'OBIS code → integer (Wh, W or dm³)' })

/** Items of the readings lists: the egress payloads of CONTRACT.md. */
export const egressDatumSchema = z.discriminatedUnion('granularity', [
  z.object({ meterId: z.string(), ts: z.string().meta({ format: 'date-time' }), granularity: z.literal('load_curve'), values: registerValues }),
  z.object({
    meterId: z.string(),
    day: z.string().meta({ format: 'date', description: 'local day in the configured time zone' }),
    granularity: z.literal('daily'),
    values: registerValues.meta({ description: 'energy of the day (Wh), not indexes' }),
  }),
  z.object({
    meterId: z.string(),
    month: z.string().meta({ description: 'YYYY-MM, local month' }),
    granularity: z.literal('monthly'),
    values: registerValues.meta({ description: 'energy of the month (Wh)' }),
  }),
])

export const readingsQueryShape = (pageItemsMax: number) => ({
  from: rfc3339QueryTime.optional().meta({ description: 'data stamped at or after (a day or month: starting at or after); default: the beginning' }),
  to: rfc3339QueryTime.optional().meta({ description: 'data stamped before (a day or month: starting before); default: now' }),
  granularity: z.enum(GRANULARITIES).default('load_curve'),
  ...pageQueryShape(Math.min(pageItemsMax, READINGS_PAGE_LIMIT_MAX)),
})

/** Earliest `from` when none is given: before any datum a meter may send. */
const BEGINNING = new Date(Date.UTC(2000, 0, 1))

/**
 * The instants a readings query asks for, [from, to): `from` defaults to the beginning, `to` to now
 * (nothing is stored beyond the ingest's future tolerance, so that includes all of it). A bound left
 * out never contradicts the one given: `to` before the beginning, or `from` after now, asks for
 * nothing, answered with an empty page, not a 400 naming a field the caller did not send.
 */
export function readingsRange(query: { from?: Date | undefined; to?: Date | undefined }, now: Date, futureToleranceMs: number): { from: Date; to: Date } {
  const to = query.to ?? new Date(now.getTime() + futureToleranceMs + 1)
  const from = query.from ?? new Date(Math.min(BEGINNING.getTime(), to.getTime()))
  return { from, to: query.to === undefined && to.getTime() < from.getTime() ? from : to }
}

/**
 * What a cursor of a readings listing belongs to: who asks, the meter (or all), and the range as the
 * query gave it (a `to` left out is now, which moves from page to page). Another meter's cursor was a
 * keyset position that skipped every meter before it and answered an empty last page (found by probing).
 */
export function readingsCursorScope(who: string, query: { meterId?: string | undefined; from?: Date | undefined; to?: Date | undefined }): string {
  return JSON.stringify([who, query.meterId ?? null, query.from?.getTime() ?? null, query.to?.getTime() ?? null])
}

export const readingRoutes: RoutePlugin = async (app, { deps }) => {
  const db = deps.db.db
  const ctx = { timezone: deps.config.timezone }

  defineRoute(app, {
    method: 'GET',
    url: '/me/readings',
    summary: "The household's own data",
    description:
      'Only what the meter stamped while the household occupied it. A meter the household never occupied is answered 404, whether it exists or not. Without `meterId`: every meter it occupied. Pass `nextCursor` as `cursor` for the next page.',
    tags: ['household'],
    auth: ['household'],
    query: z.strictObject({ meterId: z.string().min(1).max(128).optional(), ...readingsQueryShape(deps.config.http.pageItemsMax) }),
    response: pageAnswer(egressDatumSchema),
    errors: [404],
    async handler({ query, principal }) {
      const householdId = principal.householdId
      if (query.meterId !== undefined) {
        const occupied = (await occupanciesOfHousehold(db, householdId)).some((o) => o.meterId === query.meterId)
        if (!occupied) throw new NotFoundError(`meter ${query.meterId} not found`)
      }
      const { from, to } = readingsRange(query, app.apiContext.now(), deps.config.ingest.futureToleranceMs)
      return listReadings(
        db,
        {
          meterIds: query.meterId === undefined ? 'all-of-household' : [query.meterId],
          householdId,
          from,
          to,
          granularity: query.granularity,
          cursor: query.cursor,
          cursorScope: readingsCursorScope(householdId, query),
          limit: query.limit,
        },
        ctx,
      )
    },
  })
}
