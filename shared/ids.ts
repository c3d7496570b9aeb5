import { randomBytes } from 'node:crypto'

/**
 * Identifiers are short, prefixed and random: the prefix tells a reader what it names,
 * and ids never reveal how many rows exist. Meter ids are also MQTT client ids and
 * topic levels, so they exclude `/`, `+`, `#` and stay within `METER_ID_LENGTH_MAX`.
 */
export const ID_PREFIXES = {
  party: 'pty',
  household: 'hh',
  meter: 'mtr',
  occupancy: 'occ',
  offer: 'off',
  consent: 'cns',
  run: 'run',
  journal: 'jnl',
  payout: 'pay',
  session: 'ses',
} as const

export type IdKind = keyof typeof ID_PREFIXES

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'
const ID_RANDOM_CHARS = 16

export const METER_ID_LENGTH_MAX = 64
export const METER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/

export function newId(kind: IdKind): string {
  const bytes = randomBytes(ID_RANDOM_CHARS)
  let s = ''
  for (let i = 0; i < ID_RANDOM_CHARS; i++) s += ALPHABET[bytes[i]! & 31]
  return `${ID_PREFIXES[kind]}_${s}`
}
