import type { Kysely } from 'kysely'
import { createParty } from '../../../services/directory/directory-service.ts'
import { grantConsent } from '../../../services/consent/consent-service.ts'
import { createOffer } from '../../../services/consent/offer-service.ts'
import type { Database } from '../../../shared/db/schema.ts'
import { OCCUPIED_SINCE, provisionWorld, type BenchMeter } from '../ingest/bench-world.ts'

/**
 * The fan-out benchmark's world, provisioned through the services: the ingest benchmark's
 * meters (each occupied by a household of its own since 2000), and recipient parties, each
 * with a load-curve offer accepted by half of the households, a different half for each:
 * recipient k holds the consents of the meters in a window of half the meters starting at
 * k × (meters ÷ recipients), wrapping around. Consents release the whole history (data from
 * the occupancy's start) and are valid for a year from provisioning.
 */

export interface FanoutRecipient {
  id: string
  apiKey: string
  /** 1 where this recipient holds the consent of the meter's household, by meter index. */
  consented: Uint8Array
}

export interface FanoutWorld {
  meters: BenchMeter[]
  recipients: FanoutRecipient[]
  consents: number
}

const CONSENT_VALIDITY_MS = 365 * 86_400_000

/** Whether recipient `k` of `recipients` holds the consent of meter `i` of `meters`. */
export function inHalfOf(k: number, i: number, meters: number, recipients: number): boolean {
  const start = Math.floor((k * meters) / recipients)
  return (((i - start) % meters) + meters) % meters < Math.floor(meters / 2)
}

export async function provisionFanoutWorld(
  db: Kysely<Database>,
  options: { meters: number; recipients: number; concurrency: number; now: Date },
): Promise<FanoutWorld> {
  const meters = await provisionWorld(db, { meters: options.meters, occupied: options.meters, concurrency: options.concurrency })
  const occupants = new Map(
    (await db.selectFrom('occupancies').select(['meter_id', 'household_id']).execute()).map((o) => [o.meter_id, o.household_id]),
  )
  const recipients: FanoutRecipient[] = []
  const grants: Array<{ householdId: string; offerId: string }> = []
  for (let k = 0; k < options.recipients; k++) {
    const party = await createParty(db, { kind: 'third_party', name: `Bench recipient ${k + 1}` })
    const offer = await createOffer(db, {
      recipientId: party.id,
      purpose: `bench fan-out ${k + 1}`,
      granularity: 'load_curve',
      priceMicrosPerDatum: 10n,
      split: { householdBps: 5_000, operatorBps: 3_000, platformBps: 2_000, thirdParties: [] },
    })
    const consented = new Uint8Array(options.meters)
    meters.forEach((m, i) => {
      if (!inHalfOf(k, i, options.meters, options.recipients)) return
      consented[i] = 1
      grants.push({ householdId: occupants.get(m.id)!, offerId: offer.id })
    })
    recipients.push({ id: party.id, apiKey: party.apiKey, consented })
  }
  const validUntil = new Date(options.now.getTime() + CONSENT_VALIDITY_MS)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < grants.length) {
      const g = grants[next++]!
      await grantConsent(db, g.householdId, { offerId: g.offerId, validUntil, dataFrom: OCCUPIED_SINCE }, options.now)
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, worker))
  return { meters, recipients, consents: grants.length }
}
