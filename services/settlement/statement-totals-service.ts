import type { Kysely } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import { InvalidInputError } from '../../shared/errors.ts'
import { householdAccount } from './ledger-account.ts'
import { findHouseholdMonthTotals } from './statement-totals-repository.ts'

/**
 * The totals of a household's statements over its latest months, in one query: each month's
 * `totalMicros` equals that of `householdStatement` for the month (the shares of the lines
 * of the run that closed it, plus the adjustments booked in it).
 */

export const MONTH_TOTALS_MONTHS_MAX = 120

export interface MonthTotal {
  month: string
  /** Whether the month is closed (an open one has only adjustments booked in it so far). */
  closed: boolean
  sharesMicros: bigint
  adjustmentsMicros: bigint
  totalMicros: bigint
}

/** The newest `months` statements' totals, oldest first. */
export async function householdMonthTotals(db: Kysely<Database>, householdId: string, months: number): Promise<MonthTotal[]> {
  if (!Number.isInteger(months) || months < 1 || months > MONTH_TOTALS_MONTHS_MAX) {
    throw new InvalidInputError(`months: must be an integer from 1 to ${MONTH_TOTALS_MONTHS_MAX}`, 'months')
  }
  const rows = await findHouseholdMonthTotals(db, householdId, householdAccount(householdId), months)
  return rows
    .map((r) => ({ month: r.month, closed: r.closed, sharesMicros: r.shares, adjustmentsMicros: r.adjustments, totalMicros: r.shares + r.adjustments }))
    .reverse()
}

/** Whether any month has been settled (closed), whoever's data it held. */
export async function anyMonthClosed(db: Kysely<Database>): Promise<boolean> {
  return (await db.selectFrom('settlement_runs').select('id').where('seq', '=', 1).limit(1).executeTakeFirst()) !== undefined
}
