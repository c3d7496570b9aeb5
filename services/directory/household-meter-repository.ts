import { sql, type Kysely, type Transaction } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { Commodity } from '../../shared/obis.ts'

/** SQL of the meters a household occupies or occupied, with what they measure. */

type Db = Kysely<Database> | Transaction<Database>

export interface HouseholdMeterRow {
  id: string
  commodity: Commodity
  interval_minutes: 15 | 30 | 60
  first_from: Date
  occupied_now: boolean
}

export async function findHouseholdMeters(db: Db, householdId: string, now: Date): Promise<HouseholdMeterRow[]> {
  const { rows } = await sql<HouseholdMeterRow>`
    SELECT m.id, m.commodity, m.interval_minutes, min(o.valid_from) AS first_from,
      bool_or(o.valid_from <= ${now} AND (o.valid_until IS NULL OR o.valid_until > ${now})) AS occupied_now
    FROM occupancies o JOIN meters m ON m.id = o.meter_id
    WHERE o.household_id = ${householdId}
    GROUP BY m.id, m.commodity, m.interval_minutes
    ORDER BY m.id`.execute(db)
  return rows
}
