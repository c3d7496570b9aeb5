import type { Kysely } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { ReleaseChannel } from '../../shared/db/tables/access-log.ts'
import { logDatabaseFailure } from '../../shared/db/unreachable.ts'
import { log } from '../../shared/logger.ts'
import type { Metrics } from '../../shared/metrics.ts'
import { addAccessCounts, existingReferences, type AccessCount } from './access-log-repository.ts'

/**
 * Counts releases in memory on the hot path (the broker's forward hook cannot wait for the
 * database) and adds them to the access log every `flushIntervalMs` and on close. A failed
 * flush keeps its counts for the next one; a clean close writes everything counted.
 */

export interface AccessLogRecorderOptions {
  flushIntervalMs?: number | undefined
  /** Rows per INSERT statement. */
  flushRowsPerStatementMax?: number | undefined
  /** When given, every recorded datum also counts in metershare_datums_released_total{channel}. */
  metrics?: Metrics | undefined
}

export const ACCESS_LOG_FLUSH_INTERVAL_MS = 1_000
export const ACCESS_LOG_ROWS_PER_STATEMENT_MAX = 1_000

const SEPARATOR = '\u0000'
const FOREIGN_KEY_VIOLATION = '23503'

export class AccessLogRecorder {
  private pending = new Map<string, bigint>()
  private flushing: Promise<void> = Promise.resolve()
  private readonly timer: NodeJS.Timeout
  private readonly rowsPerStatementMax: number
  private readonly metrics: Metrics | undefined
  private closed = false

  constructor(
    private readonly db: Kysely<Database>,
    options: AccessLogRecorderOptions = {},
  ) {
    this.rowsPerStatementMax = options.flushRowsPerStatementMax ?? ACCESS_LOG_ROWS_PER_STATEMENT_MAX
    this.metrics = options.metrics
    this.timer = setInterval(() => {
      this.flush().catch(() => undefined)
    }, options.flushIntervalMs ?? ACCESS_LOG_FLUSH_INTERVAL_MS)
    this.timer.unref()
  }

  /** Counts `datums` released to a recipient; `day` is the local day they belong to (a month's datum: its first day). */
  record(recipientId: string, householdId: string, meterId: string, day: string, channel: ReleaseChannel, datums: number): void {
    if (datums <= 0) return
    const key = recipientId + SEPARATOR + householdId + SEPARATOR + meterId + SEPARATOR + day + SEPARATOR + channel
    this.pending.set(key, (this.pending.get(key) ?? 0n) + BigInt(datums))
    this.metrics?.datumsReleased.labels(channel).inc(datums)
  }

  /** Datums counted and not yet written. */
  pendingDatums(): bigint {
    let n = 0n
    for (const v of this.pending.values()) n += v
    return n
  }

  /** Writes what was counted so far (after any flush under way). */
  flush(): Promise<void> {
    this.flushing = this.flushing.catch(() => undefined).then(() => this.writePending())
    return this.flushing
  }

  /** Stops the timer and writes everything counted; a failure is thrown, with the counts kept. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true
      clearInterval(this.timer)
    }
    await this.flush()
  }

  private async writePending(): Promise<void> {
    if (this.pending.size === 0) return
    const batch = this.pending
    this.pending = new Map()
    const counts: AccessCount[] = []
    for (const [key, datums] of batch) {
      const [recipientId, householdId, meterId, day, channel] = key.split(SEPARATOR) as [string, string, string, string, ReleaseChannel]
      counts.push({ recipientId, householdId, meterId, day, channel, datums })
    }
    try {
      try {
        await this.writeAll(counts)
      } catch (err) {
        if ((err as { code?: unknown } | null)?.code !== FOREIGN_KEY_VIOLATION) throw err
        await this.writeKnown(counts)
      }
    } catch (err) {
      // Keep the counts: the next flush writes them with whatever came since.
      for (const [key, datums] of batch) this.pending.set(key, (this.pending.get(key) ?? 0n) + datums)
      logDatabaseFailure(log.consent, 'warn', err, { keys: batch.size }, 'access log flush failed')
      throw err
    }
  }

  /** A count naming a party, household or meter that no longer exists cannot be written: only it is dropped. */
  private async writeKnown(counts: AccessCount[]): Promise<void> {
    const known = await existingReferences(this.db, counts)
    const kept: AccessCount[] = []
    for (const c of counts) {
      if (known.parties.has(c.recipientId) && known.households.has(c.householdId) && known.meters.has(c.meterId)) kept.push(c)
      else {
        const { recipientId, householdId, meterId, day, channel } = c
        log.consent.error({ recipientId, householdId, meterId, day, channel, datums: String(c.datums) }, 'access count dropped: unknown party, household or meter')
      }
    }
    await this.writeAll(kept)
  }

  private async writeAll(counts: AccessCount[]): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      for (let i = 0; i < counts.length; i += this.rowsPerStatementMax) {
        await addAccessCounts(trx, counts.slice(i, i + this.rowsPerStatementMax))
      }
    })
  }
}
