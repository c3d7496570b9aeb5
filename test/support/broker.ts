import type { AddressInfo } from 'node:net'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { createBroker, type Broker, type BrokerDeps } from '../../broker/broker.ts'
import type { EgressMeta, EgressPolicy } from '../../broker/egress.ts'
import { envToConfig, type Config, type ConfigOverrides, type RawEnv } from '../../shared/config.ts'
import type { DatabaseHandle } from '../../shared/db/database.ts'
import { createMetrics, type Metrics } from '../../shared/metrics.ts'
import { AccessLogRecorder } from '../../services/consent/access-log-recorder.ts'

/**
 * A real broker on a real socket (port 0) over a test database, and real MQTT.js clients.
 */
export interface TestBroker {
  broker: Broker
  recorder: AccessLogRecorder
  config: Readonly<Config>
  metrics: Metrics
  port: number
  url: string
  close(): Promise<void>
}

/** Until consents exist: recipients get nothing, households their own datums. */
export const ownerOnlyPolicy: EgressPolicy = {
  releasedTo: () => null,
  householdOwns: (householdId: string, datum: EgressMeta) => datum.householdId === householdId,
  householdMayFollow: () => false,
}

export async function startTestBroker(
  handle: DatabaseHandle,
  options: {
    overrides?: ConfigOverrides
    /** Environment values beside the ports (METERSHARE_TRUSTED_PROXIES, …). */
    env?: RawEnv
    timezone?: string
    policy?: EgressPolicy
    deps?: Partial<BrokerDeps>
  } = {},
): Promise<TestBroker> {
  const config = envToConfig({ mqttPort: '0', httpPort: '0', host: '127.0.0.1', timezone: options.timezone ?? 'Europe/Paris', logLevel: 'silent', ...options.env }, options.overrides)
  const metrics = createMetrics({ defaultMetrics: false })
  const recorder = new AccessLogRecorder(handle.db, { metrics })
  const broker = await createBroker({
    config,
    db: handle,
    metrics,
    recorder,
    policy: options.policy ?? ownerOnlyPolicy,
    ...options.deps,
  })
  const address: AddressInfo = await broker.listenTcp(0, '127.0.0.1')
  return {
    broker,
    recorder,
    config,
    metrics,
    port: address.port,
    url: `mqtt://127.0.0.1:${address.port}`,
    close: async () => {
      await broker.close()
      await recorder.close()
    },
  }
}

/** Meters' readings publishes the broker has handed to ingest so far, by path (`metershare_ingest_publishes_total{path}`). */
export async function publishesIngested(tb: Pick<TestBroker, 'metrics'>): Promise<{ direct: number; aedes: number }> {
  const { values } = await tb.metrics.ingestPublishes.get()
  const of = (path: string): number => values.find((v) => v.labels.path === path)?.value ?? 0
  return { direct: of('direct'), aedes: of('aedes') }
}

/** Connects and resolves on CONNACK 0; rejects with the CONNACK error otherwise. */
export function connectClient(url: string, options: IClientOptions): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...options })
    const onError = (err: Error): void => {
      client.end(true)
      reject(err)
    }
    client.once('connect', () => {
      client.off('error', onError)
      resolve(client)
    })
    client.once('error', onError)
  })
}

export function connectMeter(url: string, meter: { id: string; secret: string }, options: IClientOptions = {}): Promise<MqttClient> {
  return connectClient(url, { clientId: meter.id, username: meter.id, password: meter.secret, ...options })
}

/** Publishes QoS 1 and resolves on PUBACK. */
export function publishAcked(client: MqttClient, topic: string, payload: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    client.publish(topic, payload, { qos: 1 }, (err) => (err ? reject(err) : resolve()))
  })
}

/** Ends a client; one already cut off by the broker is ended at once, without waiting for acks. */
export function endClient(client: MqttClient): Promise<void> {
  return new Promise((resolve) => client.end(!client.connected, {}, () => resolve()))
}

/** Does a topic match an MQTT filter (`+` one level, `#` the rest)? */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false
  }
  return f.length === t.length
}

/** Collects the messages matching one subscription. */
export async function subscribeCollect(client: MqttClient, filter: string): Promise<{ messages: Array<{ topic: string; payload: unknown }>; granted: number }> {
  const messages: Array<{ topic: string; payload: unknown }> = []
  client.on('message', (topic, payload) => {
    if (!topicMatches(filter, topic)) return
    let body: unknown
    try {
      body = JSON.parse(payload.toString('utf8'))
    } catch {
      body = payload.toString('utf8')
    }
    messages.push({ topic, payload: body })
  })
  return { messages, granted: await subscribeGranted(client, filter) }
}

/** Subscribes at QoS 1 and resolves on the SUBACK with what it grants: a QoS, or 0x80 (refused). */
export function subscribeGranted(client: MqttClient, filter: string): Promise<number> {
  // MQTT.js turns a SUBACK failure (0x80) into an error carrying the SUBACK packet.
  return new Promise<number>((resolve, reject) =>
    client.subscribe(filter, { qos: 1 }, (err, grants) => {
      const suback = (err as { packet?: { granted?: number[] } } | null)?.packet?.granted
      if (suback !== undefined) return resolve(suback[0]!)
      if (err) return reject(err)
      resolve(grants![0]!.qos)
    }),
  )
}

export { waitFor } from './tools.ts'
