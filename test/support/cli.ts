import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { addMonths, monthOf } from '../../shared/calendar.ts'
import { run } from './tools.ts'

/** The `metershare` command as `npm install` exposes it. */
export const CLI = path.resolve(import.meta.dirname, '../../cli/metershare.mjs')

/** Runs a `metershare` command to its end: its exit code and what it printed. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, [CLI, ...args], { env, timeoutMs })
}

/** A long-running `metershare` command (`up`) in a child process, everything it prints collected. */
export class CliProcess {
  private readonly child: ChildProcess
  output = ''

  constructor(
    readonly args: string[],
    env: NodeJS.ProcessEnv,
  ) {
    this.child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()))
    this.child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()))
  }

  /** Null while it runs. */
  get exitCode(): number | null {
    return this.child.exitCode
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  /** The first match of `pattern` in what the process printed, waiting up to `timeoutMs`. */
  async printed(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const m = pattern.exec(this.output)
      if (m !== null) return m
      if (Date.now() > deadline || this.child.exitCode !== null) throw new Error(`never printed ${pattern}:\n${this.output}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  /** SIGTERM (or the signal given), then the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode
    const exited = new Promise<number | null>((r) => this.child.once('exit', (code) => r(code)))
    this.child.kill(signal)
    return exited
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL')
  }
}

/** A JSON call to a running process's HTTP API with a bearer token: the parsed answer, or an error naming the status and body. */
export async function callApi<T>(base: string, method: string, route: string, token: string, body?: unknown): Promise<T> {
  const res = await fetch(base + route, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  const text = await res.text()
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`)
  return (text === '' ? undefined : JSON.parse(text)) as T
}

/**
 * Settles over a running process's API every month from `firstMonth` that is over by now in `timezone`, oldest
 * first, as its periodic settlement does at its start: a test comparing two systems' books (a source and its
 * restored copy) makes them settle the same months, whichever date it runs on.
 */
export async function settleMonthsOver(base: string, adminToken: string, firstMonth: string, timezone: string): Promise<void> {
  for (let m = firstMonth; m <= addMonths(monthOf(new Date(), timezone), -1); m = addMonths(m, 1)) {
    await callApi(base, 'POST', '/admin/settlements', adminToken, { month: m })
  }
}
