import { Aedes, type PublishPacket } from 'aedes'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Egress } from '../../broker/egress.ts'
import { EVERY_TOPIC } from '../../broker/egress-interest.ts'
import { log } from '../../shared/logger.ts'
import { waitFor } from '../support/broker.ts'

/**
 * A day is found complete after every commit that could complete it: two commits of one meter close
 * together both find it, after both are stored, with the same values (a recipient saw such pairs
 * 1–120 ms apart, and each counted twice in the household's access log).
 */
describe('daily publication', () => {
  let aedes: Aedes
  let egress: Egress
  const seen: string[] = []
  /** Date.now() as each was received. */
  const seenAt: number[] = []

  beforeAll(async () => {
    aedes = await Aedes.createBroker()
    egress = new Egress(aedes, log.broker, EVERY_TOPIC)
    await new Promise<void>((resolve) =>
      aedes.subscribe(
        'daily/+',
        (packet: PublishPacket, cb: () => void) => {
          seen.push(packet.payload.toString())
          seenAt.push(Date.now())
          cb()
        },
        resolve,
      ),
    )
  })
  afterAll(async () => {
    await new Promise<void>((resolve) => aedes.close(() => resolve()))
  })

  it('publishes a day once for the same values, again when its values change, and each household’s part of a day', async () => {
    const day = (values: Record<string, number>, householdId = 'hh_a', d = '2026-10-01') => ({ meterId: 'm1', day: d, granularity: 'daily' as const, values, householdId })
    egress.publishDaily([day({ '1-0:1.8.0': 8123 })])
    egress.publishDaily([day({ '1-0:1.8.0': 8123 })])
    // Late data changed the day: published again.
    egress.publishDaily([day({ '1-0:1.8.0': 8200 })])
    // The other household of a moving day, and the next day.
    egress.publishDaily([day({ '1-0:1.8.0': 40 }, 'hh_b'), day({ '1-0:1.8.0': 7000 }, 'hh_a', '2026-10-02')])
    egress.publishDaily([day({ '1-0:1.8.0': 8200 }), day({ '1-0:1.8.0': 40 }, 'hh_b')])
    await waitFor(() => seen.length >= 4, 5_000, 'the daily datums')
    await new Promise((r) => setTimeout(r, 100))
    expect(seen.map((p) => JSON.parse(p) as { day: string; values: Record<string, number> }).map((p) => [p.day, p.values['1-0:1.8.0']])).toEqual([
      ['2026-10-01', 8123],
      ['2026-10-01', 8200],
      ['2026-10-01', 40],
      ['2026-10-02', 7000],
    ])
  })

  it('holds a day completed before it is over (its meter\'s clock fast) until its end, then publishes its latest values', async () => {
    const held = new Egress(aedes, log.broker, EVERY_TOPIC)
    const endsAt = Date.now() + 1_000
    held.holdDaysUntilOver((day) => (day === '2026-12-03' ? endsAt : endsAt - 86_400_000), Date.now)
    const before = seen.length
    const day = (d: string, wh: number) => ({ meterId: 'm9', day: d, granularity: 'daily' as const, values: { '1-0:1.8.0': wh }, householdId: 'hh_a' })
    held.publishDaily([day('2026-12-02', 50), day('2026-12-03', 100)])
    // Late data for the day before its end: what is published at the end is its latest values, once.
    held.publishDaily([day('2026-12-03', 120)])
    await waitFor(() => seen.length >= before + 2, 5_000, 'the held day')
    await new Promise((r) => setTimeout(r, 100))
    const got = seen.slice(before).map((p) => JSON.parse(p) as { day: string; values: Record<string, number> })
    expect(got.map((p) => [p.day, p.values['1-0:1.8.0']])).toEqual([
      ['2026-12-02', 50],
      ['2026-12-03', 120],
    ])
    expect(seenAt[before]!).toBeLessThan(endsAt)
    expect(seenAt[before + 1]!).toBeGreaterThanOrEqual(endsAt)
    held.close()
  })
})
