import type { Kysely, Transaction } from 'kysely'
import { INTERFACE_DAY_MAX, INTERFACE_DAY_MIN, addMonths, formatTimestamp, isMonth, monthBounds, monthOf } from '../../shared/calendar.ts'
import type { Config } from '../../shared/config.ts'
import type { Database } from '../../shared/db/schema.ts'
import { ConflictError, InvalidInputError, assert } from '../../shared/errors.ts'
import { newId } from '../../shared/ids.ts'
import { log } from '../../shared/logger.ts'
import { HOUSEHOLD_ACCOUNT_PREFIX, PAYOUTS_ACCOUNT, householdAccount } from './ledger-account.ts'
import { datumsPerConsent, planCounts, type RangeCount } from './count-plan.ts'
import { consentMeterEndedMs, emptyGroupCoverage, monthCalendar, settlementSpans, type CountSpan, type GroupCoverage } from './release-spans.ts'
import type { ConsentFact } from '../consent/release-rule.ts'
import { latestReadingTimes } from '../metering/reading-service.ts'
import {
  payoutDue,
  postingDifferences,
  postingsByAccount,
  priceMonth,
  sameLine,
  settlementInputHash,
  type ConsentTerms,
  type MeterCount,
  type OfferTerms,
  type PricedLine,
  type RoleTotals,
} from './settlement-calculation.ts'
import * as repo from './settlement-repository.ts'

/**
 * Monthly settlement runs. A run recomputes a whole month, which must be over, from durable
 * data (consents, offers, occupancies, daily rollups) in one consistent snapshot:
 *
 * - Counting: which datums each consent released is decided by the release rule (see
 *   release-spans.ts); they are counted from the daily rollups, and from raw readings only
 *   on days a window boundary cuts.
 * - Pricing: a line is one consent in the month, its gross datums × the offer's integer price.
 *   The gross is split once per (recipient, household, offer) with the largest remainder
 *   (settlement-calculation.ts `priceMonth`): the split per (recipient, household, month) of
 *   DESIGN.md, per offer when one household accepted several offers of one recipient (their
 *   splits may differ); a consent revoked and granted again is split with the first.
 * - Posting: the first run of a month closes it. It books one `settlement` journal in that
 *   month (one entry per account) and one `payout` journal paying every household whose
 *   balance reached the minimum: over everything booked up to that month, and never more than
 *   it is owed now (a correction booked since is netted first). A month older than a closed one
 *   is closed empty, and what it holds is booked as an adjustment (below). A later run posts
 *   only the differences between the month as recomputed and what the ledger holds for it,
 *   as one `adjustment` journal booked in the month of the run's clock and labelled with
 *   the month it corrects; a closed month's journals are never touched. A run whose input
 *   hash equals the last run's posts and records nothing.
 * - Concurrency: one advisory lock serialises every settlement run, taken before the
 *   snapshot; two processes settling at once take turns, and the second finds the first's
 *   run and posts nothing new. The unique (month, seq) of runs backs it.
 *
 * Watermark: a run reads one snapshot, so it holds every datum committed before it began.
 * `readings.ingested_at` is the start of the ingest transaction, which may commit a little
 * later; the run's watermark is the snapshot's start minus `SETTLEMENT_WATERMARK_MARGIN_MS`
 * (far longer than an ingest transaction lasts), so every datum ingested before the
 * watermark is certainly in the run. Data in flight after it is either in this run or
 * settled by the next one, which recomputes the month from scratch: nothing can be missed
 * and nothing is counted twice.
 */

/** Longer than any ingest transaction stays open (they last milliseconds; retries are new transactions). */
export const SETTLEMENT_WATERMARK_MARGIN_MS = 60_000
/** How long a run waits for another one to finish before giving up. */
export const SETTLEMENT_LOCK_WAIT_MS_MAX = 10 * 60_000
/** Day ranges or day pieces counted per statement (progress is reported between statements). */
export const COUNT_RANGES_PER_STATEMENT_MAX = 5_000

export type SettlementPhase = 'reading' | 'counting' | 'posting' | 'payouts' | 'done'

export interface SettlementProgress {
  phase: SettlementPhase
  done: number
  total: number
}

export interface SettlementContext {
  /** Zone where months are cut (`config.timezone`). */
  timezone: string
  /** `config.settlement.payoutMinMicros`. */
  payoutMinMicros: bigint
  /** The run's instant: which months are over, which month adjustments are booked in. */
  clock: () => Date
  onProgress?: ((progress: SettlementProgress) => void) | undefined
}

export function settlementContext(
  config: Pick<Readonly<Config>, 'timezone' | 'settlement'>,
  clock: () => Date = () => new Date(),
  onProgress?: (progress: SettlementProgress) => void,
): SettlementContext {
  return { timezone: config.timezone, payoutMinMicros: config.settlement.payoutMinMicros, clock, onProgress }
}

export type RunKind = 'closing' | 'adjustment' | 'unchanged'

export interface RunSummary {
  /** The run recorded (the last one of the month when nothing changed). */
  runId: string
  month: string
  kind: RunKind
  /** Run number within the month (1 = the closing run). */
  seq: number
  /** Month its journals are booked in. */
  postingMonth: string
  watermark: Date
  inputHash: string
  /** The month as now settled: lines (consents with data), datums, gross and its split by role. */
  lines: number
  dataCount: bigint
  grossMicros: bigint
  roles: RoleTotals
  /** What this run posted: journals (settlement or adjustment, and payouts), and its net effect on households. */
  journals: number
  adjustmentJournals: number
  householdsPostedMicros: bigint
  payouts: number
  payoutsMicros: bigint
  durationMs: number
}

/**
 * The months that may be settled: those of the interfaces' days (1970 to 2999). Beyond them the month's
 * bounds leave what the calendar and the database hold (year 0 in a zone east of UTC, year 10000).
 */
export const SETTLEMENT_MONTH_MIN = INTERFACE_DAY_MIN.slice(0, 7)
export const SETTLEMENT_MONTH_MAX = INTERFACE_DAY_MAX.slice(0, 7)

/** Settles a month that is over; idempotent. */
export async function settleMonth(db: Kysely<Database>, month: string, ctx: SettlementContext): Promise<RunSummary> {
  if (!isMonth(month)) throw new InvalidInputError('month: expected YYYY-MM', 'month')
  if (month < SETTLEMENT_MONTH_MIN || month > SETTLEMENT_MONTH_MAX) {
    throw new InvalidInputError(`month: expected a month from ${SETTLEMENT_MONTH_MIN} to ${SETTLEMENT_MONTH_MAX}`, 'month')
  }
  const now = ctx.clock()
  const { end } = monthBounds(month, ctx.timezone)
  if (now.getTime() < end.getTime()) {
    throw new InvalidInputError(`month: ${month} is not over yet (it ends at ${formatTimestamp(end)})`, 'month')
  }
  const started = performance.now()
  const summary = await withSettlementLock(db, (trx) => runMonth(trx, month, now, ctx))
  summary.durationMs = Math.round(performance.now() - started)
  ctx.onProgress?.({ phase: 'done', done: 1, total: 1 })
  log.settlement.info(
    { runId: summary.runId, month, kind: summary.kind, journals: summary.journals, payouts: summary.payouts, durationMs: summary.durationMs },
    'settlement run finished',
  )
  return summary
}

export interface CompletedMonthsOptions {
  /** Months already closed are re-checked for late data only this far back (most recent first). */
  resettleMonthsMax?: number
}

export const RESETTLE_MONTHS_MAX_DEFAULT = 12

/**
 * Settles every month that is over at `now`, oldest first, from the first month with data:
 * months never settled, and the most recent closed ones again (late data becomes adjustments).
 */
export async function settleCompletedMonths(
  db: Kysely<Database>,
  now: Date,
  ctx: SettlementContext,
  options: CompletedMonthsOptions = {},
): Promise<RunSummary[]> {
  const firstDay = await repo.findFirstDataDay(db)
  if (firstDay === null) return []
  const lastComplete = addMonths(monthOf(now, ctx.timezone), -1)
  const closed = await repo.findClosedMonths(db)
  const resettleFrom = addMonths(lastComplete, 1 - (options.resettleMonthsMax ?? RESETTLE_MONTHS_MAX_DEFAULT))
  const fixed: SettlementContext = { ...ctx, clock: () => now }
  const out: RunSummary[] = []
  for (let m = firstDay.slice(0, 7); m <= lastComplete; m = addMonths(m, 1)) {
    if (closed.has(m) && m < resettleFrom) continue
    out.push(await settleMonth(db, m, fixed))
  }
  return out
}

/**
 * Runs `fn` in a repeatable-read transaction while holding the settlement lock. The lock is
 * taken on the connection before the transaction begins, so the snapshot is taken after the
 * previous holder committed.
 */
async function withSettlementLock<T>(db: Kysely<Database>, fn: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
  assert(!db.isTransaction, 'settlement opens its own transaction')
  return db.connection().execute(async (conn) => {
    await repo.acquireSettlementLock(conn, SETTLEMENT_LOCK_WAIT_MS_MAX)
    try {
      return await conn.transaction().setIsolationLevel('repeatable read').execute(fn)
    } finally {
      try {
        await repo.releaseSettlementLock(conn)
      } catch (err) {
        // The connection is gone, and the session lock with it.
        log.settlement.warn({ err }, 'settlement lock release failed')
      }
    }
  })
}

interface MonthInputs {
  consents: ConsentTerms[]
  counts: Map<string, MeterCount[]>
}

async function readMonthInputs(trx: Transaction<Database>, month: string, now: Date, ctx: SettlementContext): Promise<MonthInputs> {
  const { start, end } = monthBounds(month, ctx.timezone)
  const window = { start, end, now }
  ctx.onProgress?.({ phase: 'reading', done: 0, total: 1 })
  const consentRows = await repo.findMonthConsents(trx, window)
  const offers = new Map<string, OfferTerms>(
    (await repo.findMonthOffers(trx, window)).map((o) => [
      o.id,
      {
        id: o.id,
        priceMicrosPerDatum: o.price_micros_per_datum,
        householdBps: o.household_bps,
        operatorBps: o.operator_bps,
        platformBps: o.platform_bps,
        thirdParties: o.third_parties.map((t) => ({ partyId: t.p, bps: t.b })),
      },
    ]),
  )
  const operators = repo.operatorsOf(consentRows)
  const byMeter = await repo.findMonthOccupancies(trx, window)
  ctx.onProgress?.({ phase: 'reading', done: 1, total: 1 })

  const calendar = monthCalendar(month, ctx.timezone)
  const nowMs = now.getTime()
  const facts = consentRows.map((c) => repo.toConsentFact(c))
  // Daily and monthly datums are complete once their meter has data after them (as daily/ and the pull API have it);
  // for a consent that has ended, once it had such data stored before the end.
  const coarse = facts.filter((c) => c.granularity !== 'load_curve')
  const latest = await latestReadingTimes(trx, [...new Set(coarse.flatMap((c) => c.meterIds))])
  // When each consent stopped releasing each of its meters (its end, or the household's move-out), if it has.
  const endedOf = (c: ConsentFact, meterId: string): number | null => consentMeterEndedMs(c, meterId, byMeter.get(meterId) ?? [], nowMs)
  const endedPairs = coarse.flatMap((c) =>
    c.meterIds.flatMap((meterId) => {
      const ended = endedOf(c, meterId)
      return ended === null ? [] : [{ meterId, beforeMs: ended }]
    }),
  )
  const latestBefore = await repo.latestStoredBefore(trx, endedPairs, start.getTime())
  const latestDataMs = (meterId: string, storedBeforeMs: number | null): number =>
    (storedBeforeMs === null ? latest.get(meterId) : latestBefore.get(`${meterId}\u0000${storedBeforeMs}`)) ?? -Infinity
  // An ended consent's load curve: which of its days changed after its end (counted from raw readings).
  const changedKeys = facts.flatMap((c) =>
    c.granularity !== 'load_curve'
      ? []
      : c.meterIds.flatMap((meterId) => {
          const ended = endedOf(c, meterId)
          return ended === null ? [] : [{ meterId, householdId: c.householdId, sinceMs: ended }]
        }),
  )
  const changed = await repo.daysChangedSince(trx, changedKeys, calendar.days[0]!, calendar.days[calendar.days.length - 1]!)
  const noDays = new Set<string>()
  const changedDays = (meterId: string, householdId: string, sinceMs: number): ReadonlySet<string> =>
    changed.get(repo.changedDaysKey(meterId, householdId, sinceMs)) ?? noDays
  // A datum is charged to a recipient once under an offer: the consents of one (recipient, household,
  // offer), taken in the order they were granted, leave out what an earlier one charged (a revoke and a
  // re-grant reaching back over the same history do not charge it twice). A legal basis is free.
  const spans: CountSpan[] = []
  const groups = new Map<string, GroupCoverage>()
  const granted = consentRows.map((row, i) => ({ fact: facts[i]!, offerId: row.offer_id }))
  granted.sort((x, y) => x.fact.validFromMs - y.fact.validFromMs || (x.fact.id < y.fact.id ? -1 : x.fact.id > y.fact.id ? 1 : 0))
  for (const { fact, offerId } of granted) {
    let group: GroupCoverage | undefined
    if (offerId !== null) {
      const key = JSON.stringify([fact.recipientId, fact.householdId, offerId])
      group = groups.get(key)
      if (group === undefined) groups.set(key, (group = emptyGroupCoverage()))
    }
    spans.push(...settlementSpans(fact, calendar, byMeter, nowMs, latestDataMs, changedDays, group))
  }

  const plan = planCounts(spans)
  const { ranges, pieces } = plan
  // Ranges covering the whole month (the usual case) come from one pass over the month's
  // rollups; the others, one index range scan each.
  const firstDay = calendar.days[0]!
  const lastDay = calendar.days[calendar.days.length - 1]!
  const partial = ranges.map((_, i) => i).filter((i) => ranges[i]!.firstDay !== firstDay || ranges[i]!.lastDay !== lastDay)
  const total = 1 + partial.length + pieces.length
  ctx.onProgress?.({ phase: 'counting', done: 0, total })
  const wholeMonthCounted = partial.length < ranges.length
  const monthTotals: Map<string, RangeCount> = wholeMonthCounted ? await repo.findMonthRollupTotals(trx, firstDay, lastDay, ctx.timezone) : new Map()
  const none: RangeCount = { readings: 0n, days: 0n }
  const rangeCounts = ranges.map((r) => monthTotals.get(repo.pairKey(r.meterId, r.householdId)) ?? none)
  for (let i = 0; i < partial.length; i += COUNT_RANGES_PER_STATEMENT_MAX) {
    ctx.onProgress?.({ phase: 'counting', done: 1 + i, total })
    const batch = partial.slice(i, i + COUNT_RANGES_PER_STATEMENT_MAX)
    const found = await repo.sumRollups(trx, batch.map((k) => ranges[k]!), ctx.timezone)
    batch.forEach((k, j) => (rangeCounts[k] = found[j]!))
  }
  const pieceCounts: bigint[] = []
  for (let i = 0; i < pieces.length; i += COUNT_RANGES_PER_STATEMENT_MAX) {
    ctx.onProgress?.({ phase: 'counting', done: 1 + partial.length + i, total })
    pieceCounts.push(...(await repo.countRawReadings(trx, pieces.slice(i, i + COUNT_RANGES_PER_STATEMENT_MAX))))
  }
  ctx.onProgress?.({ phase: 'counting', done: total, total })
  // Whether a month is final came with the month's totals (a pair absent from them has no data in it);
  // without them, the monthly pairs are asked.
  const finalMonths = new Set<string>()
  const unknown: { meterId: string; householdId: string }[] = []
  for (const s of spans) {
    if (s.kind !== 'monthly') continue
    const key = repo.pairKey(s.meterId, s.householdId)
    if (!wholeMonthCounted) unknown.push({ meterId: s.meterId, householdId: s.householdId })
    else if (monthTotals.get(key)?.monthFinal === true) finalMonths.add(key)
  }
  for (const key of await repo.findFinalMonths(trx, unknown, firstDay, ctx.timezone)) finalMonths.add(key)
  const counts = datumsPerConsent(spans, plan, rangeCounts, pieceCounts, operators, finalMonths)

  const consents: ConsentTerms[] = consentRows.map((c) => {
    const offer = c.offer_id === null ? null : offers.get(c.offer_id)
    assert(offer !== undefined, `offer ${c.offer_id} of consent ${c.id} loaded`)
    return { id: c.id, householdId: c.household_id, recipientId: c.recipient_id, granularity: c.granularity, offer }
  })
  return { consents, counts }
}

/** What a run recorded earlier (or just now, with nothing to post) says of its month. */
function recordedRun(run: repo.RunRow, kind: RunKind, watermark: Date): RunSummary {
  return {
    runId: run.id,
    month: run.month,
    kind,
    seq: run.seq,
    postingMonth: run.posting_month,
    watermark,
    inputHash: run.input_hash,
    lines: run.lines,
    dataCount: run.data_count,
    grossMicros: run.gross_micros,
    roles: { household: run.household_micros, operators: run.operators_micros, platform: run.platform_micros, thirdParties: run.third_parties_micros },
    journals: 0,
    adjustmentJournals: 0,
    householdsPostedMicros: 0n,
    payouts: 0,
    payoutsMicros: 0n,
    durationMs: 0,
  }
}

function sumRoles(lines: readonly PricedLine[]): RoleTotals {
  const r: RoleTotals = { household: 0n, operators: 0n, platform: 0n, thirdParties: 0n }
  for (const l of lines) {
    r.household += l.roles.household
    r.operators += l.roles.operators
    r.platform += l.roles.platform
    r.thirdParties += l.roles.thirdParties
  }
  return r
}

async function runMonth(trx: Transaction<Database>, month: string, now: Date, ctx: SettlementContext): Promise<RunSummary> {
  const snapshotAt = await repo.transactionStart(trx)
  const watermark = new Date(snapshotAt.getTime() - SETTLEMENT_WATERMARK_MARGIN_MS)
  const { consents, counts } = await readMonthInputs(trx, month, now, ctx)
  const inputHash = settlementInputHash(month, consents, counts)

  let latest = await repo.findLatestRun(trx, month)
  if (latest !== undefined && latest.input_hash === inputHash) return recordedRun(latest, 'unchanged', watermark)
  // A month older than a closed one (data backfilled, or months settled out of order) was passed by
  // that closing: the books up to it are closed, and the payouts made. It is closed empty, in its own
  // month, and what it holds is booked as an adjustment in the current month, as late data of any
  // closed month is: never into books already closed, never paid out against them.
  if (latest === undefined && (await repo.hasClosedMonthAfter(trx, month))) {
    const empty = settlementInputHash(month, [], new Map())
    latest = await repo.insertRun(trx, {
      id: newId('run'),
      month,
      seq: 1,
      posting_month: month,
      watermark,
      input_hash: empty,
      lines: 0,
      data_count: 0n,
      gross_micros: 0n,
      household_micros: 0n,
      operators_micros: 0n,
      platform_micros: 0n,
      third_parties_micros: 0n,
      journals: 0,
      payouts: 0,
      started_at: now,
    })
    if (inputHash === empty) return recordedRun(latest, 'closing', watermark)
  }

  const lines = priceMonth(consents, counts)
  const monthFigures = {
    lines: lines.length,
    dataCount: lines.reduce((s, l) => s + l.data, 0n),
    grossMicros: lines.reduce((s, l) => s + l.grossMicros, 0n),
    roles: sumRoles(lines),
  }

  const closing = latest === undefined
  const seq = latest === undefined ? 1 : latest.seq + 1
  const postingMonth = closing ? month : monthOf(now, ctx.timezone)
  assert(postingMonth >= month, 'a month is settled once it is over')
  if (!closing && (await repo.findClosingRun(trx, postingMonth)) !== undefined) {
    throw new ConflictError(`month: adjustments would be booked in ${postingMonth}, which is already closed (is the clock right?)`)
  }
  const runId = newId('run')

  // One journal: the month as recomputed minus what the ledger holds for it, per account.
  const differences = postingDifferences(postingsByAccount(lines), await repo.findPostedForMonth(trx, month))
  const journals: repo.NewJournal[] = []
  if (differences.size > 0) {
    journals.push({ id: newId('journal'), kind: closing ? 'settlement' : 'adjustment', runId, postingMonth, forMonth: month, entries: differences })
  }
  let householdsPostedMicros = 0n
  for (const [account, amount] of differences) if (account.startsWith(HOUSEHOLD_ACCOUNT_PREFIX)) householdsPostedMicros += amount
  const adjustmentJournals = closing ? 0 : journals.length

  // Lines: the ones whose state changed, and zero lines for consents that released nothing any more.
  const previous = await repo.findLatestLines(trx, month)
  const newLines: repo.NewLine[] = []
  const seen = new Set<string>()
  for (const l of lines) {
    seen.add(l.consentId)
    const state = { data: l.data, grossMicros: l.grossMicros, householdShareMicros: l.householdShareMicros }
    if (sameLine(previous.get(l.consentId), state)) continue
    newLines.push({ runId, month, consentId: l.consentId, householdId: l.householdId, recipientId: l.recipientId, offerId: l.offerId, granularity: l.granularity, state })
  }
  const zero = { data: 0n, grossMicros: 0n, householdShareMicros: 0n }
  const vanished = [...previous].filter(([consentId, state]) => !seen.has(consentId) && !sameLine(state, zero)).map(([id]) => id)
  if (vanished.length > 0) {
    const terms = await trx
      .selectFrom('consents')
      .select(['id', 'household_id', 'recipient_id', 'offer_id', 'granularity'])
      .where('id', 'in', vanished)
      .execute()
    for (const c of terms) {
      newLines.push({ runId, month, consentId: c.id, householdId: c.household_id, recipientId: c.recipient_id, offerId: c.offer_id, granularity: c.granularity, state: zero })
    }
  }

  // Payouts, once per month, by the closing run: every household whose balance over
  // everything booked up to this month (this run included) reaches the minimum, all in one
  // payout journal that moves those balances to the payouts account.
  const payouts: repo.NewPayout[] = []
  if (closing) {
    // A household is paid what it was owed by the month's end, but never more than it is owed now:
    // a correction booked since, in a later month (a late move-out's credit back), is netted first.
    const balances = await repo.findHouseholdBalances(trx, month)
    for (const [account, amount] of differences) {
      if (!account.startsWith(HOUSEHOLD_ACCOUNT_PREFIX)) continue
      const householdId = account.slice(HOUSEHOLD_ACCOUNT_PREFIX.length)
      const b = balances.get(householdId) ?? { upTo: 0n, all: 0n }
      balances.set(householdId, { upTo: b.upTo + amount, all: b.all + amount })
    }
    const journalId = newId('journal')
    const entries = new Map<string, bigint>()
    let paid = 0n
    for (const householdId of [...balances.keys()].sort()) {
      const { upTo, all } = balances.get(householdId)!
      const amount = payoutDue(upTo < all ? upTo : all, ctx.payoutMinMicros)
      if (amount === 0n) continue
      entries.set(householdAccount(householdId), -amount)
      paid += amount
      payouts.push({ id: newId('payout'), householdId, month, amountMicros: amount, journalId, runId })
    }
    if (paid > 0n) {
      entries.set(PAYOUTS_ACCOUNT, paid)
      journals.push({ id: journalId, kind: 'payout', runId, postingMonth: month, forMonth: month, entries })
    }
  }

  await repo.insertRun(trx, {
    id: runId,
    month,
    seq,
    posting_month: postingMonth,
    watermark,
    input_hash: inputHash,
    lines: monthFigures.lines,
    data_count: monthFigures.dataCount,
    gross_micros: monthFigures.grossMicros,
    household_micros: monthFigures.roles.household,
    operators_micros: monthFigures.roles.operators,
    platform_micros: monthFigures.roles.platform,
    third_parties_micros: monthFigures.roles.thirdParties,
    journals: journals.length,
    payouts: payouts.length,
    started_at: now,
  })
  const accounts = new Set<string>()
  for (const j of journals) for (const a of j.entries.keys()) accounts.add(a)
  await repo.ensureAccounts(trx, accounts)
  ctx.onProgress?.({ phase: 'posting', done: 0, total: journals.length })
  await repo.insertJournals(trx, journals, (done) => ctx.onProgress?.({ phase: 'posting', done, total: journals.length }))
  await repo.insertLines(trx, newLines)
  ctx.onProgress?.({ phase: 'payouts', done: 0, total: payouts.length })
  await repo.insertPayouts(trx, payouts)
  ctx.onProgress?.({ phase: 'payouts', done: payouts.length, total: payouts.length })

  return {
    runId,
    month,
    kind: closing ? 'closing' : 'adjustment',
    seq,
    postingMonth,
    watermark,
    inputHash,
    ...monthFigures,
    journals: journals.length,
    adjustmentJournals,
    householdsPostedMicros,
    payouts: payouts.length,
    payoutsMicros: payouts.reduce((s, p) => s + p.amountMicros, 0n),
    durationMs: 0,
  }
}
