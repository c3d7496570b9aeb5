import { describe, expect, it } from 'vitest'
import { analyseDeliveries } from './deliveries.ts'
import { inHalfOf } from './fanout-world.ts'
import type { RecipientDeliveries } from './recipients.ts'

function received(recipientId: string, rows: Array<[meter: number, reading: number, receivedUs: number]>): RecipientDeliveries {
  return {
    recipientId,
    meterIndex: Uint32Array.from(rows.map((r) => r[0])),
    reading: Uint32Array.from(rows.map((r) => r[1])),
    receivedUs: Float64Array.from(rows.map((r) => r[2])),
    dupFlagged: 0,
    unparsed: 0,
    closedEarly: false,
  }
}

describe('the fan-out benchmark deliveries', () => {
  // Meter 0 sent readings 1..3 at 100, 200, 300 µs; meter 1 readings 1..2 at 150, 250 µs.
  const sent = [Float64Array.from([100, 200, 300]), Float64Array.from([150, 250])]

  it('matches each delivery to its publish, and counts leaks, duplicates, misses and the window', () => {
    const figures = analyseDeliveries(
      sent,
      [
        // Holds a consent for meter 0 only: gets all of it, once twice, and one datum of meter 1 (a leak).
        { deliveries: received('a', [[0, 1, 110], [0, 2, 230], [0, 2, 240], [0, 3, 390], [1, 2, 260]]), consented: Uint8Array.from([1, 0]) },
        // Every meter, misses meter 1 reading 1 and names a reading never sent.
        { deliveries: received('b', [[0, 1, 105], [0, 2, 205], [0, 3, 305], [1, 2, 255], [1, 9, 300]]), consented: null },
      ],
      { fromUs: 200, toUs: 300 },
    )
    expect(figures.perRecipient).toEqual([
      { recipientId: 'a', delivered: 4, expected: 3, leaked: 1 },
      { recipientId: 'b', delivered: 4, expected: 5, leaked: 0 },
    ])
    expect(figures).toMatchObject({ delivered: 8, expected: 8, leaked: 1, duplicates: 1, unmatched: 1 })
    // Received in [200, 300): a's 230, 260 and b's 205, 255.
    expect(figures.inWindow).toBe(4)
    // Sent in [200, 300): meter 0 reading 2 (200) and meter 1 reading 2 (250).
    expect([...figures.latenciesUs]).toEqual([5, 5, 10, 30])
  })

  it('gives each recipient a different half of the meters, each meter to as many recipients on average as half of them', () => {
    const meters = 1_000
    const recipients = 5
    const halves = Array.from({ length: recipients }, (_, k) => Array.from({ length: meters }, (_, i) => inHalfOf(k, i, meters, recipients)))
    for (const half of halves) expect(half.filter(Boolean)).toHaveLength(meters / 2)
    expect(new Set(halves.map((h) => h.map(Number).join(''))).size).toBe(recipients)
    const perMeter = Array.from({ length: meters }, (_, i) => halves.filter((h) => h[i]).length)
    expect(perMeter.reduce((a, b) => a + b, 0) / meters).toBe(recipients / 2)
    expect(Math.min(...perMeter)).toBeGreaterThan(0)
  })
})
