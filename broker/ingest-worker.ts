import { parentPort, workerData } from 'node:worker_threads'
import { createDayResolver } from '../shared/calendar.ts'
import { openDatabase } from '../shared/db/database.ts'
import { configureLogging } from '../shared/logger.ts'
import { MeterTails, commitMessages } from '../services/metering/ingest-service.ts'
import type { ValidatedMessage } from '../services/metering/ingest-validation.ts'
import { compactResult, unpackCommit, type CommitReply, type CommitRequest, type IngestWorkerData } from './ingest-worker-protocol.ts'

/**
 * The group-commit transactions of a broker on PostgreSQL, on a thread of their own: the
 * database's answers are read as soon as they arrive instead of waiting behind the MQTT
 * traffic of the broker's event loop.
 */
const data = workerData as IngestWorkerData
configureLogging({ level: data.logLevel })
const handle = await openDatabase({ databaseUrl: data.databaseUrl, pgliteDir: null, pgliteFsync: false, poolSize: 1, applicationName: 'metershare:ingest' })
// One connection: commits run one after the other anyway, and COPY needs to know the transaction's connection.
const ctx = { dialect: handle.dialect, dayOf: createDayResolver(data.timezone), tails: new MeterTails(), copyIn: handle.copyIn }

// One transaction at a time, in the order asked: each group sees what the previous one stored.
let previous: Promise<void> = Promise.resolve()

parentPort!.on('message', (request: CommitRequest | 'close') => {
  if (request === 'close') {
    previous = previous.then(() => handle.close()).then(() => parentPort!.close())
    return
  }
  previous = previous.then(() => commit(request))
})

async function commit(request: CommitRequest): Promise<void> {
  const messages: ValidatedMessage[] = unpackCommit(request)
  try {
    const result = await commitMessages(handle.db, messages, ctx)
    parentPort!.postMessage({ id: request.id, result: compactResult(messages, result) } satisfies CommitReply)
  } catch (err) {
    ctx.tails.clear()
    const e = err as { message?: string; code?: string }
    parentPort!.postMessage({ id: request.id, error: { message: e.message ?? String(err), code: e.code } } satisfies CommitReply)
  }
}
parentPort!.postMessage('ready')
