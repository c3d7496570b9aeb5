import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'

/**
 * Child processes for benchmarks (a broker alone in its process, load generators in
 * theirs) and what /proc tells about any process: CPU time, resident memory, descriptors.
 */

const TSX_LOADER = import.meta.resolve('tsx')

export interface ChildMessage {
  type: string
  [key: string]: unknown
}

/** A TypeScript entry point in its own Node process, spoken to over IPC. */
export class NodeChild {
  readonly process: ChildProcess
  private readonly inbox: ChildMessage[] = []
  private waiters: Array<{ type: string; resolve: (m: ChildMessage) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }> = []
  private failure: Error | null = null
  private readonly listeners = new Map<string, (m: ChildMessage) => void>()
  readonly exited: Promise<number | null>

  constructor(
    readonly name: string,
    script: string,
    options: { execArgv?: string[]; env?: NodeJS.ProcessEnv } = {},
  ) {
    this.process = spawn(process.execPath, [...(options.execArgv ?? []), '--import', TSX_LOADER, script], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
      env: options.env ?? process.env,
    })
    this.process.on('message', (m: ChildMessage) => {
      if (m.type === 'failed') {
        this.failure = new Error(`${name} failed: ${String(m.error)}`)
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer)
          w.reject(this.failure)
        }
        return
      }
      const listener = this.listeners.get(m.type)
      if (listener !== undefined) return listener(m)
      const i = this.waiters.findIndex((w) => w.type === m.type)
      if (i >= 0) {
        const [w] = this.waiters.splice(i, 1)
        clearTimeout(w!.timer)
        w!.resolve(m)
      } else this.inbox.push(m)
    })
    this.exited = new Promise((resolve) => {
      this.process.on('exit', (code, signal) => {
        this.failure ??= new Error(`${name} exited (code ${code}, signal ${signal})`)
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer)
          w.reject(this.failure)
        }
        resolve(code)
      })
    })
  }

  get pid(): number {
    return this.process.pid!
  }

  send(message: ChildMessage): void {
    this.process.send(message)
  }

  /** Every message of this type goes to `listener` (informational messages such as progress). */
  on(type: string, listener: (m: ChildMessage) => void): void {
    this.listeners.set(type, listener)
  }

  /** The next message of this type (one that came earlier counts); rejects if the child fails or exits. */
  next<T extends { type: string } = ChildMessage>(type: string, timeoutMs: number): Promise<T> {
    const i = this.inbox.findIndex((m) => m.type === type)
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0] as T)
    if (this.failure !== null) return Promise.reject(this.failure)
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.timer !== timer)
        reject(new Error(`${this.name}: no '${type}' within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiters.push({ type, resolve: resolve as (m: ChildMessage) => void, reject, timer })
    })
  }

  /** Asks it to finish (a `close` message), then kills it if it has not exited in time. */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return
    if (this.process.connected) this.send({ type: 'close' })
    const timer = setTimeout(() => this.process.kill('SIGKILL'), timeoutMs)
    await this.exited
    clearTimeout(timer)
  }
}

/** For the child side: answers `failed` with the error and exits when anything throws. */
export function reportFailures(): void {
  const fail = (err: unknown): void => {
    process.send?.({ type: 'failed', error: err instanceof Error ? (err.stack ?? err.message) : String(err) })
    setTimeout(() => process.exit(1), 100)
  }
  process.on('uncaughtException', fail)
  process.on('unhandledRejection', fail)
}

const CLOCK_TICKS_PER_SECOND = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })
  const n = Number(r.stdout?.trim())
  return Number.isFinite(n) && n > 0 ? n : 100
})()

export interface ProcessSample {
  cpuMs: number
  rssBytes: number
  /** Peak resident memory since the process started. */
  rssPeakBytes: number
}

/** CPU time and memory of a process from /proc; null once it is gone. */
export function sampleProcess(pid: number): ProcessSample | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name, which may hold spaces: utime and stime are 14th and 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(fields[11]) + Number(fields[12])
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    return { cpuMs: (ticks * 1000) / CLOCK_TICKS_PER_SECOND, rssBytes: statusKb(status, 'VmRSS') * 1024, rssPeakBytes: statusKb(status, 'VmHWM') * 1024 }
  } catch {
    return null
  }
}

/**
 * CPU time of a process's main thread alone (its task whose id is the pid), from /proc; null
 * once it is gone. Node's other threads (workers, the garbage collector's helpers, libuv's
 * pool) count in sampleProcess but not here.
 */
export function mainThreadCpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND
  } catch {
    return null
  }
}

function statusKb(status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)
  return m === null ? 0 : Number(m[1])
}

/**
 * Whether a PostgreSQL process (its command line) counts for a phase on `databaseName`: the
 * server's own processes (WAL writer, checkpointer) and that database's backends, not other
 * databases' backends. For `cpuMsByPid('postgres', …)`.
 */
export function ofDatabase(databaseName: string | undefined): (cmdline: string) => boolean {
  return (cmdline) => !/\(\d+\)|\[local\]/.test(cmdline) || cmdline.includes(` ${databaseName} `)
}

/**
 * CPU time of each process of this command name (e.g. `postgres`) whose command line passes
 * `keep` (PostgreSQL shows a backend's database there), by pid.
 */
export function cpuMsByPid(command: string, keep: (cmdline: string) => boolean = () => true): Map<number, number> {
  const out = new Map<number, number>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const open = stat.indexOf('(')
      const close = stat.lastIndexOf(')')
      if (stat.slice(open + 1, close) !== command) continue
      if (!keep(readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' '))) continue
      const fields = stat.slice(close + 2).split(' ')
      out.set(Number(entry), ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND)
    } catch {
      // The process ended while we looked.
    }
  }
  return out
}

/**
 * CPU time spent between two `cpuMsByPid` samples by the processes alive at the second one
 * (those started in between count whole; those that ended in between are not counted).
 */
export function cpuMsBetween(before: Map<number, number>, after: Map<number, number>): number {
  let ms = 0
  for (const [pid, cpu] of after) ms += cpu - (before.get(pid) ?? 0)
  return ms
}

/** Busy and total CPU time of the whole machine (all cores), from /proc/stat. */
export function sampleMachine(): { busyMs: number; totalMs: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const idle = (v[3] ?? 0) + (v[4] ?? 0)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
  return { busyMs: ((total - idle) * 1000) / CLOCK_TICKS_PER_SECOND, totalMs: (total * 1000) / CLOCK_TICKS_PER_SECOND }
}

/** The open-files limit of a process and how many it holds now. */
export function descriptorsOf(pid: number): { limit: number; open: number } {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8')
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(limits)
  const limit = m === null || m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1])
  return { limit, open: readdirSync(`/proc/${pid}/fd`).length }
}
