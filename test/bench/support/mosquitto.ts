import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import mqtt from 'mqtt'

/**
 * Mosquitto as the peer a user would otherwise pick: our own instance on a free loopback
 * port (nothing persisted), and one `mosquitto_sub` subscriber whose output lines we count.
 */

export const MOSQUITTO_BIN = '/usr/sbin/mosquitto'
export const MOSQUITTO_SUB_BIN = 'mosquitto_sub'

export interface Mosquitto {
  port: number
  pid: number
  /** What Mosquitto wrote on stderr (errors and warnings only). */
  log(): string
  stop(): Promise<void>
}

export async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** `extraConfig`: more lines of mosquitto.conf (limits). */
export async function startMosquitto(dir: string, extraConfig: string[] = []): Promise<Mosquitto> {
  const port = await freePort()
  const conf = path.join(dir, 'mosquitto.conf')
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      'max_connections -1',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      ...extraConfig,
      '',
    ].join('\n'),
  )
  const child = spawn(MOSQUITTO_BIN, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => {
    if (stderr.length < 64 * 1024) stderr += chunk.toString('utf8')
  })
  await waitConnectable(port, child, () => stderr)
  return { port, pid: child.pid!, log: () => stderr, stop: () => stopChild(child) }
}

async function waitConnectable(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 10_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited at start: ${log()}`)
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' })
      s.once('connect', () => (s.destroy(), resolve(true)))
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port}: ${log()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

export interface CountingSubscriber {
  pid: number
  /** Messages received so far (one output line each). */
  count(): number
  stop(): Promise<void>
}

/**
 * A QoS 1 `mosquitto_sub` on `filter`, ready once a probe published to `probeTopic` has come
 * through. Counts start at zero after the probe.
 */
export async function startCountingSubscriber(port: number, filter: string, probeTopic: string): Promise<CountingSubscriber> {
  const child = spawn(MOSQUITTO_SUB_BIN, ['-h', '127.0.0.1', '-p', String(port), '-t', filter, '-q', '1', '-i', 'bench-subscriber'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let lines = 0
  child.stdout!.on('data', (chunk: Buffer) => {
    for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++
  })
  const probe = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, clientId: 'bench-probe' })
  try {
    const deadline = Date.now() + 10_000
    while (lines === 0) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error('mosquitto_sub did not receive the probe')
      await probe.publishAsync(probeTopic, 'probe', { qos: 0 })
      await new Promise((r) => setTimeout(r, 100))
    }
    // Late probes must not count: wait until they have all arrived.
    await new Promise((r) => setTimeout(r, 300))
  } finally {
    await probe.endAsync()
  }
  const baseline = lines
  return { pid: child.pid!, count: () => lines - baseline, stop: () => stopChild(child) }
}
