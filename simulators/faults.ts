import { formatTs } from './local-time.ts'
import {
  encodeReading,
  OBIS_GAS_VOLUME,
  OBIS_IMPORT_ENERGY,
  PAYLOAD_BYTES_MAX,
  type RegisterValues,
  type SimReading,
} from './meter-payload.ts'
import type { Rng } from './random.ts'

/**
 * Faults a fleet can inject, one per bad-input row of CONTRACT.md. Genuine readings are
 * always all sent; faults add messages (or, for out-of-order, swap two genuine readings),
 * so a test can count exactly what should be stored and what should be quarantined.
 *
 * | kind           | what is published                                                       |
 * | -------------- | ----------------------------------------------------------------------- |
 * | duplicate      | the same reading again, as a message of its own                         |
 * | out-of-order   | the reading after the next one (the two are swapped)                    |
 * | malformed-json | the reading's JSON cut in half                                          |
 * | invalid-schema | a reading breaking the schema (no offset, string, fraction, extra key, no values) |
 * | unknown-obis   | a reading with an OBIS code outside the contract (`1-0:32.7.0`, voltage) |
 * | skew           | the reading stamped `skewMs` after the real now (a meter clock far ahead)|
 * | conflict       | the same `ts` with a higher cumulative index                            |
 * | regression     | one second later, a cumulative index lower than the reading's           |
 * | too-large      | a valid reading padded with whitespace beyond 256 KiB                   |
 */
export const FAULT_KINDS = [
  'duplicate',
  'out-of-order',
  'malformed-json',
  'invalid-schema',
  'unknown-obis',
  'skew',
  'conflict',
  'regression',
  'too-large',
] as const

export type FaultKind = (typeof FAULT_KINDS)[number]

/** `malformed` is a shorthand: each roll picks one of the three malformed kinds. */
export type FaultFlag = FaultKind | 'malformed'
export const FAULT_FLAGS: readonly FaultFlag[] = [...FAULT_KINDS, 'malformed']
const MALFORMED_KINDS: readonly FaultKind[] = ['malformed-json', 'invalid-schema', 'unknown-obis']

/** Probability per genuine reading, 0–1, by flag. */
export type FaultRates = Partial<Record<FaultFlag, number>>

export type FaultCounts = Record<FaultKind, number>

export function zeroFaultCounts(): FaultCounts {
  return Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as FaultCounts
}

/** A valid size for a too-large payload: over 256 KiB, at most 1 MiB (the transport's limit). */
export const TOO_LARGE_PAYLOAD_BYTES_MAX = 1024 * 1024
export const TOO_LARGE_PAYLOAD_BYTES_DEFAULT = 300 * 1024
export const SKEW_MS_DEFAULT = 24 * 60 * 60 * 1000

/** The OBIS code a meter may not send: instantaneous voltage of phase L1. */
export const UNKNOWN_OBIS_CODE = '1-0:32.7.0'

export class FaultSpecError extends Error {
  override readonly name = 'FaultSpecError'
}

/** Parses `duplicate=0.01,out-of-order=0.01,malformed=0.001`. */
export function parseFaultSpec(spec: string): FaultRates {
  const rates: FaultRates = {}
  for (const part of spec.split(',')) {
    const item = part.trim()
    if (item === '') continue
    const eq = item.indexOf('=')
    const name = (eq < 0 ? item : item.slice(0, eq)).trim()
    if (!(FAULT_FLAGS as readonly string[]).includes(name)) {
      throw new FaultSpecError(`fault: unknown kind '${name}' (known: ${FAULT_FLAGS.join(', ')})`)
    }
    const raw = eq < 0 ? '' : item.slice(eq + 1).trim()
    const rate = Number(raw)
    if (raw === '' || !Number.isFinite(rate) || rate < 0 || rate > 1) {
      throw new FaultSpecError(`fault: rate of '${name}' must be a number from 0 to 1, got '${raw}'`)
    }
    rates[name as FaultFlag] = rate
  }
  return rates
}

export function validateFaultRates(rates: FaultRates): void {
  for (const [name, rate] of Object.entries(rates)) {
    if (!(FAULT_FLAGS as readonly string[]).includes(name)) throw new FaultSpecError(`faults.${name}: unknown fault kind`)
    if (typeof rate !== 'number' || !Number.isFinite(rate) || rate < 0 || rate > 1) {
      throw new FaultSpecError(`faults.${name}: rate must be a number from 0 to 1`)
    }
  }
}

export interface FaultContext {
  /** Real now, epoch ms (skewed readings are stamped relative to it). */
  nowMs: number
  intervalMs: number
  skewMs: number
  tooLargePayloadBytes: number
}

export interface FaultMessage {
  kind: FaultKind
  payload: string
}

export interface FaultPlan {
  /** Extra messages sent right after the genuine reading. */
  extras: FaultMessage[]
  /** Swap this reading with the next one. */
  swap: boolean
}

/** The first cumulative register of a reading: the one faults tamper with. */
function cumulativeCode(values: RegisterValues): string {
  return OBIS_GAS_VOLUME in values ? OBIS_GAS_VOLUME : OBIS_IMPORT_ENERGY
}

function shiftTs(ts: string, ms: number): string {
  return formatTs(Date.parse(ts) + ms)
}

/**
 * The faulty payload of a kind derived from a genuine reading. Faults that are not about the
 * reading's identity get a `ts` of their own (seconds after the reading's) so that a broker
 * that wrongly accepted one would not touch a genuine datum.
 */
export function faultPayload(kind: FaultKind, reading: SimReading, rng: Rng, ctx: FaultContext): string {
  const code = cumulativeCode(reading.values)
  const index = reading.values[code] ?? 0
  switch (kind) {
    case 'duplicate':
      return encodeReading(reading)
    case 'out-of-order':
      return encodeReading(reading)
    case 'malformed-json': {
      const json = encodeReading(reading)
      return json.slice(0, Math.floor(json.length / 2))
    }
    case 'invalid-schema': {
      const ts = shiftTs(reading.ts, 3000)
      switch (rng.int(0, 4)) {
        case 0:
          return JSON.stringify({ ts: ts.replace(/Z$/, ''), values: reading.values })
        case 1:
          return JSON.stringify({ ts, values: { [code]: String(index) } })
        case 2:
          return JSON.stringify({ ts, values: { [code]: index + 0.5 } })
        case 3:
          return JSON.stringify({ ts, values: reading.values, unit: 'Wh' })
        default:
          return JSON.stringify({ ts, values: {} })
      }
    }
    case 'unknown-obis':
      return JSON.stringify({ ts: shiftTs(reading.ts, 2000), values: { [UNKNOWN_OBIS_CODE]: rng.int(215, 245) } })
    case 'skew': {
      const future = Math.ceil((ctx.nowMs + ctx.skewMs) / ctx.intervalMs) * ctx.intervalMs
      return JSON.stringify({ ts: formatTs(future), values: reading.values })
    }
    case 'conflict':
      return JSON.stringify({ ts: reading.ts, values: { ...reading.values, [code]: index + rng.int(1, 100) } })
    case 'regression':
      return JSON.stringify({ ts: shiftTs(reading.ts, 1000), values: { [code]: Math.max(0, index - rng.int(1, 1000)) } })
    case 'too-large': {
      const json = JSON.stringify({ ts: shiftTs(reading.ts, 4000), values: reading.values })
      const padding = Math.max(0, ctx.tooLargePayloadBytes - Buffer.byteLength(json))
      return '{' + ' '.repeat(padding) + json.slice(1)
    }
  }
}

/** Rolls the dice for one genuine reading. */
export function planFaults(reading: SimReading, rates: FaultRates, rng: Rng, ctx: FaultContext): FaultPlan {
  const extras: FaultMessage[] = []
  const add = (kind: FaultKind): void => {
    extras.push({ kind, payload: faultPayload(kind, reading, rng, ctx) })
  }
  if (rng.chance(rates.duplicate ?? 0)) add('duplicate')
  if (rng.chance(rates.conflict ?? 0)) add('conflict')
  if (rng.chance(rates.regression ?? 0)) add('regression')
  if (rng.chance(rates.skew ?? 0)) add('skew')
  if (rng.chance(rates.malformed ?? 0)) add(MALFORMED_KINDS[rng.int(0, MALFORMED_KINDS.length - 1)]!)
  for (const kind of MALFORMED_KINDS) if (rng.chance(rates[kind] ?? 0)) add(kind)
  if (rng.chance(rates['too-large'] ?? 0)) add('too-large')
  return { extras, swap: rng.chance(rates['out-of-order'] ?? 0) }
}

export function validateTooLargePayloadBytes(bytes: number): void {
  if (!Number.isInteger(bytes) || bytes <= PAYLOAD_BYTES_MAX || bytes > TOO_LARGE_PAYLOAD_BYTES_MAX) {
    throw new RangeError(`tooLargePayloadBytes: must be an integer over ${PAYLOAD_BYTES_MAX} and at most ${TOO_LARGE_PAYLOAD_BYTES_MAX}`)
  }
}
