import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { QUARANTINE_REASONS } from './errors.ts'

/**
 * Every Prometheus metric, declared once. One registry per running system (tests start
 * several in one process), passed down to the broker, the services and the API.
 */
export interface Metrics {
  registry: Registry
  readingsStored: Counter<never>
  readingsQuarantined: Counter<'reason'>
  readingsDuplicate: Counter<never>
  mqttConnections: Gauge<'role'>
  mqttAuthFailures: Counter<never>
  mqttQueueDropped: Counter<never>
  egressQueued: Gauge<never>
  egressDropped: Counter<never>
  ingestAckSeconds: Histogram<never>
  ingestBatchReadings: Histogram<never>
  ingestCommitSeconds: Histogram<never>
  ingestQueueReadings: Gauge<never>
  ingestCommitFailures: Counter<never>
  /** Meters' readings publishes handed to ingest, by the way they were read: `direct` (meter-publishes.ts) or `aedes` (its parser and `authorizePublish`). */
  ingestPublishes: Counter<'path'>
  storageFull: Gauge<never>
  databaseUnreachable: Gauge<never>
  /** 1 when the database answers at a scrape, by the check /healthz makes (set by `checkDatabaseWith`). */
  databaseUp: Gauge<never>
  /** Names the check behind `metershare_database_up` (once the process has its database). */
  checkDatabaseWith(check: () => Promise<boolean>): void
  datumsReleased: Counter<'channel'>
  consentsActive: Gauge<never>
  httpRequestSeconds: Histogram<'method' | 'route' | 'status'>
  /** Runs of the periodic settlement (settleCompletedMonths), by outcome: `ok` or `failed`. */
  settlementRuns: Counter<'outcome'>
  /** When the last periodic settlement run succeeded, in Unix seconds (0 before the first). */
  settlementLastSuccess: Gauge<never>
}

export interface MetricsOptions {
  defaultMetrics?: boolean
  /**
   * Whether this process runs a broker (default yes). The API alone (`metershare api`) exports none
   * of the broker's metrics (stored, quarantined, connections, ingest): zeros there would read as
   * an idle fleet. Each broker exports its own.
   */
  broker?: boolean
  /**
   * Whether this process answers the HTTP API and releases data (default yes). The settlement worker
   * does neither (its HTTP port answers only /healthz and /metrics): it exports no request durations
   * and no released datums.
   */
  api?: boolean
  /** Whether this process settles months on a timer (`up` and the settlement worker; default no). */
  settlement?: boolean
  /** Counts the consents active now at each scrape, for a process without a release view of its own. */
  consentsActiveCount?: () => Promise<number>
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry()
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'metershare_' })
  const registers = [registry]
  /** A broker's metric: kept out of the registry of a process without a broker. */
  const brokerRegisters = options.broker === false ? [] : registers
  const apiRegisters = options.api === false ? [] : registers
  const settlementRegisters = options.settlement === true ? registers : []
  const count = options.consentsActiveCount
  let databaseCheck: (() => Promise<boolean>) | null = null
  const metrics: Metrics = {
    registry,
    readingsStored: new Counter({ name: 'metershare_readings_stored_total', help: 'Datums durably stored', registers: brokerRegisters }),
    readingsQuarantined: new Counter({
      name: 'metershare_readings_quarantined_total',
      help: 'Payloads or datums acknowledged and kept in quarantine, by reason',
      labelNames: ['reason'],
      registers: brokerRegisters,
    }),
    readingsDuplicate: new Counter({
      name: 'metershare_readings_duplicate_total',
      help: 'Datums received again with the same values (acknowledged, stored once)',
      registers: brokerRegisters,
    }),
    mqttConnections: new Gauge({
      name: 'metershare_mqtt_connections',
      help: 'Authenticated MQTT connections, by role',
      labelNames: ['role'],
      registers: brokerRegisters,
    }),
    mqttAuthFailures: new Counter({ name: 'metershare_mqtt_auth_failures_total', help: 'Refused MQTT connections', registers: brokerRegisters }),
    mqttQueueDropped: new Counter({
      name: 'metershare_mqtt_queue_dropped_total',
      help: 'Datums not queued for an offline persistent session whose queue was full (offlineQueueDatumsMax); they are in the pull API',
      registers: brokerRegisters,
    }),
    egressQueued: new Gauge({
      name: 'metershare_egress_queued',
      help: 'Egress datums stored and waiting to be published live (at most EGRESS_QUEUE_MAX)',
      registers: brokerRegisters,
    }),
    egressDropped: new Counter({
      name: 'metershare_egress_dropped_total',
      help: 'Egress datums not published live: the egress queue was full (EGRESS_QUEUE_MAX), or their publication failed (Redis away); they are stored, and in the pull API',
      registers: brokerRegisters,
    }),
    ingestAckSeconds: new Histogram({
      name: 'metershare_ingest_ack_seconds',
      help: 'Time from receiving a meter publish to its PUBACK (the commit in between)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: brokerRegisters,
    }),
    ingestBatchReadings: new Histogram({
      name: 'metershare_ingest_batch_readings',
      help: 'Datums per group commit',
      buckets: [1, 10, 50, 100, 500, 1000, 5000, 10000, 50000],
      registers: brokerRegisters,
    }),
    ingestCommitSeconds: new Histogram({
      name: 'metershare_ingest_commit_seconds',
      help: 'Duration of one group-commit transaction',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: brokerRegisters,
    }),
    ingestQueueReadings: new Gauge({ name: 'metershare_ingest_queue_readings', help: 'Datums waiting for commit', registers: brokerRegisters }),
    ingestCommitFailures: new Counter({
      name: 'metershare_ingest_commit_failures_total',
      help: 'Group commits that failed and were retried (nothing was acknowledged)',
      registers: brokerRegisters,
    }),
    ingestPublishes: new Counter({
      name: 'metershare_ingest_publishes_total',
      help: "Meters' readings publishes handed to ingest, by path: direct (read past aedes' parser once the meter is connected) or aedes (its parser and authorizePublish: what came in with the CONNECT, QoS 0 or 2)",
      labelNames: ['path'],
      registers: brokerRegisters,
    }),
    storageFull: new Gauge({
      name: 'metershare_storage_full',
      help: "1 while ingest is held because the database's disk is full (publishes wait unacknowledged and are retried), else 0",
      registers: brokerRegisters,
    }),
    databaseUnreachable: new Gauge({
      name: 'metershare_database_unreachable',
      help: '1 while ingest is held because the database server cannot be reached (publishes wait unacknowledged and are retried), else 0',
      registers: brokerRegisters,
    }),
    databaseUp: new Gauge({
      name: 'metershare_database_up',
      help: 'Whether the database answered at this scrape (the check of /healthz): 1 or 0',
      registers,
      async collect(this: Gauge<never>) {
        if (databaseCheck !== null) this.set((await databaseCheck().catch(() => false)) ? 1 : 0)
      },
    }),
    checkDatabaseWith(check) {
      databaseCheck = check
    },
    datumsReleased: new Counter({
      name: 'metershare_datums_released_total',
      help: 'Datums released to recipients, by channel (mqtt live, http pulled)',
      labelNames: ['channel'],
      registers: apiRegisters,
    }),
    consentsActive: new Gauge({
      name: 'metershare_consents_active',
      help: 'Consents active now',
      registers,
      ...(count !== undefined
        ? {
            async collect(this: Gauge<never>) {
              // The database away: the last count stays, and metershare_database_up says why (a scrape must not fail).
              const n = await count().catch(() => null)
              if (n !== null) this.set(n)
            },
          }
        : {}),
    }),
    httpRequestSeconds: new Histogram({
      name: 'metershare_http_request_seconds',
      help: 'HTTP request duration',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: apiRegisters,
    }),
    settlementRuns: new Counter({
      name: 'metershare_settlement_runs_total',
      help: 'Periodic settlement runs (each completed month settled, recent ones again for late data), by outcome: ok or failed',
      labelNames: ['outcome'],
      registers: settlementRegisters,
    }),
    settlementLastSuccess: new Gauge({
      name: 'metershare_settlement_last_success_timestamp_seconds',
      help: 'When the last periodic settlement run succeeded, in Unix seconds (0 before the first)',
      registers: settlementRegisters,
    }),
  }
  // inc(0) creates the labelled series, so that every reason is exposed (at 0) from the start.
  for (const reason of QUARANTINE_REASONS) metrics.readingsQuarantined.labels(reason).inc(0)
  for (const role of ['meter', 'recipient', 'household']) metrics.mqttConnections.labels(role).set(0)
  for (const channel of ['mqtt', 'http']) metrics.datumsReleased.labels(channel).inc(0)
  for (const outcome of ['ok', 'failed']) metrics.settlementRuns.labels(outcome).inc(0)
  return metrics
}
