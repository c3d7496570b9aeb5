import type { DailyRollupsTable } from './tables/daily-rollups.ts'
import type { HouseholdsTable } from './tables/households.ts'
import type { MetersTable } from './tables/meters.ts'
import type { OccupanciesTable } from './tables/occupancies.ts'
import type { PartiesTable } from './tables/parties.ts'
import type { QuarantineTable } from './tables/quarantine.ts'
import type { ReadingsTable } from './tables/readings.ts'

export interface Database {
  parties: PartiesTable
  households: HouseholdsTable
  meters: MetersTable
  occupancies: OccupanciesTable
  readings: ReadingsTable
  quarantine: QuarantineTable
  daily_rollups: DailyRollupsTable
}
