import { z } from 'zod'
import { formatTimestamp } from '../../../shared/calendar.ts'
import { createOccupancy, getOccupancy, listOccupancies, moveOut, type Occupancy } from '../../metering/occupancy-service.ts'
import { defineRoute } from '../route.ts'
import { rfc3339Time, timeOutput } from '../validation.ts'
import type { RoutePlugin } from './route-plugin.ts'

/** Move-ins and move-outs: which household owns a meter's data at each instant. */

const OPERATOR = ['operator'] as const
const idString = z.string().min(1).max(128)

const occupancyAnswer = z.object({
  id: z.string(),
  meterId: z.string(),
  householdId: z.string(),
  from: timeOutput,
  until: timeOutput.nullable().meta({ description: 'null while the household still lives there' }),
})

function toWire(o: Occupancy): z.output<typeof occupancyAnswer> {
  return { id: o.id, meterId: o.meterId, householdId: o.householdId, from: formatTimestamp(o.from), until: o.until === null ? null : formatTimestamp(o.until) }
}

export const occupancyRoutes: RoutePlugin = async (app, { deps }) => {
  const db = deps.db.db
  const ctx = { timezone: deps.config.timezone }

  defineRoute(app, {
    method: 'POST',
    url: '/admin/occupancies',
    summary: 'Register a move-in',
    description:
      'The household owns the data the meter stamps in [from, until). Both may lie in the past: readings already stored in that period change owner. 409 `OCCUPANCY_OVERLAP` when another household occupies the meter during part of it.',
    tags: ['operator'],
    auth: OPERATOR,
    body: z.strictObject({
      meterId: idString.meta({ examples: ['LINKY-000123'] }),
      householdId: idString.meta({ examples: ['hh_8d2k4m6p1q3r5s7t'] }),
      from: rfc3339Time,
      until: rfc3339Time.nullable().optional().meta({ description: 'the move-out; absent or null while the household lives there' }),
    }),
    status: 201,
    response: z.object({ id: z.string() }),
    errors: [409],
    async handler({ body }) {
      const created = await createOccupancy(db, { meterId: body.meterId, householdId: body.householdId, from: body.from, until: body.until ?? null }, ctx, app.apiContext.now())
      await deps.releaseChanged?.({ kind: 'occupancy', meterId: body.meterId })
      return created
    },
  })

  defineRoute(app, {
    method: 'PATCH',
    url: '/admin/occupancies/:id',
    summary: 'Register a move-out',
    description:
      'Ends the occupancy at `until` (or moves an earlier move-out). Readings between the old and the new end change owner. `"until": null` cancels a move-out that has not happened yet. One that has happened ended the household\'s consents for the meter: it may be moved to another past instant, but cancelling it or moving it into the future answers 409 `CONFLICT`: register a new occupancy from it if the household stayed.',
    tags: ['operator'],
    auth: OPERATOR,
    params: z.strictObject({ id: idString }),
    body: z.strictObject({ until: rfc3339Time.nullable().meta({ description: 'the move-out; null cancels one still to come' }) }),
    response: occupancyAnswer,
    errors: [404, 409],
    async handler({ params, body }) {
      await moveOut(db, params.id, body.until, ctx, app.apiContext.now())
      const occupancy = await getOccupancy(db, params.id)
      await deps.releaseChanged?.({ kind: 'occupancy', meterId: occupancy.meterId })
      return toWire(occupancy)
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/admin/occupancies',
    summary: "A meter's or a household's occupancies",
    tags: ['operator'],
    auth: OPERATOR,
    query: z
      .strictObject({ meterId: idString.optional(), householdId: idString.optional() })
      .refine((q) => q.meterId !== undefined || q.householdId !== undefined, { message: 'meterId or householdId required', path: ['meterId'] }),
    response: z.object({ items: z.array(occupancyAnswer) }),
    async handler({ query }) {
      const items = await listOccupancies(db, { meterId: query.meterId, householdId: query.householdId })
      return { items: items.map(toWire) }
    },
  })
}
