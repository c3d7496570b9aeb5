import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import type { CommitResult } from '../services/metering/ingest-service.ts'
import type { ValidatedMessage } from '../services/metering/ingest-validation.ts'
import { expandResult, packCommit, type CommitReply, type IngestWorkerData } from './ingest-worker-protocol.ts'

/** Longest wait for the ingest thread to open its database connections. */
export const INGEST_THREAD_START_MS_MAX = 30_000

/**
 * V8's young generation of the ingest thread, in MB (its two semi-spaces and the large-object
 * space beside them: 32 MB semi-spaces, where V8's default is 16). A group's datums, rows and SQL
 * outlive the default's scavenges, which then copy them; with this the thread spends about half
 * the time in garbage collection (measured in docs/performance.md). The broker's event loop keeps V8's
 * default: its young generation grows with connections, and 20,000 idle ones must stay small.
 */
export const INGEST_THREAD_YOUNG_GENERATION_MB = 96

/**
 * The broker's side of its ingest thread: commits are posted to the thread and answered in
 * order within their lane. If the thread dies, what it had in hand fails (nothing was
 * acknowledged, the meters resend) and a new thread takes over.
 */
export class IngestThread {
  private current: Worker
  private ready: Promise<void>
  private nextId = 1
  private readonly pending = new Map<number, { messages: ValidatedMessage[]; followed: boolean[]; resolve: (r: CommitResult) => void; reject: (e: Error) => void }>()
  /** Groups (the queue's array of messages, the same at each attempt) whose commit outcome the thread could not learn: the transaction to ask about. */
  private readonly unresolved = new WeakMap<ValidatedMessage[], string>()
  private closing = false

  constructor(
    private readonly data: IngestWorkerData,
    private readonly log: Logger,
  ) {
    ;({ worker: this.current, ready: this.ready } = this.start())
  }

  /** The thread in service now (a new one after a crash): for diagnostics, and the crash test. */
  get worker(): Worker {
    return this.current
  }

  async started(): Promise<void> {
    await this.ready
  }

  /**
   * Commits a group in a lane (0 … lanes - 1): after the lane's previous groups, beside the other
   * lanes'. `follows(meterId)` says, as the group leaves, whether someone follows a meter's readings:
   * the values of a deferred message's stored datums come back only then.
   */
  commit(lane: number, messages: ValidatedMessage[], follows: (meterId: string) => boolean): Promise<CommitResult> {
    if (!Number.isInteger(lane) || lane < 0 || lane >= this.data.lanes) throw new Error(`assertion failed: ingest lane ${lane}`)
    return this.ready.then(
      () =>
        new Promise<CommitResult>((resolve, reject) => {
          const id = this.nextId++
          const followed = messages.map((m) => m.deferred !== undefined && follows(m.meterId))
          this.pending.set(id, { messages, followed, resolve, reject })
          const { request, transfer } = packCommit(id, lane, messages, followed, this.unresolved.get(messages))
          this.current.postMessage(request, transfer)
        }),
    )
  }

  async close(): Promise<void> {
    this.closing = true
    await this.ready.catch(() => undefined)
    const exited = new Promise<void>((r) => this.current.once('exit', () => r()))
    this.current.postMessage('close')
    const timer = setTimeout(() => void this.current.terminate(), INGEST_THREAD_START_MS_MAX)
    await exited
    clearTimeout(timer)
  }

  private start(): { worker: Worker; ready: Promise<void> } {
    const worker = new Worker(new URL('./ingest-worker.mjs', import.meta.url), {
      workerData: this.data,
      resourceLimits: { maxYoungGenerationSizeMb: INGEST_THREAD_YOUNG_GENERATION_MB },
    })
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the ingest thread did not start')), INGEST_THREAD_START_MS_MAX)
      worker.once('message', (m) => {
        clearTimeout(timer)
        if (m === 'ready') resolve()
        else reject(new Error('the ingest thread spoke before it was ready'))
      })
      worker.once('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
    })
    ready.then(() => worker.on('message', (reply: CommitReply) => this.answer(reply))).catch(() => undefined)
    worker.on('error', (err) => this.log.error({ err }, 'ingest thread failed'))
    worker.on('exit', (code) => {
      const lost = [...this.pending.values()]
      this.pending.clear()
      for (const p of lost) p.reject(new Error(`the ingest thread exited (code ${code}) before answering`))
      if (!this.closing) {
        this.log.error({ code }, 'ingest thread exited: starting another')
        ;({ worker: this.current, ready: this.ready } = this.start())
      }
    })
    return { worker, ready }
  }

  private answer(reply: CommitReply): void {
    const p = this.pending.get(reply.id)
    if (p === undefined) return
    this.pending.delete(reply.id)
    if ('error' in reply && reply.error.unresolvedToken !== undefined) this.unresolved.set(p.messages, reply.error.unresolvedToken)
    else this.unresolved.delete(p.messages)
    if ('result' in reply) p.resolve(expandResult(p.messages, reply.result, p.followed))
    else p.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code }))
  }
}
