import type { PortalLimits } from '../../shared/config.ts'

/**
 * Failed sign-ins remembered per key (an email, an address) in a sliding window: once a
 * key has `signInFailuresMax` failures within `signInFailureWindowMs`, it must wait until
 * the oldest of them leaves the window. Held in memory by one API process (as the broker's
 * authentication throttle); at most `signInKeysTrackedMax` keys, the least recently failed
 * forgotten first. Pure apart from its own state: time comes in as an argument.
 */
export type SignInThrottleLimits = Pick<PortalLimits, 'signInFailuresMax' | 'signInFailureWindowMs' | 'signInKeysTrackedMax'>

export class SignInThrottle {
  /** Failure times (epoch ms) per key, oldest first, at most signInFailuresMax each. */
  private readonly failures = new Map<string, number[]>()

  constructor(private readonly limits: SignInThrottleLimits) {}

  /** How long the first throttled key must still wait, in ms; 0 when every key may try now. */
  retryAfterMs(keys: readonly string[], nowMs: number): number {
    let wait = 0
    for (const key of keys) {
      const times = this.recent(key, nowMs)
      if (times.length < this.limits.signInFailuresMax) continue
      wait = Math.max(wait, times[0]! + this.limits.signInFailureWindowMs - nowMs)
    }
    return wait
  }

  recordFailure(keys: readonly string[], nowMs: number): void {
    for (const key of keys) {
      const times = this.recent(key, nowMs)
      times.push(nowMs)
      if (times.length > this.limits.signInFailuresMax) times.splice(0, times.length - this.limits.signInFailuresMax)
      // Re-inserted last: the map's order is the order of the latest failures.
      this.failures.delete(key)
      this.failures.set(key, times)
    }
    while (this.failures.size > this.limits.signInKeysTrackedMax) {
      this.failures.delete(this.failures.keys().next().value!)
    }
  }

  forget(key: string): void {
    this.failures.delete(key)
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

export function emailKey(email: string): string {
  return `email:${email.trim().toLowerCase()}`
}

export function addressKey(address: string): string {
  return `address:${address}`
}
