import type { CommitResult } from '../services/metering/ingest-service.ts'
import type { QuarantineItem, ValidatedMessage } from '../services/metering/ingest-validation.ts'

/** Messages between the broker and its ingest thread (structured clone turns Buffers into Uint8Arrays). */
export interface IngestWorkerData {
  databaseUrl: string
  timezone: string
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
}

/**
 * A group to commit. The payloads travel packed in one buffer, transferred rather than copied:
 * a payload aedes hands over is a view of the socket chunk it came in, and structured clone
 * would copy each chunk whole (about 25 times the payload bytes under load).
 */
export interface CommitRequest {
  id: number
  messages: PackedMessage[]
  payloads: Uint8Array
}

/** A validated message without its payload; its bytes end at `payloadEnd` in the packed buffer, after the previous message's. */
export type PackedMessage = Omit<ValidatedMessage, 'payload'> & { payloadEnd: number }

export type CommitReply = { id: number; result: CommitResult } | { id: number; error: { message: string; code: string | undefined } }

function buffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function item(q: QuarantineItem): QuarantineItem {
  return { ...q, payload: buffer(q.payload) }
}

/** The request for a group, and what to transfer with it. */
export function packCommit(id: number, messages: ValidatedMessage[]): { request: CommitRequest; transfer: ArrayBuffer[] } {
  let total = 0
  for (const m of messages) total += m.payload.length
  // Not from Buffer's shared pool: the whole ArrayBuffer is handed to the other thread.
  const payloads = Buffer.allocUnsafeSlow(total)
  let at = 0
  const packed = messages.map((m): PackedMessage => {
    at += m.payload.copy(payloads, at)
    return { meterId: m.meterId, receivedAtMs: m.receivedAtMs, datums: m.datums, rejects: m.rejects, payloadEnd: at }
  })
  return { request: { id, messages: packed, payloads }, transfer: [payloads.buffer as ArrayBuffer] }
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

export function resultFromTransferable(r: CommitResult): CommitResult {
  return { ...r, outcomes: r.outcomes.map((o) => ({ ...o, quarantined: o.quarantined.map(item) })) }
}
