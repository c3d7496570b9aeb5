import { fork } from 'node:child_process'
import type net from 'node:net'

/**
 * One listening TCP socket held through several handles, so that a busy event loop accepts
 * several connections a turn.
 *
 * libuv (Node 20's 1.46) accepts one connection each time epoll reports the listening socket, and
 * epoll reports it once per turn of the event loop. A broker ingesting a catch-up storm turns its
 * loop every 100–200 ms, so it accepted 10–120 connections a second: measured with `bench:ingest
 * --only storm`, 19,896 meters reconnecting at once waited 33 s for their CONNACK at the median, most
 * of it in the kernel's accept queue, past MQTT.js's 30 s connect timeout, after which a meter gives up
 * and connects again. Each duplicate of the socket's descriptor is reported on its own, so N handles
 * accept up to N a turn (a busy loop of 50 ms turns: 20 a second with one handle, 320 with 16).
 *
 * Node 20 can neither duplicate a descriptor nor set SO_REUSEPORT on a net.Server (22.12 can): a
 * short-lived child process listens and sends the listening handle N times over IPC, each arriving
 * as a duplicate (as Node's cluster shares a listening socket), then closes its own and exits.
 */

/** How long the helper may take to listen and hand its socket over, in ms. */
export const LISTEN_HANDLES_WAIT_MS_MAX = 15_000

const HELPER = new URL('./listen-handles.cjs', import.meta.url)

export interface SharedListen {
  port: number
  host: string
  /** Connections the kernel may hold before they are accepted (capped by net.core.somaxconn). */
  backlog: number
  /** Handles of the socket: connections accepted per turn of a busy event loop, at most. */
  handles: number
}

/**
 * Listening servers on one socket, each already listening (`handles` of them), each handing the
 * connections it accepts to `onConnection` from its arrival on; rejects with the listen error (its
 * `code`: EADDRINUSE, EACCES, ENOTFOUND…) as `server.listen` would. A connection accepted before the
 * rejection has been handed over already.
 */
export function listenShared(opts: SharedListen, onConnection?: (socket: net.Socket) => void): Promise<net.Server[]> {
  if (!Number.isInteger(opts.handles) || opts.handles < 1) throw new Error(`assertion failed: ${opts.handles} listening handles`)
  return new Promise((resolve, reject) => {
    const servers: net.Server[] = []
    let settled = false
    let exited = false
    const handedOver = (): void => {
      if (servers.length === opts.handles && exited) finish(null)
    }
    // Not the parent's flags (a loader, --cpu-prof): the helper is plain CommonJS.
    const child = fork(HELPER, [JSON.stringify({ ...opts, parent: process.pid })], { execArgv: [], stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'json' })
    const finish = (err: Error | null): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (err === null) return resolve(servers)
      for (const s of servers) s.close()
      child.kill()
      reject(err)
    }
    const timer = setTimeout(() => finish(new Error(`the listening socket was not handed over within ${LISTEN_HANDLES_WAIT_MS_MAX} ms`)), LISTEN_HANDLES_WAIT_MS_MAX)
    child.on('message', (m: { handle?: number; error?: { message: string; code?: string } }, handle?: net.Server) => {
      if (m.error !== undefined) return finish(Object.assign(new Error(m.error.message), m.error))
      if (handle === undefined) return finish(new Error('the listening socket came without its handle'))
      if (settled) return void handle.close()
      // Each handle accepts from the moment it arrives, before the others and the helper's exit: a
      // connection accepted with no listener yet was never answered, nor closed, and the broker's
      // stop waited for it for good (found by probing: a SIGTERM hung 10 minutes).
      if (onConnection !== undefined) handle.on('connection', onConnection)
      servers.push(handle)
      handedOver()
    })
    child.once('error', (err) => finish(err))
    // Its channel closes after the last message it sent has been read, whether it finished or failed.
    child.once('disconnect', () => {
      if (servers.length < opts.handles) finish(new Error(`the listening helper left before handing over ${opts.handles} handles (${servers.length} came)`))
    })
    // Done once the helper is gone too: until it exits it holds the socket, which would still take
    // connections after every handle here is closed.
    child.once('exit', () => {
      exited = true
      handedOver()
    })
  })
}
