import { existsSync } from 'node:fs'
import type { EventEmitter } from 'node:events'
import { parseArgs } from 'node:util'
import { CredentialsError, readCredentialsFile, writeCredentialsFile, type MeterCredentials } from './credentials.ts'
import { FAULT_KINDS, FaultSpecError, parseFaultSpec, type FaultRates } from './faults.ts'
import { OFFLINE_BUFFER_READINGS_MAX_DEFAULT, startFleet, type Fleet, type FleetStats } from './fleet.ts'
import { assertTimeZone, formatDay, localDayOf, parseInstant, wallClock } from './local-time.ts'
import { provisionFleet, ProvisionError } from './provision.ts'

/**
 * `metershare simulate`: a meter fleet against any broker, with credentials from a file or
 * provisioned through the operator API. One progress line while it runs, a summary at the
 * end; SIGINT or SIGTERM stop it cleanly (a second one stops it at once).
 */

export const SIMULATE_USAGE = `usage: metershare simulate --mqtt URL [--credentials FILE] [--api URL --admin-token T]
                          [--meters N] [--from DATE] [--days D] [--speed X|max]
                          [--fault KIND=RATE,…] [--seed S] [--time-zone TZ] [--offline-buffer N]

  --mqtt URL           broker (default mqtt://localhost:1883)
  --credentials FILE   meters to simulate (JSON); with --api, where provisioned meters are
                       saved (default ./simulator-credentials.json) and reused next time
  --api URL            provision households, meters and occupancies through the operator API
  --admin-token T      operator token (default: METERSHARE_ADMIN_TOKEN)
  --meters N           how many meters (all of the file's when absent)
  --from DATE          start of simulated time, YYYY-MM-DD or RFC 3339, not in the future
                       (default: today at midnight; at --speed 1, now: a live fleet)
  --days D             days to simulate (default: until stopped)
  --speed X|max        simulated time per real time (8640: a month in 5 minutes; default 1);
                       the simulated clock never runs ahead of the real one
  --fault SPEC         e.g. duplicate=0.01,out-of-order=0.01,malformed=0.001,skew=0.001
                       kinds: ${[...FAULT_KINDS, 'malformed'].join(', ')}
  --seed S             seed of the meters' consumption and of the faults (default 1)
  --time-zone TZ       zone of the load profiles (default: METERSHARE_TIMEZONE or Europe/Paris)
  --offline-buffer N   readings a meter keeps while it cannot deliver them, as a real meter's
                       memory does (default ${OFFLINE_BUFFER_READINGS_MAX_DEFAULT}: 31 days of quarter-hours); past it the oldest
                       are dropped and counted (\`dropped\` in the progress line and the summary)
`

export interface SimulateEnv {
  adminToken?: string
  timezone?: string
}

export interface SimulateIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean }
  stderr: NodeJS.WritableStream
  /** Where SIGINT and SIGTERM come from (the process). */
  signals: EventEmitter
  /** Called on a second signal, to stop without waiting. */
  exit: (code: number) => void
}

const defaultIo: SimulateIo = {
  stdout: process.stdout,
  stderr: process.stderr,
  signals: process,
  exit: (code) => process.exit(code),
}

export const DEFAULT_CREDENTIALS_FILE = 'simulator-credentials.json'
const PROGRESS_TTY_MS = 1000
const PROGRESS_LOG_MS = 10_000

class UsageError extends Error {}

function int(name: string, raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${name}: must be an integer from ${min} to ${max}, got '${raw}'`)
  return n
}

function formatCount(n: number): string {
  return n.toLocaleString('en-US')
}

function formatLocal(ms: number, timeZone: string): string {
  const w = wallClock(ms, timeZone)
  return `${formatDay(w.year, w.month, w.day)} ${String(w.hour).padStart(2, '0')}:${String(w.minute).padStart(2, '0')}`
}

function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000)
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`
}

export async function runSimulateCommand(args: string[], env: SimulateEnv, io: SimulateIo = defaultIo): Promise<number> {
  try {
    return await simulate(args, env, io)
  } catch (err) {
    if (err instanceof UsageError || err instanceof CredentialsError || err instanceof FaultSpecError || err instanceof RangeError) {
      io.stderr.write(`metershare simulate: ${err.message}\n`)
      return 2
    }
    if (err instanceof ProvisionError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      io.stderr.write(`metershare simulate: ${(err as Error).message}\n`)
      return err instanceof ProvisionError ? 1 : 2
    }
    throw err
  }
}

async function simulate(args: string[], env: SimulateEnv, io: SimulateIo): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      meters: { type: 'string' },
      from: { type: 'string' },
      'offline-buffer': { type: 'string' },
      days: { type: 'string' },
      speed: { type: 'string' },
      mqtt: { type: 'string' },
      credentials: { type: 'string' },
      api: { type: 'string' },
      'admin-token': { type: 'string' },
      fault: { type: 'string' },
      seed: { type: 'string' },
      'time-zone': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help === true) {
    io.stdout.write(SIMULATE_USAGE)
    return 0
  }
  const timeZone = values['time-zone'] ?? env.timezone ?? 'Europe/Paris'
  try {
    assertTimeZone(timeZone)
  } catch {
    throw new UsageError(`${values['time-zone'] !== undefined ? '--time-zone' : 'METERSHARE_TIMEZONE'}: '${timeZone}' is not an IANA time zone (e.g. Europe/Paris)`)
  }
  const meters = int('meters', values.meters, 1, 1_000_000)
  const days = int('days', values.days, 1, 3660)
  const seed = int('seed', values.seed, 0, 0xffff_ffff) ?? 1
  const speedRaw = values.speed ?? '1'
  const speed = speedRaw === 'max' ? 'max' : Number(speedRaw)
  if (speed !== 'max' && !(Number.isFinite(speed) && speed > 0)) throw new UsageError(`--speed: must be a positive number or 'max', got '${speedRaw}'`)
  // At real speed a fleet started at midnight would stay that many hours behind for good: it starts now.
  const from = values.from ?? (speed === 1 ? new Date(Date.now()).toISOString() : localDayOf(Date.now(), timeZone))
  const fromMs = parseInstant(from, timeZone)
  if (fromMs === null) throw new UsageError(`--from: '${from}' is neither YYYY-MM-DD nor RFC 3339 with an offset`)
  if (fromMs > Date.now()) {
    throw new UsageError(`--from: ${from} is in the future; the simulated clock never runs ahead of the real one, so nothing would be sent before then`)
  }
  const offlineBuffer = int('offline-buffer', values['offline-buffer'], 1, 10_000_000)
  const faults: FaultRates = values.fault === undefined ? {} : parseFaultSpec(values.fault)
  const mqttUrl = values.mqtt ?? 'mqtt://localhost:1883'
  if (!/^(mqtts?|wss?|tcp|ssl):\/\//.test(mqttUrl)) throw new UsageError(`--mqtt: '${mqttUrl}' is not an mqtt://, mqtts:// or ws:// URL`)

  const { credentials, provisioned } = await loadOrProvision(values, env, meters, fromMs, seed, io)
  if (credentials.length === 0) throw new UsageError('--meters: nothing to simulate')

  // The latest reason a meter could not connect, shown while some are not (a broker that is not there, a
  // refused secret), rather than only "connected 0/3".
  const connectError = { message: null as string | null }
  const fleet = startFleet({
    mqttUrl,
    meters: credentials,
    from,
    days,
    speed,
    seed,
    faults,
    timeZone,
    ...(offlineBuffer !== undefined ? { offlineBufferReadingsMax: offlineBuffer } : {}),
    // Meters provisioned now have their households moving in at --from: the index there opens their first day.
    openingReading: provisioned,
    onMeterError: (_meterId, err) => {
      connectError.message = connectErrorText(err)
    },
  })
  const started = Date.now()
  io.stdout.write(
    `simulating ${plural(credentials.length, 'meter')} from ${formatLocal(fromMs, timeZone)} (${timeZone})` +
      `${days === undefined ? '' : ` for ${days} day${days === 1 ? '' : 's'}`} at speed ${speedRaw} against ${mqttUrl}\n`,
  )

  const progress = new ProgressLine(fleet, io, timeZone, connectError)
  let signals = 0
  let onSignal: (() => void) | undefined
  const interrupted = new Promise<string>((resolve) => {
    onSignal = () => {
      signals++
      if (signals === 1) resolve('signal')
      else {
        io.stderr.write('\nmetershare simulate: stopping now, without waiting for acknowledgements\n')
        io.exit(130)
      }
    }
    io.signals.on('SIGINT', onSignal)
    io.signals.on('SIGTERM', onSignal)
  })
  const how = await Promise.race([days === undefined ? new Promise<string>(() => {}) : fleet.done.then(() => 'done'), interrupted])
  progress.stop()
  if (how === 'signal') io.stdout.write('stopping: waiting for outstanding acknowledgements\n')
  const final = await fleet.stop()
  io.signals.off('SIGINT', onSignal!)
  io.signals.off('SIGTERM', onSignal!)
  io.stdout.write(summary(final, timeZone, Date.now() - started, how === 'done'))
  return final.rejected === final.meters ? 1 : 0
}

async function loadOrProvision(
  values: { credentials?: string; api?: string; 'admin-token'?: string },
  env: SimulateEnv,
  meters: number | undefined,
  fromMs: number,
  seed: number,
  io: SimulateIo,
): Promise<{ credentials: MeterCredentials[]; provisioned: boolean }> {
  // With --api, the default file too: meters provisioned by an earlier run are reused, never
  // provisioned again and overwritten (their secrets are shown once).
  const file = values.credentials ?? (values.api !== undefined ? DEFAULT_CREDENTIALS_FILE : undefined)
  if (file !== undefined && existsSync(file)) {
    const all = await readCredentialsFile(file)
    if (meters !== undefined && meters > all.length) {
      throw new UsageError(
        `--meters: ${file} holds ${all.length} meters, ${meters} asked for${values.api !== undefined ? ' (give another --credentials file to provision a new fleet)' : ''}`,
      )
    }
    return { credentials: meters === undefined ? all : all.slice(0, meters), provisioned: false }
  }
  if (values.api === undefined) {
    throw new UsageError(
      file === undefined ? 'give --credentials FILE, or --api URL and --admin-token T to provision meters' : `--credentials: ${file} does not exist (add --api and --admin-token to provision meters into it)`,
    )
  }
  const adminToken = values['admin-token'] ?? env.adminToken
  if (adminToken === undefined || adminToken === '') throw new UsageError('--admin-token: required with --api (or set METERSHARE_ADMIN_TOKEN)')
  if (meters === undefined) throw new UsageError('--meters: required with --api')
  const target = file ?? DEFAULT_CREDENTIALS_FILE
  io.stdout.write(`provisioning ${meters} households and meters through ${values.api}\n`)
  try {
    const result = await provisionFleet({
      apiUrl: values.api,
      adminToken,
      meters,
      fromMs,
      seed,
      onProgress: (done, total) => {
        if (io.stdout.isTTY === true) io.stdout.write(`\rprovisioned ${done}/${total}`)
      },
    })
    if (io.stdout.isTTY === true) io.stdout.write('\n')
    await writeCredentialsFile(target, result.credentials)
    io.stdout.write(`credentials of ${result.credentials.length} meters saved to ${target} (reuse them with --credentials ${target})\n`)
    return { credentials: result.credentials, provisioned: true }
  } catch (err) {
    if (err instanceof ProvisionError && err.partial.length > 0) {
      await writeCredentialsFile(target, err.partial)
      io.stderr.write(`\nmetershare simulate: ${err.partial.length} meters provisioned before the failure, saved to ${target}\n`)
    }
    throw err
  }
}

/** Why a meter could not connect, in a few words: the socket's error, or the broker's refusal. */
export function connectErrorText(err: Error): string {
  const code = (err as { code?: unknown }).code
  if (code === 4) return 'refused: bad user name or password (CONNACK 4)'
  if (code === 5) return 'refused: not authorized (CONNACK 5)'
  if (typeof code === 'number') return `refused: CONNACK ${code}`
  return err.message.split('\n')[0]!
}

class ProgressLine {
  private readonly timer: NodeJS.Timeout
  private lastAcknowledged = 0
  private lastAt = Date.now()
  private readonly tty: boolean
  private width = 0

  constructor(
    private readonly fleet: Fleet,
    private readonly io: SimulateIo,
    private readonly timeZone: string,
    private readonly connectError: { message: string | null },
  ) {
    this.tty = io.stdout.isTTY === true
    this.timer = setInterval(() => this.print(), this.tty ? PROGRESS_TTY_MS : PROGRESS_LOG_MS)
  }

  private print(): void {
    const s = this.fleet.stats()
    const now = Date.now()
    const rate = ((s.acknowledged - this.lastAcknowledged) * 1000) / Math.max(1, now - this.lastAt)
    this.lastAcknowledged = s.acknowledged
    this.lastAt = now
    const faults = Object.values(s.faults).reduce((a, b) => a + b, 0)
    const line =
      `${s.simulatedMs === null ? '—' : formatLocal(s.simulatedMs, this.timeZone)} | ${formatCount(Math.round(rate))} readings/s` +
      ` | acknowledged ${formatCount(s.acknowledged)} | buffered ${formatCount(s.buffered)}${s.dropped > 0 ? ` | dropped ${formatCount(s.dropped)} (offline buffer full)` : ''}` +
      ` | connected ${formatCount(s.connected)}/${formatCount(s.meters)}${faults > 0 ? ` | faults ${formatCount(faults)}` : ''}` +
      (s.connected < s.meters && this.connectError.message !== null ? ` | ${this.connectError.message}` : '')
    if (this.tty) {
      this.io.stdout.write('\r' + line.padEnd(this.width))
      this.width = line.length
    } else {
      this.io.stdout.write(line + '\n')
    }
  }

  stop(): void {
    clearInterval(this.timer)
    if (this.tty && this.width > 0) this.io.stdout.write('\n')
  }
}

function summary(s: FleetStats, timeZone: string, elapsedMs: number, complete: boolean): string {
  const faults = Object.entries(s.faults)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${formatCount(n)}`)
  const until = s.simulatedMs === null ? '—' : formatLocal(s.simulatedMs, timeZone)
  return (
    [
      `${s.rejected < s.meters ? (complete ? 'done' : 'stopped') : s.acknowledged === 0 ? 'failed, every meter refused' : 'stopped, every meter refused by the broker in the end'}: simulated ${formatLocal(s.fromMs, timeZone)} → ${until} (${timeZone}), ${plural(s.meters, 'meter')}`,
      `readings: generated ${formatCount(s.generated)}, acknowledged ${formatCount(s.acknowledged)}, buffered ${formatCount(s.buffered)}, dropped ${formatCount(s.dropped)}${s.dropped > 0 ? ' (the offline buffer was full: --offline-buffer)' : ''}, failed ${formatCount(s.failed)}${s.unsent > 0 ? `, unsent ${formatCount(s.unsent)} (held by meters the broker refused)` : ''}`,
      `messages: published ${formatCount(s.messagesPublished)} (${formatCount(s.batches)} batches), acknowledged ${formatCount(s.messagesAcknowledged)}`,
      `faults: ${faults.length === 0 ? 'none' : faults.join(', ')}`,
      `connections: ${formatCount(s.connects)} connects, ${formatCount(s.disconnects)} disconnects, ${plural(s.rejected, 'meter')} refused` +
        (s.rejected > 0 ? ' (CONNACK 4 or 5: the broker does not know their id or secret)' : ''),
      `elapsed ${formatDuration(elapsedMs)}, ${formatCount(Math.round((s.acknowledged * 1000) / Math.max(1, elapsedMs)))} readings/s on average`,
    ].join('\n') + '\n'
  )
}

/** "1 meter", "2 meters", with the count laid out as the rest of the lines. */
function plural(n: number, noun: string): string {
  return `${formatCount(n)} ${noun}${n === 1 ? '' : 's'}`
}
