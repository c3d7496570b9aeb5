import net from 'node:net'

/**
 * A TCP proxy in front of PostgreSQL that, once armed, breaks the first connection of a given
 * application name to receive the server's answer to a COMMIT, and withholds that answer: the
 * server has committed, and the client never hears it (a connection lost at the worst moment, as a
 * network failure or a failover can do). Reads the protocol's messages (type byte, length), no more.
 */
export interface CommitAnswerCutter {
  /** `postgres://…` of the server, through the proxy. */
  url: string
  /**
   * Breaks the next COMMIT answer sent to a connection whose application_name starts with
   * `applicationPrefix`. With `outageMs`, the server is then out of reach through the proxy for that
   * long, as in a crash or a failover: every connection is cut, and new ones are ended as they open.
   */
  arm(applicationPrefix: string, outageMs?: number): void
  /** COMMIT answers withheld so far. */
  readonly cut: number
  close(): Promise<void>
}

const COMMAND_COMPLETE = 0x43
const COMMIT_TAG = Buffer.from('COMMIT\0')

export async function startCommitAnswerCutter(serverUrl: string): Promise<CommitAnswerCutter> {
  const target = new URL(serverUrl)
  let armed: string | null = null
  let outageMs = 0
  let outageUntil = 0
  let cut = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    if (Date.now() < outageUntil) {
      client.destroy()
      return
    }
    const upstream = net.connect(Number(target.port || 5432), target.hostname)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {})
    }
    const end = (): void => {
      client.destroy()
      upstream.destroy()
    }
    client.on('close', end)
    upstream.on('close', end)
    let application = ''
    let startup = true
    client.on('data', (chunk: Buffer) => {
      // The startup message (length, protocol, then name/value pairs) names the application.
      if (startup) {
        startup = false
        const params = chunk.subarray(8).toString('latin1').split('\0')
        const i = params.indexOf('application_name')
        if (i >= 0) application = params[i + 1] ?? ''
      }
      upstream.write(chunk)
    })
    let pending = Buffer.alloc(0)
    upstream.on('data', (chunk: Buffer) => {
      if (armed === null || !application.startsWith(armed)) {
        client.write(chunk)
        return
      }
      // Whole messages are passed on; a COMMIT's CommandComplete and all after it are not.
      pending = Buffer.concat([pending, chunk])
      let at = 0
      while (pending.length - at >= 5) {
        const length = pending.readUInt32BE(at + 1)
        if (pending.length - at < 1 + length) break
        const body = pending.subarray(at + 5, at + 1 + length)
        if (pending[at] === COMMAND_COMPLETE && body.equals(COMMIT_TAG)) {
          client.write(pending.subarray(0, at))
          armed = null
          cut++
          end()
          if (outageMs > 0) {
            outageUntil = Date.now() + outageMs
            for (const s of sockets) s.destroy()
          }
          return
        }
        at += 1 + length
      }
      client.write(pending.subarray(0, at))
      pending = pending.subarray(at)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  const url = new URL(serverUrl)
  url.hostname = '127.0.0.1'
  url.port = String((server.address() as net.AddressInfo).port)
  return {
    url: url.toString(),
    arm(prefix, outage = 0) {
      armed = prefix
      outageMs = outage
    },
    get cut() {
      return cut
    },
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
