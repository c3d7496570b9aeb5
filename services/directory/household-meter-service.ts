import type { Kysely } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { Commodity } from '../../shared/obis.ts'
import { findHouseholdMeters } from './household-meter-repository.ts'

/** A meter as its household sees it (the portal's meter choices). */
export interface HouseholdMeter {
  meterId: string
  commodity: Commodity
  intervalMinutes: 15 | 30 | 60
  /** Start of the household's first occupancy of it. */
  since: Date
  /** The household lives there at `now`. */
  occupiedNow: boolean
}

/** Every meter the household occupies or occupied, in id order, in one query. */
export async function householdMeters(db: Kysely<Database>, householdId: string, now: Date): Promise<HouseholdMeter[]> {
  return (await findHouseholdMeters(db, householdId, now)).map((r) => ({
    meterId: r.id,
    commodity: r.commodity,
    intervalMinutes: r.interval_minutes,
    since: r.first_from,
    occupiedNow: r.occupied_now,
  }))
}
