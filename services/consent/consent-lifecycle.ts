import type { Kysely, Transaction } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { ConsentStatus } from '../../shared/db/tables/consents.ts'
import { logDatabaseFailure } from '../../shared/db/unreachable.ts'
import { log } from '../../shared/logger.ts'
import { notifyChange } from './change-notice-repository.ts'
import * as repo from './consent-repository.ts'
import { loadOccupancyFacts } from './release-facts-repository.ts'
import { meterEndedAtMs, type ConsentFact } from './release-rule.ts'

/**
 * What happens to a consent with time: it expires at valid_until, and it ends for a meter
 * when the household moves out of it (the release rule already stops releasing then; this
 * records it). Each step is logged exactly once: the consent row is locked while a step is
 * taken, status moves only from 'active', and the log's unique indexes refuse a second
 * entry, so any number of sweepers in any number of processes may run at once.
 *
 * - A meter's move-out is logged (`ended_by_move_out`, with the meter, by 'system') at the
 *   moment the household's occupancy ended, if the consent was active then.
 * - When every meter of the consent has ended, its status becomes `ended_by_move_out`.
 * - Otherwise at valid_until it becomes `expired`, logged at valid_until.
 */

export const SYSTEM_ACTOR = 'system'
export const OPERATOR_ACTOR = 'operator'

export interface SettleOutcome {
  status: ConsentStatus
  meterEnds: number
}

/** Takes every step due at `now` for one consent; the caller holds its row lock. */
export async function settleConsent(trx: Transaction<Database>, row: repo.ConsentRow, now: Date): Promise<SettleOutcome> {
  if (row.status !== 'active') return { status: row.status, meterEnds: 0 }
  const nowMs = now.getTime()
  const meterIds = (await repo.meterIdsOfConsents(trx, [row.id])).get(row.id) ?? []
  const occupancies = await loadOccupancyFacts(trx, { meterIds, householdId: row.household_id })
  const fact: ConsentFact = {
    id: row.id,
    householdId: row.household_id,
    recipientId: row.recipient_id,
    granularity: row.granularity,
    meterIds,
    validFromMs: row.valid_from.getTime(),
    validUntilMs: row.valid_until.getTime(),
    dataFromMs: row.data_from.getTime(),
    dataUntilMs: row.data_until === null ? null : row.data_until.getTime(),
    revokedAtMs: null,
  }
  const logged = await repo.loggedMeterEnds(trx, row.id)
  const notice = { kind: 'consent', id: row.id, householdId: row.household_id, recipientId: row.recipient_id } as const
  let meterEnds = 0
  let lastEndMs = -Infinity
  let allEnded = meterIds.length > 0
  for (const meterId of meterIds) {
    const endedMs = meterEndedAtMs(fact, meterId, occupancies, nowMs)
    // A move-out after the consent expired is not the consent's business any more.
    if (endedMs === null || endedMs >= fact.validUntilMs) {
      allEnded = false
      continue
    }
    lastEndMs = Math.max(lastEndMs, endedMs)
    if (logged.has(meterId)) continue
    const appended = await repo.appendConsentLog(trx, {
      consentId: row.id,
      householdId: row.household_id,
      event: 'ended_by_move_out',
      meterId,
      actor: SYSTEM_ACTOR,
      at: new Date(endedMs),
    })
    if (appended) {
      meterEnds++
      await notifyChange(trx, { ...notice, event: 'meter_ended' })
    }
  }
  if (allEnded) {
    if (await repo.setConsentStatus(trx, row.id, { status: 'ended_by_move_out', at: new Date(lastEndMs) })) {
      await notifyChange(trx, { ...notice, event: 'ended_by_move_out' })
    }
    return { status: 'ended_by_move_out', meterEnds }
  }
  if (nowMs >= fact.validUntilMs) {
    if (await repo.setConsentStatus(trx, row.id, { status: 'expired', at: row.valid_until })) {
      await repo.appendConsentLog(trx, {
        consentId: row.id,
        householdId: row.household_id,
        event: 'expired',
        meterId: null,
        actor: SYSTEM_ACTOR,
        at: row.valid_until,
      })
      await notifyChange(trx, { ...notice, event: 'expired' })
    }
    return { status: 'expired', meterEnds }
  }
  return { status: 'active', meterEnds }
}

export interface SweepReport {
  expired: number
  endedByMoveOut: number
  meterEnds: number
}

export interface SweepOptions {
  householdId?: string | undefined
  consentId?: string | undefined
  /** Consents examined per query. */
  batchConsentsMax?: number | undefined
  /** Queries per sweep; the next sweep carries on. */
  batchesMax?: number | undefined
}

export const SWEEP_BATCH_CONSENTS_MAX = 500
export const SWEEP_BATCHES_MAX = 20

/** Takes every lifecycle step due at `now` (all consents, or one household's, or one). Idempotent. */
export async function sweepConsents(db: Kysely<Database>, now: Date, options: SweepOptions = {}): Promise<SweepReport> {
  const report: SweepReport = { expired: 0, endedByMoveOut: 0, meterEnds: 0 }
  const batchMax = options.batchConsentsMax ?? SWEEP_BATCH_CONSENTS_MAX
  const batchesMax = options.batchesMax ?? SWEEP_BATCHES_MAX
  const scope = { householdId: options.householdId, consentId: options.consentId }
  for (let batch = 0; batch < batchesMax; batch++) {
    const ids = await repo.sweepCandidates(db, now, scope, batchMax)
    let changed = 0
    for (const id of ids) {
      const step = await db.transaction().execute(async (trx) => {
        const row = await repo.lockConsent(trx, id)
        if (row === undefined || row.status !== 'active') return null
        return settleConsent(trx, row, now)
      })
      if (step === null) continue
      report.meterEnds += step.meterEnds
      if (step.status === 'expired') report.expired++
      if (step.status === 'ended_by_move_out') report.endedByMoveOut++
      if (step.status !== 'active' || step.meterEnds > 0) changed++
    }
    if (ids.length < batchMax || changed === 0) break
  }
  return report
}

export interface ConsentSweeper {
  /** Runs one sweep now (after the one under way, if any). */
  sweepNow(): Promise<SweepReport>
  stop(): Promise<void>
}

/** Sweeps every `intervalMs`; errors are logged and the next sweep tries again. */
export function startConsentSweeper(
  db: Kysely<Database>,
  options: { intervalMs: number; clock?: () => Date; batchConsentsMax?: number },
): ConsentSweeper {
  const clock = options.clock ?? (() => new Date())
  let running: Promise<SweepReport> = Promise.resolve({ expired: 0, endedByMoveOut: 0, meterEnds: 0 })
  let stopped = false
  const sweepNow = (): Promise<SweepReport> => {
    running = running
      .catch(() => ({ expired: 0, endedByMoveOut: 0, meterEnds: 0 }))
      .then(() => sweepConsents(db, clock(), { batchConsentsMax: options.batchConsentsMax }))
    return running
  }
  const timer = setInterval(() => {
    if (stopped) return
    sweepNow().then(
      (r) => {
        if (r.expired + r.endedByMoveOut + r.meterEnds > 0) log.consent.info(r, 'consent lifecycle swept')
      },
      (err: unknown) => logDatabaseFailure(log.consent, 'warn', err, {}, 'consent sweep failed'),
    )
  }, options.intervalMs)
  timer.unref()
  return {
    sweepNow,
    async stop() {
      if (stopped) return
      stopped = true
      clearInterval(timer)
      await running.catch(() => undefined)
    },
  }
}
