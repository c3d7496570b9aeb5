import net, { type Socket } from 'node:net'

/**
 * The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer relaying MQTT over TCP
 * opens each connection to the broker with a header naming the client's address, so that the
 * broker counts authentication failures by the meter's address and not by the balancer's.
 * Read only from the trusted proxies (METERSHARE_TRUSTED_PROXIES), which must send it.
 */

/** Version 1's longest header, in bytes, CRLF included. */
export const PROXY_V1_HEADER_BYTES_MAX = 107
/** Version 2's longest address block (addresses and TLVs), in bytes, after its 16-byte preamble. */
export const PROXY_V2_ADDRESS_BYTES_MAX = 1_024

/** `proxied`: a client's connection, from `source`; `local`: the proxy's own (a health check), or a client it cannot name. */
export type ProxyHeader = { kind: 'proxied'; source: string } | { kind: 'local' }

const V1_PREFIX = Buffer.from('PROXY ', 'latin1')
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])

export class ProxyHeaderError extends Error {}

/**
 * The header at the start of `buf` and its length in bytes, or null when more bytes are needed.
 * Throws ProxyHeaderError when `buf` does not start with one.
 */
export function parseProxyHeader(buf: Buffer): { header: ProxyHeader; length: number } | null {
  if (startsLike(buf, V2_SIGNATURE)) return buf.length < V2_SIGNATURE.length ? null : parseV2(buf)
  if (startsLike(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? null : parseV1(buf)
  throw new ProxyHeaderError('not a PROXY protocol header')
}

/** Whether `buf` and `prefix` agree on their common length. */
function startsLike(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length)
  return buf.subarray(0, n).equals(prefix.subarray(0, n))
}

function parseV1(buf: Buffer): { header: ProxyHeader; length: number } | null {
  const end = buf.indexOf('\r\n', 0, 'latin1')
  if (end < 0) {
    if (buf.length >= PROXY_V1_HEADER_BYTES_MAX) throw new ProxyHeaderError(`PROXY v1 header longer than ${PROXY_V1_HEADER_BYTES_MAX} bytes`)
    return null
  }
  const length = end + 2
  if (length > PROXY_V1_HEADER_BYTES_MAX) throw new ProxyHeaderError(`PROXY v1 header longer than ${PROXY_V1_HEADER_BYTES_MAX} bytes`)
  const fields = buf.toString('latin1', 0, end).split(' ')
  if (fields[1] === 'UNKNOWN') return { header: { kind: 'local' }, length }
  const [, family, source, destination, sourcePort, destinationPort] = fields
  const isFamily = family === 'TCP4' ? net.isIPv4 : family === 'TCP6' ? net.isIPv6 : null
  if (fields.length !== 6 || isFamily === null || !isFamily(source!) || !isFamily(destination!) || !isPort(sourcePort!) || !isPort(destinationPort!)) {
    throw new ProxyHeaderError('malformed PROXY v1 header')
  }
  return { header: { kind: 'proxied', source: source! }, length }
}

function isPort(text: string): boolean {
  return /^\d{1,5}$/.test(text) && Number(text) <= 65535
}

function parseV2(buf: Buffer): { header: ProxyHeader; length: number } | null {
  if (buf.length < 16) return null
  const version = buf[12]! >> 4
  const command = buf[12]! & 0x0f
  if (version !== 2 || command > 1) throw new ProxyHeaderError('malformed PROXY v2 header')
  const addressBytes = buf.readUInt16BE(14)
  if (addressBytes > PROXY_V2_ADDRESS_BYTES_MAX) throw new ProxyHeaderError(`PROXY v2 addresses longer than ${PROXY_V2_ADDRESS_BYTES_MAX} bytes`)
  const length = 16 + addressBytes
  if (buf.length < length) return null
  // LOCAL: the proxy speaking for itself.
  if (command === 0) return { header: { kind: 'local' }, length }
  const family = buf[13]! >> 4
  if (family === 1 && addressBytes >= 12) return { header: { kind: 'proxied', source: [...buf.subarray(16, 20)].join('.') }, length }
  if (family === 2 && addressBytes >= 36) {
    const groups: string[] = []
    for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(16 + 2 * i).toString(16))
    return { header: { kind: 'proxied', source: groups.join(':') }, length }
  }
  // UNSPEC or a UNIX socket: no address to count by.
  if (family === 0 || family === 3) return { header: { kind: 'local' }, length }
  throw new ProxyHeaderError('malformed PROXY v2 header')
}

/** The socket ended or closed before sending a byte: a proxy's plain TCP health check, or the broker closing. */
export class ClosedBeforeHeaderError extends Error {}

/**
 * Reads the header that opens `socket` and leaves what follows it (the MQTT bytes) to be read.
 * Rejects when the socket sends something else, ends, or sends nothing within `timeoutMs`.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyHeader> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0)
    const finish = (err: Error | null, header?: ProxyHeader): void => {
      clearTimeout(timer)
      socket.off('readable', onReadable)
      socket.off('end', onEnd)
      socket.off('close', onEnd)
      socket.off('error', finish)
      if (err !== null) reject(err)
      else resolve(header!)
    }
    const onReadable = (): void => {
      let chunk: Buffer | null
      while ((chunk = socket.read() as Buffer | null) !== null) {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
        let parsed: ReturnType<typeof parseProxyHeader>
        try {
          parsed = parseProxyHeader(buf)
        } catch (err) {
          return finish(err as Error)
        }
        if (parsed !== null) {
          if (parsed.length < buf.length) socket.unshift(buf.subarray(parsed.length))
          return finish(null, parsed.header)
        }
      }
    }
    const onEnd = (): void => finish(buf.length === 0 ? new ClosedBeforeHeaderError('closed before sending anything') : new ProxyHeaderError('closed inside a PROXY protocol header'))
    const timer = setTimeout(() => finish(new ProxyHeaderError(`no PROXY protocol header within ${timeoutMs} ms`)), timeoutMs)
    socket.on('readable', onReadable)
    socket.once('end', onEnd)
    // Destroyed without an end (the broker closing, a reset): settled too, and its timer with it.
    socket.once('close', onEnd)
    socket.once('error', finish)
  })
}
