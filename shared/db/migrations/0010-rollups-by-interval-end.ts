import { sql, type Kysely } from 'kysely'

// Migrations see the database as it was then: Kysely<any>, never application code.

/** The settings key marking daily rollups still cut by the instant a datum is stamped with. */
const RECUT_SETTING = 'rollups_cut_by_instant'

export async function up(db: Kysely<any>): Promise<void> {
  // A datum's ts is the end of the interval it measures, so the reading at local midnight closes the
  // day before it. Rollups stored until now put it in the day after. They are cut again from the
  // readings in the data's zone, which only the application knows (it may not be recorded yet): this
  // marks them, and the first process to start on the database cuts them (services/metering/rollup-recut.ts).
  await sql`INSERT INTO settings (key, value) SELECT ${RECUT_SETTING}, 'pending' WHERE EXISTS (SELECT 1 FROM daily_rollups)`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  // Rollups already cut again stay so: the earlier version reads them alike (only their days moved).
  await sql`DELETE FROM settings WHERE key = ${RECUT_SETTING}`.execute(db)
}
