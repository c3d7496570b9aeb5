import type { CommitResult, StoredDatum } from '../services/metering/ingest-service.ts'
import type { QuarantineItem, ValidatedMessage } from '../services/metering/ingest-validation.ts'

/** Messages between the broker and its ingest thread (structured clone turns Buffers into Uint8Arrays). */
export interface IngestWorkerData {
  databaseUrl: string
  timezone: string
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** Commit lanes: one connection each; a lane's groups commit in order, lanes side by side. */
  lanes: number
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

/** A validated message without its payload; its bytes end at `payloadEnd` in the packed buffer, after the previous message's. */
export type PackedMessage = Omit<ValidatedMessage, 'payload'> & { payloadEnd: number }

export type CommitReply = { id: number; result: CompactResult } | { id: number; error: { message: string; code: string | undefined } }

/**
 * What became of a group, without the datums the broker already holds: which of them were
 * stored and for whom. Cloning one object per stored datum back would cost the broker's event
 * loop more than the commit it waits for.
 */
export interface CompactResult {
  /** Per datum of the group, in order: 1 stored, 0 not (a duplicate, or quarantined). */
  stored: Uint8Array
  /** The household of each stored datum, in order (null: nobody's). */
  households: Array<string | null>
  /** Per message: datums that were already stored with the same values. */
  duplicates: Uint32Array
  /** [message index, its quarantine items], for the messages that have any. */
  quarantined: Array<[number, QuarantineItem[]]>
  touched: CommitResult['touched']
}

export function compactResult(messages: ValidatedMessage[], result: CommitResult): CompactResult {
  let total = 0
  for (const m of messages) total += m.datums.length
  const stored = new Uint8Array(total)
  const households: Array<string | null> = []
  const duplicates = new Uint32Array(messages.length)
  const quarantined: Array<[number, QuarantineItem[]]> = []
  let k = 0
  for (let i = 0; i < messages.length; i++) {
    const outcome = result.outcomes[i]!
    let s = 0
    // A stored datum carries the very values object of the datum it came from.
    for (const d of messages[i]!.datums) {
      const next = outcome.stored[s]
      if (next !== undefined && next.values === d.values && next.tsMs === d.tsMs) {
        stored[k] = 1
        households.push(next.householdId)
        s++
      }
      k++
    }
    if (s !== outcome.stored.length) throw new Error('assertion failed: stored datums out of their message order')
    duplicates[i] = outcome.duplicates
    if (outcome.quarantined.length > 0) quarantined.push([i, outcome.quarantined])
  }
  return { stored, households, duplicates, quarantined, touched: result.touched }
}

/** The full result again, from the messages the broker sent and the compact answer. */
export function expandResult(messages: ValidatedMessage[], c: CompactResult): CommitResult {
  let k = 0
  let h = 0
  let q = 0
  const outcomes = messages.map((m, i) => {
    const stored: StoredDatum[] = []
    for (const d of m.datums) {
      if (c.stored[k++] === 1) stored.push({ meterId: m.meterId, tsMs: d.tsMs, values: d.values, householdId: c.households[h++] ?? null })
    }
    const own = c.quarantined[q]
    const quarantined = own !== undefined && own[0] === i ? (q++, own[1].map(item)) : []
    return { stored, quarantined, duplicates: c.duplicates[i]! }
  })
  return { outcomes, touched: c.touched }
}

function buffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function item(q: QuarantineItem): QuarantineItem {
  return { ...q, payload: buffer(q.payload) }
}

/** The request for a group, and what to transfer with it. */
export function packCommit(id: number, lane: number, messages: ValidatedMessage[]): { request: CommitRequest; transfer: ArrayBuffer[] } {
  let total = 0
  for (const m of messages) total += m.payload.length
  // Not from Buffer's shared pool: the whole ArrayBuffer is handed to the other thread.
  const payloads = Buffer.allocUnsafeSlow(total)
  let at = 0
  const packed = messages.map((m): PackedMessage => {
    at += m.payload.copy(payloads, at)
    return { meterId: m.meterId, receivedAtMs: m.receivedAtMs, datums: m.datums, rejects: m.rejects, payloadEnd: at }
  })
  return { request: { id, lane, messages: packed, payloads }, transfer: [payloads.buffer as ArrayBuffer] }
}

export function unpackCommit(request: CommitRequest): ValidatedMessage[] {
  const payloads = buffer(request.payloads)
  let start = 0
  return request.messages.map((m) => {
    const payload = payloads.subarray(start, m.payloadEnd)
    start = m.payloadEnd
    return { meterId: m.meterId, receivedAtMs: m.receivedAtMs, payload, datums: m.datums, rejects: m.rejects.map(item) }
  })
}

