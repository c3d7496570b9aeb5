import type { IngestLimits } from '../../shared/config.ts'
import { parseRfc3339 } from '../../shared/calendar.ts'
import type { QuarantineReason } from '../../shared/errors.ts'
import { obisRegister, type Commodity } from '../../shared/obis.ts'
import { ingressReadingSchema, type RegisterValues } from '../../shared/wire.ts'

/**
 * Turns what a meter published into datums to store and items to quarantine. Pure: the
 * receive time is passed in. Nothing a meter sends is dropped: whatever cannot become a
 * datum becomes a quarantine item with its reason and the bytes it came from.
 */

/** The earliest and latest timestamps a datum may carry (partitions exist for this span only). */
export const TS_MIN_MS = Date.UTC(2000, 0, 1)
export const TS_MAX_MS = Date.UTC(2100, 0, 1)

export interface CandidateDatum {
  tsMs: number
  values: RegisterValues
  /** The datum as JSON, kept if it ends up in quarantine (conflict, regression). */
  raw: string
}

export interface QuarantineItem {
  meterId: string
  receivedAtMs: number
  reason: QuarantineReason
  tsMs: number | null
  payload: Buffer
  payloadBytes: number
  detail: string
}

export interface ValidatedMessage {
  meterId: string
  receivedAtMs: number
  datums: CandidateDatum[]
  rejects: QuarantineItem[]
}

export interface MeterIdentity {
  meterId: string
  commodity: Commodity
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

export function validatePayload(
  meter: MeterIdentity,
  payload: Buffer,
  receivedAtMs: number,
  limits: Pick<IngestLimits, 'payloadBytesMax' | 'batchReadingsMax' | 'quarantineExcerptBytes' | 'futureToleranceMs'>,
): ValidatedMessage {
  const out: ValidatedMessage = { meterId: meter.meterId, receivedAtMs, datums: [], rejects: [] }
  const whole = (reason: QuarantineReason, detail: string, kept: Buffer = payload): ValidatedMessage => {
    out.rejects.push({ meterId: meter.meterId, receivedAtMs, reason, tsMs: null, payload: kept, payloadBytes: payload.length, detail })
    return out
  }

  if (payload.length > limits.payloadBytesMax) {
    return whole(
      'too_large',
      `payload of ${payload.length} bytes exceeds payloadBytesMax ${limits.payloadBytesMax}; first ${limits.quarantineExcerptBytes} bytes kept`,
      Buffer.from(payload.subarray(0, limits.quarantineExcerptBytes)),
    )
  }

  let doc: unknown
  try {
    doc = JSON.parse(utf8.decode(payload))
  } catch (err) {
    return whole('malformed_json', err instanceof TypeError ? 'payload is not valid UTF-8' : `not JSON: ${(err as Error).message}`)
  }

  let readings: unknown[]
  if (isPlainObject(doc) && 'readings' in doc) {
    const keys = Object.keys(doc)
    if (keys.length !== 1) return whole('invalid_schema', `batch: unexpected key ${keys.find((k) => k !== 'readings')}`)
    if (!Array.isArray(doc.readings)) return whole('invalid_schema', 'readings: expected an array')
    if (doc.readings.length === 0) return whole('invalid_schema', 'readings: must hold at least one reading')
    if (doc.readings.length > limits.batchReadingsMax) {
      return whole('invalid_schema', `readings: ${doc.readings.length} readings exceed batchReadingsMax ${limits.batchReadingsMax}`)
    }
    readings = doc.readings
  } else if (isPlainObject(doc)) {
    readings = [doc]
  } else {
    return whole('invalid_schema', 'expected a reading object or {"readings":[…]}')
  }

  const single = readings.length === 1 && !(isPlainObject(doc) && 'readings' in doc)
  for (let i = 0; i < readings.length; i++) {
    const item = readings[i]
    const where = single ? '' : `readings[${i}].`
    // A batch keeps each reading's own bytes; a single reading keeps the payload as sent.
    const raw = (): Buffer => (single ? payload : Buffer.from(JSON.stringify(item) ?? 'null'))
    const reject = (reason: QuarantineReason, detail: string, tsMs: number | null = null): void => {
      const kept = raw()
      out.rejects.push({ meterId: meter.meterId, receivedAtMs, reason, tsMs, payload: kept, payloadBytes: kept.length, detail })
    }

    const parsed = ingressReadingSchema.safeParse(item)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!
      const field = issue.path.length > 0 ? issue.path.join('.') : 'reading'
      reject('invalid_schema', `${where}${field}: ${issue.message}`)
      continue
    }
    const ts = parseRfc3339(parsed.data.ts)
    if (ts === null) {
      reject('invalid_schema', `${where}ts: not an RFC 3339 timestamp with an offset or Z`)
      continue
    }
    const tsMs = ts.getTime()
    if (tsMs < TS_MIN_MS || tsMs >= TS_MAX_MS) {
      reject('invalid_schema', `${where}ts: outside the years 2000 to 2099`, null)
      continue
    }
    const unknown = Object.keys(parsed.data.values).filter((code) => obisRegister(code, meter.commodity) === undefined)
    if (unknown.length > 0) {
      reject('unknown_obis', `${where}values: unknown OBIS code${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} for a ${meter.commodity} meter`, tsMs)
      continue
    }
    if (tsMs > receivedAtMs + limits.futureToleranceMs) {
      reject('future_timestamp', `${where}ts: ${parsed.data.ts} is more than ${limits.futureToleranceMs} ms ahead of the broker's clock`, tsMs)
      continue
    }
    out.datums.push({ tsMs, values: parsed.data.values, raw: single ? payload.toString('utf8') : JSON.stringify(item) })
  }
  return out
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
