import { parentPort, workerData } from 'node:worker_threads'
import { createDatumDayResolver } from '../shared/calendar.ts'
import { openDatabase, type DatabaseHandle } from '../shared/db/database.ts'
import { configureLogging, log } from '../shared/logger.ts'
import { CommitOutcomeUnknownError, CommitTokens, UnresolvedCommitError } from '../services/metering/ingest-repository.ts'
import { MeterTails, commitMessages, scriptedIngest, type CommitResult } from '../services/metering/ingest-service.ts'
import { validated } from '../services/metering/ingest-validation.ts'
import { compactResult, unpackCommit, type CommitReply, type CommitRequest, type IngestWorkerData } from './ingest-worker-protocol.ts'

/**
 * The group-commit transactions of a broker on PostgreSQL, on a thread of their own: the
 * database's answers are read as soon as they arrive instead of waiting behind the MQTT
 * traffic of the broker's event loop.
 */
const data = workerData as IngestWorkerData
configureLogging({ level: data.logLevel })
// A connection per lane: a lane's groups commit one after the other (each sees what the previous
// stored), lanes side by side. Each group's transaction goes as scripts on the lane's connection (withConnection).
const lanes = await Promise.all(
  Array.from({ length: data.lanes }, async (_, i) => {
    const handle = await openDatabase({
      databaseUrl: data.databaseUrl,
      pgliteDir: null,
      pgliteFsync: false,
      poolSize: 1,
      serverWait: data.serverWait,
      applicationName: `metershare:ingest:${i + 1}`,
    })
    return { handle, previous: Promise.resolve() }
  }),
)
const datumDayOf = createDatumDayResolver(data.timezone)
// Lanes hold disjoint meters, so they can share the tails.
const tails = new MeterTails()
// The commit tokens of the thread's answered commits, for its next commits to delete (lanes share them).
const tokens = new CommitTokens()
/** How often the thread deletes the commit tokens left older than COMMIT_TOKEN_KEPT_DAYS. */
const COMMIT_TOKENS_PRUNE_EVERY_MS = 3_600_000
/** On the first lane, between its groups (its one connection). */
const pruneTokens = (): void => {
  const lane = lanes[0]!
  lane.previous = lane.previous.then(() =>
    CommitTokens.prune(lane.handle.db).then(
      (n) => void (n > 0 && log.ingest.info({ deleted: n }, 'old commit tokens deleted')),
      (err: unknown) => log.ingest.warn({ err }, 'old commit tokens not deleted: tried again later'),
    ),
  )
}
pruneTokens()
const pruning = setInterval(pruneTokens, COMMIT_TOKENS_PRUNE_EVERY_MS)
/**
 * Groups whose commit outcome could not be learned, by commit token, until their next attempt asks
 * again. A group the broker gave up on (closing, or out of attempts) is never asked for: the oldest
 * is dropped past this many (a lane has at most two groups in hand).
 */
const UNRESOLVED_KEPT_MAX = 64
const unresolved = new Map<string, CommitOutcomeUnknownError<CommitResult>>()

parentPort!.on('message', (request: CommitRequest | 'close') => {
  if (request === 'close') {
    clearInterval(pruning)
    void Promise.all(lanes.map((l) => l.previous.then(() => l.handle.close()))).then(() => parentPort!.close())
    return
  }
  const lane = lanes[request.lane]!
  lane.previous = lane.previous.then(() => commit(lane.handle, request))
})

async function commit(handle: DatabaseHandle, request: CommitRequest): Promise<void> {
  const { messages: sent, followed } = unpackCommit(request)
  try {
    // What the broker handed over unread is validated here, as the broker would have (validatePayload is pure).
    const messages = sent.map((m) => validated(m, data.limits))
    const prior = request.retryOf === undefined ? undefined : unresolved.get(request.retryOf)
    if (prior !== undefined) unresolved.delete(prior.token)
    const result = await commitMessages(handle.db, messages, {
      dialect: handle.dialect,
      datumDayOf,
      tails,
      scripted: scriptedIngest(handle, tokens),
      prior,
      sharedMeters: data.sharedMeters,
    })
    parentPort!.postMessage({ id: request.id, result: compactResult(sent, messages, result, followed) } satisfies CommitReply)
  } catch (err) {
    tails.clear()
    const e = err as { message?: string; code?: string }
    let unresolvedToken: string | undefined
    if (err instanceof UnresolvedCommitError) {
      unresolvedToken = err.unknown.token
      unresolved.set(unresolvedToken, err.unknown as CommitOutcomeUnknownError<CommitResult>)
      if (unresolved.size > UNRESOLVED_KEPT_MAX) unresolved.delete(unresolved.keys().next().value!)
    }
    parentPort!.postMessage({ id: request.id, error: { message: e.message ?? String(err), code: e.code, ...(unresolvedToken === undefined ? {} : { unresolvedToken }) } } satisfies CommitReply)
  }
}
parentPort!.postMessage('ready')
