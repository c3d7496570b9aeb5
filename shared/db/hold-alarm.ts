import type { Logger } from 'pino'

/** How often, in ms, a hold that lasts is said again in the log. */
export const HOLD_REMIND_MS = 60_000

/** Characters of an error's first line kept for the log (errorDetail). */
export const ERROR_DETAIL_CHARS_MAX = 500

/** The first line of an error's message, without a query or a stack: what an operator reads. */
export function errorDetail(err: unknown): string {
  const message = (err as { message?: unknown } | null)?.message
  return typeof message === 'string' ? message.split('\n')[0]!.slice(0, ERROR_DETAIL_CHARS_MAX) : String(err)
}

/** What a hold says in the log, once as it starts, every HOLD_REMIND_MS while it lasts, and as it ends. */
export interface HoldTexts {
  started: (retryMs: number) => string
  lasting: string
  ended: string
  /** Said instead of `ended` when ingest closes with groups still held for the cause. */
  givenUp: string
  /** The field naming how long it lasted (`fullForMs`, `downForMs`). */
  forMs: string
}

/**
 * Ingest held for a cause that outlasts any number of retries (a full disk, a database server that
 * is away): shared by a broker's lanes, /healthz and /metrics, and said in the log once when it
 * starts, at most every `remindMs` while it lasts, and once when it ends, not at every retry of
 * every group.
 */
export class HoldAlarm {
  private since: number | null = null
  private lastSaidAt = 0
  private retries = 0
  /** Groups being held (a broker's lanes each hold one or two). */
  private held = 0

  constructor(
    private readonly log: Logger,
    private readonly texts: HoldTexts,
    private readonly onChange: (active: boolean) => void = () => {},
    private readonly remindMs = HOLD_REMIND_MS,
    private readonly now: () => number = Date.now,
  ) {}

  get active(): boolean {
    return this.since !== null
  }

  /** A group could not be committed for this cause (`first`: its first such failure); `heldReadings` wait unacknowledged. */
  raise(err: unknown, first: boolean, heldReadings: number, retryMs: number): void {
    const t = this.now()
    if (first) this.held++
    else this.retries++
    if (this.since === null) {
      this.since = t
      this.lastSaidAt = t
      this.retries = 0
      this.onChange(true)
      this.log.error({ detail: errorDetail(err), heldReadings, retryMs }, this.texts.started(retryMs))
      return
    }
    if (t - this.lastSaidAt >= this.remindMs) {
      this.lastSaidAt = t
      this.log.error({ detail: errorDetail(err), heldReadings, [this.texts.forMs]: t - this.since, retries: this.retries }, this.texts.lasting)
    }
  }

  /**
   * A held group was committed, or failed for another cause (once none is held, ingest has resumed),
   * or was given up as ingest closes (`givenUp`: the cause may well last).
   */
  release(givenUp = false): void {
    if (this.held > 0) this.held--
    if (this.held > 0 || this.since === null) return
    const lastedMs = this.now() - this.since
    this.since = null
    this.onChange(false)
    this.log.warn({ [this.texts.forMs]: lastedMs, retries: this.retries }, givenUp ? this.texts.givenUp : this.texts.ended)
  }
}
