import type { Kysely } from 'kysely'
import { createMeter, createParty } from '../../../services/directory/directory-service.ts'
import type { Database } from '../../../shared/db/schema.ts'
import { seedHousehold, seedOccupancy } from '../../support/seed.ts'

/**
 * The benchmark's world: one operator, `meters` meters provisioned through the directory
 * service (real secrets: they sign in), the first `occupied` of them occupied by a household
 * since 2000, so that ingest attributes every reading as it would in production.
 * Households never sign in: they are seeded with placeholder credentials.
 */

export interface BenchMeter {
  id: string
  secret: string
}

export const OCCUPIED_SINCE = new Date('2000-01-01T00:00:00Z')

export function benchMeterId(i: number): string {
  return `bench-m${String(i).padStart(6, '0')}`
}

export async function provisionWorld(
  db: Kysely<Database>,
  options: { meters: number; occupied: number; concurrency: number },
): Promise<BenchMeter[]> {
  const operator = await createParty(db, { kind: 'utility', name: 'Bench grid operator' })
  const meters: BenchMeter[] = new Array(options.meters)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < options.meters) {
      const i = next++
      const meter = await createMeter(db, { operatorId: operator.id, commodity: 'electricity', intervalMinutes: 15, id: benchMeterId(i + 1) })
      meters[i] = meter
      if (i < options.occupied) {
        const householdId = await seedHousehold(db, `Bench household ${i + 1}`)
        await seedOccupancy(db, { meterId: meter.id, householdId, from: OCCUPIED_SINCE })
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, worker))
  return meters
}
