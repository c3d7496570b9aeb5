import { expect, it } from 'vitest'
import { createOccupancy, moveOut } from '../../../services/metering/occupancy-service.ts'
import { settleMonth } from '../../../services/settlement/settlement-service.ts'
import { householdStatement, recipientInvoice } from '../../../services/settlement/statement-service.ts'
import { describeDatabases } from '../../support/database.ts'
import { TZ, consent, ctxAt, household, hourly, ingest, meter, occupy, offer, paris, party, unbalancedJournals } from './settlement-fixtures.ts'

/**
 * A move-out registered after the fact ends the household's consents for the meter when it is
 * registered: what they released meanwhile, of data the household owned, stays charged. Only the
 * data that changes owner is credited back.
 */

const PRICE = 1_000n

describeDatabases('late move-out', (t) => {
  /** A utility operating a meter, a recipient, and a household living at the meter since September. */
  async function world() {
    const operator = await party(t.db, 'utility', 'Grid')
    const recipient = await party(t.db, 'third_party', 'Advice App')
    const h = await household(t.db, 'Alice')
    const m = await meter(t.db, operator)
    return { recipient, h, m, occupancy: await occupy(t.db, m, h, paris('2026-09-01')) }
  }

  it('keeps charging the data a consent granted before the registration released, and credits back only what changed owner', async () => {
    const { recipient, h, m, occupancy } = await world()
    const offerId = await offer(t.db, { recipientId: recipient, granularity: 'load_curve', priceMicrosPerDatum: PRICE, householdBps: 5_000, operatorBps: 5_000, platformBps: 0 })
    // October's datums: 01:00 on the 1st to 23:00 on the 31st (the reading at 00:00 on the 1st closes September).
    await ingest(t.db, t.dialect, m, 'electricity', hourly(paris('2026-10-01'), paris('2026-11-01')))
    // Granted on 2 November over October's history, while the records said the household still lived there.
    await consent(t.db, { householdId: h, recipientId: recipient, offerId, granularity: 'load_curve', meterIds: [m], validFrom: paris('2026-11-02'), dataFrom: paris('2026-10-01') })
    await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-03')))
    expect((await recipientInvoice(t.db, recipient, '2026-10')).lines.map((l) => l.data)).toEqual([744n])

    // On 10 November the operator learns that the household left on 10 October.
    await moveOut(t.db, occupancy, paris('2026-10-10'), { timezone: TZ }, paris('2026-11-10'))
    await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-11')))
    // 1–9 October (215 readings, to 23:00 on the 9th) were the household's and were released: still charged. The rest is nobody's.
    const november = await recipientInvoice(t.db, recipient, '2026-11')
    expect(november.adjustmentsMicros).toBe(-(744n - 215n) * PRICE)
    // Consent by consent, as the recipient reconciles it: October's line, less 529 datums.
    expect(november.adjustments).toEqual([
      { forMonth: '2026-10', consentId: expect.stringMatching(/^cns_/), offerId, granularity: 'load_curve', data: -529n, grossMicros: -529n * PRICE },
    ])
    const statement = await householdStatement(t.db, h, '2026-11')
    expect(statement.adjustments).toEqual([
      { forMonth: '2026-10', recipientId: recipient, offerId, granularity: 'load_curve', data: -529n, grossMicros: -529n * PRICE, shareMicros: statement.adjustmentsMicros },
    ])
    expect(statement.adjustmentsMicros).toBe((-529n * PRICE) / 2n)
    // November is open: its statement shows the adjustments booked in it so far, and no lines yet.
    expect(statement).toMatchObject({ closed: false, lines: [] })
    expect((await householdStatement(t.db, h, '2026-10')).closed).toBe(true)
    expect(await unbalancedJournals(t.db)).toEqual([])

    // The move-out was a mistake: the household stayed. Registered so, October is as it was, and November's
    // adjustments cancel out, line by line.
    await createOccupancy(t.db, { meterId: m, householdId: h, from: paris('2026-10-10'), until: null }, { timezone: TZ }, paris('2026-11-12'))
    await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-12', 1)))
    const undone = await householdStatement(t.db, h, '2026-11')
    expect(undone).toMatchObject({ adjustmentsMicros: 0n, adjustments: [], totalMicros: 0n })
    expect(await recipientInvoice(t.db, recipient, '2026-11')).toMatchObject({ adjustmentsMicros: 0n, adjustments: [], totalMicros: 0n })
  })

  it('takes a month as YYYY-MM only', async () => {
    await expect(householdStatement(t.db, 'hh_x', '2026-13')).rejects.toThrow(/^month: expected YYYY-MM$/)
    await expect(recipientInvoice(t.db, 'pty_x', '2026-1')).rejects.toMatchObject({ field: 'month' })
  })

  it('charges a daily or monthly datum only if it was complete before the registration ended the consent (the recipient never got the others)', async () => {
    const { recipient, h, m, occupancy } = await world()
    const consentOf = async (granularity: 'daily' | 'monthly') => {
      const offerId = await offer(t.db, { recipientId: recipient, granularity, priceMicrosPerDatum: PRICE, householdBps: 5_000, operatorBps: 5_000, platformBps: 0 })
      await consent(t.db, { householdId: h, recipientId: recipient, offerId, granularity, meterIds: [m], validFrom: paris('2026-09-01'), dataFrom: paris('2026-10-01') })
    }
    await consentOf('daily')
    await consentOf('monthly')
    // Data until 15 October 11:00 comes live; the household leaves at noon; the move-out is registered on 10 November.
    await ingest(t.db, t.dialect, m, 'electricity', hourly(paris('2026-10-01'), paris('2026-10-15', 11)))
    await moveOut(t.db, occupancy, paris('2026-10-15', 12), { timezone: TZ }, paris('2026-11-10'))
    // The rest of the month arrives after the registration: it completes the 15th and October, for no recipient.
    await ingest(t.db, t.dialect, m, 'electricity', hourly(paris('2026-10-15', 11), paris('2026-11-02')), paris('2026-11-12'))
    await settleMonth(t.db, '2026-10', ctxAt(paris('2026-11-13')))
    const lines = (await recipientInvoice(t.db, recipient, '2026-10')).lines
    // 1–14 October, complete while the consent held; not the 15th nor October as a whole.
    expect(lines.map((l) => [l.granularity, l.data])).toEqual([['daily', 14n]])
    expect(await unbalancedJournals(t.db)).toEqual([])
  })
})
