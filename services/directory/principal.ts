import type { Commodity } from '../../shared/obis.ts'

/** Who is calling, once authenticated (over MQTT or HTTP). */
export type Principal =
  | { role: 'operator' }
  | { role: 'meter'; meterId: string; commodity: Commodity; intervalMinutes: number; operatorId: string }
  | { role: 'recipient'; partyId: string; partyKind: 'utility' | 'third_party' }
  | { role: 'household'; householdId: string }

export type PrincipalRole = Principal['role']
