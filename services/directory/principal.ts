import type { Commodity } from '../../shared/obis.ts'

/** Who is calling, once authenticated (over MQTT or HTTP). */
export type Principal =
  | { role: 'operator' }
  | { role: 'meter'; meterId: string; commodity: Commodity; intervalMinutes: number; operatorId: string }
  | { role: 'recipient'; partyId: string; partyKind: 'utility' | 'third_party' }
  | { role: 'household'; householdId: string }

export type PrincipalRole = Principal['role']

/** Who holds a credential, as a string: persistent MQTT sessions are recorded under it, and renewed credentials announced by it. */
export function ownerKey(kind: 'meter' | 'party' | 'household', id: string): string {
  return `${kind}:${id}`
}

/** A principal as its owner key (`operator` for the operator, who has no MQTT credential). */
export function principalKey(p: Principal): string {
  switch (p.role) {
    case 'meter':
      return ownerKey('meter', p.meterId)
    case 'recipient':
      return ownerKey('party', p.partyId)
    case 'household':
      return ownerKey('household', p.householdId)
    case 'operator':
      return 'operator'
  }
}
