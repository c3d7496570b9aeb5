import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { splitLargestRemainder } from '../../../shared/money.ts'
import {
  payoutDue,
  postingDifferences,
  postingsByAccount,
  priceLine,
  priceMonth,
  sameLine,
  settlementInputHash,
  type ConsentTerms,
  type MeterCount,
  type OfferTerms,
} from '../../../services/settlement/settlement-calculation.ts'

const OFFER: OfferTerms = {
  id: 'off_a',
  priceMicrosPerDatum: 1_003n,
  householdBps: 4_000,
  operatorBps: 2_500,
  platformBps: 2_499,
  thirdParties: [{ partyId: 'pty_charity', bps: 1_001 }],
}
const CONSENT: ConsentTerms = { id: 'cns_1', householdId: 'hh_a', recipientId: 'pty_r', granularity: 'load_curve', offer: OFFER }

describe('pricing a month', () => {
  const third = { id: 'off_thirds', priceMicrosPerDatum: 1n, householdBps: 3_333, operatorBps: 3_333, platformBps: 3_334, thirdParties: [] }
  const consentOf = (id: string, offer: OfferTerms, householdId = 'hh_a'): ConsentTerms => ({ id, householdId, recipientId: 'pty_r', granularity: 'load_curve', offer })
  const count = (data: bigint): MeterCount[] => [{ meterId: 'm1', operatorId: 'pty_grid', data }]

  it("splits a household's consents to one offer of a recipient once, as one gross: no rounding in pieces", () => {
    // Revoked and granted again in the month: 719 datums under each. Split apart, the household had
    // 240 + 240 µ€ of 1,438; split once, 479 (exact 479.25), and the platform the remainder's unit.
    const lines = priceMonth([consentOf('cns_1', third), consentOf('cns_2', third)], new Map([['cns_1', count(719n)], ['cns_2', count(719n)]]))
    expect(lines.map((l) => [l.consentId, l.data, l.grossMicros, l.householdShareMicros])).toEqual([
      ['cns_1', 719n, 719n, 240n],
      ['cns_2', 719n, 719n, 239n],
    ])
    expect(Object.fromEntries(postingsByAccount(lines))).toEqual({ 'household:hh_a': 479n, 'party:pty_grid': 479n, platform: 480n, 'receivable:pty_r': -1_438n })
    const roles = lines.reduce((r, l) => r + l.roles.household + l.roles.operators + l.roles.platform + l.roles.thirdParties, 0n)
    expect(roles).toBe(1_438n)
  })

  it("prices each line of a group at the offer's price and posts the group's split once, whatever the group's size", () => {
    const priced = { ...third, priceMicrosPerDatum: 7n }
    const consents = [consentOf('cns_1', priced), consentOf('cns_2', priced), consentOf('cns_3', priced)]
    const lines = priceMonth(consents, new Map([['cns_1', count(3n)], ['cns_2', count(5n)], ['cns_3', count(2n)]]))
    expect(lines.map((l) => [l.consentId, l.data, l.grossMicros])).toEqual([
      ['cns_1', 3n, 21n],
      ['cns_2', 5n, 35n],
      ['cns_3', 2n, 14n],
    ])
    const gross = 70n
    expect(lines.reduce((s, l) => s + l.householdShareMicros, 0n)).toBe(lines[0]!.roles.household)
    expect(postingsByAccount(lines).get('receivable:pty_r')).toBe(-gross)
    expect(lines.reduce((r, l) => r + l.roles.household + l.roles.operators + l.roles.platform + l.roles.thirdParties, 0n)).toBe(gross)
  })

  it('gives each legal-basis consent its own free line, and none to a consent that released nothing', () => {
    const legal = (id: string): ConsentTerms => ({ ...consentOf(id, third), offer: null })
    const lines = priceMonth([legal('cns_1'), legal('cns_2'), consentOf('cns_3', third)], new Map([['cns_1', count(4n)], ['cns_2', count(6n)]]))
    expect(lines.map((l) => [l.consentId, l.data, l.grossMicros, l.offerId])).toEqual([
      ['cns_1', 4n, 0n, null],
      ['cns_2', 6n, 0n, null],
    ])
    expect(postingsByAccount(lines).size).toBe(0)
  })

  it('splits consents under other offers, or of other households, each on its own', () => {
    const other = { ...third, id: 'off_other' }
    const consents = [consentOf('cns_1', third), consentOf('cns_2', other), consentOf('cns_3', third, 'hh_b')]
    const counts = new Map(consents.map((c) => [c.id, count(719n)]))
    const lines = priceMonth(consents, counts)
    expect(lines.map((l) => l.householdShareMicros)).toEqual([240n, 240n, 240n])
    expect(lines).toEqual(consents.map((c) => priceLine(c, counts.get(c.id)!)))
  })
})

describe('pricing a line', () => {
  it('splits the gross once, as the offer says, among household, operator, platform and third parties', () => {
    const line = priceLine(CONSENT, [{ meterId: 'm1', operatorId: 'pty_grid', data: 1_234n }])
    const gross = 1_234n * 1_003n
    const split = splitLargestRemainder(gross, [
      { key: 'household', bps: 4_000 },
      { key: 'operator', bps: 2_500 },
      { key: 'platform', bps: 2_499 },
      { key: 'charity', bps: 1_001 },
    ])
    expect(line).toMatchObject({ data: 1_234n, grossMicros: gross, householdShareMicros: split.get('household') })
    expect(Object.fromEntries(line.postings)).toEqual({
      'household:hh_a': split.get('household'),
      'party:pty_grid': split.get('operator'),
      platform: split.get('platform'),
      'party:pty_charity': split.get('charity'),
      'receivable:pty_r': -gross,
    })
  })

  it('shares the operator part among the operators of the meters by their datums, within one unit each, summing to the gross', () => {
    fc.assert(
      fc.property(
        fc.array(fc.bigInt({ min: 0n, max: 100_000n }), { minLength: 1, maxLength: 4 }),
        fc.bigInt({ min: 0n, max: 1_000_000n }),
        (counts, price) => {
          const line = priceLine({ ...CONSENT, offer: { ...OFFER, priceMicrosPerDatum: price } }, counts.map((data, i) => ({ meterId: `m${i}`, operatorId: `pty_op${i}`, data })))
          const data = counts.reduce((a, b) => a + b, 0n)
          const gross = data * price
          let sum = 0n
          for (const [account, amount] of line.postings) if (!account.startsWith('receivable:')) sum += amount
          expect(sum).toBe(gross)
          counts.forEach((n, i) => {
            // Exact share: gross × 2500/10000 × n/data = price × n / 4.
            const diff = (line.postings.get(`party:pty_op${i}`) ?? 0n) * 4n - price * n
            expect(diff > -4n && diff < 4n).toBe(true)
          })
          expect(line.roles.household + line.roles.operators + line.roles.platform + line.roles.thirdParties).toBe(gross)
        },
      ),
    )
  })

  it('refuses a negative count of datums', () => {
    expect(() => priceLine(CONSENT, [{ meterId: 'm1', operatorId: 'pty_grid', data: -1n }])).toThrow(/negative count/)
  })

  it("gives a unit left between operators' equal remainders to the operator first by party id, whatever the meters' order", () => {
    // 2 µ€: the household's 5,000 bps is exactly 1; each operator's exact share is 0.5.
    const offer = { ...OFFER, priceMicrosPerDatum: 1n, householdBps: 5_000, operatorBps: 5_000, platformBps: 0, thirdParties: [] }
    const line = priceLine({ ...CONSENT, offer }, [
      { meterId: 'm1', operatorId: 'pty_z', data: 1n },
      { meterId: 'm2', operatorId: 'pty_a', data: 1n },
    ])
    expect(Object.fromEntries(line.postings)).toEqual({ 'household:hh_a': 1n, 'party:pty_a': 1n, 'receivable:pty_r': -2n })
  })

  it('counts a legal-basis consent and charges nothing for it', () => {
    const line = priceLine({ ...CONSENT, offer: null, granularity: 'monthly' }, [{ meterId: 'm1', operatorId: 'pty_grid', data: 1n }])
    expect(line).toMatchObject({ data: 1n, grossMicros: 0n, householdShareMicros: 0n, offerId: null })
    expect(line.postings.size).toBe(0)
  })

  it('adds up the accounts of one operator who is also a third party of the offer', () => {
    const line = priceLine({ ...CONSENT, offer: { ...OFFER, thirdParties: [{ partyId: 'pty_grid', bps: 1_001 }] } }, [
      { meterId: 'm1', operatorId: 'pty_grid', data: 10n },
    ])
    expect(line.postings.get('party:pty_grid')).toBe(line.roles.operators + line.roles.thirdParties)
  })
})

describe('posting differences', () => {
  it('posts per account what the ledger lacks, nothing for accounts already right, and balances', () => {
    const alice = (data: bigint) => priceLine(CONSENT, [{ meterId: 'm1', operatorId: 'pty_grid', data }])
    const bob = priceLine({ ...CONSENT, id: 'cns_2', householdId: 'hh_b' }, [{ meterId: 'm2', operatorId: 'pty_grid', data: 50n }])
    const before = postingsByAccount([alice(100n), bob])
    const after = postingsByAccount([alice(90n), bob])
    const diff = postingDifferences(after, before)
    expect([...diff.values()].reduce((a, b) => a + b, 0n)).toBe(0n)
    expect(diff.has('household:hh_b')).toBe(false)
    expect(diff.get('receivable:pty_r')).toBe(10n * 1_003n)
    expect(diff.get('household:hh_a')).toBe(alice(90n).householdShareMicros - alice(100n).householdShareMicros)
    for (const [account, amount] of diff) expect(amount).toBe((after.get(account) ?? 0n) - (before.get(account) ?? 0n))
    expect(postingDifferences(after, after).size).toBe(0)
    // Lines that vanished are reversed whole.
    expect(Object.fromEntries(postingDifferences(new Map(), before))).toEqual(Object.fromEntries([...before].map(([k, v]) => [k, -v])))
  })

  it('lists the accounts in one order, whatever the order of the inputs', () => {
    const target = new Map([
      ['platform', 3n],
      ['household:hh_b', 4n],
      ['receivable:pty_r', -10n],
      ['household:hh_a', 3n],
    ])
    expect([...postingDifferences(target, new Map()).keys()]).toEqual(['household:hh_a', 'household:hh_b', 'platform', 'receivable:pty_r'])
  })

  it('refuses sides that do not balance', () => {
    expect(() => postingDifferences(new Map([['platform', 1n]]), new Map())).toThrow(/do not balance/)
  })
})

describe('input hash', () => {
  const twoMeters = new Map([['cns_1', [{ meterId: 'm1', operatorId: 'pty_grid', data: 5n }, { meterId: 'm2', operatorId: 'pty_grid', data: 7n }]]])

  it("is the same whatever the order of a consent's meters, and for a meter that released nothing", () => {
    const h = settlementInputHash('2026-10', [CONSENT], twoMeters)
    expect(settlementInputHash('2026-10', [CONSENT], new Map([['cns_1', [...twoMeters.get('cns_1')!].reverse()]]))).toBe(h)
    const withIdle = new Map([['cns_1', [...twoMeters.get('cns_1')!, { meterId: 'm0', operatorId: 'pty_grid', data: 0n }]]])
    expect(settlementInputHash('2026-10', [CONSENT], withIdle)).toBe(h)
  })

  it("changes with a legal-basis consent's data, a third party's share and a field's boundary", () => {
    const legal = { ...CONSENT, offer: null }
    expect(settlementInputHash('2026-10', [legal], twoMeters)).not.toBe(settlementInputHash('2026-10', [legal], new Map([['cns_1', [{ meterId: 'm1', operatorId: 'pty_grid', data: 6n }]]])))
    const h = settlementInputHash('2026-10', [CONSENT], twoMeters)
    expect(settlementInputHash('2026-10', [{ ...CONSENT, offer: { ...OFFER, thirdParties: [{ partyId: 'pty_charity', bps: 1_002 }] } }], twoMeters)).not.toBe(h)
    // The same characters cut into other fields: price 1,003 and 4,000 bps against price 100 and 34,000.
    expect(settlementInputHash('2026-10', [{ ...CONSENT, offer: { ...OFFER, priceMicrosPerDatum: 100n, householdBps: 34_000 } }], twoMeters)).not.toBe(h)
    const shifted = { ...CONSENT, id: 'cns_1h', householdId: 'h_a' }
    expect(settlementInputHash('2026-10', [shifted], new Map([['cns_1h', twoMeters.get('cns_1')!]]))).not.toBe(h)
  })

  it('is the same for the same inputs in any order, and changes with any count, term or operator', () => {
    const a = { ...CONSENT }
    const b: ConsentTerms = { ...CONSENT, id: 'cns_2', householdId: 'hh_b' }
    const counts = new Map([
      ['cns_1', [{ meterId: 'm1', operatorId: 'pty_grid', data: 5n }]],
      ['cns_2', [{ meterId: 'm2', operatorId: 'pty_grid', data: 7n }]],
    ])
    const h = settlementInputHash('2026-10', [a, b], counts)
    expect(settlementInputHash('2026-10', [b, a], counts)).toBe(h)
    expect(settlementInputHash('2026-11', [a, b], counts)).not.toBe(h)
    expect(settlementInputHash('2026-10', [a, b], new Map([...counts, ['cns_2', [{ meterId: 'm2', operatorId: 'pty_grid', data: 8n }]]]))).not.toBe(h)
    expect(settlementInputHash('2026-10', [a, b], new Map([...counts, ['cns_2', [{ meterId: 'm2', operatorId: 'pty_other', data: 7n }]]]))).not.toBe(h)
    expect(settlementInputHash('2026-10', [a, { ...b, offer: { ...OFFER, priceMicrosPerDatum: 1_004n } }], counts)).not.toBe(h)
    // A consent without data does not change the month.
    expect(settlementInputHash('2026-10', [a, b, { ...CONSENT, id: 'cns_3' }], counts)).toBe(h)
  })
})

describe('line state', () => {
  it('is the same only when the datums, the gross and the household share all are', () => {
    const state = { data: 3n, grossMicros: 30n, householdShareMicros: 12n }
    expect(sameLine({ ...state }, state)).toBe(true)
    expect(sameLine(undefined, state)).toBe(false)
    expect(sameLine({ ...state, data: 4n }, state)).toBe(false)
    expect(sameLine({ ...state, grossMicros: 31n }, state)).toBe(false)
    expect(sameLine({ ...state, householdShareMicros: 11n }, state)).toBe(false)
  })
})

describe('payouts', () => {
  it('pays the whole balance once it reaches the minimum, and never a balance below it or negative', () => {
    expect(payoutDue(4_999_999n, 5_000_000n)).toBe(0n)
    expect(payoutDue(5_000_000n, 5_000_000n)).toBe(5_000_000n)
    // Whole cents, as a transfer pays; the 5,678 µ€ left stay in the balance.
    expect(payoutDue(12_345_678n, 5_000_000n)).toBe(12_340_000n)
    expect(payoutDue(7_077_000n, 5_000_000n)).toBe(7_070_000n)
    expect(payoutDue(5_009_999n, 5_000_000n)).toBe(5_000_000n)
    expect(payoutDue(9_999n, 0n)).toBe(0n)
    expect(payoutDue(-1n, 0n)).toBe(0n)
    expect(payoutDue(0n, 0n)).toBe(0n)
  })
})
