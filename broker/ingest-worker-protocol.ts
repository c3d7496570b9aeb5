import type { CommitResult, MessageOutcome, StoredDatum } from '../services/metering/ingest-service.ts'
import type { RegisterValues } from '../shared/wire.ts'
import type { QuarantineItem, ValidatedMessage, ValidationLimits } from '../services/metering/ingest-validation.ts'

/** Messages between the broker and its ingest thread (structured clone turns Buffers into Uint8Arrays). */
export interface IngestWorkerData {
  databaseUrl: string
  timezone: string
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** Commit lanes: one connection each; a lane's groups commit in order, lanes side by side. */
  lanes: number
  /** What deferred messages are validated against (the broker's own limits). */
  limits: ValidationLimits
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
}

/**
 * A message without its payload; its bytes end at `payloadEnd` in the packed buffer, after the
 * previous message's. A deferred one (validated by the thread) says whether someone follows its
 * meter's readings: only then do the values of its stored datums travel back.
 */
export type PackedMessage = Omit<ValidatedMessage, 'payload'> & { payloadEnd: number; followed?: boolean }

export type CommitReply = { id: number; result: CompactResult } | { id: number; error: { message: string; code: string | undefined } }

/**
 * What became of a group, without the datums the broker already holds: which of them were
 * stored and for whom. Cloning one object per stored datum back would cost the broker's event
 * loop more than the commit it waits for.
 */
export interface CompactResult {
  /** Per message: its datums, as the thread validated them (a deferred message's are known only there). */
  datumCounts: Uint32Array
  /** Per datum of the group, in order: 1 stored, 0 not (a duplicate, or quarantined). */
  stored: Uint8Array
  /** The stored datums of the followed deferred messages, in order: what egress publishes. */
  followed: Array<{ tsMs: number; values: RegisterValues }>
  /** The household of each stored datum, in order (null: nobody's). */
  households: Array<string | null>
  /** Per message: datums that were already stored with the same values. */
  duplicates: Uint32Array
  /** [message index, its quarantine items], for the messages that have any. */
  quarantined: Array<[number, QuarantineItem[]]>
  touched: CommitResult['touched']
}

/**
 * The answer for a group: `messages` as committed (validated), `followed` per message whether the
 * values of its stored datums go back (a deferred message whose meter someone follows).
 */
export function compactResult(messages: ValidatedMessage[], result: CommitResult, followed: readonly boolean[] = []): CompactResult {
  let total = 0
  for (const m of messages) total += m.datums.length
  const datumCounts = new Uint32Array(messages.length)
  const stored = new Uint8Array(total)
  const back: CompactResult['followed'] = []
  const households: Array<string | null> = []
  const duplicates = new Uint32Array(messages.length)
  const quarantined: Array<[number, QuarantineItem[]]> = []
  let k = 0
  for (let i = 0; i < messages.length; i++) {
    const outcome = result.outcomes[i]!
    datumCounts[i] = messages[i]!.datums.length
    let s = 0
    // A stored datum carries the very values object of the datum it came from.
    for (const d of messages[i]!.datums) {
      const next = outcome.stored[s]
      if (next !== undefined && next.values === d.values && next.tsMs === d.tsMs) {
        stored[k] = 1
        households.push(next.householdId)
        if (followed[i] === true) back.push({ tsMs: d.tsMs, values: d.values })
        s++
      }
      k++
    }
    if (s !== outcome.stored.length) throw new Error('assertion failed: stored datums out of their message order')
    duplicates[i] = outcome.duplicates
    if (outcome.quarantined.length > 0) quarantined.push([i, outcome.quarantined])
  }
  return { datumCounts, stored, followed: back, households, duplicates, quarantined, touched: result.touched }
}

/**
 * The result again, from the messages the broker sent and the compact answer. A deferred message's
 * stored datums are listed when it was followed (`followed[i]`), and counted in `storedCount`.
 */
export function expandResult(messages: ValidatedMessage[], c: CompactResult, followed: readonly boolean[] = []): CommitResult {
  let k = 0
  let h = 0
  let f = 0
  let q = 0
  const outcomes = messages.map((m, i): MessageOutcome => {
    const stored: StoredDatum[] = []
    let count = 0
    const deferred = m.deferred !== undefined
    const datums = c.datumCounts[i]!
    for (let j = 0; j < datums; j++) {
      if (c.stored[k++] !== 1) continue
      count++
      const householdId = c.households[h++] ?? null
      if (!deferred) {
        const d = m.datums[j]!
        stored.push({ meterId: m.meterId, tsMs: d.tsMs, values: d.values, householdId })
      } else if (followed[i] === true) {
        const d = c.followed[f++]!
        stored.push({ meterId: m.meterId, tsMs: d.tsMs, values: d.values, householdId })
      }
    }
    const own = c.quarantined[q]
    const quarantined = own !== undefined && own[0] === i ? (q++, own[1].map(item)) : []
    return deferred ? { stored, storedCount: count, quarantined, duplicates: c.duplicates[i]! } : { stored, quarantined, duplicates: c.duplicates[i]! }
  })
  return { outcomes, touched: c.touched }
}

function buffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function item(q: QuarantineItem): QuarantineItem {
  return { ...q, payload: buffer(q.payload) }
}

/** The request for a group, and what to transfer with it; `followed` per message as in `compactResult`. */
export function packCommit(id: number, lane: number, messages: ValidatedMessage[], followed: readonly boolean[] = []): { request: CommitRequest; transfer: ArrayBuffer[] } {
  let total = 0
  for (const m of messages) total += m.payload.length
  // Not from Buffer's shared pool: the whole ArrayBuffer is handed to the other thread.
  const payloads = Buffer.allocUnsafeSlow(total)
  let at = 0
  const packed = messages.map((m, i): PackedMessage => {
    at += m.payload.copy(payloads, at)
    const p: PackedMessage = { meterId: m.meterId, receivedAtMs: m.receivedAtMs, datums: m.datums, rejects: m.rejects, payloadEnd: at }
    if (m.deferred !== undefined) {
      p.deferred = m.deferred
      p.followed = followed[i] === true
    }
    return p
  })
  return { request: { id, lane, messages: packed, payloads }, transfer: [payloads.buffer as ArrayBuffer] }
}

/** The messages of a request as the broker sent them (deferred ones still unread), and which are followed. */
export function unpackCommit(request: CommitRequest): { messages: ValidatedMessage[]; followed: boolean[] } {
  const payloads = buffer(request.payloads)
  let start = 0
  const followed: boolean[] = []
  const messages = request.messages.map((m): ValidatedMessage => {
    const payload = payloads.subarray(start, m.payloadEnd)
    start = m.payloadEnd
    followed.push(m.followed === true)
    const message: ValidatedMessage = { meterId: m.meterId, receivedAtMs: m.receivedAtMs, payload, datums: m.datums, rejects: m.rejects.map(item) }
    if (m.deferred !== undefined) message.deferred = m.deferred
    return message
  })
  return { messages, followed }
}

