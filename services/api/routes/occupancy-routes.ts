import { z } from 'zod'
import { formatTimestamp } from '../../../shared/calendar.ts'
import { CURSOR_NOT_RETURNED, cursorListing, isTimestampText } from '../../../shared/cursor.ts'
import { createOccupancy, getOccupancy, listOccupanciesPage, moveOut, type Occupancy } from '../../metering/occupancy-service.ts'
import { defineRoute } from '../route.ts'
import { pageAnswer, pageQueryShape, rfc3339Time, timeOutput } from '../validation.ts'
import type { RoutePlugin } from './route-plugin.ts'

/** Move-ins and move-outs: which household owns a meter's data at each instant. */

const OPERATOR = ['operator'] as const
const idString = z.string().min(1).max(128)

/** A page of occupancies ends at its last one's meter, move-in and id. */
const OCCUPANCIES_CURSOR = cursorListing('occupancies', ['string', 'string', 'string'], {
  refusal: CURSOR_NOT_RETURNED,
  accepts: ([meterId, from, id]) => meterId.length <= 128 && from.length <= 64 && isTimestampText(from) && id.length <= 128,
})

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
      'The household owns the data the meter stamps in [from, until). Both may lie in the past: readings already stored in that period change owner. An `until` in the past ends the household\'s consents for the meter at the registration, as a late move-out does, unless another occupancy of the household begins there (its move-in was earlier than registered). 409 `OCCUPANCY_OVERLAP` when another household occupies the meter during part of it; 409 `OCCUPANCY_SAME_DAY_RETURN` when the household would come back to the meter on the local day it left it (one daily value per household and day could not leave out what was used while it was away; stays back to back are allowed).',
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
      'Ends the occupancy at `until` (or moves an earlier move-out). Readings between the old and the new end change owner. `"until": null` cancels a move-out that has not happened yet. One that has happened ended the household\'s consents for the meter: it may be moved to another past instant, but cancelling it or moving it into the future answers 409 `CONFLICT`: register a new occupancy from it if the household stayed. 409 `OCCUPANCY_SAME_DAY_RETURN` when the new end falls on the local day the household comes back to the meter (its next occupancy), before it.',
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
    summary: "Occupancies: a meter's, a household's, or all of them",
    description: 'In (meter, move-in) order, paginated; `meterId` and `householdId` narrow the list.',
    tags: ['operator'],
    auth: OPERATOR,
    query: z.strictObject({ meterId: idString.optional(), householdId: idString.optional(), ...pageQueryShape(deps.config.http.pageItemsMax) }),
    response: pageAnswer(occupancyAnswer),
    async handler({ query }) {
      const after = query.cursor === undefined ? null : OCCUPANCIES_CURSOR.decode(query.cursor)
      const page = await listOccupanciesPage(
        db,
        { meterId: query.meterId, householdId: query.householdId },
        { after: after === null ? null : { meterId: after[0], from: after[1], id: after[2] }, limit: query.limit },
      )
      return { items: page.items.map(toWire), nextCursor: page.next === null ? null : OCCUPANCIES_CURSOR.encode([page.next.meterId, page.next.from, page.next.id]) }
    },
  })
}
