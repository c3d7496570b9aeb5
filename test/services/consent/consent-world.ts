import type { Kysely } from 'kysely'
import type { Database } from '../../../shared/db/schema.ts'
import { newId } from '../../../shared/ids.ts'
import { createOffer, type OfferInput } from '../../../services/consent/offer-service.ts'
import { seedHousehold, seedMeter, seedOccupancy, seedOperator } from '../../support/seed.ts'

/** A small world for consent tests: an operator, two recipients, two households and three meters. */
export interface ConsentWorld {
  operatorId: string
  supplierId: string
  appId: string
  labId: string
  h1: string
  h2: string
  /** h1 occupies m1 and m2 since 2026-01-01; h2 occupies m3 since 2026-01-01. */
  m1: string
  m2: string
  m3: string
}

export const WORLD_START = '2026-01-01T00:00:00Z'

export async function seedParty(db: Kysely<Database>, kind: 'utility' | 'third_party', name: string): Promise<string> {
  const id = newId('party')
  await db.insertInto('parties').values({ id, kind, name, api_key_hash: 'seeded-without-credentials' }).execute()
  return id
}

export async function seedConsentWorld(db: Kysely<Database>): Promise<ConsentWorld> {
  const operatorId = await seedOperator(db, 'Grid operator')
  const supplierId = await seedParty(db, 'utility', 'Energy supplier')
  const appId = await seedParty(db, 'third_party', 'Energy advice app')
  const labId = await seedParty(db, 'third_party', 'Research lab')
  const h1 = await seedHousehold(db, 'First household')
  const h2 = await seedHousehold(db, 'Second household')
  const m1 = await seedMeter(db, { operatorId, id: 'm1-' + newId('meter') })
  const m2 = await seedMeter(db, { operatorId, id: 'm2-' + newId('meter') })
  const m3 = await seedMeter(db, { operatorId, id: 'm3-' + newId('meter') })
  await seedOccupancy(db, { meterId: m1, householdId: h1, from: WORLD_START })
  await seedOccupancy(db, { meterId: m2, householdId: h1, from: WORLD_START })
  await seedOccupancy(db, { meterId: m3, householdId: h2, from: WORLD_START })
  return { operatorId, supplierId, appId, labId, h1, h2, m1, m2, m3 }
}

export function offerInput(recipientId: string, overrides: Partial<OfferInput> = {}): OfferInput {
  return {
    recipientId,
    purpose: 'energy advice',
    granularity: 'load_curve',
    priceMicrosPerDatum: 100n,
    split: { householdBps: 6_000, operatorBps: 2_000, platformBps: 2_000, thirdParties: [] },
    ...overrides,
  }
}

export async function seedOffer(db: Kysely<Database>, recipientId: string, overrides: Partial<OfferInput> = {}): Promise<string> {
  return (await createOffer(db, offerInput(recipientId, overrides))).id
}
