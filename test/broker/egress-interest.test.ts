import { describe, expect, it } from 'vitest'
import { LocalEgressInterest } from '../../broker/egress-interest.ts'

const client = (id: string, clean = true) => ({ id, clean })

describe('which egress topics have a subscriber on this broker', () => {
  it('counts wildcard and per-meter filters of each channel apart, and ignores other topics', () => {
    const interest = new LocalEgressInterest()
    expect(interest.wants('readings', 'm1')).toBe(false)
    const a = client('a')
    interest.subscribed(a, 'readings/m1')
    interest.subscribed(a, 'meters/m1/readings')
    expect([interest.wants('readings', 'm1'), interest.wants('readings', 'm2'), interest.wants('daily', 'm1')]).toEqual([true, false, false])
    interest.subscribed(client('b'), 'daily/+')
    expect([interest.wants('daily', 'm1'), interest.wants('daily', 'm2'), interest.wants('readings', 'm2')]).toEqual([true, true, false])
  })

  it('knows which meters listen to their status topic, so that what nobody hears is not published', () => {
    const interest = new LocalEgressInterest()
    const meter = client('m1')
    expect(interest.wants('status', 'm1')).toBe(false)
    interest.subscribed(meter, 'meters/m1/status')
    interest.subscribed(client('x'), 'meters/+/status')
    expect([interest.wants('status', 'm1'), interest.wants('status', 'm2'), interest.wants('readings', 'm1')]).toEqual([true, false, false])
    interest.unsubscribed(meter, ['meters/m1/status'])
    expect(interest.wants('status', 'm1')).toBe(false)
  })

  it('keeps a topic wanted while any session holds it; the same filter twice counts once', () => {
    const interest = new LocalEgressInterest()
    const a = client('a')
    const b = client('b')
    interest.subscribed(a, 'readings/+')
    interest.subscribed(a, 'readings/+')
    interest.subscribed(b, 'readings/+')
    interest.unsubscribed(a, ['readings/+'])
    expect(interest.wants('readings', 'm1')).toBe(true)
    interest.unsubscribed(b, ['readings/+'])
    expect(interest.wants('readings', 'm1')).toBe(false)
  })

  it('keeps a persistent session’s filters while it is away, and drops them when a clean session takes its id', () => {
    const interest = new LocalEgressInterest()
    const first = client('r', false)
    interest.connected(first)
    interest.subscribed(first, 'readings/+')
    // Away: aedes reports no unsubscription for a persistent session; it comes back on another connection.
    const again = client('r', false)
    interest.connected(again)
    expect(interest.wants('readings', 'm1')).toBe(true)
    interest.unsubscribed(first, ['readings/+']) // the old connection has no say any more
    expect(interest.wants('readings', 'm1')).toBe(true)
    interest.unsubscribed(again, ['readings/+'])
    expect(interest.wants('readings', 'm1')).toBe(false)

    interest.subscribed(again, 'daily/m1')
    interest.connected(client('r', true))
    expect(interest.wants('daily', 'm1')).toBe(false)
  })

  it('lets a clean session that took an id over keep its filters when the old connection reports its end late', () => {
    const interest = new LocalEgressInterest()
    const old = client('r')
    interest.connected(old)
    interest.subscribed(old, 'readings/m1')
    const taker = client('r')
    interest.connected(taker)
    interest.subscribed(taker, 'readings/m1')
    interest.unsubscribed(old, ['readings/m1'])
    expect(interest.wants('readings', 'm1')).toBe(true)
    interest.unsubscribed(taker, ['readings/m1'])
    expect(interest.wants('readings', 'm1')).toBe(false)
  })
})
