import type { Metrics } from '../shared/metrics.ts'
import type { Fleet } from '../simulators/fleet.ts'
import { formatMinuteUtc } from '../shared/calendar.ts'

/**
 * The one-line live status of `metershare up`: meters connected, readings/s, stored,
 * quarantined, released to recipients, and where the simulator's clock is. Rewritten in place on a terminal, printed
 * every `STATUS_LOG_INTERVAL_MS` otherwise.
 */
export const STATUS_REFRESH_MS = 1_000
export const STATUS_LOG_INTERVAL_MS = 10_000

async function value(metric: { get(): Promise<{ values: Array<{ value: number; labels: Record<string, string | number> }> }> }, labels: Record<string, string> = {}): Promise<number> {
  const m = await metric.get()
  return m.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((s, v) => s + v.value, 0)
}

const fmt = new Intl.NumberFormat('en-US')

/**
 * The banner's simulator line. A fleet started again goes on after what is stored: at the demo's
 * speed while it has a backlog to replay (under a second of it at that speed counts as none), else in
 * real time at once.
 */
export function simulatorLine(o: { meters: number; fromMs: number; worldFromMs: number; nowMs: number; speed: number; firstDay: string }): string {
  const pace = `at ${o.speed}x (a month in about ${Math.round((30 * 86_400) / o.speed / 60)} minutes), then in real time`
  if (o.fromMs === o.worldFromMs) return `${o.meters} meters from ${o.firstDay} ${pace}`
  const replayMs = (o.nowMs - o.fromMs) / o.speed
  return `${o.meters} meters resuming at ${formatMinuteUtc(o.fromMs)} ${replayMs < 1_000 ? 'in real time' : pace}`
}

/**
 * The parts that fit in a terminal `columns` wide, joined, in order of importance (the first first):
 * a line longer than the terminal wraps, and `\r` then rewrites only its last row, so each refresh
 * added a row. The first part alone is cut to fit, with `…`. Unknown width (not a terminal): all.
 */
export function fitStatusLine(parts: readonly string[], columns: number | undefined): string {
  if (columns === undefined || columns <= 0) return parts.join(' · ')
  // The last column left empty: a line that fills it exactly wraps on some terminals.
  const room = Math.max(1, columns - 1)
  let line = ''
  for (const part of parts) {
    const next = line === '' ? part : `${line} · ${part}`
    if (next.length > room) break
    line = next
  }
  if (line !== '') return line
  return parts.length === 0 ? '' : parts[0]!.slice(0, room - 1) + '…'
}

export function startStatusLine(options: { metrics: Metrics; fleet: Fleet | null; out: NodeJS.WriteStream; tty: boolean }): { stop(): void } {
  const { metrics, fleet, out, tty } = options
  let lastStored = 0
  let lastAt = Date.now()
  let lastPrinted = 0
  let width = 0
  const render = async (): Promise<void> => {
    const stored = await value(metrics.readingsStored)
    const quarantined = await value(metrics.readingsQuarantined)
    const meters = await value(metrics.mqttConnections, { role: 'meter' })
    const released = await value(metrics.datumsReleased)
    const now = Date.now()
    // Printed every STATUS_LOG_INTERVAL_MS without a terminal: the rate over that interval, not its last second.
    const printing = tty || now - lastPrinted >= STATUS_LOG_INTERVAL_MS
    if (!printing) return
    const rate = ((stored - lastStored) * 1000) / Math.max(1, now - lastAt)
    lastStored = stored
    lastAt = now
    // The fleet's own count against its size; meters of anyone else (a mosquitto_pub, a real meter) beside it.
    const fleetStats = fleet?.stats()
    const others = fleetStats !== undefined ? Math.max(0, meters - fleetStats.connected) : 0
    const parts = [
      fleetStats !== undefined
        ? `${fmt.format(fleetStats.connected)}/${fmt.format(fleetStats.meters)} meters connected${others > 0 ? ` (+${fmt.format(others)} ${others === 1 ? 'other' : 'others'})` : ''}`
        : `${fmt.format(meters)} ${meters === 1 ? 'meter' : 'meters'} connected`,
      `${fmt.format(Math.round(rate))} readings/s`,
      `${fmt.format(stored)} stored`,
      `${fmt.format(quarantined)} quarantined`,
      // Counted by this process: a restart starts them again.
      `${fmt.format(released)} released this run`,
    ]
    const simulated = fleetStats?.simulatedMs
    if (simulated !== undefined && simulated !== null) parts.push(`simulated ${formatMinuteUtc(simulated)}`)
    // First, where the eye lands: nothing is being stored, and why (the log says more).
    if ((await value(metrics.storageFull)) > 0) parts.unshift('DISK FULL: readings held, not acknowledged (see the log)')
    if ((await value(metrics.databaseUnreachable)) > 0) parts.unshift('DATABASE UNREACHABLE: readings held, not acknowledged (see the log)')
    if (tty) {
      // Fitted to the terminal as it is now (it may have been resized), and padded over the line before.
      const columns = out.columns
      const line = fitStatusLine(parts, columns)
      out.write('\r' + line.padEnd(columns === undefined ? width : Math.min(width, columns - 1)))
      width = line.length
    } else {
      const line = parts.join(' · ')
      lastPrinted = now
      out.write(line + '\n')
    }
  }
  const timer = setInterval(() => void render(), STATUS_REFRESH_MS)
  timer.unref()
  return {
    stop() {
      clearInterval(timer)
      if (tty && width > 0) out.write('\n')
    },
  }
}
