import type { LedgerAccountKind } from '../../shared/db/tables/ledger-accounts.ts'

/**
 * Ledger account ids, readable and derived from their owner: `household:<id>` (what the
 * platform owes a household), `party:<id>` (a utility's or third party's shares, whether as
 * a meter's operator or named in an offer), `receivable:<id>` (what a recipient owes,
 * negative), `platform` (the platform's share) and `payouts` (money sent to households).
 */

export const PLATFORM_ACCOUNT = 'platform'
export const PAYOUTS_ACCOUNT = 'payouts'

export const HOUSEHOLD_ACCOUNT_PREFIX = 'household:'

export function householdAccount(householdId: string): string {
  return HOUSEHOLD_ACCOUNT_PREFIX + householdId
}

export function partyAccount(partyId: string): string {
  return `party:${partyId}`
}

export function receivableAccount(recipientId: string): string {
  return `receivable:${recipientId}`
}

export interface AccountRef {
  id: string
  kind: LedgerAccountKind
  ownerId: string | null
}

/** The kind and owner an account id stands for. */
export function parseAccount(id: string): AccountRef {
  if (id === PLATFORM_ACCOUNT) return { id, kind: 'platform', ownerId: null }
  if (id === PAYOUTS_ACCOUNT) return { id, kind: 'payouts', ownerId: null }
  const colon = id.indexOf(':')
  const prefix = id.slice(0, colon)
  const ownerId = id.slice(colon + 1)
  if (colon > 0 && ownerId !== '' && (prefix === 'household' || prefix === 'party' || prefix === 'receivable')) {
    return { id, kind: prefix, ownerId }
  }
  throw new Error(`assertion failed: not a ledger account id: ${id}`)
}
