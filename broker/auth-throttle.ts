/**
 * Slows down repeated authentication failures from one address: the first
 * `failuresFree` failures in `windowMs` cost nothing, each further one doubles the delay
 * before the next answer to that address, up to `delayMsMax`. Bounded in memory.
 */
export interface AuthThrottleLimits {
  authFailuresPerAddressFree: number
  authFailureWindowMs: number
  authDelayMsMax: number
  authAddressesTrackedMax: number
}

const BASE_DELAY_MS = 100

export class AuthThrottle {
  private readonly failures = new Map<string, { count: number; firstAtMs: number }>()

  constructor(
    private readonly limits: AuthThrottleLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** How long to wait before answering this address, in ms. */
  delayMs(address: string): number {
    const f = this.current(address)
    if (f === undefined) return 0
    const excess = f.count - this.limits.authFailuresPerAddressFree
    if (excess < 0) return 0
    return Math.min(this.limits.authDelayMsMax, BASE_DELAY_MS * 2 ** Math.min(excess, 20))
  }

  recordFailure(address: string): void {
    const f = this.current(address)
    if (f !== undefined) {
      f.count++
      return
    }
    if (this.failures.size >= this.limits.authAddressesTrackedMax) this.evictExpired()
    if (this.failures.size >= this.limits.authAddressesTrackedMax) {
      // Still full: forget the oldest entry (Map keeps insertion order).
      this.failures.delete(this.failures.keys().next().value!)
    }
    this.failures.set(address, { count: 1, firstAtMs: this.now() })
  }

  recordSuccess(address: string): void {
    this.failures.delete(address)
  }

  private current(address: string): { count: number; firstAtMs: number } | undefined {
    const f = this.failures.get(address)
    if (f !== undefined && this.now() - f.firstAtMs > this.limits.authFailureWindowMs) {
      this.failures.delete(address)
      return undefined
    }
    return f
  }

  private evictExpired(): void {
    const t = this.now()
    for (const [a, f] of this.failures) if (t - f.firstAtMs > this.limits.authFailureWindowMs) this.failures.delete(a)
  }
}
