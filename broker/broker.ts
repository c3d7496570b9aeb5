import { IncomingMessage, ServerResponse, type Server as HttpServer } from 'node:http'
import net, { type AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { Aedes, type Client, type AedesPublishPacket, type Subscription, type PublishPacket } from 'aedes'
import { WebSocketServer, createWebSocketStream } from 'ws'
import type { Config, MqttLimits } from '../shared/config.ts'
import { addDays, createDatumDayResolver, startOfDayMs } from '../shared/calendar.ts'
import { probeDatabase, type DatabaseHandle } from '../shared/db/database.ts'
import { log as rootLog } from '../shared/logger.ts'
import type { Counter } from 'prom-client'
import { ERROR_CODES, errorBody } from '../shared/errors.ts'
import type { Metrics } from '../shared/metrics.ts'
import type { Logger } from 'pino'
import { TrustedProxies } from '../shared/trusted-proxies.ts'
import { TOPIC_FILTER_BYTES_MAX, meterReadingsTopic, topicFilterViolation, meterStatusTopic, parseEgressFilter, parseTopic } from '../shared/topics.ts'
import { authenticateMqtt } from '../services/directory/directory-service.ts'
import { CREDENTIALS_CHANNEL, findMeter, type CredentialsNotice } from '../services/directory/directory-repository.ts'
import { claimMqttSession, expireMqttSessions, recordConnectedMqttSessions, touchMqttSessions } from '../services/directory/mqtt-session-repository.ts'
import { principalKey, type Principal } from '../services/directory/principal.ts'
import { dailyDatumsToPublish } from '../services/metering/daily-publication.ts'
import { DAILY_DUE_CHANNEL, DAILY_DUE_TAKEN_PER_QUERY_MAX, takeDueDays } from '../services/metering/daily-publication-repository.ts'
import { MeterTails, commitMessages } from '../services/metering/ingest-service.ts'
import { freeBytesOf, StorageAlarm, StorageFullError } from '../shared/db/storage.ts'
import { DEFAULT_SERVER_WAIT_LIMITS } from '../shared/db/server-watch.ts'
import { DatabaseAlarm, logDatabaseFailure } from '../shared/db/unreachable.ts'
import { PARTITION_AHEAD_LOCK_WAIT_MS, PARTITIONS_AHEAD_INTERVAL_MS, prepareReadingsPartitions } from '../shared/db/partitions.ts'
import { deferredMessage, validatePayload } from '../services/metering/ingest-validation.ts'
import { AuthThrottle } from './auth-throttle.ts'
import { AEDES_EMITTER_CONCURRENCY, carryEgressMetaThrough, Egress, egressMetaOf, type EgressMeta, type EgressPolicy, type ReleaseRecorder } from './egress.ts'
import { EVERY_TOPIC, LocalEgressInterest } from './egress-interest.ts'
import { MALFORMED_LENGTH, UNSUPPORTED_LEVEL, guardPacketSize } from './frame-guard.ts'
import type { IngestCallback } from './ingest-queue.ts'
import { PubackWriter, takeReadingsPublishes, type ReadingsIntake } from './meter-publishes.ts'
import { ClosedBeforeHeaderError, readProxyHeader } from './proxy-protocol.ts'
import { listenShared } from './accept-handles.ts'
import { IngestLanes } from './ingest-lanes.ts'
import { IngestThread } from './ingest-thread.ts'
import { MemoryPersistence } from './memory-persistence.ts'

/**
 * The MQTT broker: aedes with our authentication, ACL, ingest and egress hooks, on TCP and
 * on WebSocket. Meters publish to their readings topic only; the PUBACK leaves after the
 * datum is committed. Recipients and households subscribe to egress topics; each datum is
 * forwarded to a subscriber only when the egress policy (the release rule) allows it.
 */

/**
 * Groups of one lane queued at the ingest thread at once: one committing, and one ready to start
 * the moment it ends when a backlog of `pipelineReadingsMin` readings is waiting (ingest-queue.ts).
 */
export const INGEST_THREAD_COMMITS_IN_FLIGHT_MAX = 2

/**
 * Longest wait, as a coupled broker closes, for its clients' sessions and its emitter to be closed
 * in the shared store (Redis). Past it, or at once when the store does not answer, the broker drops
 * its connections to the store and its clients: a broker asked to stop during a Redis outage stops.
 */
export const COUPLING_CLOSE_MS_MAX = 5_000

/** Longest wait, in ms, as the broker stops, for its TCP listener to close once every connection it knows is closed. */
export const LISTENER_CLOSE_MS_MAX = 5_000

// MQTT 3.1.1 CONNACK return codes [MQTT-3.2.2.3]; numbers, not aedes' const enum.
const CONNACK_IDENTIFIER_REJECTED = 2
/** How often, in ms, a broker on the embedded database looks whether its disk has its reserve free (ingest also looks before each group). */
export const STORAGE_WATCH_INTERVAL_MS = 5_000
/** Connections the kernel may hold for MQTT's TCP listener before they are accepted (capped by net.core.somaxconn). */
export const MQTT_LISTEN_BACKLOG = 4_096
/**
 * Handles of MQTT's listening socket, so connections accepted per turn of a busy event loop, at most
 * (accept-handles.ts): one handle accepted 10–120 meters a second during a catch-up storm.
 */
export const MQTT_ACCEPT_HANDLES = 64
const CONNACK_SERVER_UNAVAILABLE = 3
const CONNACK_BAD_CREDENTIALS = 4
const CONNACK_NOT_AUTHORIZED = 5

export interface BrokerDeps {
  config: Readonly<Config>
  db: DatabaseHandle
  metrics: Metrics
  policy: EgressPolicy
  /** Counts every datum released to a recipient (access log and metershare_datums_released_total). */
  recorder: ReleaseRecorder
  /** Persistence and emitter for several brokers (Redis); in-memory when absent. Closed with the broker. */
  aedesOptions?: {
    persistence?: unknown
    mq?: unknown
    close?: () => Promise<void>
    /** Whether the shared store answers now. */
    healthy?: () => boolean
    /** Drops the store's connections at once, with the commands they hold. */
    abandon?: () => void
  }
  clock?: () => number
  /**
   * On PostgreSQL, group commits run on a thread of their own with their own connections
   * (default). PGlite is one connection in this process: commits run in-process there.
   */
  ingestThread?: boolean
}

export interface Broker {
  readonly aedes: Aedes
  readonly ingest: IngestLanes
  /** The thread that commits on PostgreSQL (null: commits on the event loop, as on PGlite). */
  readonly ingestThread: IngestThread | null
  /** Serves one connection (TCP socket or WebSocket stream). */
  handle(conn: Duplex, address: string, req?: IncomingMessage): void
  listenTcp(port: number, host: string): Promise<AddressInfo>
  /** MQTT over WebSocket at `path` of an HTTP server. */
  attachWebSocket(server: HttpServer, path?: string): void
  principalOf(client: Client): Principal | undefined
  /**
   * Whether the database answers, for /healthz: a group committed within COMMIT_PROVES_DATABASE_MS
   * says so at once; otherwise a probe does (probeDatabase).
   */
  databaseAnswers(): Promise<boolean>
  /** Whether ingest is held because the database's disk is full (storage.ts), for /healthz. */
  storageFull(): boolean
  /** Stops intake, commits and acknowledges what was received, then disconnects everyone. */
  close(): Promise<void>
}

/**
 * How long, in ms, a committed group stands as proof that the database answers. In a catch-up storm
 * the event loop can be held up past the probe's deadline (HEALTH_PROBE_TIMEOUT_MS): the probe's
 * timer then fires before its answer is read, and /healthz said "database": false (503) for
 * 4–14 s while groups were committing by the thousand, enough for a load balancer to take every
 * broker out of service in the middle of the storm. A commit is the database answering.
 */
export const COMMIT_PROVES_DATABASE_MS = 5_000

function authError(message: string, returnCode: number): Error & { returnCode: number } {
  return Object.assign(new Error(message), { returnCode })
}

/**
 * mqtt-packet writes a packet in pieces (header, length, topic, payload…) to a corked stream; ws's
 * stream sent each piece as a WebSocket message of its own (found by probing: a CONNACK in four
 * messages, a PUBLISH in six), which a browser then handles one by one. Given a `_writev`, the
 * stream hands what was corked over at once: one message a packet, or several packets.
 */
function sendCorkedWritesAsOneMessage(stream: Duplex): void {
  const write = stream._write.bind(stream)
  stream._writev = (chunks, callback) => {
    const buffers = chunks.map(({ chunk, encoding }) => (Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string, encoding)))
    write(buffers.length === 1 ? buffers[0]! : Buffer.concat(buffers), 'buffer' as BufferEncoding, callback)
  }
}

/** What a CONNECT asked for beyond aedes' client: whether its client id was empty, its keepalive, its will's topic. */
interface ConnectRequest {
  clientIdEmpty: boolean
  keepaliveSeconds: number
  willTopic: string | null
}

/**
 * Why a connect is refused with CONNACK 2 before its credentials are looked at, or null: an empty
 * client id with clean session 0 [MQTT-3.1.3-8]; a client id over `clientIdBytesMax`; a keepalive
 * of 0 (never checked) or over `keepaliveSecondsMax`, which a 3.1.1 server cannot tell the client to
 * change: refused with "identifier rejected", as Mosquitto does past its max_keepalive.
 */
function connectRefusal(client: Client, request: ConnectRequest, limits: Pick<MqttLimits, 'clientIdBytesMax' | 'keepaliveSecondsMax'>): string | null {
  if (request.clientIdEmpty && !client.clean) return 'an empty client id with clean session 0 [MQTT-3.1.3-8]'
  if (Buffer.byteLength(client.id) > limits.clientIdBytesMax) return `a client id over ${limits.clientIdBytesMax} bytes`
  if (request.keepaliveSeconds === 0) return `keepalive 0 (off): a keepalive of 1 to ${limits.keepaliveSecondsMax} s is required`
  if (request.keepaliveSeconds > limits.keepaliveSecondsMax) return `keepalive over ${limits.keepaliveSecondsMax} s`
  return null
}

export async function createBroker(deps: BrokerDeps): Promise<Broker> {
  const { config, db, metrics, policy } = deps
  const limits = config.ingest
  const clock = deps.clock ?? Date.now
  const log = rootLog.broker
  const datumDayOf = createDatumDayResolver(config.timezone)
  const principals = new WeakMap<Client, Principal>()
  const addresses = new WeakMap<Duplex, string>()
  const counted = new WeakSet<Client>()
  const throttle = new AuthThrottle(config.mqtt, clock)
  const pendingDaily = new Set<Promise<void>>()
  const tails = new MeterTails()

  // Without a shared store, sessions live in this broker's memory, where an expired one is dropped whole.
  const memory = deps.aedesOptions?.persistence === undefined ? new MemoryPersistence() : null
  const aedes = await Aedes.createBroker({
    persistence: deps.aedesOptions?.persistence ?? memory,
    ...(deps.aedesOptions?.mq !== undefined ? { mq: deps.aedesOptions.mq } : {}),
    connectTimeout: config.mqtt.connectTimeoutMs,
    // The keepalive and the client id are checked in authenticate (connectRefusal): aedes answers a
    // keepalive past its limit with CONNACK 6, which MQTT 3.1.1 does not have, and checks the client
    // id's length for MQTT 3.1 only.
    drainTimeout: config.mqtt.drainTimeoutMs,
    // $SYS is closed to clients (authorizeSubscribe refuses it); keep its chatter rare.
    heartbeatInterval: 60_000,
    // Above what the egress hands over at once, so that the emitter never queues (see broker/egress.ts).
    concurrency: AEDES_EMITTER_CONCURRENCY,
  })
  const coupled = deps.aedesOptions?.mq !== undefined
  /** A coupled broker's Redis is away (RedisCoupling.healthy); never for a broker alone. */
  const redisAway = (): boolean => deps.aedesOptions?.healthy?.() === false
  if (deps.aedesOptions?.mq !== undefined) carryEgressMetaThrough(deps.aedesOptions.mq)
  // Coupled brokers cannot see each other's subscribers: they publish everything.
  const interest = deps.aedesOptions?.mq === undefined ? new LocalEgressInterest() : null
  const egress = new Egress(aedes, log, interest ?? EVERY_TOPIC, metrics)
  egress.holdDaysUntilOver((day) => startOfDayMs(addDays(day, 1), config.timezone), clock)
  skipFanOutOfMeterReadings(aedes, principals)
  clearRefusedDeliveriesExactly(aedes)
  // Redis holds the queues of a coupled broker; in memory they are bounded here.
  // The principal of each persistent session, offline too: what it may not receive is not queued for it.
  const sessionPrincipals = new Map<string, Principal>()
  const offlineQueues =
    memory !== null
      ? boundOfflineQueues(aedes, config.mqtt.offlineQueueDatumsMax, metrics, log, (clientId, packet) => {
          const principal = sessionPrincipals.get(clientId)
          return principal === undefined || mayReceive(principal, packet) !== false
        })
      : null

  const thread =
    db.url !== null && deps.ingestThread !== false
      ? new IngestThread(
          {
            databaseUrl: db.url,
            serverWait: db.serverWait ?? DEFAULT_SERVER_WAIT_LIMITS,
            timezone: config.timezone,
            logLevel: config.logLevel,
            lanes: limits.commitLanes,
            // The broker's own limits: the thread validates as the broker would.
            limits,
            // A meter taken over by another broker may still have groups committing here.
            sharedMeters: coupled,
          },
          rootLog.ingest,
        )
      : null
  await thread?.started()
  // On the ingest thread, lanes of meters commit side by side, each in order on a connection of its own,
  // where the lane's next group can wait while one commits. In-process (PGlite, one connection), one lane
  // and one group at a time.
  const laneCount = thread !== null ? limits.commitLanes : 1
  let lastCommitAt = Number.NEGATIVE_INFINITY
  // PGlite: whether its disk has less free than the reserve, looked at on a timer too, while no publish
  // comes (found by probing: started on a nearly full disk, /healthz said ok while every write failed).
  let belowReserve = false
  const showStorage = (): void => void metrics.storageFull.set(storage.full || belowReserve ? 1 : 0)
  const storage = new StorageAlarm(rootLog.ingest, showStorage)
  const database = new DatabaseAlarm(rootLog.ingest, (down) => metrics.databaseUnreachable.set(down ? 1 : 0))
  const pgliteDir = db.pgliteDir
  /** What a look at the disk found; said in the log unless ingest's hold says it (`quiet`: ingest is about to). */
  const noteFree = (free: number, quiet = false): void => {
    if (pgliteDir === undefined || free < limits.storageFreeBytesMin === belowReserve) return
    belowReserve = !belowReserve
    showStorage()
    if (quiet || storage.full) return
    if (belowReserve) {
      log.error(
        { detail: new StorageFullError(pgliteDir, free, limits.storageFreeBytesMin).message },
        "database storage below its reserve: publishes are held unacknowledged and the API refuses writes until space is freed on the database's disk",
      )
    } else log.warn({ freeBytes: free }, 'database storage above its reserve again')
  }
  const watchReserve = async (): Promise<void> => {
    if (pgliteDir === undefined) return
    const free = await freeBytesOf(pgliteDir).catch(() => null)
    if (free !== null) noteFree(free)
  }
  await watchReserve()
  const reserveTimer = pgliteDir !== undefined ? setInterval(() => void watchReserve(), STORAGE_WATCH_INTERVAL_MS) : undefined
  reserveTimer?.unref()
  const ingest = new IngestLanes(laneCount, (lane) => ({
    limits: {
      ...limits,
      queueReadingsMax: Math.ceil(limits.queueReadingsMax / laneCount),
      commitsInFlightMax: thread !== null ? INGEST_THREAD_COMMITS_IN_FLIGHT_MAX : 1,
    },
    metrics,
    log: rootLog.ingest,
    storage,
    database,
    commit: async (messages) => {
      if (thread !== null) return thread.commit(lane, messages, (meterId) => egress.interest.wants('readings', meterId))
      // PGlite: not even tried below the reserve (a WAL that cannot grow hangs PGlite, see storage.ts).
      if (pgliteDir !== undefined) {
        const free = await freeBytesOf(pgliteDir)
        // Below the reserve, the hold this starts says so.
        noteFree(free, free < limits.storageFreeBytesMin)
        if (free < limits.storageFreeBytesMin) throw new StorageFullError(pgliteDir, free, limits.storageFreeBytesMin)
      }
      try {
        return await commitMessages(db.db, messages, { dialect: db.dialect, datumDayOf, tails, sharedMeters: coupled })
      } catch (err) {
        // A tail may be stale (another process stored data for one of these meters): look neighbours up again.
        tails.clear()
        throw err
      }
    },
    onCommitted: (_messages, result) => {
      lastCommitAt = clock()
      let stored = 0
      for (const o of result.outcomes) {
        stored += o.storedCount ?? o.stored.length
        if (o.duplicates > 0) metrics.readingsDuplicate.inc(o.duplicates)
        for (const q of o.quarantined) metrics.readingsQuarantined.labels(q.reason).inc()
        egress.publishReadings(o.stored)
        egress.publishStatus(o.quarantined)
      }
      metrics.readingsStored.inc(stored)
      // One line a message, its counts by reason: not a line a datum (a batch of 1,000 bad readings wrote
      // 1,000), nor the detail, which quotes what the meter sent (a secret sent by mistake as a register's
      // name reached the log: found by probing). The items, details included, are GET /admin/quarantine's.
      for (const o of result.outcomes) {
        if (o.quarantined.length === 0) continue
        const reasons: Partial<Record<string, number>> = {}
        for (const q of o.quarantined) reasons[q.reason] = (reasons[q.reason] ?? 0) + 1
        rootLog.ingest.info({ meterId: o.quarantined[0]!.meterId, quarantined: reasons }, 'readings quarantined (GET /admin/quarantine has them)')
      }
      // The commit names the groups whose day may have completed; only followed meters' are looked at.
      const completing = result.touched.filter((g) => egress.interest.wants('daily', g.meterId))
      if (completing.length > 0) {
        // Completed days are found after the commit, off the PUBACK path.
        const p = dailyDatumsToPublish(db.db, completing, { timezone: config.timezone })
          .then((datums) => egress.publishDaily(datums))
          .catch((err: unknown) => rootLog.ingest.error({ err }, 'daily publication failed'))
          .finally(() => pendingDaily.delete(p))
        pendingDaily.add(p)
      }
    },
  }))

  // Renewed credentials (a leaked secret, a meter replaced): the connections the old ones opened are
  // closed, on every broker; reconnecting needs the new ones.
  const unlistenCredentials = await db.listen(CREDENTIALS_CHANNEL, (payload) => {
    let notice: Partial<CredentialsNotice>
    try {
      notice = JSON.parse(payload) as Partial<CredentialsNotice>
    } catch {
      return
    }
    for (const client of Object.values((aedes as unknown as { clients: Record<string, Client> }).clients)) {
      const principal = principals.get(client)
      if (principal === undefined || principalKey(principal) !== notice.principal) continue
      // Found by probing: a meter taken out of service was said to have had its credentials renewed.
      log.info({ clientId: client.id, principal: notice.principal }, notice.why === 'retired' ? 'connection closed: the meter was taken out of service' : 'connection closed: its credentials were renewed')
      client.close()
    }
  })

  // What a CONNECT asked for that aedes does not keep on its client: read before aedes answers it.
  const connectRequests = new WeakMap<Client, ConnectRequest>()
  aedes.preConnect = (client, packet, callback) => {
    const will = packet.will ?? null
    // [MQTT-3.1.2-14] A will of QoS 3 is a malformed CONNECT: closed unanswered [MQTT-4.8.0-1].
    if (will !== null && (will.qos ?? 0) > 2) {
      log.warn({ clientId: packet.clientId.slice(0, config.mqtt.clientIdBytesMax) }, 'connect with a will of QoS 3 [MQTT-3.1.2-14]: disconnecting')
      return callback(new Error('a will of QoS 3'), false)
    }
    connectRequests.set(client, { clientIdEmpty: packet.clientId === '', keepaliveSeconds: packet.keepalive ?? 0, willTopic: will?.topic ?? null })
    callback(null, true)
  }

  aedes.authenticate = (client, username, password, answerConnect) => {
    // The password is a meter's secret or an API key, and mqtt-packet's parser keeps the CONNECT packet
    // for as long as the connection lasts: once the connect is answered nothing needs it, so it is wiped
    // then, and the broker's heap (a heap snapshot, a core dump) does not keep it while the client stays.
    const done: typeof answerConnect = (err, ok) => {
      password?.fill(0)
      answerConnect(err, ok)
    }
    const address = addresses.get(client.conn as Duplex) ?? 'unknown'
    const refuse = (message: string, code: number): void => done(authError(message, code) as never, null)
    // MQTT's strings never hold U+0000 [MQTT-1.5.3-2]; PostgreSQL's text cannot either.
    if (client.id.includes('\u0000')) return refuse('identifier rejected', CONNACK_IDENTIFIER_REJECTED)
    if (username?.includes('\u0000') === true) return refuse('bad user name or password', CONNACK_BAD_CREDENTIALS)
    const request = connectRequests.get(client)
    const refusal = request === undefined ? null : connectRefusal(client, request, config.mqtt)
    if (refusal !== null) {
      log.info({ clientId: client.id.slice(0, config.mqtt.clientIdBytesMax), username, keepaliveSeconds: request?.keepaliveSeconds }, `mqtt connect refused: ${refusal}`)
      return refuse('identifier rejected', CONNACK_IDENTIFIER_REJECTED)
    }
    const delay = throttle.begin(address, username)
    const answer = async (): Promise<void> => {
      // A client that gave up while its connect waited (a storm, a slowed answer) costs no lookup.
      if ((client.conn as Duplex).destroyed) {
        throttle.recordNoVerdict(address, username)
        return refuse('client gone before it was answered', CONNACK_SERVER_UNAVAILABLE)
      }
      if (aedes.connectedClients >= config.mqtt.connectionsMax) {
        throttle.recordNoVerdict(address, username)
        log.warn({ connectionsMax: config.mqtt.connectionsMax }, 'connection refused: connection limit reached')
        return refuse('connection limit reached', CONNACK_SERVER_UNAVAILABLE)
      }
      // A coupled broker reads the client's session from Redis once it is let in: while Redis is away the
      // connect waited, unanswered, until the client gave up (found by probing: 10 s, then closed).
      if (redisAway()) {
        throttle.recordNoVerdict(address, username)
        return refuse('server unavailable', CONNACK_SERVER_UNAVAILABLE)
      }
      const principal = await authenticateMqtt(db.db, { username, password })
      if (principal === null) {
        throttle.recordFailure(address, username)
        metrics.mqttAuthFailures.inc()
        log.info({ clientId: client.id, username, address }, 'mqtt authentication failed')
        return refuse('bad user name or password', CONNACK_BAD_CREDENTIALS)
      }
      if (principal.role === 'meter' && client.id !== principal.meterId) {
        // The right secret under another client id: the identifier is what is wrong (client id = username = the meter id).
        throttle.recordNoVerdict(address, username)
        log.info({ clientId: client.id, username }, 'mqtt client id refused: a meter connects with its own id as client id')
        return refuse('identifier rejected', CONNACK_IDENTIFIER_REJECTED)
      }
      // A will is published as the client would publish: one it could not publish is refused at the connect,
      // as Mosquitto does, rather than accepted and dropped unheard when it fires; before any session is claimed.
      if (request?.willTopic != null && !(principal.role === 'meter' && request.willTopic === meterReadingsTopic(principal.meterId))) {
        throttle.recordNoVerdict(address, username)
        log.info({ clientId: client.id, username, willTopic: request.willTopic.slice(0, TOPIC_FILTER_BYTES_MAX) }, 'mqtt connect refused: a will on a topic the client may not publish to')
        return refuse('not authorized', CONNACK_NOT_AUTHORIZED)
      }
      if (principal.role !== 'meter') {
        // A recipient or household may not take a meter's client id, nor another principal's live session.
        const squatting = (await findMeter(db.db, client.id)) !== undefined
        const current = (aedes as unknown as { clients: Record<string, Client> }).clients[client.id]
        const other = current !== undefined ? principals.get(current) : undefined
        // Nor one under which another principal's persistent session waits, offline.
        const claim =
          squatting || (other !== undefined && principalKey(other) !== principalKey(principal))
            ? 'taken'
            : await claimMqttSession(db.db, client.id, principalKey(principal), !client.clean, new Date(clock()), config.mqtt.persistentSessionsPerPrincipalMax)
        if (claim === 'taken') {
          throttle.recordNoVerdict(address, username)
          log.info({ clientId: client.id, username }, 'mqtt client id refused: taken by another principal or its persistent session')
          return refuse('identifier rejected', CONNACK_IDENTIFIER_REJECTED)
        }
        if (claim === 'full') {
          // 5 (not authorized): the credentials hold and the client id is free, but this principal may not
          // open one more persistent session. Not 2, which says the id itself is refused (a clean connect
          // under it is let in), nor 3, which says the server is unavailable and invites retrying at once.
          throttle.recordNoVerdict(address, username)
          log.warn(
            { clientId: client.id, username, persistentSessionsPerPrincipalMax: config.mqtt.persistentSessionsPerPrincipalMax },
            'persistent session refused: its principal holds as many as it may (end one with a clean connect under its client id)',
          )
          return refuse('not authorized', CONNACK_NOT_AUTHORIZED)
        }
      }
      throttle.recordSuccess(address, username)
      principals.set(client, principal)
      offlineSince.delete(client.id)
      if (!client.clean) {
        holdLive.hold(client)
        sessionPrincipals.set(client.id, principal)
      } else sessionPrincipals.delete(client.id)
      done(null, true)
    }
    // Whatever fails in a lookup answers this connect, never the process.
    const answered = (): void => {
      answer().catch((err: unknown) => {
        throttle.recordNoVerdict(address, username)
        logDatabaseFailure(log, 'error', err, { clientId: client.id }, 'authentication lookup failed')
        refuse('server unavailable', CONNACK_SERVER_UNAVAILABLE)
      })
    }
    if (delay > 0) setTimeout(answered, delay)
    else answered()
  }

  // Meters' readings publishes by the way they came in: both counted from the start (0 until used), so a
  // scrape tells whether the fast path (meter-publishes.ts) is in use.
  const publishesTakenDirectly = metrics.ingestPublishes.labels('direct')
  const publishesThroughAedes = metrics.ingestPublishes.labels('aedes')

  aedes.authorizePublish = (client, packet, callback) => {
    const principal = client === null ? undefined : principals.get(client)
    if (client === null || principal === undefined) return callback(new Error('publish without an authenticated client'))
    if (principal.role !== 'meter' || packet.topic !== meterReadingsTopic(principal.meterId)) {
      log.warn({ clientId: client.id, role: principal.role, topic: packet.topic }, 'publish refused: disconnecting')
      return callback(new Error(`publishing to ${packet.topic} is not allowed`))
    }
    // [MQTT-2.3.1-1] A QoS 1 or 2 publish carries a non-zero packet identifier: one with 0 is a broken
    // client, closed as Mosquitto does (mqtt-packet reads it, and its PUBACK would answer nothing it sent).
    if (packet.qos > 0 && (packet as { messageId?: number }).messageId === 0) {
      log.warn({ clientId: client.id, role: principal.role, qos: packet.qos }, 'publish with packet identifier 0 [MQTT-2.3.1-1]: disconnecting')
      return callback(new Error('a QoS 1 or 2 publish with packet identifier 0'))
    }
    // Readings are never retained: the datum lives in the database, not in the broker.
    packet.retain = false
    // Once the broker is closing, intake has stopped: a publish is neither acknowledged nor refused
    // (the meter resends it after the restart). Refused, its error would disconnect the meter at once,
    // and the PUBACKs of its earlier publishes still being committed would be lost with the connection:
    // stored, never acknowledged (902 and 4,230 datums at a SIGTERM under load, crash tester).
    // aedes writes the PUBACK once told; an error instead (not committed) disconnects the meter, which
    // resends on reconnect.
    takeReadings(client, principal, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload), callback, publishesThroughAedes)
  }

  /** A meter's publish to its readings topic, to be answered once committed (an error: not committed); `path` counts it. */
  function takeReadings(client: Client, principal: Extract<Principal, { role: 'meter' }>, payload: Buffer, answer: IngestCallback, path: Counter.Internal): void {
    if (closing !== null) return
    path.inc()
    const receivedAt = performance.now()
    // On PostgreSQL the ingest thread validates: a publish in flight holds only its bytes, and of its
    // datums this event loop gets back only the values someone follows.
    const message = thread !== null ? deferredMessage(principal, payload, clock(), limits) : validatePayload(principal, payload, clock(), limits)
    // The ingest queue records the acknowledgement's latency.
    ingest.enqueue(principal.meterId, message, answer, receivedAt, client)
  }

  // A connected meter's readings publishes are read past aedes' parser and hooks (meter-publishes.ts).
  const pubacks = new PubackWriter()
  const intakeReadings: ReadingsIntake = {
    take(client, publish, answer) {
      const principal = principals.get(client)
      if (principal?.role !== 'meter') return answer(new Error('publish without an authenticated meter'))
      takeReadings(client, principal, publish.payload, answer, publishesTakenDirectly)
    },
    hasRoom(client) {
      const principal = principals.get(client)
      return principal?.role !== 'meter' || ingest.hasRoom(principal.meterId)
    },
    whenRoom(client, resume) {
      const principal = principals.get(client)
      if (principal?.role === 'meter') ingest.whenRoom(principal.meterId, resume)
      else queueMicrotask(resume)
    },
  }

  aedes.authorizeSubscribe = (client, sub, callback) => {
    const principal = principals.get(client)
    // Not a topic filter at all (U+0000, a misplaced wildcard): a protocol violation closes the connection, as
    // aedes does for most of them, but not all (it let `readings/+a` through, answered 0x80 below).
    const violation = topicFilterViolation(sub.topic)
    if (violation !== null) {
      log.warn({ clientId: client.id, role: principal?.role, topic: sub.topic.slice(0, TOPIC_FILTER_BYTES_MAX), violation }, 'subscription is not a topic filter: disconnecting')
      return callback(new Error(violation), null)
    }
    const allowed = principal !== undefined && maySubscribe(principal, sub)
    if (!allowed) log.info({ clientId: client.id, role: principal?.role, topic: sub.topic.slice(0, TOPIC_FILTER_BYTES_MAX) }, 'subscription refused')
    else interest?.subscribed(client, sub.topic)
    // Granted as asked: SUBACK answers with the QoS requested whatever is returned here, and what the
    // broker publishes is QoS 1 at most, so a QoS 2 subscription receives QoS 1 [MQTT-3.8.4-6].
    callback(null, allowed ? sub : null)
  }

  function maySubscribe(principal: Principal, sub: Subscription): boolean {
    switch (principal.role) {
      case 'meter':
        return sub.topic === meterStatusTopic(principal.meterId)
      case 'recipient':
        return parseEgressFilter(sub.topic) !== null
      case 'household': {
        const f = parseEgressFilter(sub.topic)
        return f !== null && f.channel === 'readings' && f.meterId !== null && policy.householdMayFollow(principal.householdId, f.meterId, clock())
      }
      case 'operator':
        return false
    }
  }

  /**
   * Whether a principal may receive a packet now: a meter its own status, a recipient what the release
   * rule releases to it (the owner, for its access log), a household its own load curve.
   */
  function mayReceive(principal: Principal, packet: AedesPublishPacket): { meta: EgressMeta; owner: string } | boolean {
    if (principal.role === 'meter') return packet.topic === meterStatusTopic(principal.meterId)
    const topic = parseTopic(packet.topic)
    if (topic === null || topic.kind !== 'egress') return false
    const granularity = topic.channel === 'readings' ? 'load_curve' : 'daily'
    const meta = egressMetaOf(packet.payload as Buffer, granularity)
    if (meta === null || meta.meterId !== topic.meterId) return false
    const now = clock()
    if (principal.role === 'recipient') {
      const owner = policy.releasedTo(principal.partyId, meta, now)
      return owner === null ? false : { meta, owner }
    }
    if (principal.role === 'household') return granularity === 'load_curve' && policy.householdOwns(principal.householdId, meta, now)
    return false
  }

  aedes.authorizeForward = (client, packet: AedesPublishPacket) => {
    const principal = principals.get(client)
    if (principal === undefined) return null
    const verdict = mayReceive(principal, packet)
    if (verdict === false) return null
    if (verdict !== true && principal.role === 'recipient') {
      deps.recorder.record(principal.partyId, verdict.owner, verdict.meta.meterId, verdict.meta.day ?? datumDayOf(verdict.meta.ts!), 'mqtt', 1)
    }
    return packet
  }

  if (interest !== null) {
    aedes.on('client', (client) => interest.connected(client))
    aedes.on('unsubscribe', (filters, client) => interest.unsubscribed(client, filters))
  }
  const holdLive = holdLiveUntilQueueSent(aedes, config.mqtt.liveDeliveriesHeldMax)
  // Once the CONNACK is written and before aedes reads on: it reads the meter's socket again while it
  // sends the session's offline queue, before `clientReady` (a publish sent at once on the CONNACK, as
  // mosquitto_pub does, came in there). What aedes parsed during the CONNECT stays its own.
  aedes.on('connackSent', (connack, client) => {
    const principal = principals.get(client)
    if (connack.returnCode !== 0 || principal?.role !== 'meter' || client.closed) return
    if (!takeReadingsPublishes(client, meterReadingsTopic(principal.meterId), intakeReadings, pubacks)) {
      log.warn({ clientId: client.id }, 'readings publishes left to aedes: its client lacks the internals meter-publishes.ts relies on')
    }
  })
  aedes.on('clientReady', (client) => {
    holdLive.release(client)
    offlineQueues?.connected(client.id)
    const principal = principals.get(client)
    // aedes reports a client ready once its offline queue is read (a Redis round trip when coupled): a publish
    // sent right behind the CONNECT may have been refused and the connection closed by then, its disconnect
    // already reported. Counting it now would count it for good.
    if (principal === undefined || client.closed) return
    counted.add(client)
    metrics.mqttConnections.labels(principal.role).inc()
  })
  aedes.on('clientDisconnect', (client) => {
    holdLive.drop(client)
    const principal = principals.get(client)
    // A persistent session resends what was not acknowledged: what of this connection still waits for
    // admission is forgotten rather than held (ingest-queue.ts, abandon()).
    if (principal?.role === 'meter' && !client.clean) {
      const forgotten = ingest.abandon(principal.meterId, client)
      if (forgotten > 0) log.info({ clientId: client.id, forgotten }, 'publishes of a closed connection forgotten before their commit: its persistent session resends them')
    }
    // A connection taken over ends before its successor registers: the sweep skips a session connected again.
    if (principal !== undefined && principal.role !== 'meter' && !client.clean) {
      if (memory !== null) offlineSince.set(client.id, clock())
      const p = touchMqttSessions(db.db, [client.id], new Date(clock()))
        .catch((err: unknown) => logDatabaseFailure(log, 'error', err, { clientId: client.id }, 'recording a persistent session as offline failed'))
        .finally(() => pendingTouches.delete(p))
      pendingTouches.add(p)
    }
    if (principal === undefined || !counted.has(client)) return
    counted.delete(client)
    metrics.mqttConnections.labels(principal.role).dec()
  })
  aedes.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'client error'))
  aedes.on('connectionError', (client, err) => log.debug({ clientId: client?.id, err: err.message }, 'connection error'))

  /**
   * Persistent sessions of recipients and households left offline longer than
   * persistentSessionOfflineMsMax expire, as Mosquitto's persistent_client_expiration: each one holds
   * its subscriptions and up to offlineQueueDatumsMax datums, which would otherwise stay for ever.
   * Every sweep records the sessions connected here as seen (so that no broker takes them for
   * offline), then ends the claims last seen before the cutoff, on whatever broker (one restarted
   * without Redis left its claims behind), and drops their sessions: in this broker's memory, or in
   * Redis. A broker alone also drops the sessions it has held offline that long, whatever their claim
   * says.
   */
  const offlineSince = new Map<string, number>()
  const pendingTouches = new Set<Promise<void>>()
  let sweeping: Promise<void> | null = null
  const sweepTimer = setInterval(() => {
    sweeping ??= expireSessions()
      .catch((err: unknown) => logDatabaseFailure(log, 'error', err, {}, 'persistent session expiry failed'))
      .finally(() => (sweeping = null))
  }, config.mqtt.persistentSessionSweepIntervalMs)
  sweepTimer.unref()

  // This UTC month's and the next one's partitions of readings, made before their first datum: made
  // by that datum, a partition would wait for a running pg_dump, and ingest and every reading query
  // behind it, until the dump ends (docs/operations.md).
  let preparing: Promise<void> | null = null
  const preparePartitions = (): void => {
    preparing ??= prepareReadingsPartitions(db.db, clock())
      .then((left) => {
        if (left.length > 0) log.info({ months: left, lockWaitMs: PARTITION_AHEAD_LOCK_WAIT_MS }, 'readings partitions not created ahead: the table is locked (a pg_dump?), trying again later')
      })
      .catch((err: unknown) => logDatabaseFailure(log, 'error', err, {}, 'creating readings partitions ahead failed'))
      .finally(() => (preparing = null))
  }
  preparePartitions()
  const partitionsTimer = setInterval(preparePartitions, PARTITIONS_AHEAD_INTERVAL_MS)
  partitionsTimer.unref()

  async function expireSessions(): Promise<void> {
    const clients = (aedes as unknown as { clients: Record<string, Client | undefined> }).clients
    const now = clock()
    const cutoff = now - config.mqtt.persistentSessionOfflineMsMax
    const connected: { clientId: string; principal: string }[] = []
    for (const client of Object.values(clients)) {
      const principal = client === undefined ? undefined : principals.get(client)
      if (principal !== undefined && principal.role !== 'meter' && !client!.clean) connected.push({ clientId: client!.id, principal: principalKey(principal) })
    }
    await recordConnectedMqttSessions(db.db, connected, new Date(now))
    const expired = new Set(
      await expireMqttSessions(
        db.db,
        new Date(cutoff),
        connected.map((s) => s.clientId),
      ),
    )
    for (const [clientId, since] of offlineSince) if (since <= cutoff) expired.add(clientId)
    let dropped = 0
    for (const clientId of expired) {
      if (closing !== null) return
      offlineSince.delete(clientId)
      // Connected here meanwhile: it is no longer offline.
      if (clients[clientId] !== undefined) continue
      await dropSession(clientId)
      dropped++
    }
    if (dropped > 0) log.info({ sessions: dropped, persistentSessionOfflineMsMax: config.mqtt.persistentSessionOfflineMsMax }, 'persistent sessions expired: offline too long')
  }

  async function dropSession(clientId: string): Promise<void> {
    sessionPrincipals.delete(clientId)
    offlineQueues?.connected(clientId)
    interest?.ended(clientId)
    if (memory !== null) return memory.dropSession(clientId)
    // Redis: removing its last subscription removes its queue too (aedes-persistence-redis).
    const shared = (aedes as unknown as { persistence: { cleanSubscriptions(c: { id: string }): Promise<void>; delWill(c: { id: string }): Promise<unknown> } }).persistence
    await shared.cleanSubscriptions({ id: clientId })
    await shared.delWill({ id: clientId })
  }

  const proxies = new TrustedProxies(config.trustedProxies)
  /** Connections from a trusted proxy whose PROXY header has not come yet. */
  const awaitingHeader = new Set<net.Socket>()
  /** Every connection handed to aedes and still open, CONNACK or not. */
  const connections = new Set<Duplex>()
  const servers: net.Server[] = []
  /** TCP sockets of the MQTT listener open now. */
  let tcpOpen = 0
  const wsServers: WebSocketServer[] = []
  let closing: Promise<void> | null = null

  // Days an occupancy change made due on daily/ (a late move-in or move-out): one broker takes each and
  // publishes it, once the release view decides by that change. Taken at start too: rows recorded while
  // no broker ran wait for one.
  let takingDue: Promise<void> | null = null
  let takeDueAgain = false
  const publishDueDays = (): void => {
    if (takingDue !== null) {
      takeDueAgain = true
      return
    }
    takingDue = (async () => {
      do {
        takeDueAgain = false
        for (;;) {
          if (closing !== null) return
          const due = await takeDueDays(db.db, DAILY_DUE_TAKEN_PER_QUERY_MAX)
          if (due.length === 0) break
          await policy.settled?.()
          egress.publishDaily(due)
          if (due.length < DAILY_DUE_TAKEN_PER_QUERY_MAX) break
        }
      } while (takeDueAgain)
    })()
      .catch((err: unknown) => logDatabaseFailure(log, 'error', err, {}, 'publishing the days an occupancy change made due failed'))
      .finally(() => (takingDue = null))
  }
  const unlistenDueDays = await db.listen(DAILY_DUE_CHANNEL, publishDueDays)
  publishDueDays()

  /**
   * Everything acknowledged is committed by now. Closing a client's session and the emitter are
   * commands to the shared store, which ioredis holds while Redis is away, for as long as it is.
   */
  async function closeAedes(): Promise<void> {
    const closed = new Promise<void>((r) => aedes.close(() => r()))
    const shared = deps.aedesOptions
    if (shared?.healthy === undefined || shared.abandon === undefined) {
      await closed
      await shared?.close?.()
      return
    }
    let timer: NodeJS.Timeout | undefined
    const inTime = shared.healthy()
      ? await Promise.race([closed.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), COUPLING_CLOSE_MS_MAX)))])
      : false
    clearTimeout(timer)
    if (inTime) return shared.close?.()
    log.warn({ waitedMsMax: COUPLING_CLOSE_MS_MAX }, 'closing without Redis: the sessions of the clients still connected stay as they were')
    shared.abandon()
    for (const client of Object.values((aedes as unknown as { clients: Record<string, Client> }).clients)) (client.conn as Duplex).destroy()
  }

  const broker: Broker = {
    aedes,
    ingest,
    ingestThread: thread,
    storageFull() {
      return storage.full || belowReserve
    },
    async databaseAnswers() {
      // Ingest held for want of the server: a commit before it proves nothing; only a probe says it is back.
      if (database.down) return probeDatabase(db)
      return clock() - lastCommitAt <= COMMIT_PROVES_DATABASE_MS || probeDatabase(db)
    },
    handle(conn, address, req) {
      addresses.set(conn, address)
      connections.add(conn)
      conn.once('close', () => connections.delete(conn))
      guardPacketSize(conn, limits.packetBytesMax, (reason) =>
        reason.startsWith(UNSUPPORTED_LEVEL)
          ? log.info({ address, reason }, 'connection refused: a protocol level other than MQTT 3.1 or 3.1.1 (CONNACK 1)')
          : log.warn({ address, reason }, reason === MALFORMED_LENGTH ? 'connection closed: not an MQTT packet' : 'connection closed: packet too large'),
      )
      aedes.handle(conn, req)
    },
    async listenTcp(port, host) {
      // TCP_NODELAY: a PUBACK is 4 bytes, written when its group commits. With Nagle's algorithm on, a
      // meter's PUBACK from one group would wait for the TCP ACK of its PUBACK from the group before,
      // which the meter's stack may delay up to 40 ms (Linux), or until the meter next sends.
      const accepted = (socket: net.Socket): void => {
        // Beyond connectionsMax + 100 sockets are closed as they come (a listener's maxConnections, over all
        // its handles); below it, CONNACK 3 answers past connectionsMax.
        if (tcpOpen >= config.mqtt.connectionsMax + 100 || closing !== null) return void socket.destroy()
        tcpOpen++
        socket.once('close', () => tcpOpen--)
        socket.setNoDelay(true)
        const peer = socket.remoteAddress ?? 'unknown'
        if (!proxies.trusts(peer)) return broker.handle(socket, peer)
        // A trusted load balancer opens with the meter's address (PROXY protocol).
        awaitingHeader.add(socket)
        readProxyHeader(socket, config.mqtt.connectTimeoutMs).then(
          (header) => {
            awaitingHeader.delete(socket)
            broker.handle(socket, header.kind === 'proxied' ? header.source : peer)
          },
          (err: Error) => {
            awaitingHeader.delete(socket)
            if (err instanceof ClosedBeforeHeaderError) log.debug({ address: peer }, 'proxy connection closed before a PROXY header (a health check)')
            else log.warn({ address: peer, reason: err.message }, 'connection closed: a trusted proxy sent no valid PROXY protocol header')
            socket.destroy()
          },
        )
      }
      // A catch-up storm is every meter connecting at once: Node's default backlog of 511 overflowed
      // (the kernel caps it at net.core.somaxconn), and a busy event loop accepts one connection a turn
      // per handle of the socket (accept-handles.ts).
      const handles = await listenShared({ port, host, backlog: MQTT_LISTEN_BACKLOG, handles: MQTT_ACCEPT_HANDLES }, accepted)
      // Closed while the socket was being handed over: nothing may listen after close.
      if (closing !== null) {
        for (const server of handles) server.close()
        throw Object.assign(new Error('the broker closed while its MQTT listener opened'), { code: 'BROKER_CLOSED' })
      }
      for (const server of handles) {
        server.on('error', (err) => log.error({ err }, 'MQTT listener failed'))
        servers.push(server)
      }
      return handles[0]!.address() as AddressInfo
    },
    attachWebSocket(server, path = '/mqtt') {
      const wss = new WebSocketServer({
        noServer: true,
        maxPayload: limits.packetBytesMax + 16,
        handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
      })
      wsServers.push(wss)
      server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        const url = new URL(req.url ?? '/', 'http://localhost')
        if (closing !== null) {
          socket.destroy()
          return
        }
        if (url.pathname !== path || req.headers.upgrade?.toLowerCase() !== 'websocket') {
          answerWithoutUpgrade(server, req, socket, head, config.http.requestTimeoutMs)
          return
        }
        wss.handleUpgrade(req, socket, head, (ws) => {
          const stream = createWebSocketStream(ws)
          sendCorkedWritesAsOneMessage(stream)
          stream.on('error', () => stream.destroy())
          broker.handle(stream, proxies.clientOf(req.socket.remoteAddress, req.headers['x-forwarded-for']) ?? 'unknown', req)
        })
      })
    },
    principalOf(client) {
      return principals.get(client)
    },
    close() {
      closing ??= (async () => {
        // Stop accepting; a server's close callback fires once its last connection is gone.
        const stopped = servers.map((s) => new Promise<void>((r) => s.close(() => r())))
        for (const socket of awaitingHeader) socket.destroy()
        for (const wss of wsServers) wss.close()
        clearInterval(sweepTimer)
        clearInterval(partitionsTimer)
        clearInterval(reserveTimer)
        await preparing
        await unlistenCredentials()
        await unlistenDueDays()
        await takingDue
        await ingest.close()
        await thread?.close()
        await Promise.all([...pendingDaily])
        // Handing publications on to the other brokers goes through Redis: while it is away, not waited for
        // (a stop with Redis frozen waited EGRESS_DRAIN_MS_MAX for it before the coupling's own wait).
        if (!redisAway()) await egress.drained()
        egress.close()
        await closeAedes()
        await sweeping
        await Promise.all([...pendingTouches])
        // aedes closes the clients it knows; a connection whose CONNECT is partial, or waits for its
        // CONNACK, is none of them, and the listener's close waits for it: a SIGTERM hung for 12 min
        // behind a meter that got no CONNACK, and 30 s (aedes' connect timeout) behind two bytes.
        for (const conn of connections) conn.destroy()
        // Every connection is one of those by now; were one not, the stop would wait for it without end.
        let timer: NodeJS.Timeout | undefined
        const inTime = await Promise.race([Promise.all(stopped).then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), LISTENER_CLOSE_MS_MAX)))])
        clearTimeout(timer)
        if (!inTime) log.warn({ waitedMs: LISTENER_CLOSE_MS_MAX }, 'MQTT listener still held by a connection the broker never took charge of: stopping without it')
      })()
      return closing
    },
  }
  return broker
}

/**
 * A request asking to upgrade to anything but MQTT over WebSocket at its path (`curl --http2`'s
 * `Upgrade: h2c` on any route) gets the answer it would get without the header, which a server may
 * ignore (RFC 9110 §7.8), then its connection closed: Node hands such a request to the 'upgrade'
 * listener alone, and the socket was destroyed unanswered (found by probing: "Empty reply from server").
 * Node has ended that request's stream by then, so the request is handed on anew, its body (a
 * `Content-Length` one: the bytes read past the header, `head`, then the socket's) fed to it; a chunked
 * body is refused (400), as parsing it here would take an HTTP parser of our own. A client that stops
 * sending is let go after `timeoutMs`, as the HTTP server's own requests are.
 */
function answerWithoutUpgrade(server: HttpServer, upgrade: IncomingMessage, socket: Duplex, head: Buffer, timeoutMs: number): void {
  const req = new IncomingMessage(socket as net.Socket)
  Object.assign(req, {
    method: upgrade.method,
    url: upgrade.url,
    headers: upgrade.headers,
    rawHeaders: upgrade.rawHeaders,
    httpVersion: upgrade.httpVersion,
    httpVersionMajor: upgrade.httpVersionMajor,
    httpVersionMinor: upgrade.httpVersionMinor,
  })
  const res = new ServerResponse(req)
  res.shouldKeepAlive = false
  res.assignSocket(socket as net.Socket)
  res.once('finish', () => {
    res.detachSocket(socket as net.Socket)
    socket.end()
  })
  ;(socket as net.Socket).setTimeout(timeoutMs, () => socket.destroy())
  if (upgrade.headers['transfer-encoding'] !== undefined) {
    const message = 'transfer-encoding: a chunked body cannot come with an Upgrade header here; send it without Upgrade, or with Content-Length'
    res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify(errorBody(ERROR_CODES.INVALID_INPUT, message)))
    return
  }
  let remaining = Number(upgrade.headers['content-length'] ?? 0)
  // Complete before it ends, as Node's parser marks a request: an incomplete one ending is taken for aborted, its socket destroyed.
  const end = (): void => {
    req.complete = true
    req.push(null)
  }
  const feed = (chunk: Buffer): void => {
    const part = chunk.subarray(0, remaining)
    remaining -= part.length
    if (part.length > 0) req.push(part)
    if (remaining === 0) {
      socket.off('data', feed)
      end()
    }
  }
  if (remaining === 0) end()
  else {
    feed(head)
    if (remaining > 0) socket.on('data', feed)
  }
  server.emit('request', req, res)
}

export type { PublishPacket }

/**
 * The packet identifier a refused delivery is marked with before it leaves a session's queue: 0,
 * which no real one is (1–65535) and which aedes treats as none when it reads a packet back (a
 * Redis persistence shares one copy of a packet among sessions), so it can never go on the wire.
 */
const REFUSED_DELIVERY_MESSAGE_ID = 0

/**
 * aedes queues a QoS 1 publish for every persistent session whose subscription matches, before it
 * asks `authorizeForward`. When that refuses, aedes removes the queued copy by its packet
 * identifier, which a refused delivery never got: the in-memory persistence then removes the first
 * queued packet without one, which is a *released* delivery still on its way. Its update then fails,
 * and the datum is lost to a connected persistent subscriber on a wildcard (a recipient following
 * `readings/+` whose consent covers some of a household's meters). So a refused delivery is first
 * marked with an identifier of its own (found by its broker counter, as aedes finds packets) and then
 * removed by it; every persistence (memory, Redis) supports both steps.
 */
function clearRefusedDeliveriesExactly(aedes: Aedes): void {
  type Persistence = {
    outgoingUpdate(client: Client, packet: AedesPublishPacket): Promise<void>
    outgoingClearMessageId(client: Client, packet: AedesPublishPacket): Promise<unknown>
  }
  const persistence = (aedes as unknown as { persistence: Persistence }).persistence
  const clear = persistence.outgoingClearMessageId.bind(persistence)
  persistence.outgoingClearMessageId = async (client, packet) => {
    if (packet.messageId !== undefined && packet.messageId !== null && packet.messageId !== REFUSED_DELIVERY_MESSAGE_ID) return clear(client, packet)
    const marked = { ...packet, messageId: REFUSED_DELIVERY_MESSAGE_ID } as AedesPublishPacket
    await persistence.outgoingUpdate(client, marked)
    return clear(client, marked)
  }
}

/**
 * A persistent session's queue while it is offline holds at most `max` datums (aedes' in-memory
 * persistence queues without bound: a recipient offline for a day would hold a day of the district
 * in the broker's memory). Past it, newer datums are not queued for that session, as Mosquitto's
 * max_queued_messages does; they stay in the pull API. Only what it may receive is queued and counted
 * (`wouldReceive`). The count starts again once the session has connected and its queue has been
 * sent. A connected session is not counted: what it is sent leaves its queue at each PUBACK.
 */
function boundOfflineQueues(
  aedes: Aedes,
  max: number,
  metrics: Metrics,
  log: Logger,
  wouldReceive: (clientId: string, packet: AedesPublishPacket) => boolean,
): { connected(clientId: string): void } {
  type Sub = { clientId: string }
  const persistence = (aedes as unknown as { persistence: { outgoingEnqueueCombi(subs: Sub[], packet: AedesPublishPacket): Promise<void> } }).persistence
  const enqueue = persistence.outgoingEnqueueCombi.bind(persistence)
  const clients = (aedes as unknown as { clients: Record<string, Client | undefined> }).clients
  const queued = new Map<string, number>()
  persistence.outgoingEnqueueCombi = (subs, packet) => {
    const kept = subs.filter((sub) => {
      if (clients[sub.clientId] !== undefined) return true
      // A datum the rule would not release to it now is not kept for it (a `readings/+` subscriber would hold
      // the whole district's); at its reconnect the rule is asked again for what was kept.
      if (!wouldReceive(sub.clientId, packet)) return false
      const n = queued.get(sub.clientId) ?? 0
      if (n >= max) {
        metrics.mqttQueueDropped.inc()
        return false
      }
      if (n + 1 === max) log.warn({ clientId: sub.clientId, offlineQueueDatumsMax: max }, 'offline persistent session queue full: newer datums are not queued for it (they are in the pull API)')
      queued.set(sub.clientId, n + 1)
      return true
    })
    return enqueue(kept, packet)
  }
  return { connected: (clientId) => void queued.delete(clientId) }
}

type Deliver = (packet: AedesPublishPacket, done: () => void) => void

/**
 * Each topic is an ordered topic [MQTT-4.6.0-6], also across a reconnect: a persistent session's
 * queued datums go out before the live ones that follow them. aedes restores a session's
 * subscriptions before it sends CONNACK and reads its queue after: a datum published meanwhile
 * would be written at once, ahead of the older ones queued. So from the CONNECT until aedes reports
 * the client ready (its queue sent), its live deliveries are held:
 * - one emitted before CONNACK is in the queue already (aedes enqueues a publish for every
 *   persistent session before it emits it), which is read after CONNACK: it goes out from there,
 *   once, in order;
 * - one emitted after is kept, and delivered when the queue has gone out, in the order emitted.
 * QoS 0 (nothing queued) passes through. A session that disconnects first, or whose queue takes so
 * long to send that more than `liveDeliveriesHeldMax` datums come meanwhile (its connection is
 * then closed), finds what was held in its queue at the next connect.
 */
function holdLiveUntilQueueSent(aedes: Aedes, heldMax: number): { hold(client: Client): void; release(client: Client): void; drop(client: Client): void } {
  const held = new WeakMap<Client, { deliver: Deliver; connackSent: boolean; packets: AedesPublishPacket[] }>()
  aedes.on('connackSent', (_connack, client) => {
    const state = held.get(client)
    if (state !== undefined) state.connackSent = true
  })
  return {
    hold(client) {
      const c = client as unknown as { deliverQoS: Deliver }
      const state = { deliver: c.deliverQoS, connackSent: false, packets: [] as AedesPublishPacket[] }
      held.set(client, state)
      c.deliverQoS = (packet, done) => {
        if (held.get(client) !== state || packet.qos === 0) return state.deliver(packet, done)
        done()
        if (!state.connackSent) return
        if (state.packets.length < heldMax) {
          state.packets.push(packet)
          return
        }
        held.delete(client)
        client.close()
      }
    },
    release(client) {
      const state = held.get(client)
      if (state === undefined) return
      held.delete(client)
      for (const packet of state.packets) state.deliver(packet, () => {})
    },
    drop(client) {
      held.delete(client)
    },
  }
}

/**
 * Nobody may subscribe to a meter's readings topic (see `maySubscribe`): what a meter publishes
 * there reaches recipients only as the egress datums published after its commit. So once ingest
 * has stored and acknowledged such a publish, aedes' own fan-out of it would reach no one, at a
 * price: a packet, topic matching for the offline queues and the emitter, and, with brokers
 * coupled through Redis, a PUBLISH to every broker, which during a Redis outage holds up the
 * meter's next packets and then disconnects it. That fan-out is skipped; every other publish
 * (egress, wills, $SYS) goes through aedes as before.
 */
function skipFanOutOfMeterReadings(aedes: Aedes, principals: WeakMap<Client, Principal>): void {
  // Typed with two arguments; aedes' handlers call it with the publishing client in the middle.
  type Publish = (packet: PublishPacket, client?: Client | ((err?: Error) => void) | null, done?: (err?: Error) => void) => void
  const publish = aedes.publish.bind(aedes) as unknown as Publish
  const publishUnlessMeterReadings: Publish = (packet, client, done) => {
    if (client !== null && typeof client === 'object') {
      const principal = principals.get(client)
      if (principal?.role === 'meter' && packet.topic === meterReadingsTopic(principal.meterId)) return done?.()
    }
    publish(packet, client, done)
  }
  aedes.publish = publishUnlessMeterReadings as unknown as Aedes['publish']
}
