import { z } from 'zod'
import { DEFAULT_SERVER_WAIT_LIMITS, type ServerWaitLimits } from './db/server-watch.ts'
import { ConfigError } from './errors.ts'
import { parsedUrl } from './connect-errors.ts'
import { parseTrustedProxies } from './trusted-proxies.ts'

/**
 * Configuration: environment variables are read once in an entry point (`readEnv`),
 * parsed by one zod schema (`envToConfig`), frozen and passed down. Tests build a
 * config from a plain object without touching `process.env`.
 */

/** The environment variables we read, by the name a user sets. */
export const ENV_VARS = {
  dataDir: 'METERSHARE_DATA_DIR',
  databaseUrl: 'DATABASE_URL',
  mqttPort: 'MQTT_PORT',
  httpPort: 'HTTP_PORT',
  host: 'METERSHARE_HOST',
  adminToken: 'METERSHARE_ADMIN_TOKEN',
  timezone: 'METERSHARE_TIMEZONE',
  logLevel: 'METERSHARE_LOG_LEVEL',
  redisUrl: 'REDIS_URL',
  pgliteFsync: 'METERSHARE_PGLITE_FSYNC',
  dbPoolSize: 'METERSHARE_DB_POOL_SIZE',
  dbConnectTimeoutMs: 'METERSHARE_DB_CONNECT_TIMEOUT_MS',
  dbAnswerWaitMs: 'METERSHARE_DB_ANSWER_WAIT_MS',
  payoutMinMicros: 'METERSHARE_PAYOUT_MIN_MICROS',
  trustedProxies: 'METERSHARE_TRUSTED_PROXIES',
} as const

export type EnvKey = keyof typeof ENV_VARS
export type RawEnv = Partial<Record<EnvKey, string>>

export function readEnv(env: NodeJS.ProcessEnv): RawEnv {
  const raw: RawEnv = {}
  for (const [key, name] of Object.entries(ENV_VARS) as [EnvKey, string][]) {
    const value = env[name]
    if (value !== undefined && value !== '') raw[key] = value
  }
  return raw
}

/** A whole number in [min, max], given as digits; one sentence whatever is wrong with it. */
function wholeNumber(min: number, max: number, what: string) {
  const message = `must be ${what}, a whole number from ${min} to ${max}`
  return z
    .string()
    .regex(/^\d+$/, message)
    .transform(Number)
    .refine((n) => n >= min && n <= max, message)
}

const port = wholeNumber(0, 65535, 'a port')
const bool = z.enum(['on', 'off', 'true', 'false', '1', '0']).transform((v) => v === 'on' || v === 'true' || v === '1')

const timezone = z.string().refine(
  (tz) => {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: tz })
      return true
    } catch {
      return false
    }
  },
  { message: 'not an IANA time zone' },
)

/** A server URL of one of the schemes: it must parse, with a host and a port in range when one is given. */
function serverUrl(schemes: RegExp, schemeMessage: string) {
  return z
    .string()
    .refine((u) => schemes.test(u), { message: schemeMessage })
    .refine((u) => (parsedUrl(u)?.hostname ?? '') !== '', { message: 'not a valid URL with a host (scheme://user:password@host:port/…)', abort: true })
}

const databaseUrl = serverUrl(/^postgres(ql)?:\/\//, 'must start with postgres:// or postgresql://')

/** A value as a message may show it: a URL's password replaced by `***`, parsed or not. */
export function redactedValue(value: unknown): string {
  return JSON.stringify(value)?.replace(/(\/\/[^/@:"]*:)[^@"]*@/, '$1***@') ?? 'undefined'
}

const envSchema = z.object({
  dataDir: z.string().default('./data'),
  databaseUrl: databaseUrl.optional(),
  mqttPort: port.default(1883),
  httpPort: port.default(8080),
  host: z.string().default('0.0.0.0'),
  adminToken: z.string().min(16, 'must be at least 16 characters').optional(),
  timezone: timezone.default('Europe/Paris'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  redisUrl: serverUrl(/^rediss?:\/\//, 'must start with redis://').optional(),
  pgliteFsync: bool.default(true),
  dbPoolSize: wholeNumber(1, 200, 'a count of connections').default(10),
  dbConnectTimeoutMs: wholeNumber(100, 600_000, 'milliseconds').default(DEFAULT_SERVER_WAIT_LIMITS.connectTimeoutMs),
  dbAnswerWaitMs: wholeNumber(100, 600_000, 'milliseconds').default(DEFAULT_SERVER_WAIT_LIMITS.answerWaitMs),
  payoutMinMicros: z
    .string()
    .regex(/^\d+$/, 'must be a non-negative integer of micro-euros')
    .transform((v) => BigInt(v))
    .default(5_000_000n),
  trustedProxies: z
    .string()
    .transform((v, ctx) => {
      try {
        return parseTrustedProxies(v)
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message })
        return z.NEVER
      }
    })
    .default([]),
})

/** Limits of the MQTT side; every one is named with its unit. */
export interface MqttLimits {
  connectionsMax: number
  connectTimeoutMs: number
  /** Longest keepalive a client may ask for, in seconds; 0 (off) is refused too (CONNACK 2). */
  keepaliveSecondsMax: number
  /** Longest client id, in UTF-8 bytes (CONNACK 2 past it); a meter's id is at most 64 characters of ASCII. */
  clientIdBytesMax: number
  /** Failed connects of one user name from one address within the window before answers are delayed. */
  authFailuresPerUsernameFree: number
  /** Failed connects of all user names from one address within the window before answers are delayed. */
  authFailuresPerAddressFree: number
  authFailureWindowMs: number
  authDelayMsMax: number
  /** (user name, address) and address keys the throttle remembers at most. */
  authKeysTrackedMax: number
  drainTimeoutMs: number
  /**
   * Live datums held for one persistent session while its queue is sent at reconnect, at most
   * (so that they follow it, in order); past it the connection is closed, and the client finds every
   * datum in its queue, in order, when it connects again.
   */
  liveDeliveriesHeldMax: number
  /**
   * Datums queued for one persistent session while it is offline, at most (in the broker's memory,
   * without Redis): past it, newer datums are not queued for it, as Mosquitto's max_queued_messages;
   * they are in the pull API. Counted again from its next connection.
   */
  offlineQueueDatumsMax: number
  /**
   * Persistent sessions (clean session 0) one recipient or household may hold at once, connected or
   * offline, on every broker together (counted in the database): each may queue
   * offlineQueueDatumsMax datums in a broker's memory. A persistent connect under a new client id
   * beyond it is refused (CONNACK 5); one to a session of its own is always let in, and a clean
   * connect under a session's client id ends that session.
   */
  persistentSessionsPerPrincipalMax: number
  /**
   * A persistent session of a recipient or household offline longer than this expires: its
   * subscriptions, its queue and its claim on its client id are dropped, as Mosquitto's
   * persistent_client_expiration (a reconnect after finds no session: CONNACK session present 0).
   */
  persistentSessionOfflineMsMax: number
  /** How often each broker looks for expired persistent sessions, and records its connected ones as seen. */
  persistentSessionSweepIntervalMs: number
}

/** Limits of the ingest path; every one is named with its unit. */
export interface IngestLimits {
  payloadBytesMax: number
  packetBytesMax: number
  batchReadingsMax: number
  quarantineExcerptBytes: number
  futureToleranceMs: number
  flushReadingsMax: number
  /** A group commit starts once its oldest message has waited this long (at once when full or under load). */
  flushIntervalMs: number
  /** Readings that must wait before a second group is handed to the ingest thread while one commits. */
  pipelineReadingsMin: number
  inflightPerClientMax: number
  /**
   * Publishes of one client waiting for admission to the FIFO (beyond its `inflightPerClientMax`), at
   * most: past it, its next publish is refused and the client disconnected (what it sent before is
   * still committed; it resends what was not acknowledged). aedes reads on from a client whose
   * publishes wait, so while commits are held (the database server away, its disk full) nothing else
   * bounds what one client makes the broker hold: MQTT.js, for one, sends without a window.
   */
  publishesWaitingPerClientMax: number
  queueReadingsMax: number
  /**
   * PostgreSQL: group commits running at once, each on its own connection of the ingest thread
   * (a meter always commits in the same lane). PGlite has one connection: one lane.
   */
  commitLanes: number
  commitRetryDelayMsMax: number
  commitAttemptsMax: number
  /**
   * PGlite: bytes that must stay free on the disk of the data folder for ingest to commit; below it a
   * group is held unacknowledged and retried (storage.ts). PGlite 0.5.17 hangs, event loop blocked,
   * when its write-ahead log cannot start a new 16 MiB segment; the reserve keeps that from happening.
   */
  storageFreeBytesMin: number
}

/** Limits of the HTTP API's port; every one is named with its unit. */
export interface HttpLimits {
  /**
   * Bytes a request body may have (413 beyond). The largest that any route takes is a consent naming
   * CONSENT_METERS_MAX meters of 128-character ids, ~14 KiB; at 1 MiB, a body of small nested arrays
   * cost 180-200 ms of the event loop to scan and parse before it was refused.
   */
  bodyBytesMax: number
  /**
   * Bytes a request body may have on a route that takes no credentials (the portal's sign-in, sign-out
   * and password form; 413 beyond): such a body is read and parsed before anyone is known, and 1 MiB of
   * small nested arrays cost 260-335 ms of the event loop at sign-in, for anyone who asks.
   */
  publicBodyBytesMax: number
  /** Items a page of a list may hold, whatever `limit` asks. */
  pageItemsMax: number
  /**
   * Connections the HTTP port holds at once (idle, keep-alive, or upgraded to MQTT over WebSocket),
   * at most: past it, a new one is closed as it is accepted. Each holds a file descriptor, and
   * `metershare up` serves MQTT from the same process: with no bound, ~20,000 connections that never
   * sent a byte (each held 60 s, and opened again) took every descriptor, and /healthz and MQTT connects failed.
   */
  connectionsMax: number
  /** A request (its headers and body) not received whole within this is answered 408 and its connection closed: against slow senders. */
  requestTimeoutMs: number
}

/** Limits of the household portal's sign-in and sessions; every one is named with its unit. */
export interface PortalLimits {
  /** A session ends this long after sign-in, used or not. */
  sessionTtlMs: number
  /** Sessions a household may hold at once; signing in again ends the oldest beyond this. */
  sessionsPerHouseholdMax: number
  /** Failed sign-ins per email from one address, and per address, within the window before further tries are refused. */
  signInFailuresMax: number
  /** Failed sign-ins per email from all addresses together within the window (guessing spread over many addresses). */
  signInFailuresPerEmailMax: number
  signInFailureWindowMs: number
  /** Emails and addresses whose failures are remembered at once (the oldest are forgotten first). */
  signInKeysTrackedMax: number
}

export interface Config {
  dataDir: string
  databaseUrl: string | null
  timezone: string
  adminToken: string | null
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  redisUrl: string | null
  /** Load balancers whose forwarded client addresses are believed (METERSHARE_TRUSTED_PROXIES); empty: none. */
  trustedProxies: readonly string[]
  /** `serverWait`: how long a PostgreSQL server may take to answer before it counts as unreachable (server-watch.ts). */
  db: { poolSize: number; pgliteFsync: boolean; serverWait: Readonly<ServerWaitLimits> }
  mqtt: { port: number; host: string } & MqttLimits
  http: { port: number; host: string } & HttpLimits
  ingest: IngestLimits
  settlement: { payoutMinMicros: bigint }
  portal: PortalLimits
}

export const DEFAULT_MQTT_LIMITS: MqttLimits = {
  connectionsMax: 50_000,
  connectTimeoutMs: 30_000,
  keepaliveSecondsMax: 3_600,
  clientIdBytesMax: 64,
  authFailuresPerUsernameFree: 5,
  authFailuresPerAddressFree: 50,
  authFailureWindowMs: 60_000,
  authDelayMsMax: 5_000,
  authKeysTrackedMax: 200_000,
  drainTimeoutMs: 30_000,
  liveDeliveriesHeldMax: 10_000,
  offlineQueueDatumsMax: 50_000,
  // Generous: CONTRACT.md lets a recipient connect with "any unique client id". At worst 32 full queues,
  // ~350 MB of a broker's memory for one principal, where there was no bound.
  persistentSessionsPerPrincipalMax: 32,
  persistentSessionOfflineMsMax: 7 * 24 * 60 * 60 * 1000,
  persistentSessionSweepIntervalMs: 60 * 60 * 1000,
}

export const DEFAULT_INGEST_LIMITS: IngestLimits = {
  payloadBytesMax: 256 * 1024,
  packetBytesMax: 1024 * 1024,
  batchReadingsMax: 1_000,
  quarantineExcerptBytes: 4 * 1024,
  futureToleranceMs: 5 * 60 * 1000,
  flushReadingsMax: 10_000,
  flushIntervalMs: 15,
  pipelineReadingsMin: 2_500,
  inflightPerClientMax: 256,
  // Far above any meter's window (the simulator's 4, Mosquitto's clients' 20): ~1.3 MB of a broker's memory
  // per client at ~1 KB a publish held, where a client sending without a window had no bound.
  publishesWaitingPerClientMax: 1_024,
  queueReadingsMax: 200_000,
  commitLanes: 2,
  commitRetryDelayMsMax: 2_000,
  commitAttemptsMax: 8,
  // Four WAL segments: one commit of a full group (10,000 readings, ~5 MiB of data and WAL) and the
  // segment the next one may start, twice over.
  storageFreeBytesMin: 64 * 1024 * 1024,
}

// With the MQTT listener's connectionsMax + 100, well within the 65,536 descriptors docker-compose.yml gives a process.
export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  bodyBytesMax: 64 * 1024,
  // The sign-in's email and password, or the password form's three passwords, with room to spare.
  publicBodyBytesMax: 8 * 1024,
  pageItemsMax: 1_000,
  connectionsMax: 10_000,
  requestTimeoutMs: 30_000,
}

export const DEFAULT_PORTAL_LIMITS: PortalLimits = {
  sessionTtlMs: 12 * 60 * 60 * 1000,
  sessionsPerHouseholdMax: 20,
  signInFailuresMax: 5,
  signInFailuresPerEmailMax: 50,
  signInFailureWindowMs: 15 * 60 * 1000,
  signInKeysTrackedMax: 100_000,
}

export interface ConfigOverrides {
  mqtt?: Partial<Config['mqtt']>
  http?: Partial<Config['http']>
  ingest?: Partial<IngestLimits>
  portal?: Partial<PortalLimits>
}

/** Parses raw environment values into a frozen Config; a ConfigError names the bad variable. */
export function envToConfig(raw: RawEnv, overrides: ConfigOverrides = {}): Readonly<Config> {
  const parsed = envSchema.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const key = issue.path[0] as EnvKey
    const name = ENV_VARS[key] ?? String(key)
    // A secret is never shown, not even a wrong one: only its length.
    const got = key === 'adminToken' ? `${String(raw[key]).length} characters` : redactedValue(raw[key])
    throw new ConfigError(`${name}: ${issue.message} (got ${got})`)
  }
  const e = parsed.data
  const config: Config = {
    dataDir: e.dataDir,
    databaseUrl: e.databaseUrl ?? null,
    timezone: e.timezone,
    adminToken: e.adminToken ?? null,
    logLevel: e.logLevel,
    redisUrl: e.redisUrl ?? null,
    trustedProxies: e.trustedProxies,
    db: { poolSize: e.dbPoolSize, pgliteFsync: e.pgliteFsync, serverWait: { connectTimeoutMs: e.dbConnectTimeoutMs, answerWaitMs: e.dbAnswerWaitMs } },
    mqtt: { port: e.mqttPort, host: e.host, ...DEFAULT_MQTT_LIMITS, ...overrides.mqtt },
    http: { port: e.httpPort, host: e.host, ...DEFAULT_HTTP_LIMITS, ...overrides.http },
    ingest: { ...DEFAULT_INGEST_LIMITS, ...overrides.ingest },
    settlement: { payoutMinMicros: e.payoutMinMicros },
    portal: { ...DEFAULT_PORTAL_LIMITS, ...overrides.portal },
  }
  return deepFreeze(config)
}

function deepFreeze<T extends object>(o: T): Readonly<T> {
  for (const v of Object.values(o)) if (v !== null && typeof v === 'object') deepFreeze(v)
  return Object.freeze(o)
}
