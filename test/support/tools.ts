import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import net from 'node:net'

/** System tools some tests need; absent ones make those tests skip with the reason. */
export function hasCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}

/** The system tools suites depend on, with the Debian package that brings each. */
export const SYSTEM_TOOLS: ReadonlyArray<{ command: string; pkg: string; needs: string }> = [
  { command: 'mosquitto_pub', pkg: 'mosquitto-clients', needs: 'interop with an independent MQTT client' },
  { command: 'mosquitto_sub', pkg: 'mosquitto-clients', needs: 'an independent recipient in the consent end-to-end test' },
  { command: 'chromium', pkg: 'chromium', needs: 'the portal in a headless browser' },
  { command: 'strace', pkg: 'strace', needs: "PGlite's fsync on commit, seen in system calls" },
  { command: 'redis-server', pkg: 'redis-server', needs: 'two brokers sharing sessions' },
  { command: 'haproxy', pkg: 'haproxy', needs: "docker-compose.yml's load balancer in front of the processes" },
  { command: 'openssl', pkg: 'openssl', needs: 'a throwaway certificate authority for the TLS tests, and TLS versions tried by hand' },
  { command: 'pg_dump', pkg: 'postgresql-client', needs: 'a backup of a running system, restored and compared' },
  { command: 'pg_restore', pkg: 'postgresql-client', needs: 'a backup of a running system, restored and compared' },
]

export function skipReason(command: string, pkg: string): string {
  return hasCommand(command) ? '' : ` (skipped: ${command} not found; apt-get install ${pkg})`
}

/** Runs a command to its end (killed after `timeoutMs`): its exit code and what it printed. Its standard input is `input`, then closed. */
export function run(
  command: string,
  args: string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const { timeoutMs, input, ...rest } = options
    const child = execFile(command, args, { timeout: timeoutMs ?? 15_000, ...rest }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, stdout, stderr })
    })
    // A command that exits before reading its input closes the pipe: that is its business, not an error here.
    child.stdin?.on('error', () => {})
    child.stdin?.end(input ?? '')
  })
}

/** A TCP port free on 127.0.0.1 a moment ago (for a child process that must be told its port). */
export async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as net.AddressInfo).port
  await new Promise((r) => server.close(r))
  return port
}

/** Polls `probe` every 20 ms until it gives a value (neither undefined nor false), for at most `timeoutMs`. */
export async function waitFor<T>(probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 5_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Longest wait for a started redis-server to accept connections. */
const REDIS_START_MS_MAX = 10_000

/** redis-server on 127.0.0.1:`port`, empty and keeping nothing on disk, once it accepts connections (`args`: more options, e.g. `--requirepass`). */
export async function startRedisServer(port: number, args: string[] = []): Promise<ChildProcess> {
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args], { stdio: 'ignore' })
  try {
    await waitFor(
      () => {
        if (redis.exitCode !== null) throw new Error(`redis-server exited (${redis.exitCode}) before accepting connections on port ${port}`)
        return new Promise<boolean>((r) => {
          const s = net.connect(port, '127.0.0.1', () => {
            s.end()
            r(true)
          })
          s.on('error', () => r(false))
        })
      },
      REDIS_START_MS_MAX,
      `redis-server on port ${port}`,
    )
  } catch (err) {
    redis.kill('SIGKILL')
    throw err
  }
  return redis
}

/** What connecting to `port` of this machine gives: 'connected', or the error's code. */
export function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect({ port, host: '127.0.0.1' })
    c.once('connect', () => (c.destroy(), resolve('connected')))
    c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
  })
}
