import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import os from 'node:os'

/** What a figure was measured on, printed at the top of every benchmark. */
export function describeMachine(): string[] {
  const cpus = os.cpus()
  const gib = (os.totalmem() / 1024 ** 3).toFixed(1)
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ')
  return [
    `CPU        ${cpus[0]?.model.trim() ?? 'unknown'}, ${cpus.length} cores (${os.availableParallelism()} available)`,
    `RAM        ${gib} GiB`,
    `OS         ${os.type()} ${os.release()} ${os.arch()}`,
    // Every Node process of the run inherits NODE_OPTIONS (brokers, bare aedes included, and generators).
    `Node       ${process.version}${process.env.NODE_OPTIONS ? ` (NODE_OPTIONS ${process.env.NODE_OPTIONS})` : ''}`,
    `load avg   ${load} (1, 5, 15 min) at start`,
  ]
}

export function packageVersion(name: string): string {
  try {
    const url = new URL(`../../../node_modules/${name}/package.json`, import.meta.url)
    return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version
  } catch {
    return 'unknown'
  }
}

/** The first line a command prints with these arguments, or null when it cannot run. */
export function commandVersion(command: string, args: string[]): string | null {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 5_000 })
  if (r.error !== undefined) return null
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0]
  return out === undefined || out === '' ? null : out
}
