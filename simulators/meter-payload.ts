/**
 * What a simulated meter puts on the wire (CONTRACT.md, "MQTT — Meters"). The simulators
 * speak the contract, not the product's code, so these small definitions are their own.
 */

export const OBIS_IMPORT_ENERGY = '1-0:1.8.0'
export const OBIS_EXPORT_ENERGY = '1-0:2.8.0'
export const OBIS_IMPORT_POWER = '1-0:1.7.0'
export const OBIS_EXPORT_POWER = '1-0:2.7.0'
export const OBIS_GAS_VOLUME = '7-0:3.0.0'
/** The registers that count up (indexes), as opposed to instantaneous power. */
export const CUMULATIVE_REGISTERS: ReadonlySet<string> = new Set([OBIS_IMPORT_ENERGY, OBIS_EXPORT_ENERGY, OBIS_GAS_VOLUME])

/** A payload the contract accepts: at most 256 KiB. */
export const PAYLOAD_BYTES_MAX = 256 * 1024
/** A batch holds at most 1,000 readings. */
export const BATCH_READINGS_MAX = 1000

export type Commodity = 'electricity' | 'gas'
export type IntervalMinutes = 15 | 30 | 60
export const INTERVAL_MINUTES: readonly IntervalMinutes[] = [15, 30, 60]

/** OBIS code → integer in the register's base unit (Wh, W, dm³). */
export type RegisterValues = Record<string, number>

/** One reading: `ts` is the end of the measured interval, RFC 3339 in UTC. */
export interface SimReading {
  ts: string
  values: RegisterValues
}

export function meterReadingsTopic(meterId: string): string {
  return `meters/${meterId}/readings`
}

export function meterStatusTopic(meterId: string): string {
  return `meters/${meterId}/status`
}

export function encodeReading(reading: SimReading): string {
  return JSON.stringify({ ts: reading.ts, values: reading.values })
}

export function encodeBatch(readings: readonly SimReading[]): string {
  if (readings.length > BATCH_READINGS_MAX) throw new RangeError(`a batch holds at most ${BATCH_READINGS_MAX} readings`)
  return JSON.stringify({ readings: readings.map((r) => ({ ts: r.ts, values: r.values })) })
}
