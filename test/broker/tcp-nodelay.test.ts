import { spawn } from 'node:child_process'
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFleet } from '../../simulators/fleet.ts'
import { startTestBroker, type TestBroker } from '../support/broker.ts'
import { useTestDatabase } from '../support/database.ts'
import { hasCommand, skipReason, waitFor } from '../support/tools.ts'
import { createOccupiedMeter } from '../support/world.ts'

/**
 * The broker's MQTT sockets send without Nagle's algorithm: a PUBACK (4 bytes) leaves when its group
 * commits, not once the meter's stack has acknowledged the PUBACK before it (a delayed ACK is up to
 * 40 ms on Linux). So do the simulator's meters, whose next publish leaves as a PUBACK frees its
 * slot. Seen where it is decided, in the system calls: strace attached to this process while a
 * client connects must show TCP_NODELAY set on the socket the listener accepted, and on the one a
 * simulated meter connected.
 */

const STRACE_ATTACH_MS_MAX = 10_000

/** System calls of this process (all its threads) while `action` runs, as strace prints them. */
async function traceWhile(calls: string, action: () => Promise<void>): Promise<string[]> {
  const strace = spawn('strace', ['-f', '-e', `trace=${calls}`, '-p', String(process.pid)], { stdio: ['ignore', 'ignore', 'pipe'] })
  let out = ''
  strace.stderr.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')))
  const exited = new Promise<void>((resolve) => strace.once('exit', () => resolve()))
  try {
    await waitFor(() => /attached/.test(out), STRACE_ATTACH_MS_MAX, 'strace to attach')
    await action()
  } finally {
    // SIGINT makes strace detach from every thread before it exits.
    strace.kill('SIGINT')
    await exited
  }
  return out.split('\n')
}

describe.skipIf(!hasCommand('strace'))(`the broker's TCP sockets${skipReason('strace', 'strace')}`, () => {
  const t = useTestDatabase('pglite')
  let tb: TestBroker

  beforeAll(async () => {
    tb = await startTestBroker(t.handle)
  })
  afterAll(async () => {
    await tb.close()
  })

  it('turns Nagle off on every connection the MQTT listener accepts', async () => {
    const lines = await traceWhile('accept4,setsockopt', async () => {
      const socket = net.connect(tb.port, '127.0.0.1')
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
      // A PINGREQ before any CONNECT: the broker closes the connection, so it has accepted it by then.
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
      socket.on('error', () => {})
      socket.end(Buffer.from([0xc0, 0x00]))
      await closed
    })
    const accepted = lines.flatMap((l) => {
      const m = /accept4?\(\d+,.*\)\s+=\s+(\d+)$/.exec(l)
      return m !== null ? [m[1]!] : []
    })
    expect(accepted.length, lines.join('\n')).toBeGreaterThan(0)
    const noDelay = accepted.filter((fd) => lines.some((l) => l.includes(`setsockopt(${fd}, SOL_TCP, TCP_NODELAY, [1], 4) = 0`)))
    expect(noDelay, lines.join('\n')).toEqual(accepted)
  })

  it("turns Nagle off on a simulated meter's connection", async () => {
    const { meter: m } = await createOccupiedMeter(t.db, new Date('2026-09-30T22:00:00Z'), { commodity: 'electricity', intervalMinutes: 60 })
    const meter = { meterId: m.id, secret: m.secret, commodity: 'electricity' as const, intervalMinutes: 60 as const, pv: false, power: false }
    let fleet: ReturnType<typeof startFleet> | undefined
    const lines = await traceWhile('connect,setsockopt', async () => {
      fleet = startFleet({ mqttUrl: tb.url, meters: [meter], from: '2026-10-01', days: 1, speed: 'max', tickMs: 10 })
      await fleet.done
    })
    await fleet?.stop()
    const connected = lines.flatMap((l) => {
      const m = new RegExp(`connect\\((\\d+), \\{sa_family=AF_INET, sin_port=htons\\(${tb.port}\\)`).exec(l)
      return m !== null ? [m[1]!] : []
    })
    expect(connected.length, lines.join('\n')).toBeGreaterThan(0)
    const noDelay = connected.filter((fd) => lines.some((l) => l.includes(`setsockopt(${fd}, SOL_TCP, TCP_NODELAY, [1], 4) = 0`)))
    expect(noDelay, lines.join('\n')).toEqual(connected)
  })
})
