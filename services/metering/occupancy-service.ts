import type { Kysely } from 'kysely'
import { datumDayOf, dayOf, formatTimestamp } from '../../shared/calendar.ts'
import type { Database } from '../../shared/db/schema.ts'
import { ConflictError, ERROR_CODES, InvalidInputError, NotFoundError } from '../../shared/errors.ts'
import { newId } from '../../shared/ids.ts'
import type { MeteringContext } from './metering-context.ts'
import * as repo from './occupancy-repository.ts'
import { reattributeReadings } from './reading-repository.ts'
import { newlyPublishedDays, publishedDaysBetween } from './daily-publication.ts'
import { notifyDueDays, recordDueDays } from './daily-publication-repository.ts'
import { neighbourDays, rebuildRollups } from './rollup-repository.ts'

/**
 * Move-ins and move-outs. A change re-attributes, in its own transaction, every reading of
 * the meter in the range whose occupant changed, and rebuilds the daily rollups of the days
 * it touches, so that data recorded before the change was registered (a late move-in, a
 * late move-out) ends up with the household that really lived there; the days that this makes
 * due on `daily/` are recorded for a broker to publish.
 */

export interface Occupancy {
  id: string
  meterId: string
  householdId: string
  from: Date
  /** null: still there. */
  until: Date | null
}

const EXCLUSION_VIOLATION = '23P01'
const FOREIGN_KEY_VIOLATION = '23503'
const CHECK_VIOLATION = '23514'

function pgCode(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code
}

function isValidDate(d: unknown): d is Date {
  return d instanceof Date && !Number.isNaN(d.getTime())
}

function requireId(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '') throw new InvalidInputError(`${field}: required`, field)
  return value
}

function toOccupancy(row: repo.OccupancyRow): Occupancy {
  return { id: row.id, meterId: row.meter_id, householdId: row.household_id, from: row.valid_from, until: row.valid_until }
}

function overlap(field: 'from' | 'until', meterId: string): ConflictError {
  return new ConflictError(`${field}: the period overlaps another occupancy of meter ${meterId}`, ERROR_CODES.OCCUPANCY_OVERLAP)
}

type Stay = { from: Date; until: Date | null }

/**
 * A household may not come back to a meter on the local day it left it (a gap, or another household,
 * between two of its stays that touch one day). A household's day at a meter is one daily value (one
 * rollup group: its lowest and highest index of the day), which cannot leave out what was used while
 * it was away: the energy of that day, and of the next, would count the stretch in between as its.
 * So such a change is refused (409 OCCUPANCY_SAME_DAY_RETURN), rather than stored with days that are
 * wrong. Stays back to back (one ends where the next begins) are one stay, and allowed. A day here
 * is a datum's (`datumDayOf`): the reading at midnight closes the day before it.
 */
function sameDayReturn(stays: readonly Stay[], changed: Stay, meterId: string, householdId: string, timezone: string): ConflictError | null {
  const sorted = [...stays].sort((a, b) => a.from.getTime() - b.from.getTime())
  for (let i = 1; i < sorted.length; i++) {
    const left = sorted[i - 1]!
    const back = sorted[i]!
    if (left !== changed && back !== changed) continue
    if (left.until === null || left.until.getTime() >= back.from.getTime()) continue
    const day = datumDayOf(left.until.getTime() - 1, timezone)
    if (day !== datumDayOf(back.from, timezone)) continue
    // The changed stay's end when it is the one left, its start when it is the return.
    const field = back === changed ? 'from' : 'until'
    // A return at midnight is on the day the midnight closes (its reading ends that day's last interval): said, or "the same day" reads wrong.
    const atMidnight = datumDayOf(back.from.getTime(), timezone) !== dayOf(back.from.getTime(), timezone) ? `, whose midnight reading closes ${day}` : ''
    return new ConflictError(
      `${field}: household ${householdId} would leave meter ${meterId} at ${formatTimestamp(left.until)} and come back at ${formatTimestamp(back.from)}${atMidnight}, ` +
        `the same day (${day}): its daily value for that day would count what was used while it was away (stays back to back, one beginning where the other ends, are one stay and allowed)`,
      ERROR_CODES.OCCUPANCY_SAME_DAY_RETURN,
    )
  }
  return null
}

/** The household's stays at the meter, as they stand. */
async function staysOf(trx: Kysely<Database>, meterId: string, householdId: string): Promise<Array<Stay & { id: string }>> {
  const rows = await repo.listOccupancyRows(trx, { meterId, householdId })
  return rows.map((r) => ({ id: r.id, from: r.valid_from, until: r.valid_until }))
}

/** The last day PostgreSQL's `date` holds in four digits: "through the meter's latest data". */
const LAST_DAY = '9999-12-31'

/**
 * Re-attributes the meter's readings over [from, to) (to null: open) after `write` has changed the
 * occupancy, and rebuilds their daily rollups. The days that are published on `daily/` after it and
 * were not before (given to a household, or their energy changed) are recorded as due, for a broker
 * to publish once the change commits: a late move-in gives a household days that are complete and
 * final already, which no ingest would publish. `write` runs after the days published before are
 * read, as they depend on the occupancies. Announces the change.
 */
async function reattribute(
  trx: Kysely<Database>,
  change: { meterId: string; householdId: string; occupancyId: string },
  from: Date,
  to: Date | null,
  ctx: MeteringContext,
  write: () => Promise<void>,
): Promise<void> {
  const meterId = change.meterId
  const fromDay = datumDayOf(from, ctx.timezone)
  // The days holding the datums that change owner, and the next day with data: its opening reading may be one of them.
  const lastDay = to === null ? null : datumDayOf(to.getTime() - 1, ctx.timezone)
  const toDay = lastDay === null ? LAST_DAY : ((await neighbourDays(trx, [{ meterId, day: lastDay }]))[0]?.nextDay ?? lastDay)
  const before = await publishedDaysBetween(trx, meterId, fromDay, toDay, ctx)
  await write()
  await reattributeReadings(trx, meterId, from, to)
  await rebuildRollups(trx, meterId, from, to, ctx.timezone)
  const due = newlyPublishedDays(before, await publishedDaysBetween(trx, meterId, fromDay, toDay, ctx))
  await recordDueDays(trx, due)
  // Heard in this order once committed: the release views take the change before a broker publishes the days it made due.
  await repo.notifyOccupancyChange(trx, change)
  if (due.length > 0) await notifyDueDays(trx, meterId)
}

/**
 * When an end registered at `now` ends the household's consents for the meter (`consents_end_at`):
 * at the move-out, or at `now` when the move-out lies in the past (registered after the fact: what
 * the consents released meanwhile stands). Consents already ended by an earlier end stay ended then.
 * Without a clock (scripts, fixtures): null, at the move-out. (An end where the household's next
 * occupancy of the meter begins is no move-out: createOccupancy dates it at itself, so that it ends
 * none of the consents granted since.)
 */
function consentsEndAt(until: Date | null, now: Date | undefined, endedBefore: Date | null): Date | null {
  if (now === undefined) return null
  if (endedBefore !== null && endedBefore.getTime() <= now.getTime()) return endedBefore
  if (until === null) return null
  return until.getTime() < now.getTime() ? now : until
}

/** Registers a move-in (possibly in the past, possibly already ended). */
export async function createOccupancy(
  db: Kysely<Database>,
  input: { meterId: string; householdId: string; from: Date; until: Date | null },
  ctx: MeteringContext,
  now?: Date,
): Promise<{ id: string }> {
  const meterId = requireId(input.meterId, 'meterId')
  const householdId = requireId(input.householdId, 'householdId')
  if (!isValidDate(input.from)) throw new InvalidInputError('from: expected an RFC 3339 timestamp', 'from')
  const until = input.until ?? null
  if (until !== null) {
    if (!isValidDate(until)) throw new InvalidInputError('until: expected an RFC 3339 timestamp', 'until')
    if (until.getTime() <= input.from.getTime()) throw new InvalidInputError('until: must be after from', 'until')
  }
  const id = newId('occupancy')
  await db.transaction().execute(async (trx) => {
    await repo.lockOccupancies(trx)
    if (!(await repo.meterExists(trx, meterId))) throw new InvalidInputError('meterId: no such meter', 'meterId')
    if (!(await repo.householdExists(trx, householdId))) throw new InvalidInputError('householdId: no such household', 'householdId')
    const stay: Stay = { from: input.from, until }
    const refused = sameDayReturn([...(await staysOf(trx, meterId, householdId)), stay], stay, meterId, householdId, ctx.timezone)
    if (refused !== null) throw refused
    // An earlier stay found out late, up to the household's registered move-in: it did not move out then.
    const stayed = until !== null && (await repo.occupancyStartsAt(trx, meterId, householdId, until))
    await reattribute(trx, { meterId, householdId, occupancyId: id }, input.from, until, ctx, async () => {
      try {
        await repo.insertOccupancy(trx, { id, meterId, householdId, from: input.from, until, consentsEndAt: stayed ? until : consentsEndAt(until, now, null) })
      } catch (err) {
        if (pgCode(err) === EXCLUSION_VIOLATION) throw overlap('from', meterId)
        if (pgCode(err) === FOREIGN_KEY_VIOLATION) throw new InvalidInputError('meterId: no such meter or household', 'meterId')
        throw err
      }
    })
  })
  return { id }
}

/**
 * Ends an occupancy at `until` (a move-out; also moves an earlier move-out later, or earlier), or,
 * with `until` null, cancels a move-out that has not happened yet. Readings between the old and the
 * new end change owner. A move-out that has happened cannot be cancelled: it ended the household's
 * consents for the meter, for good; a new occupancy from it records that the household stayed.
 */
export async function moveOut(db: Kysely<Database>, occupancyId: string, until: Date | null, ctx: MeteringContext, now?: Date): Promise<void> {
  if (until !== null && !isValidDate(until)) throw new InvalidInputError('until: expected an RFC 3339 timestamp', 'until')
  await db.transaction().execute(async (trx) => {
    await repo.lockOccupancies(trx)
    const row = await repo.findOccupancy(trx, occupancyId)
    if (row === undefined) throw new NotFoundError(`occupancy ${occupancyId} not found`)
    if (until !== null && until.getTime() <= row.valid_from.getTime()) {
      throw new InvalidInputError(`until: must be after the occupancy's from (${formatTimestamp(row.valid_from)})`, 'until')
    }
    const previous = row.valid_until
    if (previous === null ? until === null : until !== null && previous.getTime() === until.getTime()) return
    // A move-out that has happened is not undone, neither cancelled nor moved into the future: it ended the
    // household's consents for the meter. Its date may be corrected to another instant that has passed.
    const nowMs = (now ?? new Date()).getTime()
    if (previous !== null && previous.getTime() <= nowMs && (until === null || until.getTime() > nowMs)) {
      throw new ConflictError(
        `until: the move-out at ${formatTimestamp(previous)} has happened and ended the household's consents for meter ${row.meter_id}; ` +
          `it may be moved to another past instant, and if the household stayed, register a new occupancy from ${formatTimestamp(previous)}`,
        ERROR_CODES.CONFLICT,
      )
    }
    const stays = await staysOf(trx, row.meter_id, row.household_id)
    const changed: Stay = { from: row.valid_from, until }
    const refused = sameDayReturn([...stays.filter((st) => st.id !== occupancyId), changed], changed, row.meter_id, row.household_id, ctx.timezone)
    if (refused !== null) throw refused
    // The owner changes over [earlier end, later end); an open end is the latest of all.
    // (Both null was answered above.)
    const [earlier, later] = previous === null ? [until!, null] : until === null ? [previous, null] : until.getTime() < previous.getTime() ? [until, previous] : [previous, until]
    await reattribute(trx, { meterId: row.meter_id, householdId: row.household_id, occupancyId }, earlier, later, ctx, async () => {
      try {
        await repo.updateOccupancyUntil(trx, occupancyId, until, consentsEndAt(until, now, row.consents_end_at ?? previous))
      } catch (err) {
        if (pgCode(err) === EXCLUSION_VIOLATION) throw overlap('until', row.meter_id)
        if (pgCode(err) === CHECK_VIOLATION) throw new InvalidInputError('until: must be after from', 'until')
        throw err
      }
    })
  })
}

export async function listOccupancies(
  db: Kysely<Database>,
  filter: { meterId?: string | undefined; householdId?: string | undefined },
): Promise<Occupancy[]> {
  return (await repo.listOccupancyRows(db, filter)).map(toOccupancy)
}

/** A page of occupancies (see listOccupancies), and the key of its last when there are more. */
export async function listOccupanciesPage(
  db: Kysely<Database>,
  filter: { meterId?: string | undefined; householdId?: string | undefined },
  options: { after: OccupancyKey | null; limit: number },
): Promise<{ items: Occupancy[]; next: OccupancyKey | null }> {
  const rows = await repo.pageOccupancyRows(db, filter, options.after, options.limit + 1)
  const kept = rows.length > options.limit ? rows.slice(0, options.limit) : rows
  const last = kept[kept.length - 1]
  return { items: kept.map(toOccupancy), next: rows.length > options.limit && last !== undefined ? { meterId: last.meter_id, from: last.from_key, id: last.id } : null }
}

/** Where a page of occupancies ends: its last one's meter, move-in (as PostgreSQL prints it) and id. */
export interface OccupancyKey {
  meterId: string
  from: string
  id: string
}

export async function occupanciesOfHousehold(db: Kysely<Database>, householdId: string): Promise<Occupancy[]> {
  return listOccupancies(db, { householdId })
}

export async function getOccupancy(db: Kysely<Database>, occupancyId: string): Promise<Occupancy> {
  const row = await repo.findOccupancy(db, occupancyId)
  if (row === undefined) throw new NotFoundError(`occupancy ${occupancyId} not found`)
  return toOccupancy(row)
}
