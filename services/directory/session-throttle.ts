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

export class SignInThrottle {
  /** Failure times (epoch ms) per key, oldest first, at most its max each. */
  private readonly failures = new Map<string, number[]>()

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
   * The start of a password check under the limits: refused (TooManyRequestsError, `refusal` its
   * message) while a key must wait; else counted as a failure before the check runs, in the same turn,
   * so that attempts sent at once meet the limit one after another rather than all pass it together.
   * Returns the way to take the failure back once the check has passed (or failed for another reason).
   */
  begin(keys: readonly ThrottleKey[], nowMs: number, refusal: string): () => void {
    const wait = this.retryAfterMs(keys, nowMs)
    if (wait > 0) throw new TooManyRequestsError(refusal, wait)
    this.recordFailure(keys, nowMs)
    return () => this.withdrawFailure(keys, nowMs)
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

  /** Takes back a failure recorded at `atMs` (an attempt counted before its outcome was known). */
  withdrawFailure(keys: readonly ThrottleKey[], atMs: number): void {
    for (const { key } of keys) {
      const times = this.failures.get(key)
      if (times === undefined) continue
      const i = times.lastIndexOf(atMs)
      if (i >= 0) times.splice(i, 1)
      if (times.length === 0) this.failures.delete(key)
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
