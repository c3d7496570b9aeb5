/**
 * Slows down repeated MQTT authentication failures. Failures are counted per key within
 * `authFailureWindowMs` (from a key's first failure): one user name from one address, and every
 * user name from one address. Past a key's free failures, each further one doubles the delay before
 * the next answer (from 100 ms up to `authDelayMsMax`); a connect waits for the longest delay of its
 * keys. A success forgets only its own user name's key: someone guessing secrets from an address
 * cannot reset that address by connecting a meter of their own in between, and one meter with a
 * wrong secret behind a shared address (a carrier's NAT) does not slow the others until the
 * address as a whole fails often. Bounded in memory: at most `authKeysTrackedMax` keys.
 */
export interface AuthThrottleLimits {
  /** Failures of one user name from one address within the window before answers are delayed. */
  authFailuresPerUsernameFree: number
  /** Failures of all user names from one address within the window before answers are delayed. */
  authFailuresPerAddressFree: number
  authFailureWindowMs: number
  authDelayMsMax: number
  authKeysTrackedMax: number
}

const BASE_DELAY_MS = 100

interface Failures {
  count: number
  firstAtMs: number
}

export class AuthThrottle {
  private readonly failures = new Map<string, Failures>()

  constructor(
    private readonly limits: AuthThrottleLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** How long to wait before answering this user name from this address, in ms. */
  delayMs(address: string, username: string | undefined): number {
    let delay = 0
    for (const [key, free] of this.keysOf(address, username)) {
      const f = this.current(key)
      if (f === undefined || f.count < free) continue
      delay = Math.max(delay, Math.min(this.limits.authDelayMsMax, BASE_DELAY_MS * 2 ** Math.min(f.count - free, 20)))
    }
    return delay
  }

  recordFailure(address: string, username: string | undefined): void {
    for (const [key] of this.keysOf(address, username)) {
      const f = this.current(key)
      if (f !== undefined) {
        f.count++
        continue
      }
      if (this.failures.size >= this.limits.authKeysTrackedMax) this.evictExpired()
      if (this.failures.size >= this.limits.authKeysTrackedMax) {
        // Still full: forget the oldest entry (Map keeps insertion order).
        this.failures.delete(this.failures.keys().next().value!)
      }
      this.failures.set(key, { count: 1, firstAtMs: this.now() })
    }
  }

  /** A success forgets this user name's failures from this address, not the address's. */
  recordSuccess(address: string, username: string | undefined): void {
    this.failures.delete(this.keysOf(address, username)[0]![0])
  }

  /** Keys currently remembered. */
  get size(): number {
    return this.failures.size
  }

  private keysOf(address: string, username: string | undefined): [key: string, free: number][] {
    return [
      [`user:${username ?? ''} address:${address}`, this.limits.authFailuresPerUsernameFree],
      [`address:${address}`, this.limits.authFailuresPerAddressFree],
    ]
  }

  private current(key: string): Failures | undefined {
    const f = this.failures.get(key)
    if (f !== undefined && this.now() - f.firstAtMs > this.limits.authFailureWindowMs) {
      this.failures.delete(key)
      return undefined
    }
    return f
  }

  private evictExpired(): void {
    const t = this.now()
    for (const [k, f] of this.failures) if (t - f.firstAtMs > this.limits.authFailureWindowMs) this.failures.delete(k)
  }
}
