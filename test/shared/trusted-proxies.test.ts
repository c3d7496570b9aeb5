import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { TrustedProxies, throttleAddressOf } from '../../shared/trusted-proxies.ts'

describe('trusted proxies', () => {
  const proxies = new TrustedProxies(['172.30.0.10', '10.1.0.0/16', '2001:db8:1::/48'])

  it('trusts the listed addresses and ranges, IPv4-mapped IPv6 as IPv4, and nothing else', () => {
    for (const a of ['172.30.0.10', '::ffff:172.30.0.10', '10.1.255.3', '2001:db8:1:ffff::1']) expect(proxies.trusts(a), a).toBe(true)
    for (const a of ['172.30.0.11', '10.2.0.1', '2001:db8:2::1', '::1', 'not an address', undefined]) expect(proxies.trusts(a), String(a)).toBe(false)
    expect(new TrustedProxies([]).trusts('127.0.0.1')).toBe(false)
  })

  it('finds the client behind the trusted hops of X-Forwarded-For, from its end', () => {
    expect(proxies.clientOf('172.30.0.10', '203.0.113.5')).toBe('203.0.113.5')
    expect(proxies.clientOf('::ffff:172.30.0.10', '198.51.100.1, 203.0.113.5, 10.1.0.7')).toBe('203.0.113.5')
    expect(proxies.clientOf('172.30.0.10', ['198.51.100.1', '203.0.113.5'])).toBe('203.0.113.5')
    // Every hop trusted: the first of them.
    expect(proxies.clientOf('172.30.0.10', '10.1.0.8, 10.1.0.7')).toBe('10.1.0.8')
    // Garbage stops the walk at the last address that was forwarded by a trusted hop.
    expect(proxies.clientOf('172.30.0.10', 'junk, 10.1.0.7')).toBe('10.1.0.7')
    expect(proxies.clientOf('172.30.0.10', undefined)).toBe('172.30.0.10')
  })

  it('ignores X-Forwarded-For from a peer it does not trust', () => {
    expect(proxies.clientOf('203.0.113.9', '198.51.100.1')).toBe('203.0.113.9')
  })
})

describe('the address a throttle counts a client by', () => {
  it('is an IPv4 address itself, IPv4-mapped IPv6 included', () => {
    expect(throttleAddressOf('203.0.113.7')).toBe('203.0.113.7')
    expect(throttleAddressOf('::ffff:203.0.113.7')).toBe('203.0.113.7')
    // However the mapped address is written: PROXY v2 names it by its eight groups (0:0:0:0:0:ffff:cb00:7107).
    for (const a of ['0:0:0:0:0:ffff:cb00:7107', '::ffff:cb00:7107', '::FFFF:CB00:7107', '0000:0000:0000:0000:0000:ffff:203.0.113.7']) expect(throttleAddressOf(a), a).toBe('203.0.113.7')
    expect(new TrustedProxies(['172.30.0.10']).trusts('0:0:0:0:0:ffff:ac1e:a')).toBe(true)
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        const [a, b, c, d] = ip.split('.').map(Number) as [number, number, number, number]
        const groups = `0:0:0:0:0:ffff:${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
        expect(throttleAddressOf(groups)).toBe(ip)
        expect(throttleAddressOf(`::ffff:${ip}`)).toBe(ip)
      }),
      { numRuns: 500 },
    )
  })

  it('is the /64 of an IPv6 address, however it is written', () => {
    const net = '2001:db8:1:2::/64'
    for (const a of ['2001:db8:1:2::1', '2001:0db8:0001:0002:ffff:ffff:ffff:ffff', '2001:DB8:1:2:0:0:0:9', '2001:db8:1:2::a%eth0', '2001:db8:1:2::1.2.3.4']) {
      expect(throttleAddressOf(a), a).toBe(net)
    }
    expect(throttleAddressOf('2001:db8:1:3::1')).toBe('2001:db8:1:3::/64')
    expect(throttleAddressOf('::1')).toBe('0:0:0:0::/64')
    expect(throttleAddressOf('fe80::1')).toBe('fe80:0:0:0::/64')
  })

  it('takes anything else as it comes', () => {
    expect(throttleAddressOf('unknown')).toBe('unknown')
  })
})
