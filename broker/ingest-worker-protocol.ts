import type { CommitResult } from '../services/metering/ingest-service.ts'
import type { QuarantineItem, ValidatedMessage } from '../services/metering/ingest-validation.ts'

/** Messages between the broker and its ingest thread (structured clone turns Buffers into Uint8Arrays). */
export interface IngestWorkerData {
  databaseUrl: string
  timezone: string
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
}

export interface CommitRequest {
  id: number
  messages: ValidatedMessage[]
}

export type CommitReply = { id: number; result: CommitResult } | { id: number; error: { message: string; code: string | undefined } }

function buffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function item(q: QuarantineItem): QuarantineItem {
  return { ...q, payload: buffer(q.payload) }
}

export function fromTransferable(m: ValidatedMessage): ValidatedMessage {
  return { ...m, payload: buffer(m.payload), rejects: m.rejects.map(item) }
}

export function resultFromTransferable(r: CommitResult): CommitResult {
  return { ...r, outcomes: r.outcomes.map((o) => ({ ...o, quarantined: o.quarantined.map(item) })) }
}
