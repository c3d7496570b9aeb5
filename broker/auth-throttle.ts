import { throttleAddressOf } from '../shared/trusted-proxies.ts'

/**
 * Slows down repeated MQTT authentication failures. Failures are counted per key until
 * `authFailureWindowMs` passes without one (counted from a key's first failure, the count fell back to
 * nothing a minute into a steady guesser's run, and its next guesses were free again): one user name
 * from one address, and every user name from one address. Past a key's free failures, each further one doubles the delay before
 * the next answer (from 100 ms up to `authDelayMsMax`); a connect waits for the longest delay of its
 * keys. A success forgets only its own user name's key: someone guessing secrets from an address
 * cannot reset that address by connecting a meter of their own in between. A user name counts
 * against its address only with its free failures: one meter retrying a wrong secret behind a shared
 * address (a carrier's NAT) is slowed alone, while many user names failing from one address (a
 * spray) slow the address. An IPv6 address counts as its /64 (`throttleAddressOf`). Bounded in memory: at most `authKeysTrackedMax` keys.
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
  /** The key's latest failure (or its first attempt): it is forgotten `authFailureWindowMs` after. */
  lastAtMs: number
  /** Attempts of this user name from this address not answered yet (its key only). */
  pending: number
  /** When the latest attempt delayed on this key is answered (epoch ms; its key only). */
  nextAtMs: number
}

export class AuthThrottle {
  private readonly failures = new Map<string, Failures>()

  constructor(
    private readonly limits: AuthThrottleLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * An attempt begins: how long to wait before answering it, in ms. Every attempt of this user
   * name from this address not answered yet counts as a failure until it is answered, and delayed
   * attempts are answered one after another: many connects sent at once for one meter meet the
   * limit as they would sent one by one. (Not so for the address as a whole: a fleet behind one
   * address reconnecting at once is no guess.) Call `recordFailure` or `recordSuccess` once answered.
   */
  begin(address: string, username: string | undefined): number {
    const nowMs = this.now()
    const [[userKey, userFree], [addressKey, addressFree]] = this.keysOf(address, username)
    let delay = 0
    const byAddress = this.current(addressKey)
    if (byAddress !== undefined && byAddress.count >= addressFree) delay = this.delayFor(byAddress.count - addressFree)
    const user = this.current(userKey) ?? this.track(userKey, 0)
    const before = user.count + user.pending
    user.pending++
    if (before >= userFree) {
      const at = Math.max(nowMs, user.nextAtMs) + this.delayFor(before - userFree)
      user.nextAtMs = at
      delay = Math.max(delay, at - nowMs)
    }
    return delay
  }

  recordFailure(address: string, username: string | undefined): void {
    const [[userKey, userFree], [addressKey]] = this.keysOf(address, username)
    const user = this.current(userKey) ?? this.track(userKey, 0)
    user.pending = Math.max(0, user.pending - 1)
    user.count++
    user.lastAtMs = this.now()
    // A user name past its own free failures is slowed on its own key: its further failures do not count
    // against its address, or one device retrying a dead secret for ever behind a shared address (a NAT)
    // slowed every meter there after 50 tries (found by probing: their CONNACKs took 5 s).
    if (user.count > userFree) return
    const byAddress = this.current(addressKey)
    if (byAddress !== undefined) {
      byAddress.count++
      byAddress.lastAtMs = this.now()
    } else this.track(addressKey, 1)
  }

  /** A success forgets this user name's failures from this address, not the address's. */
  recordSuccess(address: string, username: string | undefined): void {
    const userKey = this.keysOf(address, username)[0][0]
    const user = this.current(userKey)
    if (user !== undefined && user.pending > 1) {
      // Other attempts of it are still waiting: they stay counted until answered.
      user.pending--
      user.count = 0
      return
    }
    this.failures.delete(userKey)
  }

  /** An attempt answered without a verdict on its secret (the server busy or unavailable, its client id refused). */
  recordNoVerdict(address: string, username: string | undefined): void {
    const user = this.current(this.keysOf(address, username)[0][0])
    if (user !== undefined) user.pending = Math.max(0, user.pending - 1)
  }

  private delayFor(beyondFree: number): number {
    return Math.min(this.limits.authDelayMsMax, BASE_DELAY_MS * 2 ** Math.min(beyondFree, 20))
  }

  private track(key: string, count: number): Failures {
    if (this.failures.size >= this.limits.authKeysTrackedMax) this.evictExpired()
    if (this.failures.size >= this.limits.authKeysTrackedMax) {
      // Still full: forget the oldest entry (Map keeps insertion order).
      this.failures.delete(this.failures.keys().next().value!)
    }
    const f: Failures = { count, lastAtMs: this.now(), pending: 0, nextAtMs: 0 }
    this.failures.set(key, f)
    return f
  }

  /** Keys currently remembered. */
  get size(): number {
    return this.failures.size
  }

  private keysOf(address: string, username: string | undefined): [user: [key: string, free: number], address: [key: string, free: number]] {
    const client = throttleAddressOf(address)
    return [
      [`user:${username ?? ''} address:${client}`, this.limits.authFailuresPerUsernameFree],
      [`address:${client}`, this.limits.authFailuresPerAddressFree],
    ]
  }

  private current(key: string): Failures | undefined {
    const f = this.failures.get(key)
    if (f !== undefined && this.now() - f.lastAtMs > this.limits.authFailureWindowMs) {
      this.failures.delete(key)
      return undefined
    }
    return f
  }

  private evictExpired(): void {
    const t = this.now()
    for (const [k, f] of this.failures) if (t - f.lastAtMs > this.limits.authFailureWindowMs) this.failures.delete(k)
  }
}
