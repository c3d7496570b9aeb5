import type { CommitResult, MessageOutcome, StoredDatum } from '../services/metering/ingest-service.ts'
import type { ServerWaitLimits } from '../shared/db/server-watch.ts'
import type { Commodity } from '../shared/obis.ts'
import type { QuarantineItem, ValidatedMessage, ValidationLimits } from '../services/metering/ingest-validation.ts'

/** Messages between the broker and its ingest thread (structured clone turns Buffers into Uint8Arrays). */
export interface IngestWorkerData {
  databaseUrl: string
  /** The waits of the lanes' connections, as the broker's own handle's. */
  serverWait: Readonly<ServerWaitLimits>
  timezone: string
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** Commit lanes: one connection each; a lane's groups commit in order, lanes side by side. */
  lanes: number
  /** What deferred messages are validated against (the broker's own limits). */
  limits: ValidationLimits
  /** Other brokers may store the same meters' data (coupled through Redis): IngestContext.sharedMeters. */
  sharedMeters: boolean
}

/**
 * A group to commit. The payloads travel packed in one buffer, transferred rather than copied:
 * a payload aedes hands over is a view of the socket chunk it came in, and structured clone
 * would copy each chunk whole (about 25 times the payload bytes under load).
 */
export interface CommitRequest {
  id: number
  lane: number
  messages: PackedMessage[]
  payloads: Uint8Array
  /** Another attempt of a group whose commit outcome the thread could not learn: its commit token (its reply's `unresolvedToken`). */
  retryOf?: string
}

/**
 * A message without its payload; its bytes end at `payloadEnd` in the packed buffer, after the
 * previous message's. Validated by the broker: its datums and rejects. Deferred (the thread
 * validates it): its meter's commodity, and whether someone follows the meter's readings, for
 * only then do the values of its stored datums travel back.
 */
export type PackedMessage = { meterId: string; receivedAtMs: number; payloadEnd: number } & (
  | { datums: ValidatedMessage['datums']; rejects: ValidatedMessage['rejects'] }
  | { commodity: Commodity; followed: boolean }
)

export type CommitReply =
  | { id: number; result: CompactResult }
  /** `unresolvedToken`: the group's commit outcome is unknown; its next attempt names it (`retryOf`) to have it asked first. */
  | { id: number; error: { message: string; code: string | undefined; unresolvedToken?: string } }

/**
 * What became of a group, without what the broker already holds or nobody needs. Cloning one
 * object per stored datum back would cost the broker's event loop more than the commit it waits
 * for: a datum travels back only when someone follows its meter.
 */
export interface CompactResult {
  /** Per message: its datums stored. */
  storedCounts: Uint32Array
  /** Per datum of the messages the broker validated, in order: 1 stored, 0 not (a duplicate, or quarantined). */
  stored: Uint8Array
  /** The household of each of those stored datums, in order (null: nobody's). */
  households: Array<string | null>
  /** The stored datums of the followed deferred messages, in order: what egress publishes. */
  followed: StoredValues[]
  /** Per message: datums that were already stored with the same values. */
  duplicates: Uint32Array
  /** [message index, its quarantine items], for the messages that have any. */
  quarantined: Array<[number, QuarantineItem[]]>
  touched: CommitResult['touched']
}

type StoredValues = Omit<StoredDatum, 'meterId'>

/** How a message travels: validated by the broker, deferred and followed, or deferred and only counted. */
type Carriage = 'validated' | 'followed' | 'counted'

function carriageOf(m: ValidatedMessage, followed: boolean | undefined): Carriage {
  return m.deferred === undefined ? 'validated' : followed === true ? 'followed' : 'counted'
}

/**
 * The answer for a group: `sent` as the broker sent it, `messages` as committed (the deferred
 * ones validated), `followed` per message as the request said.
 */
export function compactResult(sent: ValidatedMessage[], messages: ValidatedMessage[], result: CommitResult, followed: readonly boolean[] = []): CompactResult {
  const storedCounts = new Uint32Array(messages.length)
  const flags: number[] = []
  const households: Array<string | null> = []
  const back: StoredValues[] = []
  const duplicates = new Uint32Array(messages.length)
  const quarantined: Array<[number, QuarantineItem[]]> = []
  for (let i = 0; i < messages.length; i++) {
    const outcome = result.outcomes[i]!
    storedCounts[i] = outcome.stored.length
    const carriage = carriageOf(sent[i]!, followed[i])
    if (carriage === 'followed') for (const d of outcome.stored) back.push({ tsMs: d.tsMs, values: d.values, householdId: d.householdId })
    else if (carriage === 'validated') {
      let s = 0
      // A stored datum carries the very values object of the datum it came from.
      for (const d of messages[i]!.datums) {
        const next = outcome.stored[s]
        const isStored = next !== undefined && next.values === d.values && next.tsMs === d.tsMs
        flags.push(isStored ? 1 : 0)
        if (isStored) {
          households.push(next.householdId)
          s++
        }
      }
      if (s !== outcome.stored.length) throw new Error('assertion failed: stored datums out of their message order')
    }
    duplicates[i] = outcome.duplicates
    if (outcome.quarantined.length > 0) quarantined.push([i, outcome.quarantined])
  }
  return { storedCounts, stored: Uint8Array.from(flags), households, followed: back, duplicates, quarantined, touched: result.touched }
}

/**
 * The result again, from the messages the broker sent and the compact answer. A deferred message's
 * stored datums are listed when it was followed (`followed[i]`); `storedCount` counts them always.
 */
export function expandResult(messages: ValidatedMessage[], c: CompactResult, followed: readonly boolean[] = []): CommitResult {
  let k = 0
  let h = 0
  let f = 0
  let q = 0
  const outcomes = messages.map((m, i): MessageOutcome => {
    const stored: StoredDatum[] = []
    const carriage = carriageOf(m, followed[i])
    if (carriage === 'validated') {
      for (const d of m.datums) {
        if (c.stored[k++] === 1) stored.push({ meterId: m.meterId, tsMs: d.tsMs, values: d.values, householdId: c.households[h++] ?? null })
      }
    } else if (carriage === 'followed') {
      for (let j = 0; j < c.storedCounts[i]!; j++) {
        const d = c.followed[f++]!
        stored.push({ meterId: m.meterId, tsMs: d.tsMs, values: d.values, householdId: d.householdId })
      }
    }
    const own = c.quarantined[q]
    const quarantined = own !== undefined && own[0] === i ? (q++, own[1].map(item)) : []
    const outcome: MessageOutcome = { stored, quarantined, duplicates: c.duplicates[i]! }
    if (carriage !== 'validated') outcome.storedCount = c.storedCounts[i]!
    return outcome
  })
  return { outcomes, touched: c.touched }
}

function buffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function item(q: QuarantineItem): QuarantineItem {
  return { meterId: q.meterId, receivedAtMs: q.receivedAtMs, reason: q.reason, tsMs: q.tsMs, payload: buffer(q.payload), payloadBytes: q.payloadBytes, detail: q.detail }
}

/** The request for a group, and what to transfer with it; `followed` per deferred message as in `PackedMessage`. */
export function packCommit(
  id: number,
  lane: number,
  messages: ValidatedMessage[],
  followed: readonly boolean[] = [],
  retryOf?: string,
): { request: CommitRequest; transfer: ArrayBuffer[] } {
  let total = 0
  for (const m of messages) total += m.payload.length
  // Not from Buffer's shared pool: the whole ArrayBuffer is handed to the other thread.
  const payloads = Buffer.allocUnsafeSlow(total)
  let at = 0
  const packed = messages.map((m, i): PackedMessage => {
    payloads.set(m.payload, at)
    at += m.payload.length
    // Literals, not `{ ...head, … }`: a spread followed by more properties takes V8's slow path (µs a message).
    return m.deferred === undefined
      ? { meterId: m.meterId, receivedAtMs: m.receivedAtMs, payloadEnd: at, datums: m.datums, rejects: m.rejects }
      : { meterId: m.meterId, receivedAtMs: m.receivedAtMs, payloadEnd: at, commodity: m.deferred.commodity, followed: followed[i] === true }
  })
  const request: CommitRequest = retryOf === undefined ? { id, lane, messages: packed, payloads } : { id, lane, messages: packed, payloads, retryOf }
  return { request, transfer: [payloads.buffer as ArrayBuffer] }
}

/** The messages of a request as the broker sent them (deferred ones still unread), and which are followed. */
export function unpackCommit(request: CommitRequest): { messages: ValidatedMessage[]; followed: boolean[] } {
  const payloads = buffer(request.payloads)
  let start = 0
  const followed: boolean[] = []
  const messages = request.messages.map((m): ValidatedMessage => {
    const payload = payloads.subarray(start, m.payloadEnd)
    start = m.payloadEnd
    if ('commodity' in m) {
      followed.push(m.followed)
      // Its size estimate served the broker's queue only.
      return { meterId: m.meterId, receivedAtMs: m.receivedAtMs, payload, datums: [], rejects: [], deferred: { commodity: m.commodity, readingsEstimate: 1 } }
    }
    followed.push(false)
    return { meterId: m.meterId, receivedAtMs: m.receivedAtMs, payload, datums: m.datums, rejects: m.rejects.map(item) }
  })
  return { messages, followed }
}
