import { z } from 'zod'
import { GRANULARITIES } from '../../../shared/wire.ts'
import { SETTLEMENT_MONTH_MAX, SETTLEMENT_MONTH_MIN, settleMonth, settlementContext } from '../../settlement/settlement-service.ts'
import { householdPayouts, householdStatement, recipientInvoice, statementCsv } from '../../settlement/statement-service.ts'
import { defineRoute } from '../route.ts'
import { microsOutput } from '../validation.ts'
import type { RoutePlugin } from './route-plugin.ts'

/**
 * Settlement over HTTP: the operator runs a month; a household reads its statements (JSON,
 * or CSV) and payouts; a recipient reads its invoices. Money goes out as strings of integer
 * micro-euros.
 */

const OPERATOR = ['operator'] as const
const HOUSEHOLD = ['household'] as const
const RECIPIENT = ['recipient'] as const

const month = z
  .string()
  .regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'expected a month as YYYY-MM')
  // As settlement and the from/to parameters: a month out of range is refused, not "not settled yet".
  .refine((m) => m >= SETTLEMENT_MONTH_MIN && m <= SETTLEMENT_MONTH_MAX, `expected a month from ${SETTLEMENT_MONTH_MIN} to ${SETTLEMENT_MONTH_MAX}`)
  .meta({ description: 'a calendar month in METERSHARE_TIMEZONE', examples: ['2026-10'] })
const granularity = z.enum(GRANULARITIES)

const statementLine = z.object({
  recipientId: z.string(),
  offerId: z.string().nullable().meta({ description: 'null for a legal-basis consent (free)' }),
  granularity,
  data: z.number().int().meta({ description: 'datums released in the month' }),
  grossMicros: microsOutput,
  shareMicros: microsOutput.meta({ description: "the household's part of grossMicros" }),
})

/** An adjustment is a line's change: the month it corrects, and its data and money less what they were. */
const correction = { forMonth: z.string().meta({ description: 'the earlier month it corrects' }) }
const changeOf = 'changes of a line of that month since it was last booked (negative when less was released)'

const statementAnswer = z.object({
  month: z.string(),
  lines: z.array(statementLine),
  adjustmentsMicros: microsOutput.meta({ description: 'what later runs booked this month for earlier months' }),
  adjustments: z.array(statementLine.extend(correction)).meta({ description: `the adjustments line by line, ${changeOf}; their shareMicros add up to adjustmentsMicros` }),
  totalMicros: microsOutput.meta({ description: 'the shares plus the adjustments' }),
})

const invoiceLine = z.object({
  consentId: z.string(),
  offerId: z.string().nullable(),
  granularity,
  data: z.number().int(),
  grossMicros: microsOutput,
})

const invoiceAnswer = z.object({
  month: z.string(),
  lines: z.array(invoiceLine),
  adjustmentsMicros: microsOutput.meta({ description: 'what later runs booked this month for earlier months (owed more when positive)' }),
  adjustments: z.array(invoiceLine.extend(correction)).meta({ description: `the adjustments consent by consent, ${changeOf}; their grossMicros add up to adjustmentsMicros` }),
  totalMicros: microsOutput.meta({ description: 'what the recipient owes for the month' }),
})

const payoutsAnswer = z.object({
  payouts: z.array(z.object({ month: z.string(), amountMicros: microsOutput, status: z.enum(['paid']) })),
  balanceMicros: microsOutput.meta({ description: 'carried forward to the next payout (negative after a correction: netted later, never paid)' }),
})

const settlementAnswer = z.object({
  runId: z.string(),
  month: z.string(),
  journals: z.number().int().meta({ description: 'journals this request posted (0 when nothing was new)' }),
  grossMicros: microsOutput.meta({ description: "the month's gross as now settled" }),
})

/** Counts fit a JSON number (a month has far fewer than 2^53 datums); money never travels as one. */
function countToNumber(n: bigint): number {
  return Number(n)
}

/**
 * CSV when asked by `?format=csv`, or by an Accept header that ranks text/csv above JSON
 * (by q, then by order); a wildcard alone means JSON.
 */
export function wantsCsv(accept: string | undefined, format: 'json' | 'csv' | undefined): boolean {
  if (format !== undefined) return format === 'csv'
  if (accept === undefined) return false
  const best = { csv: { q: 0, at: Infinity }, json: { q: 0, at: Infinity } }
  for (const [at, part] of accept.split(',').entries()) {
    const [type, ...params] = part.trim().toLowerCase().split(';')
    const qParam = params.map((p) => p.trim()).find((p) => p.startsWith('q='))
    const q = qParam === undefined ? 1 : Number(qParam.slice(2))
    if (!Number.isFinite(q) || q <= 0) continue
    const kind = type === 'text/csv' ? 'csv' : type === 'application/json' || type === 'application/*' || type === '*/*' ? 'json' : null
    if (kind !== null && q > best[kind].q) best[kind] = { q, at }
  }
  const { csv, json } = best
  return csv.q > 0 && (csv.q > json.q || (csv.q === json.q && csv.at < json.at))
}

export const settlementRoutes: RoutePlugin = async (app, { deps }) => {
  const db = deps.db.db
  const now = () => app.apiContext.now()

  defineRoute(app, {
    method: 'POST',
    url: '/admin/settlements',
    summary: 'Settle a month',
    description:
      'Idempotent. The first run of a month closes it and pays out the households whose balance reached the minimum; later runs post only what changed since, as adjustments booked in the current month. 400 when the month is not over yet.',
    tags: ['operator'],
    auth: OPERATOR,
    body: z.strictObject({ month }),
    response: settlementAnswer,
    errors: [409],
    async handler({ body }) {
      const summary = await settleMonth(db, body.month, settlementContext(deps.config, now))
      return { runId: summary.runId, month: summary.month, journals: summary.journals, grossMicros: summary.grossMicros.toString() }
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/me/statements/:month',
    summary: "The household's statement of a settled month",
    description:
      'One line per (recipient, offer, granularity) as the month was closed; later corrections of earlier months appear in the month they were booked in, as `adjustmentsMicros` and line by line in `adjustments`. `?format=csv` or `Accept: text/csv` answers CSV (columns month, kind, recipientId, offerId, granularity, data, grossMicros, shareMicros; a row per line, an `adjustment` row per adjustment with the month it corrects, then `adjustments` and `total` rows with their amount in shareMicros). A month not settled yet answers 404, unless adjustments were booked in it already: then it shows them, without lines until the month is closed.',
    tags: ['household'],
    auth: HOUSEHOLD,
    params: z.strictObject({ month }),
    query: z.strictObject({ format: z.enum(['json', 'csv']).optional() }),
    response: statementAnswer,
    produces: { contentType: 'text/csv', description: 'as CSV with `?format=csv` or `Accept: text/csv`' },
    errors: [404],
    async handler({ params, query, principal, request, reply }) {
      const statement = await householdStatement(db, principal.householdId, params.month)
      if (wantsCsv(request.headers.accept, query.format)) {
        void reply
          .type('text/csv; charset=utf-8')
          .header('content-disposition', `attachment; filename="statement-${statement.month}.csv"`)
          .header('vary', 'Accept')
        return statementCsv(statement)
      }
      void reply.header('vary', 'Accept')
      return {
        month: statement.month,
        lines: statement.lines.map((l) => ({
          recipientId: l.recipientId,
          offerId: l.offerId,
          granularity: l.granularity,
          data: countToNumber(l.data),
          grossMicros: l.grossMicros.toString(),
          shareMicros: l.shareMicros.toString(),
        })),
        adjustmentsMicros: statement.adjustmentsMicros.toString(),
        adjustments: statement.adjustments.map((a) => ({
          forMonth: a.forMonth,
          recipientId: a.recipientId,
          offerId: a.offerId,
          granularity: a.granularity,
          data: countToNumber(a.data),
          grossMicros: a.grossMicros.toString(),
          shareMicros: a.shareMicros.toString(),
        })),
        totalMicros: statement.totalMicros.toString(),
      }
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/me/payouts',
    summary: "The household's payouts and the balance carried forward",
    tags: ['household'],
    auth: HOUSEHOLD,
    response: payoutsAnswer,
    async handler({ principal }) {
      const list = await householdPayouts(db, principal.householdId)
      return {
        payouts: list.payouts.map((p) => ({ month: p.month, amountMicros: p.amountMicros.toString(), status: p.status })),
        balanceMicros: list.balanceMicros.toString(),
      }
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/recipient/invoices/:month',
    summary: 'What the recipient owes for a settled month',
    description: 'One line per consent as the month was closed, and the adjustments booked in that month for earlier months, in all (`adjustmentsMicros`) and consent by consent (`adjustments`). A month not settled yet answers 404, unless adjustments were booked in it already: then it shows them, without lines until the month is closed.',
    tags: ['recipient'],
    auth: RECIPIENT,
    params: z.strictObject({ month }),
    response: invoiceAnswer,
    errors: [404],
    async handler({ params, principal }) {
      const invoice = await recipientInvoice(db, principal.partyId, params.month)
      return {
        month: invoice.month,
        lines: invoice.lines.map((l) => ({
          consentId: l.consentId,
          offerId: l.offerId,
          granularity: l.granularity,
          data: countToNumber(l.data),
          grossMicros: l.grossMicros.toString(),
        })),
        adjustmentsMicros: invoice.adjustmentsMicros.toString(),
        adjustments: invoice.adjustments.map((a) => ({
          forMonth: a.forMonth,
          consentId: a.consentId,
          offerId: a.offerId,
          granularity: a.granularity,
          data: countToNumber(a.data),
          grossMicros: a.grossMicros.toString(),
        })),
        totalMicros: invoice.totalMicros.toString(),
      }
    },
  })
}
