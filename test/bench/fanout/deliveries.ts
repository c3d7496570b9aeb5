import type { RecipientDeliveries } from './recipients.ts'

/**
 * What the recipients received, set against what the meters sent: each delivery is matched
 * to its publish by (meter, reading number), giving the publish-to-delivery latency, and
 * checked against the consents of its recipient (a delivery without one is a leak).
 */

export interface RecipientFigures {
  recipientId: string
  /** Distinct datums received. */
  delivered: number
  /** Datums it should receive: every reading sent by a meter it holds a consent for. */
  expected: number
  /** Distinct datums received of meters it holds no consent for. */
  leaked: number
}

export interface DeliveryFigures {
  delivered: number
  expected: number
  leaked: number
  /** The same datum received again by the same recipient. */
  duplicates: number
  /** Deliveries naming a reading that was never sent. */
  unmatched: number
  /** Deliveries (distinct) received inside the measured window. */
  inWindow: number
  /** Publish-to-delivery latency of the datums sent inside the window, µs, ascending. */
  latenciesUs: Uint32Array
  perRecipient: RecipientFigures[]
}

export interface RecipientInput {
  deliveries: RecipientDeliveries
  /** 1 where the recipient holds a consent for the meter, by meter index; null: every meter. */
  consented: Uint8Array | null
}

/**
 * `sentUs[m][r - 1]`: when reading r of meter m was written (µs of the monotonic clock);
 * `window`: the measured window on the same clock.
 */
export function analyseDeliveries(sentUs: readonly Float64Array[], recipients: readonly RecipientInput[], window: { fromUs: number; toUs: number }): DeliveryFigures {
  const offsets = new Uint32Array(sentUs.length + 1)
  for (let m = 0; m < sentUs.length; m++) offsets[m + 1] = offsets[m]! + sentUs[m]!.length
  const total = offsets[sentUs.length]!
  let latencies = new Uint32Array(1 << 12)
  let latencyCount = 0
  const out: DeliveryFigures = { delivered: 0, expected: 0, leaked: 0, duplicates: 0, unmatched: 0, inWindow: 0, latenciesUs: new Uint32Array(0), perRecipient: [] }
  for (const { deliveries: d, consented } of recipients) {
    const seen = new Uint8Array(total)
    const figures: RecipientFigures = { recipientId: d.recipientId, delivered: 0, expected: 0, leaked: 0 }
    for (let m = 0; m < sentUs.length; m++) if (consented === null || consented[m] === 1) figures.expected += sentUs[m]!.length
    for (let i = 0; i < d.meterIndex.length; i++) {
      const m = d.meterIndex[i]!
      const r = d.reading[i]!
      const sent = m < sentUs.length ? sentUs[m]! : undefined
      if (sent === undefined || r < 1 || r > sent.length) {
        out.unmatched++
        continue
      }
      const slot = offsets[m]! + r - 1
      if (seen[slot] === 1) {
        out.duplicates++
        continue
      }
      seen[slot] = 1
      figures.delivered++
      if (consented !== null && consented[m] !== 1) figures.leaked++
      const receivedUs = d.receivedUs[i]!
      if (receivedUs >= window.fromUs && receivedUs < window.toUs) out.inWindow++
      const sentAt = sent[r - 1]!
      if (sentAt < window.fromUs || sentAt >= window.toUs) continue
      if (latencyCount === latencies.length) {
        const grown = new Uint32Array(latencies.length * 2)
        grown.set(latencies)
        latencies = grown
      }
      latencies[latencyCount++] = Math.max(0, Math.round(receivedUs - sentAt))
    }
    out.delivered += figures.delivered
    out.expected += figures.expected
    out.leaked += figures.leaked
    out.perRecipient.push(figures)
  }
  out.latenciesUs = latencies.slice(0, latencyCount).sort()
  return out
}
