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

describe('MQTT authentication throttle', () => {
  it('delays one user name from one address past its free failures, doubling up to the maximum', () => {
    const { t } = throttle()
    const delays: number[] = []
    for (let i = 0; i < 7; i++) {
      delays.push(t.delayMs('10.0.0.1', 'm1'))
      t.recordFailure('10.0.0.1', 'm1')
    }
    expect(delays).toEqual([0, 0, 100, 200, 400, 800, 1_000])
  })

  it('counts every user name of an address together past the address limit', () => {
    const { t } = throttle()
    for (const u of ['a', 'b', 'c', 'd']) t.recordFailure('10.0.0.1', u)
    // Each user name failed once (free), the address four times (its limit): the next answer waits.
    expect(t.delayMs('10.0.0.1', 'e')).toBe(100)
    expect(t.delayMs('10.0.0.2', 'e')).toBe(0)
  })

  it('forgets a user name on its success, but not the address', () => {
    const { t } = throttle()
    for (let i = 0; i < 4; i++) t.recordFailure('10.0.0.1', 'm1')
    expect(t.delayMs('10.0.0.1', 'm1')).toBe(400)
    t.recordSuccess('10.0.0.1', 'm2')
    expect(t.delayMs('10.0.0.1', 'm1')).toBe(400)
    expect(t.delayMs('10.0.0.1', 'm2')).toBe(100)
    t.recordSuccess('10.0.0.1', 'm1')
    expect(t.delayMs('10.0.0.1', 'm1')).toBe(100)
  })

  it('forgets failures once the window has passed', () => {
    const { t, clock } = throttle()
    for (let i = 0; i < 5; i++) t.recordFailure('10.0.0.1', 'm1')
    expect(t.delayMs('10.0.0.1', 'm1')).toBeGreaterThan(0)
    clock.now = LIMITS.authFailureWindowMs + 1
    expect(t.delayMs('10.0.0.1', 'm1')).toBe(0)
    expect(t.size).toBe(0)
  })

  it('remembers at most its maximum of keys', () => {
    const { t } = throttle({ authKeysTrackedMax: 5 })
    for (let i = 0; i < 20; i++) t.recordFailure(`10.0.0.${i}`, 'm')
    expect(t.size).toBe(5)
  })
})
