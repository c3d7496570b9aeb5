import { createHash } from 'node:crypto'
import { assert } from '../../shared/errors.ts'
import { MICROS_PER_CENT, splitByWeights, type WeightedPart } from '../../shared/money.ts'
import type { Granularity } from '../../shared/wire.ts'
import { PLATFORM_ACCOUNT, householdAccount, partyAccount, receivableAccount } from './ledger-account.ts'

/**
 * The money of a settlement run, from counts to postings. Pure: no I/O, no clock.
 *
 * A line is one consent in one month: the datums it released, priced by its offer (an
 * integer number of micro-euros per datum, so the gross needs no rounding), and split once
 * with the largest-remainder method among the household, the operator of each meter, the
 * platform and the offer's third parties. When the consent's meters have different
 * operators, the operator's basis points are shared among them in proportion to the datums
 * of their meters, inside the same single split (weights bps × datums), so the parts still
 * sum to the gross and each is within one micro-euro of its exact share. Tie-break order:
 * household, operators by party id, platform, third parties by party id.
 */

export interface OfferTerms {
  id: string
  priceMicrosPerDatum: bigint
  householdBps: number
  operatorBps: number
  platformBps: number
  /** Sorted by party id. */
  thirdParties: readonly { partyId: string; bps: number }[]
}

export interface ConsentTerms {
  id: string
  householdId: string
  recipientId: string
  granularity: Granularity
  /** null for a legal-basis consent: free, but its datums are still counted and listed. */
  offer: OfferTerms | null
}

/** Datums a consent released from one meter in the month. */
export interface MeterCount {
  meterId: string
  operatorId: string
  data: bigint
}

export interface RoleTotals {
  household: bigint
  operators: bigint
  platform: bigint
  thirdParties: bigint
}

export interface PricedLine {
  consentId: string
  householdId: string
  recipientId: string
  offerId: string | null
  granularity: Granularity
  data: bigint
  grossMicros: bigint
  householdShareMicros: bigint
  roles: RoleTotals
  /**
   * Signed amounts per ledger account, summing to zero: each share credited (positive), the
   * recipient's receivable debited by the gross. Zero amounts are left out.
   */
  postings: Map<string, bigint>
}

const HOUSEHOLD_KEY = 'household'
const PLATFORM_KEY = 'platform'
const OPERATOR_PREFIX = 'operator:'
const THIRD_PARTY_PREFIX = 'third_party:'

function addTo(map: Map<string, bigint>, key: string, amount: bigint): void {
  const sum = (map.get(key) ?? 0n) + amount
  if (sum === 0n) map.delete(key)
  else map.set(key, sum)
}

export function priceLine(consent: ConsentTerms, counts: readonly MeterCount[]): PricedLine {
  let data = 0n
  const byOperator = new Map<string, bigint>()
  for (const c of counts) {
    assert(c.data >= 0n, 'priceLine: negative count')
    data += c.data
    byOperator.set(c.operatorId, (byOperator.get(c.operatorId) ?? 0n) + c.data)
  }
  const offer = consent.offer
  const gross = offer === null ? 0n : data * offer.priceMicrosPerDatum
  const roles: RoleTotals = { household: 0n, operators: 0n, platform: 0n, thirdParties: 0n }
  const postings = new Map<string, bigint>()
  if (offer !== null && gross !== 0n) {
    const parts: WeightedPart[] = [{ key: HOUSEHOLD_KEY, weight: BigInt(offer.householdBps) * data }]
    for (const operatorId of [...byOperator.keys()].sort()) {
      parts.push({ key: OPERATOR_PREFIX + operatorId, weight: BigInt(offer.operatorBps) * byOperator.get(operatorId)! })
    }
    parts.push({ key: PLATFORM_KEY, weight: BigInt(offer.platformBps) * data })
    for (const tp of offer.thirdParties) parts.push({ key: THIRD_PARTY_PREFIX + tp.partyId, weight: BigInt(tp.bps) * data })
    const split = splitByWeights(gross, parts)
    for (const [key, amount] of split) {
      if (key === HOUSEHOLD_KEY) {
        roles.household += amount
        addTo(postings, householdAccount(consent.householdId), amount)
      } else if (key === PLATFORM_KEY) {
        roles.platform += amount
        addTo(postings, PLATFORM_ACCOUNT, amount)
      } else if (key.startsWith(OPERATOR_PREFIX)) {
        roles.operators += amount
        addTo(postings, partyAccount(key.slice(OPERATOR_PREFIX.length)), amount)
      } else {
        roles.thirdParties += amount
        addTo(postings, partyAccount(key.slice(THIRD_PARTY_PREFIX.length)), amount)
      }
    }
    addTo(postings, receivableAccount(consent.recipientId), -gross)
  }
  return {
    consentId: consent.id,
    householdId: consent.householdId,
    recipientId: consent.recipientId,
    offerId: offer?.id ?? null,
    granularity: consent.granularity,
    data,
    grossMicros: gross,
    householdShareMicros: roles.household,
    roles,
    postings,
  }
}

/**
 * The lines of a month, each consent's gross split once per (recipient, household, offer), as
 * DESIGN.md has it: a household's consents that accepted the same offer of one recipient in the
 * month (one revoked, then granted again) are priced and split together, as one gross, so that
 * splitting it in pieces never rounds differently. Each keeps its own line (its datums, its gross)
 * and its part of the household's share, by largest remainder over the lines' gross; the group's
 * postings and role totals are carried by its first line. Consents under different offers (other
 * terms, other basis points) are split each on their own. `consents` in a stable order (by id).
 */
export function priceMonth(consents: readonly ConsentTerms[], counts: ReadonlyMap<string, readonly MeterCount[]>): PricedLine[] {
  const groups = new Map<string, ConsentTerms[]>()
  for (const c of consents) {
    if (!counts.has(c.id)) continue
    const key = c.offer === null ? `consent\u0000${c.id}` : `${c.householdId}\u0000${c.recipientId}\u0000${c.offer.id}`
    const group = groups.get(key)
    if (group === undefined) groups.set(key, [c])
    else group.push(c)
  }
  const lines: PricedLine[] = []
  for (const group of groups.values()) {
    const first = group[0]!
    if (group.length === 1) {
      lines.push(priceLine(first, counts.get(first.id)!))
      continue
    }
    const together = priceLine(first, group.flatMap((c) => counts.get(c.id)!))
    const own = group.map((c) => counts.get(c.id)!.reduce((sum, m) => sum + m.data, 0n))
    const price = first.offer!.priceMicrosPerDatum
    // By datums: one price, so in proportion to each line's gross.
    const shares = splitByWeights(
      together.householdShareMicros,
      group.map((c, i) => ({ key: c.id, weight: own[i]! })),
    )
    const none: RoleTotals = { household: 0n, operators: 0n, platform: 0n, thirdParties: 0n }
    group.forEach((c, i) => {
      lines.push({
        ...together,
        consentId: c.id,
        data: own[i]!,
        grossMicros: own[i]! * price,
        householdShareMicros: shares.get(c.id)!,
        roles: i === 0 ? together.roles : none,
        postings: i === 0 ? together.postings : new Map(),
      })
    })
  }
  return lines
}

/** The amounts of all lines per account: what the ledger must hold for the month. */
export function postingsByAccount(lines: readonly PricedLine[]): Map<string, bigint> {
  const out = new Map<string, bigint>()
  for (const line of lines) for (const [account, amount] of line.postings) addTo(out, account, amount)
  return out
}

/**
 * What to post so that the ledger holds `target` for the month: target minus what is
 * already posted, account by account, accounts with nothing to change left out. It sums
 * to zero because both sides do.
 */
export function postingDifferences(target: ReadonlyMap<string, bigint>, posted: ReadonlyMap<string, bigint>): Map<string, bigint> {
  const diff = new Map<string, bigint>()
  for (const [account, amount] of target) addTo(diff, account, amount)
  for (const [account, amount] of posted) addTo(diff, account, -amount)
  let sum = 0n
  for (const v of diff.values()) sum += v
  assert(sum === 0n, 'postingDifferences: the differences do not balance')
  return new Map([...diff].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

export interface LineState {
  data: bigint
  grossMicros: bigint
  householdShareMicros: bigint
}

export function sameLine(a: LineState | undefined, b: LineState): boolean {
  return a !== undefined && a.data === b.data && a.grossMicros === b.grossMicros && a.householdShareMicros === b.householdShareMicros
}

/**
 * The version of the pricing rules, part of every run's fingerprint: a month settled under other
 * rules is recomputed by its next run, as soon as it is settled again, rather than when something
 * else in it changes (then posting, for households whose data did not change, differences that are
 * the rules'). v2: the gross split once per (recipient, household, offer), not per consent. v3: a
 * datum charged once per (recipient, household, offer), however many of its consents released it;
 * months and load-curve datums cut by interval end (schema 0010).
 */
export const PRICING_RULES_VERSION = 'metershare-settlement-v3'

/**
 * Fingerprint of everything a month's money depends on: the pricing rules, each consent's terms
 * and offer, and the datums it released per meter with that meter's operator. Equal hashes, equal
 * lines and postings: a re-run with the same hash has nothing to post.
 */
export function settlementInputHash(month: string, consents: readonly ConsentTerms[], counts: ReadonlyMap<string, readonly MeterCount[]>): string {
  const h = createHash('sha256')
  h.update(`${PRICING_RULES_VERSION}\n${month}\n`)
  for (const c of [...consents].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    const o = c.offer
    const meters = [...(counts.get(c.id) ?? [])].filter((m) => m.data > 0n).sort((a, b) => (a.meterId < b.meterId ? -1 : 1))
    if (meters.length === 0) continue
    h.update(
      [
        c.id,
        c.householdId,
        c.recipientId,
        c.granularity,
        o === null
          ? '-'
          : [o.id, o.priceMicrosPerDatum, o.householdBps, o.operatorBps, o.platformBps, ...o.thirdParties.map((t) => `${t.partyId}=${t.bps}`)].join(','),
        ...meters.map((m) => `${m.meterId}@${m.operatorId}=${m.data}`),
      ].join('|') + '\n',
    )
  }
  return h.digest('hex')
}

/**
 * The payout due on a balance once it reaches the minimum, else nothing (carried forward). A bank
 * transfer moves whole cents: the balance's fraction of a cent stays, carried forward with the rest.
 */
export function payoutDue(balanceMicros: bigint, payoutMinMicros: bigint): bigint {
  if (balanceMicros <= 0n || balanceMicros < payoutMinMicros) return 0n
  return balanceMicros - (balanceMicros % MICROS_PER_CENT)
}
