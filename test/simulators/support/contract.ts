/**
 * The meter payload rules of CONTRACT.md, written out independently of the simulator's own
 * code so that the tests check the simulator against the contract, not against itself.
 */
export const CONTRACT_OBIS_CODES: ReadonlySet<string> = new Set([
  ...Array.from({ length: 10 }, (_, t) => `1-0:1.8.${t}`),
  ...Array.from({ length: 10 }, (_, t) => `1-0:2.8.${t}`),
  '1-0:1.7.0',
  '1-0:2.7.0',
  '7-0:3.0.0',
])

export const PAYLOAD_LIMIT_BYTES = 256 * 1024
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/

export interface ContractReading {
  ts: string
  values: Record<string, number>
}

/** Null when `x` is one reading exactly as the contract shapes it, otherwise why not. */
export function readingViolation(x: unknown): string | null {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return 'not an object'
  const keys = Object.keys(x).sort()
  if (keys.join(',') !== 'ts,values') return `keys ${keys.join(',')}`
  const { ts, values } = x as { ts: unknown; values: unknown }
  if (typeof ts !== 'string' || !RFC3339.test(ts) || Number.isNaN(Date.parse(ts))) return `ts ${String(ts)}`
  if (typeof values !== 'object' || values === null || Array.isArray(values)) return 'values not an object'
  const entries = Object.entries(values)
  if (entries.length === 0) return 'no values'
  for (const [code, v] of entries) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return `value of ${code}: ${String(v)}`
  }
  return null
}

/** Schema only (OBIS codes not checked): what `unknown_obis` needs to pass first. */
export function schemaViolation(text: string): string | null {
  let x: unknown
  try {
    x = JSON.parse(text)
  } catch {
    return 'not JSON'
  }
  if (typeof x === 'object' && x !== null && 'readings' in x) {
    const readings = (x as { readings: unknown }).readings
    if (Object.keys(x).length !== 1 || !Array.isArray(readings) || readings.length === 0 || readings.length > 1000) return 'bad batch'
    for (const r of readings) {
      const v = readingViolation(r)
      if (v !== null) return v
    }
    return null
  }
  return readingViolation(x)
}

/** The readings of a payload that satisfies the contract entirely, or throws saying why not. */
export function contractReadings(text: string): ContractReading[] {
  if (Buffer.byteLength(text) > PAYLOAD_LIMIT_BYTES) throw new Error('payload over 256 KiB')
  const v = schemaViolation(text)
  if (v !== null) throw new Error(`payload breaks the contract (${v}): ${text.slice(0, 200)}`)
  const x = JSON.parse(text) as ContractReading | { readings: ContractReading[] }
  const readings = 'readings' in x ? x.readings : [x]
  for (const r of readings) {
    for (const code of Object.keys(r.values)) if (!CONTRACT_OBIS_CODES.has(code)) throw new Error(`unknown OBIS code ${code}`)
  }
  return readings
}
