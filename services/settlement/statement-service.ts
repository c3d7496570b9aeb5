import type { Kysely } from 'kysely'
import { isMonth } from '../../shared/calendar.ts'
import type { Database } from '../../shared/db/schema.ts'
import type { PayoutStatus } from '../../shared/db/tables/payouts.ts'
import { InvalidInputError, NotFoundError } from '../../shared/errors.ts'
import type { Granularity } from '../../shared/wire.ts'
import { householdAccount, receivableAccount } from './ledger-account.ts'
import * as repo from './statement-repository.ts'
import { findClosedMonthAfter, findClosingRun } from './settlement-repository.ts'

/**
 * What households and recipients see of settlement. A month's statement (or invoice) shows
 * the lines of the run that closed the month, as they were then, and the adjustments that
 * later runs booked in that month for earlier months. It exists once the month is settled, or
 * once an adjustment was booked in it: a month still open then shows those adjustments so far,
 * and its lines once it is closed (the balance already counts them, so a statement says why).
 */

export interface StatementLine {
  recipientId: string
  /** null for a legal-basis consent (free). */
  offerId: string | null
  granularity: Granularity
  /** Datums released in the month. */
  data: bigint
  grossMicros: bigint
  /** The household's part of grossMicros. */
  shareMicros: bigint
}

/** A change booked this month for an earlier one: a line's data and money less what it was before. */
export interface StatementAdjustment extends StatementLine {
  /** The earlier month it corrects. */
  forMonth: string
}

export interface Statement {
  month: string
  /** Whether the month is closed; an open one shows only the adjustments booked in it so far. */
  closed: boolean
  lines: StatementLine[]
  /** What runs booked this month for earlier months, for this household. */
  adjustmentsMicros: bigint
  /** The same, line by line: their shareMicros add up to adjustmentsMicros. */
  adjustments: StatementAdjustment[]
  /** The shares plus the adjustments. */
  totalMicros: bigint
}

export interface InvoiceLine {
  consentId: string
  offerId: string | null
  granularity: Granularity
  data: bigint
  grossMicros: bigint
}

/** A change booked this month for an earlier one, consent by consent. */
export interface InvoiceAdjustment extends InvoiceLine {
  forMonth: string
}

export interface Invoice {
  month: string
  lines: InvoiceLine[]
  /** What later runs booked this month for earlier months: owed more (positive) or less. */
  adjustmentsMicros: bigint
  /** The same, consent by consent: their grossMicros add up to adjustmentsMicros. */
  adjustments: InvoiceAdjustment[]
  /** What the recipient owes for the month. */
  totalMicros: bigint
}

export interface PayoutEntry {
  month: string
  amountMicros: bigint
  status: PayoutStatus
}

export interface PayoutList {
  payouts: PayoutEntry[]
  /** Carried forward: earned and not paid yet (negative after a correction, netted later). */
  balanceMicros: bigint
}

function requireMonth(month: string): void {
  if (!isMonth(month)) throw new InvalidInputError('month: expected YYYY-MM', 'month')
}

/** The run that closed the month (null while open) and what was booked in it for the account; 404 when neither. */
async function monthPostings(db: Kysely<Database>, month: string, accountId: string): Promise<{ runId: string | null; adjustmentsMicros: bigint }> {
  const [run, adjustments] = await Promise.all([findClosingRun(db, month), repo.findAdjustmentsBookedIn(db, month, accountId)])
  if (run === undefined && adjustments === null) {
    // Books closed up to a later month close this one empty (found by verifying: "not settled yet" invited a settlement that would book nothing in it).
    const later = await findClosedMonthAfter(db, month)
    if (later !== undefined) {
      throw new NotFoundError(`month: ${month} was not settled before ${later} was, which closed the books up to it; what it held is booked as adjustments in the months it was settled in`)
    }
    throw new NotFoundError(`month: ${month} has not been settled yet`)
  }
  return { runId: run?.id ?? null, adjustmentsMicros: adjustments ?? 0n }
}

export async function householdStatement(db: Kysely<Database>, householdId: string, month: string): Promise<Statement> {
  requireMonth(month)
  const { runId, adjustmentsMicros } = await monthPostings(db, month, householdAccount(householdId))
  const rows = runId === null ? [] : await repo.findStatementLines(db, runId, month, householdId)
  const lines = rows.map((r) => ({
    recipientId: r.recipient_id,
    offerId: r.offer_id,
    granularity: r.granularity,
    data: r.data,
    grossMicros: r.gross,
    shareMicros: r.share,
  }))
  const totalMicros = lines.reduce((sum, l) => sum + l.shareMicros, 0n) + adjustmentsMicros
  // A household's consent by consent, joined as its lines are: per earlier month, recipient, offer and granularity.
  const adjustments = new Map<string, StatementAdjustment>()
  for (const r of await repo.findAdjustmentLines(db, month, { householdId })) {
    const key = JSON.stringify([r.for_month, r.recipient_id, r.offer_id, r.granularity])
    const a = adjustments.get(key)
    if (a === undefined) {
      adjustments.set(key, { forMonth: r.for_month, recipientId: r.recipient_id, offerId: r.offer_id, granularity: r.granularity, data: r.data, grossMicros: r.gross, shareMicros: r.share })
    } else {
      a.data += r.data
      a.grossMicros += r.gross
      a.shareMicros += r.share
    }
  }
  const changed = [...adjustments.values()].filter((a) => a.data !== 0n || a.grossMicros !== 0n || a.shareMicros !== 0n)
  return { month, closed: runId !== null, lines, adjustmentsMicros, adjustments: changed, totalMicros }
}

export async function recipientInvoice(db: Kysely<Database>, recipientId: string, month: string): Promise<Invoice> {
  requireMonth(month)
  const posted = await monthPostings(db, month, receivableAccount(recipientId))
  const rows = posted.runId === null ? [] : await repo.findInvoiceLines(db, posted.runId, month, recipientId)
  const lines = rows.map((r) => ({
    consentId: r.consent_id,
    offerId: r.offer_id,
    granularity: r.granularity,
    data: r.data_count,
    grossMicros: r.gross_micros,
  }))
  // A receivable goes negative by what its recipient owes.
  const adjustmentsMicros = -posted.adjustmentsMicros
  const totalMicros = lines.reduce((sum, l) => sum + l.grossMicros, 0n) + adjustmentsMicros
  // One per (earlier month, consent), however many runs changed it this month.
  const adjustments = new Map<string, InvoiceAdjustment>()
  for (const r of await repo.findAdjustmentLines(db, month, { recipientId })) {
    const key = JSON.stringify([r.for_month, r.consent_id])
    const a = adjustments.get(key)
    if (a === undefined) adjustments.set(key, { forMonth: r.for_month, consentId: r.consent_id, offerId: r.offer_id, granularity: r.granularity, data: r.data, grossMicros: r.gross })
    else {
      a.data += r.data
      a.grossMicros += r.gross
    }
  }
  return { month, lines, adjustmentsMicros, adjustments: [...adjustments.values()].filter((a) => a.data !== 0n || a.grossMicros !== 0n), totalMicros }
}

export async function householdPayouts(db: Kysely<Database>, householdId: string): Promise<PayoutList> {
  const payouts = (await repo.findPayouts(db, householdId)).map((p) => ({ month: p.month, amountMicros: p.amount_micros, status: p.status }))
  return { payouts, balanceMicros: await repo.findBalance(db, householdAccount(householdId)) }
}

/** Months a household has a statement with something on it, oldest first (for the portal's list). */
export async function householdStatementMonths(db: Kysely<Database>, householdId: string): Promise<string[]> {
  return repo.findStatementMonths(db, householdId)
}

export const STATEMENT_CSV_COLUMNS = ['month', 'kind', 'recipientId', 'offerId', 'granularity', 'data', 'grossMicros', 'shareMicros'] as const

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value
}

/**
 * A statement as CSV (RFC 4180, CRLF): one row per line (`kind` = line), one per adjustment
 * (`kind` = adjustment, `month` the month it corrects), then one row for the adjustments'
 * sum and one for the total, whose amount is in `shareMicros`. Amounts are integers of
 * micro-euros, as in the JSON.
 */
export function statementCsv(statement: Statement): string {
  const rows: string[][] = [[...STATEMENT_CSV_COLUMNS]]
  for (const l of statement.lines) {
    rows.push([statement.month, 'line', l.recipientId, l.offerId ?? '', l.granularity, l.data.toString(), l.grossMicros.toString(), l.shareMicros.toString()])
  }
  for (const a of statement.adjustments) {
    rows.push([a.forMonth, 'adjustment', a.recipientId, a.offerId ?? '', a.granularity, a.data.toString(), a.grossMicros.toString(), a.shareMicros.toString()])
  }
  rows.push([statement.month, 'adjustments', '', '', '', '', '', statement.adjustmentsMicros.toString()])
  rows.push([statement.month, 'total', '', '', '', '', '', statement.totalMicros.toString()])
  return rows.map((r) => r.map(csvField).join(',')).join('\r\n') + '\r\n'
}
