import { describe, expect, it } from 'vitest'
import { AuthThrottle, type AuthThrottleLimits } from '../../broker/auth-throttle.ts'

const LIMITS: AuthThrottleLimits = {
  authFailuresPerUsernameFree: 2,
  authFailuresPerAddressFree: 4,
  authFailureWindowMs: 60_000,
  authDelayMsMax: 1_000,
  authKeysTrackedMax: 10,
}

function throttle(limits: Partial<AuthThrottleLimits> = {}): { t: AuthThrottle; clock: { now: number } } {
  const clock = { now: 0 }
  return { t: new AuthThrottle({ ...LIMITS, ...limits }, () => clock.now), clock }
}

/** One connect answered: how long it waited. */
function attempt(t: AuthThrottle, address: string, user: string, ok = false): number {
  const delay = t.begin(address, user)
  if (ok) t.recordSuccess(address, user)
  else t.recordFailure(address, user)
  return delay
}

describe('MQTT authentication throttle', () => {
  it('delays one user name from one address past its free failures, doubling up to the maximum', () => {
    const { t, clock } = throttle()
    const delays: number[] = []
    for (let i = 0; i < 7; i++) {
      delays.push(attempt(t, '10.0.0.1', 'm1'))
      clock.now += delays.at(-1)!
    }
    expect(delays).toEqual([0, 0, 100, 200, 400, 800, 1_000])
  })

  it('answers connects of one user name sent at once one after another, each counted as a failure until answered', () => {
    const { t } = throttle()
    // Ten guesses at once: the first two free, then each waits for the one before it and its own delay.
    const delays = Array.from({ length: 10 }, () => t.begin('10.0.0.1', 'm1'))
    expect(delays).toEqual([0, 0, 100, 300, 700, 1_500, 2_500, 3_500, 4_500, 5_500])
    for (let i = 0; i < 10; i++) t.recordFailure('10.0.0.1', 'm1')
    // Another address's user name is apart; so is another user name of the address: one name counts
    // against its address with its free failures only (found by probing: one device retrying a dead secret
    // behind a NAT slowed every meter there to 5 s).
    expect(t.begin('10.0.0.2', 'm1')).toBe(0)
    expect(t.begin('10.0.0.1', 'm2')).toBe(0)
  })

  it('lets one user name failing for ever slow itself, not its neighbours, while many failing names slow the address', () => {
    const { t, clock } = throttle()
    for (let i = 0; i < 100; i++) {
      clock.now += attempt(t, '10.0.0.1', 'dead-meter')
    }
    expect(t.begin('10.0.0.1', 'dead-meter')).toBe(LIMITS.authDelayMsMax)
    expect(attempt(t, '10.0.0.1', 'neighbour', true)).toBe(0)
    // Two names at their free failures each: the address's four.
    for (const u of ['x', 'y']) for (let i = 0; i < 2; i++) attempt(t, '10.0.0.2', u)
    expect(t.begin('10.0.0.2', 'z')).toBe(100)
  })

  it('does not hold a fleet behind one address connecting at once', () => {
    const { t } = throttle()
    const delays = Array.from({ length: 50 }, (_, i) => t.begin('10.0.0.1', `meter-${i}`))
    expect(new Set(delays)).toEqual(new Set([0]))
    for (let i = 0; i < 50; i++) t.recordSuccess('10.0.0.1', `meter-${i}`)
    expect(t.size).toBe(0)
  })

  it('counts every user name of an address together past the address limit', () => {
    const { t } = throttle()
    for (const u of ['a', 'b', 'c', 'd']) attempt(t, '10.0.0.1', u)
    // Each user name failed once (free), the address four times (its limit): the next answer waits.
    expect(t.begin('10.0.0.1', 'e')).toBe(100)
    expect(t.begin('10.0.0.2', 'e')).toBe(0)
  })

  it('counts the addresses of one IPv6 /64 as one address', () => {
    const { t, clock } = throttle()
    // A fresh address of the same /64 for every guess: still one user name from one address.
    const delays: number[] = []
    for (let i = 1; i <= 4; i++) {
      delays.push(attempt(t, `2001:db8:1:2::${i}`, 'm1'))
      clock.now += delays.at(-1)!
    }
    expect(delays).toEqual([0, 0, 100, 200])
    expect(t.begin('2001:db8:1:3::1', 'm1')).toBe(0)
  })

  it('forgets a user name on its success, but not the address', () => {
    const { t, clock } = throttle()
    for (let i = 0; i < 2; i++) for (const u of ['m1', 'm3']) attempt(t, '10.0.0.1', u)
    attempt(t, '10.0.0.1', 'm1')
    clock.now = 10_000
    expect(attempt(t, '10.0.0.1', 'm2', true)).toBe(100)
    expect(attempt(t, '10.0.0.1', 'm1', true)).toBe(200)
    // m1's own failures are forgotten; the address's four remain.
    expect(t.begin('10.0.0.1', 'm1')).toBe(100)
  })

  it('takes back an attempt answered without a verdict', () => {
    const { t } = throttle()
    for (let i = 0; i < 5; i++) {
      expect(t.begin('10.0.0.1', 'm1')).toBe(0)
      t.recordNoVerdict('10.0.0.1', 'm1')
    }
  })

  it('forgets failures once the window has passed', () => {
    const { t, clock } = throttle()
    for (let i = 0; i < 5; i++) attempt(t, '10.0.0.1', 'm1')
    clock.now = LIMITS.authFailureWindowMs + 1
    expect(t.begin('10.0.0.1', 'm1')).toBe(0)
    t.recordSuccess('10.0.0.1', 'm1')
    expect(t.size).toBe(0)
  })

  it('keeps slowing a guesser who keeps failing: the window runs from the latest failure, not the first', () => {
    const { t, clock } = throttle()
    // Five free failures, then one a second for two windows: each answer is delayed, none is free again.
    for (let i = 0; i < 5; i++) attempt(t, '10.0.0.1', 'm1')
    for (let s = 1; s <= (2 * LIMITS.authFailureWindowMs) / 1_000; s++) {
      clock.now = s * 1_000
      expect(t.begin('10.0.0.1', 'm1'), `at ${s} s`).toBeGreaterThan(0)
      t.recordFailure('10.0.0.1', 'm1')
    }
    // A window without a failure, and it is forgotten.
    clock.now += LIMITS.authFailureWindowMs + 1
    expect(t.begin('10.0.0.1', 'm1')).toBe(0)
  })

  it('remembers at most its maximum of keys', () => {
    const { t } = throttle({ authKeysTrackedMax: 5 })
    for (let i = 0; i < 20; i++) attempt(t, `10.0.0.${i}`, 'm')
    expect(t.size).toBe(5)
  })
})
