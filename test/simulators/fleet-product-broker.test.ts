import { expect, it } from 'vitest'
import type { MeterCredentials } from '../../simulators/credentials.ts'
import type { FaultFlag } from '../../simulators/faults.ts'
import { startFleet } from '../../simulators/fleet.ts'
import { connectMeter, endClient, startTestBroker } from '../support/broker.ts'
import { describeDatabases } from '../support/database.ts'
import { createTestHousehold, createTestMeter, createUtility, insertOccupancy, quarantineOf, readingsOf } from '../support/world.ts'
import { ManualClock, waitFor } from './support/test-broker.ts'
import { MeterModel, resolveMeter } from '../../simulators/meter-model.ts'
import { ModelCalendar } from '../../simulators/model-calendar.ts'
import { createParty } from '../../services/directory/directory-service.ts'
import { createOffer } from '../../services/consent/offer-service.ts'
import { grantConsent } from '../../services/consent/consent-service.ts'
import { listReleasedReadings } from '../../services/consent/released-readings-service.ts'

const FROM_MS = Date.parse('2026-09-30T22:00:00Z')
const HOUR = 3_600_000

describeDatabases('a simulated fleet against the product’s broker: every genuine reading stored, every fault quarantined with the contract’s reason', (t) => {
  async function world(commodity: 'electricity' | 'gas', intervalMinutes: 15 | 60): Promise<MeterCredentials> {
    const utility = await createUtility(t.db)
    const m = await createTestMeter(t.db, utility.id, { commodity, intervalMinutes })
    await insertOccupancy(t.db, m.id, (await createTestHousehold(t.db)).id, new Date(FROM_MS))
    return { meterId: m.id, secret: m.secret, commodity, intervalMinutes, pv: commodity === 'electricity', power: commodity === 'electricity' }
  }

  it('stores every reading of a day, nothing quarantined', async () => {
    const meters = [await world('electricity', 15), await world('gas', 60)]
    const clock = new ManualClock(FROM_MS + 30 * HOUR)
    const tb = await startTestBroker(t.handle, { deps: { clock: () => clock.now() } })
    const fleet = startFleet({ mqttUrl: tb.url, meters, from: '2026-10-01', days: 1, speed: 'max', clock, tickMs: 10 })
    try {
      const final = await fleet.done
      expect(final.acknowledged).toBe(96 + 24)
      for (const m of meters) {
        expect(await readingsOf(t.db, m.meterId)).toHaveLength(m.intervalMinutes === 15 ? 96 : 24)
        expect(await quarantineOf(t.db, m.meterId)).toHaveLength(0)
      }
    } finally {
      await fleet.stop()
      await tb.close()
    }
  })

  it('with the opening reading at the move-in, releases the household’s first day, 00:00 to 24:00, to a recipient of daily data', async () => {
    const utility = await createUtility(t.db)
    const meterRow = await createTestMeter(t.db, utility.id, { commodity: 'electricity', intervalMinutes: 30 })
    const household = await createTestHousehold(t.db)
    await insertOccupancy(t.db, meterRow.id, household.id, new Date(FROM_MS))
    const lab = await createParty(t.db, { kind: 'third_party', name: 'Lab' })
    const offer = await createOffer(t.db, {
      recipientId: lab.id,
      purpose: 'research',
      granularity: 'daily',
      priceMicrosPerDatum: 40_000n,
      split: { householdBps: 7_000, operatorBps: 1_000, platformBps: 2_000, thirdParties: [] },
    })
    const clock = new ManualClock(FROM_MS + 30 * HOUR)
    await grantConsent(t.db, household.id, { offerId: offer.id, validUntil: new Date(FROM_MS + 365 * 24 * HOUR), dataFrom: new Date(FROM_MS) }, new Date(clock.now()))
    const m: MeterCredentials = { meterId: meterRow.id, secret: meterRow.secret, commodity: 'electricity', intervalMinutes: 30, persons: 2 }
    const tb = await startTestBroker(t.handle, { deps: { clock: () => clock.now() } })
    const fleet = startFleet({ mqttUrl: tb.url, meters: [m], from: '2026-10-01', days: 1, speed: 'max', clock, tickMs: 10, openingReading: true })
    try {
      await fleet.done
      expect(await readingsOf(t.db, m.meterId)).toHaveLength(1 + 48)
      const page = await listReleasedReadings(
        t.db,
        lab.id,
        { from: new Date(FROM_MS), to: new Date(FROM_MS + 2 * 24 * HOUR), granularity: 'daily', limit: 10 },
        { timezone: 'Europe/Paris', now: new Date(clock.now()) },
      )
      const model = new MeterModel(resolveMeter(m, 1), new ModelCalendar('Europe/Paris'))
      const dayWh = model.registersAt(FROM_MS + 24 * HOUR)['1-0:1.8.0']! - model.registersAt(FROM_MS)['1-0:1.8.0']!
      expect(page.items).toEqual([{ meterId: m.meterId, day: '2026-10-01', granularity: 'daily', values: { '1-0:1.8.0': dayWh } }])
    } finally {
      await fleet.stop()
      await tb.close()
    }
  })

  it('tries again after CONNACK 3 (the broker cannot take it now), as a real meter does, and delivers everything', async () => {
    const meters = [await world('electricity', 15)]
    const blocker = await world('gas', 60)
    const clock = new ManualClock(FROM_MS + 30 * HOUR)
    const tb = await startTestBroker(t.handle, { deps: { clock: () => clock.now() }, overrides: { mqtt: { connectionsMax: 1 } } })
    // The only connection the broker takes is held by another meter: the fleet's is answered CONNACK 3.
    const held = await connectMeter(tb.url, { id: blocker.meterId, secret: blocker.secret })
    const refusals: number[] = []
    const fleet = startFleet({
      mqttUrl: tb.url,
      meters,
      from: '2026-10-01',
      days: 1,
      speed: 'max',
      clock,
      tickMs: 10,
      reconnectPeriodMs: 100,
      onMeterError: (_id, err) => refusals.push((err as { code?: number }).code ?? -1),
    })
    try {
      await waitFor(() => refusals.length >= 2, 10_000, 'two refusals')
      expect(new Set(refusals)).toEqual(new Set([3]))
      await endClient(held)
      const final = await fleet.done
      expect(final.acknowledged).toBe(96)
      expect(await readingsOf(t.db, meters[0]!.meterId)).toHaveLength(96)
    } finally {
      await fleet.stop()
      await tb.close()
    }
  })

  const expectations: [FaultFlag, string | null][] = [
    ['duplicate', null],
    ['malformed-json', 'malformed_json'],
    ['invalid-schema', 'invalid_schema'],
    ['unknown-obis', 'unknown_obis'],
    ['skew', 'future_timestamp'],
    ['conflict', 'conflict'],
    ['regression', 'index_regression'],
    ['too-large', 'too_large'],
    ['out-of-order', null],
  ]
  for (const [flag, reason] of expectations) {
    it(`${flag}: stores the 8 genuine readings and quarantines ${reason ?? 'nothing'}`, async () => {
      const m = await world('electricity', 15)
      const clock = new ManualClock(FROM_MS + 2 * HOUR)
      const tb = await startTestBroker(t.handle, { deps: { clock: () => clock.now() } })
      const fleet = startFleet({ mqttUrl: tb.url, meters: [m], from: FROM_MS, speed: 'max', clock, tickMs: 10, faults: { [flag]: 1 } })
      try {
        await waitFor(() => {
          const s = fleet.stats()
          return s.acknowledged === 8 && s.inflight === 0 && s.messagesAcknowledged === s.messagesPublished
        }, 30_000, 'acknowledged')
        expect(await readingsOf(t.db, m.meterId)).toHaveLength(8)
        const q = await quarantineOf(t.db, m.meterId)
        expect(q.map((r) => r.reason)).toEqual(reason === null ? [] : Array(8).fill(reason))
      } finally {
        await fleet.stop()
        await tb.close()
      }
    })
  }
})
