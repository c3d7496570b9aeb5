import type { PortalLimits } from '../../shared/config.ts'
import { TooManyRequestsError } from '../../shared/errors.ts'
import { throttleAddressOf } from '../../shared/trusted-proxies.ts'

/**
 * Failed sign-ins remembered per key in a sliding window: once a key has its `max` failures
 * within `signInFailureWindowMs`, it must wait until the oldest of them leaves the window. Held
 * in memory by one API process (as the broker's authentication throttle); at most
 * `signInKeysTrackedMax` keys, the least recently failed forgotten first. Pure apart from its
 * own state: time comes in as an argument.
 */
export type SignInThrottleLimits = Pick<PortalLimits, 'signInFailuresMax' | 'signInFailuresPerEmailMax' | 'signInFailureWindowMs' | 'signInKeysTrackedMax'>

/** A key and how many failures it may have within the window. */
export interface ThrottleKey {
  key: string
  max: number
}

/**
 * How long a sign-in refused because as many checks as its keys may still fail are under way is told
 * to wait (Retry-After), in ms: about a password check's time (scrypt), after which they have ended.
 */
export const SIGN_IN_BUSY_RETRY_MS = 1_000

/** The two messages of a refusal: past the failures allowed, and while as many checks as may still fail are under way. */
export interface ThrottleRefusal {
  failures: string
  busy: string
}

/** An attempt begun under the limits: ended once, failed or not (a check that ends otherwise, as `false`). */
interface ThrottledAttempt {
  end(failed: boolean): void
}

export class SignInThrottle {
  /** Failure times (epoch ms) per key, oldest first, at most its max each. */
  private readonly failures = new Map<string, number[]>()
  /** Checks under way per key. */
  private readonly pending = new Map<string, number>()

  constructor(private readonly limits: SignInThrottleLimits) {}

  /**
   * The keys of a sign-in: an email from one address and an address may fail `signInFailuresMax`
   * times; an email from everywhere `signInFailuresPerEmailMax` times. So someone guessing from one
   * address cannot lock a household out of the portal from its own, while guessing spread over
   * many addresses is still held back. An IPv6 address counts as its /64 (`throttleAddressOf`).
   */
  keysOf(email: string, address: string): ThrottleKey[] {
    const e = email.trim().toLowerCase()
    const client = throttleAddressOf(address)
    return [
      { key: `email:${e} address:${client}`, max: this.limits.signInFailuresMax },
      { key: `address:${client}`, max: this.limits.signInFailuresMax },
      { key: `email:${e}`, max: this.limits.signInFailuresPerEmailMax },
    ]
  }

  /**
   * The keys of a password change's check of the current password (`POST /me/password`, by a session
   * or an API key that may have been stolen): the same limits as a sign-in, per household from one
   * address, per address, and per household from all addresses. So the check is no way round the
   * sign-in's limits to guess the password.
   */
  currentPasswordKeysOf(householdId: string, address: string): ThrottleKey[] {
    const client = throttleAddressOf(address)
    return [
      { key: `household:${householdId} address:${client}`, max: this.limits.signInFailuresMax },
      { key: `address:${client}`, max: this.limits.signInFailuresMax },
      { key: `household:${householdId}`, max: this.limits.signInFailuresPerEmailMax },
    ]
  }

  /**
   * The start of a password check under the limits: refused (TooManyRequestsError) while a key must
   * wait after its failures (`refusal.failures`, until the oldest leaves the window), or while as many
   * checks are under way for a key as it may still fail (`refusal.busy`, SIGN_IN_BUSY_RETRY_MS): so
   * attempts sent at once meet the limit one after another rather than all pass it together, while a
   * check under way is counted as no failure (right passwords sent at once from an office's address
   * were refused for 15 minutes as failures).
   */
  private begin(keys: readonly ThrottleKey[], nowMs: number, refusal: ThrottleRefusal): ThrottledAttempt {
    const wait = this.retryAfterMs(keys, nowMs)
    if (wait > 0) throw new TooManyRequestsError(refusal.failures, wait)
    if (keys.some(({ key, max }) => this.recent(key, nowMs).length + (this.pending.get(key) ?? 0) >= max)) {
      throw new TooManyRequestsError(refusal.busy, SIGN_IN_BUSY_RETRY_MS, { busy: true })
    }
    for (const { key } of keys) this.pending.set(key, (this.pending.get(key) ?? 0) + 1)
    let ended = false
    return {
      end: (failed) => {
        if (ended) return
        ended = true
        for (const { key } of keys) {
          const n = this.pending.get(key)! - 1
          if (n === 0) this.pending.delete(key)
          else this.pending.set(key, n)
        }
        if (failed) this.recordFailure(keys, nowMs)
      },
    }
  }

  /** `check` as an attempt begun under the limits (begin), failed when it throws an error `failedBy` tells is a failure. */
  async guard<T>(keys: readonly ThrottleKey[], nowMs: number, refusal: ThrottleRefusal, check: () => Promise<T>, failedBy: (err: unknown) => boolean): Promise<T> {
    const attempt = this.begin(keys, nowMs, refusal)
    let failed = false
    try {
      return await check()
    } catch (err) {
      failed = failedBy(err)
      throw err
    } finally {
      attempt.end(failed)
    }
  }

  /** How long the first throttled key must still wait, in ms; 0 when every key may try now. */
  retryAfterMs(keys: readonly ThrottleKey[], nowMs: number): number {
    let wait = 0
    for (const { key, max } of keys) {
      const times = this.recent(key, nowMs)
      if (times.length < max) continue
      wait = Math.max(wait, times[times.length - max]! + this.limits.signInFailureWindowMs - nowMs)
    }
    return wait
  }

  recordFailure(keys: readonly ThrottleKey[], nowMs: number): void {
    for (const { key, max } of keys) {
      const times = this.recent(key, nowMs)
      times.push(nowMs)
      if (times.length > max) times.splice(0, times.length - max)
      // Re-inserted last: the map's order is the order of the latest failures.
      this.failures.delete(key)
      this.failures.set(key, times)
    }
    while (this.failures.size > this.limits.signInKeysTrackedMax) {
      this.failures.delete(this.failures.keys().next().value!)
    }
  }

  forget(key: ThrottleKey): void {
    this.failures.delete(key.key)
  }

  /** Keys currently remembered. */
  get size(): number {
    return this.failures.size
  }

  private recent(key: string, nowMs: number): number[] {
    const times = this.failures.get(key)
    if (times === undefined) return []
    const since = nowMs - this.limits.signInFailureWindowMs
    while (times.length > 0 && times[0]! <= since) times.shift()
    if (times.length === 0) this.failures.delete(key)
    return times
  }
}
