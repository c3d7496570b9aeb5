import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { listenShared } from '../../broker/accept-handles.ts'
import { MQTT_ACCEPT_HANDLES, createBroker } from '../../broker/broker.ts'
import { AccessLogRecorder } from '../../services/consent/access-log-recorder.ts'
import { envToConfig } from '../../shared/config.ts'
import { createMetrics } from '../../shared/metrics.ts'
import { connectMeter, endClient, ownerOnlyPolicy, startTestBroker } from '../support/broker.ts'
import { connectOutcome, freePort, run, waitFor } from '../support/tools.ts'
import { describeDatabases } from '../support/database.ts'
import { createTestMeter, createUtility } from '../support/world.ts'

/**
 * The MQTT listener's handles (accept-handles.ts): a busy event loop accepts one connection a turn
 * per handle of the listening socket, so a storm of meters connecting at once waits in the kernel's
 * accept queue unless the socket has many.
 */

/** Busy time of each turn of the event loop while connections wait, in ms. */
const TURN_BUSY_MS = 20
const PENDING = 120

/** Opens `PENDING` connections at once, then keeps the event loop busy turn after turn until all are accepted or `turnsMax` turns have run; the turns it took. */
async function turnsToAcceptAll(servers: net.Server[], turnsMax: number): Promise<{ turns: number; accepted: number; mostInOneTurn: number }> {
  const port = (servers[0]!.address() as net.AddressInfo).port
  const perTurn = new Map<number, number>()
  let turn = 0
  let accepted = 0
  const sockets: net.Socket[] = []
  for (const s of servers) {
    s.on('connection', (socket) => {
      sockets.push(socket)
      accepted++
      perTurn.set(turn, (perTurn.get(turn) ?? 0) + 1)
    })
  }
  const clients = Array.from({ length: PENDING }, () => net.connect({ port, host: '127.0.0.1' }).on('error', () => undefined))
  // Every handshake done by the kernel before the loop turns (the listener's accept queue full of them).
  await Promise.all(clients.map((c) => new Promise((r) => c.once('connect', r))))
  await new Promise<void>((resolve) => {
    const burn = (): void => {
      turn++
      const until = performance.now() + TURN_BUSY_MS
      while (performance.now() < until);
      if (accepted >= PENDING || turn >= turnsMax) resolve()
      else setImmediate(burn)
    }
    setImmediate(burn)
  })
  for (const c of clients) c.destroy()
  for (const s of sockets) s.destroy()
  return { turns: turn, accepted, mostInOneTurn: Math.max(0, ...perTurn.values()) }
}

describe('a listening socket held through several handles', () => {
  let servers: net.Server[] = []
  afterEach(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
    servers = []
  })

  it('accepts one connection a turn of a busy event loop with one handle (why there are several)', async () => {
    servers = await listenShared({ port: 0, host: '127.0.0.1', backlog: 1024, handles: 1 })
    const r = await turnsToAcceptAll(servers, 30)
    expect(r.mostInOneTurn).toBe(1)
    expect(r.accepted).toBeLessThan(PENDING)
  })

  it('accepts as many a turn as it has handles, all on one port', async () => {
    servers = await listenShared({ port: 0, host: '127.0.0.1', backlog: 1024, handles: 16 })
    expect(servers).toHaveLength(16)
    expect(new Set(servers.map((s) => (s.address() as net.AddressInfo).port)).size).toBe(1)
    const r = await turnsToAcceptAll(servers, 30)
    expect(r.accepted).toBe(PENDING)
    expect(r.mostInOneTurn).toBeGreaterThan(8)
    expect(r.turns).toBeLessThanOrEqual(Math.ceil(PENDING / 16) + 3)
  })

  it('fails as listen does, with its code, when the port is taken', async () => {
    const other = net.createServer()
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r))
    try {
      const port = (other.address() as net.AddressInfo).port
      await expect(listenShared({ port, host: '127.0.0.1', backlog: 16, handles: 4 })).rejects.toMatchObject({ code: 'EADDRINUSE', port })
    } finally {
      await new Promise((r) => other.close(r))
    }
  })

  it('hands the socket over at once while clients connect all along (meters reconnecting during a restart), and its helper leaves', async () => {
    // A free port, then clients knocking on it every millisecond from before it listens: some reach the
    // helper while it holds the socket. Held open, such a connection kept the helper alive, and the
    // start waited for it to exit until LISTEN_HANDLES_WAIT_MS_MAX (15 s), then failed.
    const probe = net.createServer()
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r))
    const port = (probe.address() as net.AddressInfo).port
    await new Promise((r) => probe.close(r))
    const clients: net.Socket[] = []
    let connected = 0
    const knock = setInterval(() => {
      const c = net.connect({ port, host: '127.0.0.1' }).on('error', () => undefined)
      c.once('connect', () => connected++)
      clients.push(c)
    }, 1)
    try {
      await new Promise((r) => setTimeout(r, 20))
      const started = performance.now()
      servers = await listenShared({ port, host: '127.0.0.1', backlog: 1024, handles: 4 })
      const ms = performance.now() - started
      // The parent now accepts what comes; the helper is gone (nothing else holds the port).
      let accepted = 0
      for (const srv of servers) srv.on('connection', (socket) => (accepted++, socket.destroy()))
      await new Promise((r) => setTimeout(r, 100))
      clearInterval(knock)
      expect(connected).toBeGreaterThan(0)
      expect(accepted).toBeGreaterThan(0)
      expect(ms).toBeLessThan(5_000)
      // Closed from the clients' side too (those accepted before the listener above was there).
      for (const c of clients) c.destroy()
      await Promise.all(servers.map((srv) => new Promise((r) => srv.close(r))))
      servers = []
      expect(await connectOutcome(port)).toBe('ECONNREFUSED')
    } finally {
      clearInterval(knock)
      for (const c of clients) c.destroy()
    }
  })

  it('hands every connection its handles accept to the listener from the moment each arrives: none is left unanswered (found by probing: a client connecting as the broker started got no CONNACK, and the broker\'s stop waited for it)', async () => {
    const port = await freePort()
    const clients: net.Socket[] = []
    const outcomes: Array<'answered' | 'closed' | null> = []
    const knock = setInterval(() => {
      const i = outcomes.push(null) - 1
      const c = net.connect({ port, host: '127.0.0.1' }).on('error', () => (outcomes[i] ??= 'closed'))
      c.once('connect', () => {
        c.once('data', () => (outcomes[i] ??= 'answered'))
        c.once('close', () => (outcomes[i] ??= 'closed'))
      })
      c.once('close', () => (outcomes[i] ??= 'closed'))
      clients.push(c)
    }, 1)
    const sockets: net.Socket[] = []
    try {
      await new Promise((r) => setTimeout(r, 20))
      servers = await listenShared({ port, host: '127.0.0.1', backlog: 1024, handles: 8 }, (socket) => {
        sockets.push(socket)
        socket.write('x')
      })
      await new Promise((r) => setTimeout(r, 100))
      clearInterval(knock)
      // Each connection is answered by this process, or closed (refused, or accepted by the helper, which has left).
      await waitFor(() => outcomes.every((o) => o !== null), 5_000, 'every connection answered or closed')
      expect(outcomes.filter((o) => o === 'answered').length).toBeGreaterThan(0)
    } finally {
      clearInterval(knock)
      for (const c of clients) c.destroy()
      for (const s of sockets) s.destroy()
    }
  })

  it('leaves the port free when the process that asked for it is killed as it forks the helper (the helper listened on for good)', async () => {
    // A process killed mid-start (a broker SIGKILLed, or one whose signals were not yet handled): its
    // helper started with nobody to hand the socket to, and no 'disconnect' ever came to tell it.
    const port = await freePort()
    const dir = mkdtempSync(path.join(os.tmpdir(), 'metershare-orphan-'))
    const script = path.join(dir, 'killed.ts')
    writeFileSync(
      script,
      `import { listenShared } from ${JSON.stringify(path.resolve(import.meta.dirname, '../../broker/accept-handles.ts'))}\n` +
        `void listenShared({ port: ${port}, host: '127.0.0.1', backlog: 16, handles: 4 })\n` +
        `process.kill(process.pid, 'SIGKILL')\n`,
    )
    try {
      const r = await run(process.execPath, ['--import', 'tsx', script], { timeoutMs: 30_000 })
      expect(r.code).not.toBe(0)
      // The helper checks for its parent every 100 ms.
      await waitFor(async () => (await connectOutcome(port)) === 'ECONNREFUSED', 5_000, 'the port let go')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('stops listening once every handle is closed', async () => {
    servers = await listenShared({ port: 0, host: '127.0.0.1', backlog: 16, handles: 4 })
    const port = (servers[0]!.address() as net.AddressInfo).port
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
    servers = []
    expect(await connectOutcome(port)).toBe('ECONNREFUSED')
  })
})

/** Descriptors of this process on the listening TCP socket of `port` (Linux: /proc). */
function listeningDescriptors(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0')
  const inodes = new Set<string>()
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      // local_address ends in :PORT; state 0A is LISTEN; the inode is the tenth field.
      if (f.length > 9 && f[1]!.endsWith(`:${hex}`) && f[3] === '0A') inodes.add(f[9]!)
    }
  }
  let n = 0
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`)
      if (inodes.has(/^socket:\[(\d+)\]$/.exec(target)?.[1] ?? '')) n++
    } catch {
      // A descriptor closed meanwhile.
    }
  }
  return n
}

describeDatabases("the broker's MQTT listener", (t) => {
  it(`holds its socket through ${MQTT_ACCEPT_HANDLES} handles and serves meters on it, then lets go of every one`, async () => {
    const tb = await startTestBroker(t.handle)
    const port = tb.port
    try {
      expect(listeningDescriptors(port)).toBe(MQTT_ACCEPT_HANDLES)
      const operator = await createUtility(t.db)
      const meter = await createTestMeter(t.db, operator.id)
      const client = await connectMeter(`mqtt://127.0.0.1:${port}`, meter)
      await endClient(client)
    } finally {
      await tb.close()
    }
    expect(listeningDescriptors(port)).toBe(0)
  })

  it('listens on nothing when it is closed while its socket is being handed over', async () => {
    const config = envToConfig({ mqttPort: '0', httpPort: '0', host: '127.0.0.1', logLevel: 'silent' })
    const metrics = createMetrics({ defaultMetrics: false })
    const recorder = new AccessLogRecorder(t.db, { metrics })
    const broker = await createBroker({ config, db: t.handle, metrics, recorder, policy: ownerOnlyPolicy })
    const probe = net.createServer()
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r))
    const port = (probe.address() as net.AddressInfo).port
    await new Promise((r) => probe.close(r))
    // Expected at once: the refusal may come while the broker closes, and a rejection nobody
    // awaits yet is reported as unhandled.
    const refused = expect(broker.listenTcp(port, '127.0.0.1')).rejects.toMatchObject({ code: 'BROKER_CLOSED', message: 'the broker closed while its MQTT listener opened' })
    await broker.close()
    await recorder.close()
    await refused
    expect(listeningDescriptors(port)).toBe(0)
  })
})
