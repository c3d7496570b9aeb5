import type { ValidatedMessage } from '../services/metering/ingest-validation.ts'
import { IngestQueue, type IngestCallback, type IngestQueueOptions } from './ingest-queue.ts'

/**
 * Group commits in parallel lanes. Each meter belongs to one lane (a hash of its id), each lane
 * is an ordered ingest queue committing on a connection of its own, so two lanes never write
 * the same meter's rows and a meter's PUBACKs keep its publish order. While one lane's
 * transaction waits on the database, the ingest thread prepares another's.
 */
export class IngestLanes {
  private readonly lanes: IngestQueue[]

  constructor(count: number, optionsOf: (lane: number) => IngestQueueOptions) {
    if (!Number.isInteger(count) || count < 1) throw new Error(`assertion failed: ${count} ingest lanes`)
    this.lanes = Array.from({ length: count }, (_, i) => new IngestQueue(optionsOf(i)))
  }

  get count(): number {
    return this.lanes.length
  }

  /** Tells `done` once the message is durably committed (or quarantined), with what became of it (see IngestQueue.enqueue). */
  enqueue(clientKey: string, message: ValidatedMessage, done: IngestCallback, receivedAt?: number, connection?: object): void {
    this.lanes[laneOf(clientKey, this.lanes.length)]!.enqueue(clientKey, message, done, receivedAt, connection)
  }

  /** Whether the client's line takes another publish now (see IngestQueue.hasRoom). */
  hasRoom(clientKey: string): boolean {
    return this.lanes[laneOf(clientKey, this.lanes.length)]!.hasRoom(clientKey)
  }

  /** Calls `resume` once the client's line has room again (see IngestQueue.whenRoom). */
  whenRoom(clientKey: string, resume: () => void): void {
    this.lanes[laneOf(clientKey, this.lanes.length)]!.whenRoom(clientKey, resume)
  }

  /** Forgets what of `connection` still waits for admission (see IngestQueue.abandon). */
  abandon(clientKey: string, connection: object): number {
    return this.lanes[laneOf(clientKey, this.lanes.length)]!.abandon(clientKey, connection)
  }

  get pendingReadings(): number {
    let n = 0
    for (const lane of this.lanes) n += lane.pendingReadings
    return n
  }

  /** Commits everything submitted so far; resolves when every lane is empty. */
  async drain(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.drain()))
  }

  /** Refuses new messages, commits those already submitted. */
  async close(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.close()))
  }
}

/** The lane of a client: FNV-1a of its key, so the same meter lands in the same lane in every process. */
export function laneOf(clientKey: string, lanes: number): number {
  if (lanes === 1) return 0
  let h = 0x811c9dc5
  for (let i = 0; i < clientKey.length; i++) {
    h ^= clientKey.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h >>> 0) % lanes
}
