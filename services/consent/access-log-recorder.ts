import type { Kysely } from 'kysely'
import type { Database } from '../../shared/db/schema.ts'
import type { ReleaseChannel } from '../../shared/db/tables/access-log.ts'
import { log } from '../../shared/logger.ts'
import type { Metrics } from '../../shared/metrics.ts'
import { addAccessCounts, type AccessCount } from './access-log-repository.ts'

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

  /** Counts `datums` released to a recipient; `day` is the local day of the release. */
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
      await this.db.transaction().execute(async (trx) => {
        for (let i = 0; i < counts.length; i += this.rowsPerStatementMax) {
          await addAccessCounts(trx, counts.slice(i, i + this.rowsPerStatementMax))
        }
      })
    } catch (err) {
      // Keep the counts: the next flush writes them with whatever came since.
      for (const [key, datums] of batch) this.pending.set(key, (this.pending.get(key) ?? 0n) + datums)
      log.consent.warn({ err, keys: batch.size }, 'access log flush failed')
      throw err
    }
  }
}
