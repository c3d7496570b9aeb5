import net from 'node:net'

/**
 * The load balancers in front of a process (METERSHARE_TRUSTED_PROXIES): addresses and CIDR
 * ranges, IPv4 or IPv6. A connection from one of them carries its client's address: in
 * `X-Forwarded-For` over HTTP and WebSocket, in a PROXY protocol header over MQTT's TCP. That
 * address is the one throttles count failures by; a connection from anywhere else is taken as
 * it comes, whatever it claims.
 */
export class TrustedProxies {
  private readonly list = new net.BlockList()

  /** `entries` as `parseTrustedProxies` checked them. */
  constructor(readonly entries: readonly string[]) {
    for (const entry of entries) {
      const [address, bits] = entry.split('/') as [string, string | undefined]
      const type = net.isIPv4(address) ? 'ipv4' : 'ipv6'
      if (bits === undefined) this.list.addAddress(address, type)
      else this.list.addSubnet(address, Number(bits), type)
    }
  }

  get none(): boolean {
    return this.entries.length === 0
  }

  /** Whether a peer's address (as a socket reports it; IPv4-mapped IPv6 counts as IPv4) is a trusted proxy. */
  trusts(address: string | undefined): boolean {
    if (address === undefined || this.none) return false
    const plain = unmapIPv4(address)
    const type = net.isIPv4(plain) ? 'ipv4' : net.isIPv6(plain) ? 'ipv6' : null
    return type !== null && this.list.check(plain, type)
  }

  /**
   * The client's address behind the proxies: walking `X-Forwarded-For` from its end (the entry
   * the nearest proxy added) past every trusted proxy, the first address that is not one.
   */
  clientOf(peer: string | undefined, forwardedFor: string | string[] | undefined): string | undefined {
    if (!this.trusts(peer) || forwardedFor === undefined) return peer
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',').map((h) => h.trim())
    let client = peer
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!
      if (net.isIP(unmapIPv4(hop)) === 0) break
      client = hop
      if (!this.trusts(hop)) break
    }
    return client
  }
}

/** Checks METERSHARE_TRUSTED_PROXIES: comma-separated addresses or CIDR ranges. Throws a sentence naming the bad entry. */
export function parseTrustedProxies(text: string): string[] {
  const entries = text
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '')
  for (const entry of entries) {
    const [address, bits, extra] = entry.split('/')
    const family = net.isIP(address ?? '')
    const maxBits = family === 4 ? 32 : 128
    if (family === 0 || extra !== undefined || (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > maxBits))) {
      throw new Error(`"${entry}" is not an IP address or a CIDR range (such as 10.0.0.5 or 172.30.0.0/24)`)
    }
  }
  return entries
}

/**
 * An IPv4-mapped IPv6 address as the IPv4 address it is, however it is written: a socket says
 * `::ffff:203.0.113.7`, a PROXY v2 header gives its eight groups (`0:0:0:0:0:ffff:cb00:7107`).
 */
function unmapIPv4(address: string): string {
  if (address.startsWith('::ffff:') && net.isIPv4(address.slice(7))) return address.slice(7)
  if (!address.includes(':')) return address
  const g = ipv6Groups(address)
  if (g === null || g[0] !== 0 || g[1] !== 0 || g[2] !== 0 || g[3] !== 0 || g[4] !== 0 || g[5] !== 0xffff) return address
  return `${g[6]! >> 8}.${g[6]! & 0xff}.${g[7]! >> 8}.${g[7]! & 0xff}`
}

/** Bits of an IPv6 client address that the throttles count as one client: the /64 a site is given. */
export const THROTTLE_IPV6_PREFIX_BITS = 64

/**
 * The address that the sign-in throttles count a client's failures by. An IPv4 address (IPv4-mapped
 * IPv6 included) is itself. An IPv6 address counts as its /64 (`2001:db8:1:2::/64`): one host or home
 * is given a /64 and may use any of its 2^64 addresses, so counting by the exact address would let
 * it take a fresh one for every guess. Anything else (`unknown`) is taken as it is.
 */
export function throttleAddressOf(address: string): string {
  const plain = unmapIPv4(address)
  if (net.isIPv4(plain)) return plain
  const groups = ipv6Groups(plain)
  if (groups === null) return address
  const prefix = groups.slice(0, THROTTLE_IPV6_PREFIX_BITS / 16).map((g) => g.toString(16))
  return `${prefix.join(':')}::/${THROTTLE_IPV6_PREFIX_BITS}`
}

/** The eight 16-bit groups of an IPv6 address (a zone `%eth0` left out), or null when it is not one. */
function ipv6Groups(address: string): number[] | null {
  const bare = address.split('%')[0]!
  if (!net.isIPv6(bare)) return null
  let text = bare
  const lastColon = text.lastIndexOf(':')
  const tail = text.slice(lastColon + 1)
  if (net.isIPv4(tail)) {
    // An embedded IPv4 address is the last two groups.
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number]
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head, rest] = text.split('::') as [string, string | undefined]
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)))
  const front = parse(head)
  if (rest === undefined) return front
  const back = parse(rest)
  return [...front, ...Array<number>(8 - front.length - back.length).fill(0), ...back]
}
