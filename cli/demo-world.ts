import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { Kysely } from 'kysely'
import { addMonths, monthOf, startOfDayMs } from '../shared/calendar.ts'
import type { Database } from '../shared/db/schema.ts'
import { createHousehold, createMeter, createParty } from '../services/directory/directory-service.ts'
import { createOccupancy } from '../services/metering/occupancy-service.ts'
import { createOffer } from '../services/consent/offer-service.ts'
import { addYearsUtc, createLegalBasisConsent, grantConsent } from '../services/consent/consent-service.ts'
import type { MeterCredentials } from '../simulators/credentials.ts'

/**
 * The demo world `metershare up` creates on an empty database: a utility that operates the
 * meters (and, as supplier, receives monthly billing data under a legal basis), two third
 * parties buying data, a charity taking a share, twenty households with electricity meters
 * (some with photovoltaics), three with a gas meter too, offers and consents. The meters'
 * and the recipients' credentials go to a file in the data directory (mode 0600), which the
 * simulated meters and the sample recipients read, as devices and clients keep their own
 * secrets; the database keeps only their hashes.
 */

export const DEMO_HOUSEHOLDS = 20
export const DEMO_GAS_METERS = 3
export const DEMO_PASSWORD = 'metershare-demo'
/** Simulated history: the data starts this many months before the current one. */
export const DEMO_HISTORY_MONTHS = 2
export const DEMO_FILE = 'demo-world.json'

export interface DemoWorld {
  /** First simulated instant (epoch ms): the first day of the month DEMO_HISTORY_MONTHS ago. */
  fromMs: number
  utilityId: string
  thirdPartyIds: string[]
  households: Array<{ id: string; name: string; email: string }>
  meters: MeterCredentials[]
  /** Recipients the demo runs a sample client for: live over MQTT, or pulling over HTTP. */
  recipients: DemoRecipient[]
}

export interface DemoRecipient {
  partyId: string
  name: string
  apiKey: string
  live?: string[]
  pull?: 'load_curve' | 'daily' | 'monthly'
}

const NAMES = [
  'Martin', 'Bernard', 'Thomas', 'Petit', 'Robert', 'Richard', 'Durand', 'Dubois', 'Moreau', 'Laurent',
  'Simon', 'Michel', 'Lefebvre', 'Leroy', 'Roux', 'David', 'Bertrand', 'Morel', 'Fournier', 'Girard',
]

export function demoFilePath(dataDir: string): string {
  return path.join(dataDir, DEMO_FILE)
}

export async function readDemoWorld(dataDir: string): Promise<DemoWorld | null> {
  try {
    return JSON.parse(await readFile(demoFilePath(dataDir), 'utf8')) as DemoWorld
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

export async function createDemoWorld(db: Kysely<Database>, options: { dataDir: string; timezone: string; now: Date }): Promise<DemoWorld> {
  // The credentials file is the only copy of the meters' secrets: its folder must exist before the
  // world does (on PostgreSQL nothing else creates it).
  await mkdir(options.dataDir, { recursive: true })
  const { timezone, now } = options
  const fromMonth = addMonths(monthOf(now, timezone), -DEMO_HISTORY_MONTHS)
  const fromMs = startOfDayMs(fromMonth + '-01', timezone)
  const from = new Date(fromMs)
  const ctx = { timezone }

  const utility = await createParty(db, { kind: 'utility', name: 'Réseau Démo (grid operator and supplier)' })
  const advice = await createParty(db, { kind: 'third_party', name: 'Watt Advice (energy-advice app)' })
  const lab = await createParty(db, { kind: 'third_party', name: 'Lab Énergie (research)' })
  const charity = await createParty(db, { kind: 'third_party', name: 'Solidarité Énergie (charity)' })

  const loadCurveOffer = await createOffer(db, {
    recipientId: advice.id,
    purpose: 'Personal energy advice from your load curve',
    granularity: 'load_curve',
    priceMicrosPerDatum: 2_500n,
    split: { householdBps: 6_000, operatorBps: 1_500, platformBps: 1_500, thirdParties: [{ partyId: charity.id, bps: 1_000 }] },
  })
  const dailyOffer = await createOffer(db, {
    recipientId: lab.id,
    purpose: 'Research on household consumption (daily totals)',
    granularity: 'daily',
    priceMicrosPerDatum: 40_000n,
    split: { householdBps: 7_000, operatorBps: 1_000, platformBps: 2_000, thirdParties: [] },
  })

  const households: DemoWorld['households'] = []
  const meters: MeterCredentials[] = []
  const validUntil = addYearsUtc(now, 1)
  for (let i = 0; i < DEMO_HOUSEHOLDS; i++) {
    const name = `Famille ${NAMES[i % NAMES.length]}`
    const email = `demo${String(i + 1).padStart(2, '0')}@metershare.test`
    const household = await createHousehold(db, { name, email, password: DEMO_PASSWORD })
    households.push({ id: household.id, name, email })

    const persons = ((i % 5) + 1) as 1 | 2 | 3 | 4 | 5
    const pv = i % 4 === 1
    const electricity = await createMeter(db, { operatorId: utility.id, commodity: 'electricity', intervalMinutes: i % 3 === 0 ? 15 : 30 })
    await createOccupancy(db, { meterId: electricity.id, householdId: household.id, from, until: null }, ctx)
    meters.push({
      meterId: electricity.id,
      secret: electricity.secret,
      commodity: 'electricity',
      intervalMinutes: i % 3 === 0 ? 15 : 30,
      persons,
      pv,
      power: true,
      seed: 1000 + i,
      householdId: household.id,
      email,
      operatorId: utility.id,
    })
    if (i < DEMO_GAS_METERS) {
      const gas = await createMeter(db, { operatorId: utility.id, commodity: 'gas', intervalMinutes: 60 })
      await createOccupancy(db, { meterId: gas.id, householdId: household.id, from, until: null }, ctx)
      meters.push({ meterId: gas.id, secret: gas.secret, commodity: 'gas', intervalMinutes: 60, seed: 2000 + i, householdId: household.id, email, operatorId: utility.id })
    }

    // Every household's supplier receives monthly billing data, free, under a legal basis.
    await createLegalBasisConsent(db, { recipientId: utility.id, householdId: household.id, validUntil, dataFrom: from }, now)
    if (i % 2 === 0) await grantConsent(db, household.id, { offerId: loadCurveOffer.id, validUntil, dataFrom: from }, now)
    if (i % 3 !== 2) await grantConsent(db, household.id, { offerId: dailyOffer.id, validUntil, dataFrom: from }, now)
  }

  const recipients: DemoRecipient[] = [
    { partyId: advice.id, name: 'Watt Advice', apiKey: advice.apiKey, live: ['readings/+'] },
    // Pulls only: following daily/+ too would deliver each day twice, counted twice in the household's access log.
    { partyId: lab.id, name: 'Lab Énergie', apiKey: lab.apiKey, pull: 'daily' },
    { partyId: utility.id, name: 'Réseau Démo', apiKey: utility.apiKey, pull: 'monthly' },
  ]
  const world: DemoWorld = { fromMs, utilityId: utility.id, thirdPartyIds: [advice.id, lab.id, charity.id], households, meters, recipients }
  const file = demoFilePath(options.dataDir)
  await writeFile(file, JSON.stringify(world, null, 2) + '\n', { mode: 0o600 })
  await chmod(file, 0o600)
  return world
}
