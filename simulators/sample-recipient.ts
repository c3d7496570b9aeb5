import mqtt, { type MqttClient } from 'mqtt'

/**
 * A sample recipient, as a utility or a third party would write one: it follows the egress
 * topics over MQTT (username = party id, password = API key) and pulls history over HTTP
 * (`GET /data/readings`), counting what it receives. Speaks the contract only.
 */

export const SAMPLE_RECIPIENT_PULL_INTERVAL_MS_DEFAULT = 60_000
/** Items asked per page of the pull API. */
export const SAMPLE_RECIPIENT_PAGE_ITEMS = 1_000
/** Pages walked per pull, at most. */
export const SAMPLE_RECIPIENT_PAGES_PER_PULL_MAX = 20

export interface SampleRecipientOptions {
  partyId: string
  apiKey: string
  /** Live: subscribe to these filters (e.g. `readings/+`, `daily/+`) on this broker. */
  mqttUrl?: string
  topics?: string[]
  /** Pull: the HTTP API's base URL, the granularity and how far back the first pull starts. */
  apiUrl?: string
  pull?: { granularity: 'load_curve' | 'daily' | 'monthly'; fromMs: number; intervalMs?: number }
  clientId?: string
  now?: () => number
}

export interface SampleRecipientStats {
  /** Messages received over MQTT. */
  live: number
  /** Datums the last complete pull found in the window. */
  pulled: number
  pulls: number
  errors: number
}

export interface SampleRecipient {
  stats(): SampleRecipientStats
  stop(): Promise<void>
}

export function startSampleRecipient(options: SampleRecipientOptions): SampleRecipient {
  const now = options.now ?? Date.now
  const stats: SampleRecipientStats = { live: 0, pulled: 0, pulls: 0, errors: 0 }
  let client: MqttClient | null = null
  let timer: NodeJS.Timeout | null = null
  let pulling: Promise<void> = Promise.resolve()
  let stopped = false

  if (options.mqttUrl !== undefined) {
    client = mqtt.connect(options.mqttUrl, {
      protocolVersion: 4,
      clientId: options.clientId ?? `${options.partyId}-sample`,
      username: options.partyId,
      password: options.apiKey,
      reconnectPeriod: 2_000,
    })
    client.on('connect', () => client!.subscribe(options.topics ?? ['readings/+', 'daily/+'], { qos: 1 }))
    client.on('message', () => stats.live++)
    client.on('error', () => stats.errors++)
  }

  if (options.apiUrl !== undefined && options.pull !== undefined) {
    const { granularity, intervalMs = SAMPLE_RECIPIENT_PULL_INTERVAL_MS_DEFAULT } = options.pull
    // Each pull walks the whole window again, as a recipient refreshing its copy would: history
    // released since (a new consent reaching back, late data) shows up too.
    const pullOnce = async (): Promise<void> => {
      const toMs = now()
      let cursor: string | null = null
      let seen = 0
      for (let page = 0; page < SAMPLE_RECIPIENT_PAGES_PER_PULL_MAX && !stopped; page++) {
        const url = new URL('/data/readings', options.apiUrl)
        url.searchParams.set('from', new Date(options.pull!.fromMs).toISOString())
        url.searchParams.set('to', new Date(toMs).toISOString())
        url.searchParams.set('granularity', granularity)
        url.searchParams.set('limit', String(SAMPLE_RECIPIENT_PAGE_ITEMS))
        if (cursor !== null) url.searchParams.set('cursor', cursor)
        const res = await fetch(url, { headers: { authorization: `Bearer ${options.apiKey}` } })
        if (!res.ok) {
          stats.errors++
          return
        }
        const body = (await res.json()) as { items: unknown[]; nextCursor: string | null }
        seen += body.items.length
        cursor = body.nextCursor
        if (cursor === null) break
      }
      stats.pulled = seen
      stats.pulls++
    }
    const tick = (): void => {
      pulling = pulling.then(pullOnce).catch(() => {
        stats.errors++
      })
    }
    timer = setInterval(tick, intervalMs)
    timer.unref()
    tick()
  }

  return {
    stats: () => ({ ...stats }),
    async stop() {
      stopped = true
      if (timer !== null) clearInterval(timer)
      await pulling
      if (client !== null) await new Promise<void>((r) => client!.end(false, {}, () => r()))
    },
  }
}
