import { existsSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { isMonth } from '../shared/calendar.ts'
import { ENV_VARS, envToConfig, type RawEnv } from '../shared/config.ts'
import { openConfiguredDatabase, pgliteDirOf } from '../shared/db/database.ts'
import { openDataCalendar } from '../services/metering/rollup-recut.ts'
import { migrateToLatest } from '../shared/db/migrator.ts'
import { ConfigError, InvalidInputError } from '../shared/errors.ts'
import { configureLogging } from '../shared/logger.ts'
import { formatEur, formatMicros } from '../shared/money.ts'
import { settleMonth, settlementContext, type RunSummary, type SettlementProgress } from '../services/settlement/settlement-service.ts'

/**
 * `metershare settle --month YYYY-MM`: settles one month (idempotent) on PGlite under the
 * data directory, or on PostgreSQL when DATABASE_URL is set. A progress bar on a terminal,
 * then a summary table on stdout.
 */

export interface SettleOutput {
  out: { write(text: string): unknown }
  /** Progress goes here, only when it is a terminal. */
  err: { write(text: string): unknown; isTTY?: boolean; columns?: number }
}

const PROGRESS_BAR_WIDTH = 30
/** Redraws at most this often, in ms (a run reports progress per statement). */
const PROGRESS_REDRAW_MS_MIN = 100

const PHASE_LABEL: Record<SettlementProgress['phase'], string> = {
  reading: 'reading consents',
  counting: 'counting datums',
  posting: 'posting journals',
  payouts: 'recording payouts',
  done: 'done',
}

const count = new Intl.NumberFormat('en-US')

/** One line of progress: `[#######-----------------------]  23 % counting datums 1,200/5,000`. */
export function progressLine(p: SettlementProgress): string {
  const fraction = p.total === 0 ? 1 : Math.min(1, p.done / p.total)
  const filled = Math.round(fraction * PROGRESS_BAR_WIDTH)
  const bar = '#'.repeat(filled) + '-'.repeat(PROGRESS_BAR_WIDTH - filled)
  const figures = p.total > 1 ? ` ${count.format(p.done)}/${count.format(p.total)}` : ''
  return `[${bar}] ${String(Math.round(fraction * 100)).padStart(3)} % ${PHASE_LABEL[p.phase]}${figures}`
}

function eur(micros: bigint): string {
  return `${formatEur(micros)} EUR (${formatMicros(micros)} µ€)`
}

/** The summary table printed after a run. */
export function summaryTable(s: RunSummary, timeZone: string): string {
  const what =
    s.kind === 'unchanged'
      ? `${s.runId}: nothing new since run #${s.seq}, nothing posted`
      : `${s.runId} (${s.kind === 'closing' ? 'closes the month' : 'adjustments'}, run #${s.seq}, booked in ${s.postingMonth})`
  const rows: [string, string][] = [
    ['run', what],
    ['lines (consents with data)', count.format(s.lines)],
    ['datums released', count.format(s.dataCount)],
    ['gross', eur(s.grossMicros)],
    ['  households', eur(s.roles.household)],
    ['  meter operators', eur(s.roles.operators)],
    ['  platform', eur(s.roles.platform)],
    ['  third parties', eur(s.roles.thirdParties)],
    ['journals posted', count.format(s.journals)],
    ['  of them adjustments', count.format(s.adjustmentJournals)],
    ['posted to households', eur(s.householdsPostedMicros)],
    ['payouts', `${count.format(s.payouts)}, ${eur(s.payoutsMicros)}`],
    ['watermark', s.watermark.toISOString()],
    ['duration', `${(s.durationMs / 1000).toFixed(1)} s`],
  ]
  const width = Math.max(...rows.map(([k]) => k.length))
  return [`Settlement of ${s.month} (${timeZone})`, ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)].join('\n') + '\n'
}

export async function settleCommand(args: string[], env: RawEnv, io: SettleOutput = { out: process.stdout, err: process.stderr }): Promise<number> {
  const { values } = parseArgs({ args, options: { month: { type: 'string' }, 'data-dir': { type: 'string' } }, strict: true })
  const month = values.month
  if (month === undefined || !isMonth(month)) throw new InvalidInputError('--month: expected a month as YYYY-MM', 'month')
  const config = envToConfig(values['data-dir'] === undefined ? env : { ...env, dataDir: values['data-dir'] })
  // Log lines would tear the progress bar: only warnings unless a level was asked for.
  configureLogging({ level: env.logLevel === undefined ? 'warn' : config.logLevel, target: { write: (line: string) => io.err.write(line) } })

  const tty = io.err.isTTY === true
  let lastDraw = 0
  let drawn = false
  const onProgress = (p: SettlementProgress): void => {
    if (!tty) return
    const now = Date.now()
    if (p.phase !== 'done' && now - lastDraw < PROGRESS_REDRAW_MS_MIN) return
    lastDraw = now
    drawn = true
    io.err.write(`\r${progressLine(p)}\x1b[K`)
  }

  // Settling reads what `up` stored: a data folder without an embedded database is a mistyped path, not
  // an empty world to create and settle to zero.
  if (config.databaseUrl === null && !existsSync(pgliteDirOf(config.dataDir))) {
    throw new ConfigError(`${ENV_VARS.dataDir}: no embedded database in ${path.resolve(config.dataDir)} (start \`metershare up\` there first, or give --data-dir)`)
  }
  const handle = await openConfiguredDatabase(config, 'metershare:settle')
  try {
    await migrateToLatest(handle.db)
    await openDataCalendar(handle.db, config.timezone)
    const summary = await settleMonth(handle.db, month, settlementContext(config, () => new Date(), onProgress)).catch((err: unknown) => {
      // Said of the option given here, not of the API's field.
      if (err instanceof InvalidInputError && err.message.startsWith('month: ')) throw new InvalidInputError(`--${err.message}`, 'month')
      throw err
    })
    if (drawn) io.err.write('\n')
    drawn = false
    io.out.write(summaryTable(summary, config.timezone))
  } finally {
    if (drawn) io.err.write('\n')
    await handle.close()
  }
  return 0
}
