import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import mqtt, { type MqttClient } from 'mqtt'
import { addDays, localDayOf, startOfLocalDay } from './local-time.ts'

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
  pull?: { granularity: 'load_curve' | 'daily' | 'monthly'; fromMs: number; intervalMs?: number; progressFile?: string }
  /** The deployment's calendar (METERSHARE_TIMEZONE): where a pulled day or month starts. */
  timeZone?: string
  clientId?: string
  now?: () => number
}

export interface SampleRecipientStats {
  /** Messages received over MQTT. */
  live: number
  /** Datums received over HTTP. */
  pulled: number
  /** Windows walked to their end. */
  pulls: number
  errors: number
}

export interface SampleRecipient {
  stats(): SampleRecipientStats
  /** Resolves once its live subscriptions are granted (at once when it follows nothing live). */
  subscribed: Promise<void>
  stop(): Promise<void>
}

type PulledDatum = { meterId: string } & ({ ts: string } | { day: string } | { month: string })

/**
 * Where the next pull of a meter starts, given a datum of it: just after it. The pull API lists a day
 * or month once it is over and its meter has sent later data; late data changing it afterwards is
 * not pulled again (a recipient following `daily/` gets it).
 */
export function nextFromMs(datum: PulledDatum, timeZone: string): number {
  if ('ts' in datum) return Date.parse(datum.ts) + 1
  if ('day' in datum) return startOfLocalDay(addDays(datum.day, 1), timeZone)
  const [year, month] = datum.month.split('-').map(Number) as [number, number]
  return startOfLocalDay(month === 12 ? `${year + 1}-01-01` : `${year}-${String(month + 1).padStart(2, '0')}-01`, timeZone)
}

/** The start of the day or month (in `timeZone`) an instant falls in; the instant itself for the load curve. */
export function periodStartMs(ms: number, granularity: 'load_curve' | 'daily' | 'monthly', timeZone: string): number {
  if (granularity === 'load_curve') return ms
  const day = localDayOf(ms, timeZone)
  return startOfLocalDay(granularity === 'daily' ? day : `${day.slice(0, 7)}-01`, timeZone)
}

export function startSampleRecipient(options: SampleRecipientOptions): SampleRecipient {
  const now = options.now ?? Date.now
  const stats: SampleRecipientStats = { live: 0, pulled: 0, pulls: 0, errors: 0 }
  let client: MqttClient | null = null
  let timer: NodeJS.Timeout | null = null
  let pulling: Promise<void> = Promise.resolve()
  let stopped = false
  let onSubscribed = (): void => {}
  const subscribed = new Promise<void>((resolve) => (onSubscribed = resolve))
  if (options.mqttUrl === undefined) onSubscribed()

  if (options.mqttUrl !== undefined) {
    client = mqtt.connect(options.mqttUrl, {
      protocolVersion: 4,
      clientId: options.clientId ?? `${options.partyId}-sample`,
      username: options.partyId,
      password: options.apiKey,
      reconnectPeriod: 2_000,
      // CONNACK 3 (the broker cannot take it now) is tried again; refused credentials end it.
      reconnectOnConnackError: true,
    })
    client.on('connect', () => client!.subscribe(options.topics ?? ['readings/+', 'daily/+'], { qos: 1 }, (err) => (err ? stats.errors++ : onSubscribed())))
    client.on('message', () => stats.live++)
    client.on('error', (err) => {
      stats.errors++
      const code = (err as { code?: unknown }).code
      if (code === 4 || code === 5) client!.end(true)
    })
  }

  if (options.apiUrl !== undefined && options.pull !== undefined) {
    const { granularity, intervalMs = SAMPLE_RECIPIENT_PULL_INTERVAL_MS_DEFAULT } = options.pull
    const timeZone = options.timeZone ?? 'Europe/Paris'
    // A recipient keeping a copy pulls what is new, meter by meter: from just after the latest datum it
    // holds of each, the meters it holds none of from the start. One window over all meters from the
    // earliest of them would pull again what it holds of the meters ahead, a release each time in
    // their households' access logs; one from the latest would skip a meter lagging behind. Its meters
    // are those its consents name. A day or month is selected by its start: begin at the start of the
    // one `fromMs` falls in.
    const startMs = periodStartMs(options.pull.fromMs, granularity, timeZone)
    // Where each meter's next pull starts, kept in `progressFile` when given: started again, it goes on
    // from there rather than pulling again what it holds.
    const { progressFile } = options.pull
    const latestByMeter = progressFile === undefined ? new Map<string, number>() : readProgress(progressFile)
    const saveProgress = (): void => {
      if (progressFile === undefined) return
      writeFileSync(progressFile + '.tmp', JSON.stringify(Object.fromEntries(latestByMeter)) + '\n')
      renameSync(progressFile + '.tmp', progressFile)
    }
    const authorization = { authorization: `Bearer ${options.apiKey}` }
    /** A pull walked meter by meter and page by page, continued by the next poll when it is long. */
    let walk: { toMs: number; meters: string[]; index: number; fromMs: number; cursor: string | null } | null = null
    const consentedMeters = async (): Promise<string[] | null> => {
      const meters = new Set<string>()
      let cursor: string | null = null
      do {
        const url = new URL('/recipient/consents', options.apiUrl)
        url.searchParams.set('limit', String(SAMPLE_RECIPIENT_PAGE_ITEMS))
        if (cursor !== null) url.searchParams.set('cursor', cursor)
        const res = await fetch(url, { headers: authorization })
        if (!res.ok) return null
        const body = (await res.json()) as { items: Array<{ meterIds: string[] }>; nextCursor: string | null }
        for (const c of body.items) for (const m of c.meterIds) meters.add(m)
        cursor = body.nextCursor
      } while (cursor !== null)
      return [...meters].sort()
    }
    const pullOnce = async (): Promise<void> => {
      if (walk === null) {
        const meters = await consentedMeters()
        if (meters === null) {
          stats.errors++
          return
        }
        walk = { toMs: now(), meters, index: 0, fromMs: 0, cursor: null }
        if (meters.length > 0) walk.fromMs = latestByMeter.get(meters[0]!) ?? startMs
      }
      for (let page = 0; page < SAMPLE_RECIPIENT_PAGES_PER_PULL_MAX && !stopped; page++) {
        const meterId = walk.meters[walk.index]
        if (meterId === undefined) {
          walk = null
          stats.pulls++
          return
        }
        const url = new URL('/data/readings', options.apiUrl)
        url.searchParams.set('meterId', meterId)
        url.searchParams.set('from', new Date(walk.fromMs).toISOString())
        url.searchParams.set('to', new Date(walk.toMs).toISOString())
        url.searchParams.set('granularity', granularity)
        url.searchParams.set('limit', String(SAMPLE_RECIPIENT_PAGE_ITEMS))
        if (walk.cursor !== null) url.searchParams.set('cursor', walk.cursor)
        const res = await fetch(url, { headers: authorization })
        if (!res.ok) {
          stats.errors++
          return
        }
        const body = (await res.json()) as { items: PulledDatum[]; nextCursor: string | null }
        stats.pulled += body.items.length
        for (const item of body.items) {
          const next = nextFromMs(item, timeZone)
          if (next > (latestByMeter.get(item.meterId) ?? -Infinity)) latestByMeter.set(item.meterId, next)
        }
        if (body.items.length > 0) saveProgress()
        walk.cursor = body.nextCursor
        if (walk.cursor === null) {
          walk.index++
          const following = walk.meters[walk.index]
          if (following !== undefined) walk.fromMs = latestByMeter.get(following) ?? startMs
        }
      }
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
    subscribed,
    async stop() {
      stopped = true
      if (timer !== null) clearInterval(timer)
      await pulling
      if (client !== null) await new Promise<void>((r) => client!.end(false, {}, () => r()))
    },
  }
}

/** A progress file's meters and where their next pull starts; none when it is missing or unreadable. */
function readProgress(file: string): Map<string, number> {
  try {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
    return new Map(Object.entries(saved).filter((e): e is [string, number] => Number.isSafeInteger(e[1])))
  } catch {
    return new Map()
  }
}
