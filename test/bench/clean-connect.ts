import mqtt from 'mqtt'
import { openDatabase } from '../../shared/db/database.ts'
import { migrateToLatest } from '../../shared/db/migrator.ts'
import { configureLogging } from '../../shared/logger.ts'
import { connectClient, startTestBroker } from '../support/broker.ts'
import { createTestHousehold, createTestMeter, createUtility, insertOccupancy } from '../support/world.ts'

/**
 * `npm run bench:clean-connect -- [DATUMS] [clean|persistent]`: a broker on an in-memory PGlite,
 * a recipient's persistent session left offline while a meter fills its queue (DATUMS, default
 * 50,000 = offlineQueueDatumsMax), then the recipient connects again, with a clean session
 * (default) or its persistent one. Prints how long the event loop was held at most (a 1 ms timer's
 * longest gap), how long until the queue was gone, what was received, and what the access log
 * counted as released. Asserts nothing.
 */
const DATUMS = Number(process.argv[2] ?? 50_000)
const clean = (process.argv[3] ?? 'clean') === 'clean'
configureLogging({ level: 'warn' })
const handle = await openDatabase({ databaseUrl: null, pgliteDir: null, pgliteFsync: false, poolSize: 1 })
await migrateToLatest(handle.db)
const tb = await startTestBroker(handle, {
  policy: { releasedTo: (_r, d) => d.householdId ?? null, householdOwns: () => true, householdMayFollow: () => true },
})
const { broker, recorder, url } = tb
const utility = await createUtility(handle.db)
const meter = await createTestMeter(handle.db, utility.id)
const household = await createTestHousehold(handle.db)
await insertOccupancy(handle.db, meter.id, household.id, new Date('2020-01-01T00:00:00Z'))
const connect = (opts: mqtt.IClientOptions) => connectClient(url, opts)
const session = { clientId: 'app-full', username: utility.id, password: utility.apiKey }
const r = await connect({ ...session, clean: false })
await new Promise((res) => r.subscribe('readings/+', { qos: 1 }, res))
await new Promise((res) => r.end(false, {}, res))
const m = await connect({ clientId: meter.id, username: meter.id, password: meter.secret })
const start = Date.parse('2021-01-01T00:00:00Z')
for (let b = 0; b < DATUMS / 1000; b++) {
  const readings = Array.from({ length: 1000 }, (_, i) => ({ ts: new Date(start + (b * 1000 + i) * 1_800_000).toISOString(), values: { '1-0:1.8.0': b * 1000 + i } }))
  await new Promise((res, rej) => m.publish(`meters/${meter.id}/readings`, JSON.stringify({ readings }), { qos: 1 }, (e) => (e ? rej(e) : res(null))))
}
const persistence = (broker.aedes as unknown as { persistence: { outgoingCount?(id: string): number } }).persistence
const queued = () => persistence.outgoingCount?.('app-full') ?? -1
for (let i = 0; i < 200 && queued() < DATUMS; i++) await new Promise((res) => setTimeout(res, 50))
console.log(`queued for the offline session: ${queued()}`)

let maxGap = 0
let last = performance.now()
const ticker = setInterval(() => {
  const now = performance.now()
  maxGap = Math.max(maxGap, now - last)
  last = now
}, 1)
const t0 = performance.now()
let received = 0
const c = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, ...session, clean })
c.on('message', () => received++)
await new Promise((res) => c.once('connect', res))
const connackMs = performance.now() - t0
for (let i = 0; i < 600 && (queued() > 0 || (!clean && received < DATUMS)); i++) await new Promise((res) => setTimeout(res, 10))
const doneMs = performance.now() - t0
await new Promise((res) => setTimeout(res, 500))
clearInterval(ticker)
await recorder.flush?.()
const logged = await handle.db.selectFrom('access_log').select((eb) => eb.fn.sum<string>('datums').as('n')).executeTakeFirst().catch(() => null)
console.log(JSON.stringify({ clean, connackMs: Math.round(connackMs), queueGoneMs: Math.round(doneMs), eventLoopMaxGapMs: Math.round(maxGap), received, left: queued(), accessLog: logged }))
c.end(true)
m.end(true)
await tb.close()
await handle.close()
