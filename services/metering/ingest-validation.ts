import type { IngestLimits } from '../../shared/config.ts'
import { finerThanMillisecond, parseRfc3339Ms } from '../../shared/calendar.ts'
import type { QuarantineReason } from '../../shared/errors.ts'
import { arrayElementSpans, jsonTextProblem, type JsonTextProblem } from '../../shared/json-text.ts'
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
/** The times a quarantine item keeps of a datum outside them (those the API shows: 1970 to 2999). */
const QUARANTINE_TS_MIN_MS = Date.UTC(1970, 0, 1)
const QUARANTINE_TS_MAX_MS = Date.UTC(3000, 0, 1)

function quarantineTs(ms: number | null): number | null {
  return ms !== null && ms >= QUARANTINE_TS_MIN_MS && ms < QUARANTINE_TS_MAX_MS ? ms : null
}

/**
 * A quarantine item's detail is a sentence for people, stored with the item and published on the
 * meter's status topic: at most this many characters (UTF-16 code units), the rest said in a count.
 * The payload itself is kept whole beside it; without a bound, a reading with 50,000 unknown keys, or
 * one key of 500 KB, was written out again in full in the detail.
 */
export const QUARANTINE_DETAIL_CHARS_MAX = 1_024
/** Unknown OBIS codes a detail names, at most; the others are counted. */
export const QUARANTINE_DETAIL_CODES_MAX = 10

function boundedDetail(detail: string): string {
  if (detail.length <= QUARANTINE_DETAIL_CHARS_MAX) return detail
  let cut = QUARANTINE_DETAIL_CHARS_MAX - 40
  // Not between the two halves of a surrogate pair.
  if (cut > 0 && detail.charCodeAt(cut - 1) >= 0xd800 && detail.charCodeAt(cut - 1) <= 0xdbff) cut--
  return `${detail.slice(0, cut)}… (${detail.length - cut} more characters)`
}

function unknownCodesDetail(codes: readonly string[], meter: { commodity: Commodity }): string {
  const what = `${meter.commodity === 'electricity' ? 'an' : 'a'} ${meter.commodity} meter`
  const named = codes.slice(0, QUARANTINE_DETAIL_CODES_MAX).join(', ')
  const more = codes.length > QUARANTINE_DETAIL_CODES_MAX ? ` and ${codes.length - QUARANTINE_DETAIL_CODES_MAX} more` : ''
  return `values: unknown OBIS code${codes.length > 1 ? 's' : ''} ${named}${more} for ${what}`
}

export interface CandidateDatum {
  tsMs: number
  values: RegisterValues
  /**
   * Where the datum came from, for quarantine (conflict, regression): null when it is the whole
   * payload (a single reading), else its position in the batch. Turned back into bytes only if
   * the datum is quarantined (`datumBytes`); a number rather than the parsed element, so that
   * handing a group to the ingest thread copies nothing more per datum.
   */
  index: number | null
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
  /** The payload as received (kept for the quarantine of a single reading). */
  payload: Buffer
  datums: CandidateDatum[]
  rejects: QuarantineItem[]
  /**
   * Set when the message is handed on unread (empty `datums` and `rejects`): whoever commits it
   * validates it first, with `validatePayload`, which is pure, so it finds what the broker would
   * have found. A broker on PostgreSQL leaves the parsing to its ingest thread: a publish in
   * flight then holds only its bytes, and the event loop does not parse what nobody follows.
   */
  deferred?: DeferredParse
}

export interface DeferredParse {
  commodity: Commodity
  /** How many readings the payload seems to hold (for group sizes only): its `"ts"` keys, at least 1. */
  readingsEstimate: number
}

const TS_KEY = Buffer.from('"ts"')

/**
 * A message to validate later, where it is committed (see `ValidatedMessage.deferred`). Its estimate
 * is bounded as validation bounds what comes out: a payload over `payloadBytesMax` is one quarantine
 * item, and a batch of more than `batchReadingsMax` readings another.
 */
export function deferredMessage(meter: MeterIdentity, payload: Buffer, receivedAtMs: number, limits: Pick<ValidationLimits, 'payloadBytesMax' | 'batchReadingsMax'>): ValidatedMessage {
  let readings = 0
  if (payload.length <= limits.payloadBytesMax) {
    for (let at = payload.indexOf(TS_KEY); at !== -1 && readings <= limits.batchReadingsMax; at = payload.indexOf(TS_KEY, at + TS_KEY.length)) readings++
  }
  const readingsEstimate = readings > limits.batchReadingsMax ? 1 : Math.max(1, readings)
  return { meterId: meter.meterId, receivedAtMs, payload, datums: [], rejects: [], deferred: { commodity: meter.commodity, readingsEstimate } }
}

/** The message as validated: itself when it was, else `validatePayload` of its bytes, as received. */
export function validated(message: ValidatedMessage, limits: ValidationLimits): ValidatedMessage {
  if (message.deferred === undefined) return message
  return validatePayload({ meterId: message.meterId, commodity: message.deferred.commodity }, message.payload, message.receivedAtMs, limits)
}

export type ValidationLimits = Pick<IngestLimits, 'payloadBytesMax' | 'batchReadingsMax' | 'quarantineExcerptBytes' | 'futureToleranceMs'>

export interface MeterIdentity {
  meterId: string
  commodity: Commodity
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

export function validatePayload(
  meter: MeterIdentity,
  payload: Buffer,
  receivedAtMs: number,
  limits: ValidationLimits,
): ValidatedMessage {
  const out: ValidatedMessage = { meterId: meter.meterId, receivedAtMs, payload, datums: [], rejects: [] }

  if (payload.length > limits.payloadBytesMax) {
    return rejectWhole(
      out,
      'too_large',
      `payload of ${payload.length} bytes exceeds payloadBytesMax ${limits.payloadBytesMax}; first ${limits.quarantineExcerptBytes} bytes kept`,
      Buffer.from(payload.subarray(0, limits.quarantineExcerptBytes)),
    )
  }

  let text: string
  let doc: unknown
  try {
    text = utf8.decode(payload)
    doc = JSON.parse(text)
  } catch (err) {
    return rejectWhole(out, 'malformed_json', err instanceof TypeError ? 'payload is not valid UTF-8' : `not JSON: ${(err as Error).message}`)
  }

  // What parsing lost, from the text as sent, in one pass over it: nesting too deep to walk (a batch
  // element copied for its quarantine recursed once per level, and 20 KB of brackets overflowed the
  // stack), a key written twice (the parse keeps the last), and values written with a fraction or an
  // exponent, which the parse rounded (`600000.99999999999999` to 600001, `6e5` to 600000): a meter's
  // registers are integers, and what it sent is not stored as something else. Said before what the
  // parse's shape would say: of `"readings"` written twice, the last may be the one that looks wrong.
  const problem = jsonTextProblem(text, PAYLOAD_TEXT_LIMITS)
  const single = !(isPlainObject(doc) && 'readings' in doc)
  if (problem?.kind === 'nesting') {
    return rejectWhole(out, 'invalid_schema', `${single ? '' : 'readings: '}arrays and objects nested deeper than ${PAYLOAD_NESTING_MAX} levels`)
  }
  // A key written twice outside a batch's readings (`readings` itself): which readings were sent cannot be told.
  if (problem?.kind === 'duplicate' && !single && !problem.field.startsWith('readings[')) return rejectWhole(out, 'invalid_schema', textProblemDetail(problem))

  let readings: unknown[]
  if (isPlainObject(doc) && 'readings' in doc) {
    const keys = Object.keys(doc)
    if (keys.length !== 1) return rejectWhole(out, 'invalid_schema', `batch: unexpected key ${keys.find((k) => k !== 'readings')}`)
    if (!Array.isArray(doc.readings)) return rejectWhole(out, 'invalid_schema', 'readings: expected an array')
    if (doc.readings.length === 0) return rejectWhole(out, 'invalid_schema', 'readings: must hold at least one reading')
    if (doc.readings.length > limits.batchReadingsMax) {
      return rejectWhole(out, 'invalid_schema', `readings: ${doc.readings.length} readings exceed batchReadingsMax ${limits.batchReadingsMax}`)
    }
    readings = doc.readings
  } else if (isPlainObject(doc)) {
    readings = [doc]
  } else {
    return rejectWhole(out, 'invalid_schema', 'expected a reading object or {"readings":[…]}')
  }

  const batch = single ? null : new BatchText(text, readings.length)
  if (problem !== null && batch !== null && !batch.placed()) {
    // A rounded literal or a key written twice in a batch whose readings cannot be told apart in its text: the batch, whole.
    return rejectWhole(out, 'invalid_schema', textProblemDetail(problem))
  }
  for (let i = 0; i < readings.length; i++) {
    const item = readings[i]
    // A batch keeps each reading's own bytes; a single reading keeps the payload as sent.
    const at = single ? null : i

    // The literal or the key is the payload's when the reading is alone, else looked for in the reading's own text.
    const found = problem === null ? null : batch === null ? problem : batch.textProblem(i)
    if (found?.kind === 'duplicate') {
      // Said before what the parse's shape would say: of a key written twice, the last copy may look wrong.
      // Of `ts` written twice the parse kept the last: it is not said to be the reading's.
      const ts = found.field === 'ts' || !isPlainObject(item) || typeof item.ts !== 'string' ? null : parseRfc3339Ms(item.ts)
      rejectReading(out, batch, at, 'invalid_schema', textProblemDetail(found), quarantineTs(ts))
      continue
    }
    // The common case is checked by hand; zod is asked only to explain what is wrong.
    if (!isWellFormedReading(item)) {
      const parsed = ingressReadingSchema.safeParse(item)
      const issue = parsed.success ? undefined : parsed.error.issues[0]
      const field = issue !== undefined && issue.path.length > 0 ? issue.path.join('.') : 'reading'
      // Its time is kept when it can be read, as for the other reasons: the quarantine says which datum it was.
      const ts = isPlainObject(item) && typeof item.ts === 'string' ? parseRfc3339Ms(item.ts) : null
      rejectReading(out, batch, at, 'invalid_schema', `${field}: ${issue?.message ?? 'invalid reading'}`, quarantineTs(ts))
      continue
    }
    if (found !== null) {
      rejectReading(out, batch, at, 'invalid_schema', textProblemDetail(found), quarantineTs(parseRfc3339Ms(item.ts)))
      continue
    }
    const tsMs = parseRfc3339Ms(item.ts)
    if (tsMs === null) {
      rejectReading(out, batch, at, 'invalid_schema', 'ts: not an RFC 3339 timestamp with an offset or Z')
      continue
    }
    if (tsMs < TS_MIN_MS || tsMs >= TS_MAX_MS) {
      rejectReading(out, batch, at, 'invalid_schema', 'ts: outside the years 2000 to 2099', quarantineTs(tsMs))
      continue
    }
    if (finerThanMillisecond(item.ts)) {
      rejectReading(out, batch, at, 'invalid_schema', 'ts: finer than a millisecond (datums are told apart to the millisecond)', quarantineTs(tsMs))
      continue
    }
    let unknown: string[] | null = null
    for (const code in item.values) if (obisRegister(code, meter.commodity) === undefined) (unknown ??= []).push(code)
    if (unknown !== null) {
      rejectReading(out, batch, at, 'unknown_obis', unknownCodesDetail(unknown, meter), tsMs)
      continue
    }
    if (tsMs > receivedAtMs + limits.futureToleranceMs) {
      rejectReading(out, batch, at, 'future_timestamp', `ts: ${item.ts} is more than ${limits.futureToleranceMs} ms ahead of the broker's clock`, tsMs)
      continue
    }
    out.datums.push({ tsMs, values: item.values, index: at })
  }
  return out
}

function textProblemDetail(problem: JsonTextProblem): string {
  const what =
    problem.kind === 'number'
      ? `${problem.literal} is not an integer written out (no fraction, no exponent: JSON parsing would round it)`
      : problem.kind === 'duplicate'
        ? 'key written twice in one object (which value was meant cannot be told)'
        : 'nested too deep'
  return `${problem.field}: ${what}`
}

/** The whole payload to quarantine (or the excerpt kept of it). */
function rejectWhole(out: ValidatedMessage, reason: QuarantineReason, detail: string, kept: Buffer = out.payload): ValidatedMessage {
  out.rejects.push({ meterId: out.meterId, receivedAtMs: out.receivedAtMs, reason, tsMs: null, payload: kept, payloadBytes: out.payload.length, detail: boundedDetail(detail) })
  return out
}

/** A reading to quarantine: the payload as sent when it is the only one, else its own bytes, its position named in the detail. */
function rejectReading(out: ValidatedMessage, batch: BatchText | null, at: number | null, reason: QuarantineReason, detail: string, tsMs: number | null = null): void {
  const kept = at === null || batch === null ? out.payload : batch.elementBytes(at)
  const where = at === null ? '' : `readings[${at}].`
  out.rejects.push({ meterId: out.meterId, receivedAtMs: out.receivedAtMs, reason, tsMs, payload: kept, payloadBytes: kept.length, detail: boundedDetail(where + detail) })
}

/** The bytes a quarantined datum came from. */
export function datumBytes(message: ValidatedMessage, datum: CandidateDatum): Buffer {
  if (datum.index === null) return message.payload
  // The payload was valid UTF-8 and a batch when it was validated: the same text gives the same element.
  const text = utf8.decode(message.payload)
  const readings = (JSON.parse(text) as { readings: unknown[] }).readings
  return new BatchText(text, readings.length, readings).elementBytes(datum.index)
}

/**
 * A batch's readings as the meter wrote them, found in its text only when one is wanted (a reading
 * to quarantine, or a rounded literal to place): each reading's own bytes, spacing and number
 * literals as sent, rather than the parsed element written out again. Where the text does not tell
 * (a "readings" key written with escapes), the element is written out again from the parse.
 */
class BatchText {
  private spans: Array<[number, number]> | null | undefined

  constructor(
    private readonly text: string,
    private readonly count: number,
    private parsed?: unknown[],
  ) {}

  private span(i: number): [number, number] | null {
    if (this.spans === undefined) this.spans = arrayElementSpans(this.text, 'readings', this.count)
    return this.spans?.[i] ?? null
  }

  elementBytes(i: number): Buffer {
    const span = this.span(i)
    if (span !== null) return Buffer.from(this.text.slice(span[0], span[1]))
    this.parsed ??= (JSON.parse(this.text) as { readings: unknown[] }).readings
    return Buffer.from(JSON.stringify(this.parsed[i]) ?? 'null')
  }

  /** Whether the text tells where each reading stands. */
  placed(): boolean {
    return this.span(0) !== null
  }

  /** A key written twice in reading `i`, or a literal of it that parsing rounded, its field named within the reading (the batch's readings placed). */
  textProblem(i: number): JsonTextProblem | null {
    const span = this.span(i)
    return span === null ? null : jsonTextProblem(this.text.slice(span[0], span[1]), PAYLOAD_TEXT_LIMITS)
  }
}

/**
 * Levels of arrays and objects a payload may nest before it is refused whole: a batch nests four
 * (`{"readings":[{"values":{…}}]}`), and the HTTP API takes as many (JSON_NESTING_MAX).
 */
export const PAYLOAD_NESTING_MAX = 32

/** What a payload's text is read for: its nesting, and number literals that parsing rounds (registers hold safe integers: 16 digits at most). */
const PAYLOAD_TEXT_LIMITS = { nestingMax: PAYLOAD_NESTING_MAX, digitsMax: String(Number.MAX_SAFE_INTEGER).length }

const VALUES_CODE_LENGTH_MAX = 32
const TS_LENGTH_MAX = 64

/**
 * What `ingressReadingSchema` accepts, checked without allocating: exactly `ts` (a string) and
 * `values` (a non-empty object of codes to non-negative safe integers). Kept in step with the
 * schema by a test that feeds both the same inputs.
 */
export function isWellFormedReading(v: unknown): v is { ts: string; values: RegisterValues } {
  if (!isPlainObject(v)) return false
  let keys = 0
  for (const k in v) {
    if (!Object.hasOwn(v, k)) continue
    keys++
    if (k !== 'ts' && k !== 'values') return false
  }
  if (keys !== 2) return false
  const { ts, values } = v
  if (typeof ts !== 'string' || ts.length > TS_LENGTH_MAX || !isPlainObject(values)) return false
  let codes = 0
  for (const code in values) {
    if (!Object.hasOwn(values, code)) continue
    codes++
    const x = values[code]
    if (code.length > VALUES_CODE_LENGTH_MAX || typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) return false
  }
  return codes > 0
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

