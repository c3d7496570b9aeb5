/**
 * Seeded randomness for the simulators: the same seed gives the same fleet, the same readings
 * and the same faults. 32-bit integer hashing only, so results do not depend on the platform.
 */

/** murmur3's 32-bit finaliser: a good avalanche for small integer inputs. */
export function mix32(x: number): number {
  let h = x >>> 0
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** Combines integers and strings into one 32-bit seed (FNV-1a over strings, mixed in order). */
export function hash32(...parts: readonly (number | string)[]): number {
  let h = 0x811c9dc5
  for (const part of parts) {
    if (typeof part === 'number') {
      h = mix32(h ^ mix32(part >>> 0))
      // Numbers above 32 bits (epoch ms, day indexes of far years) keep their high part too.
      h = mix32(h ^ Math.floor(part / 0x1_0000_0000))
    } else {
      for (let i = 0; i < part.length; i++) {
        h ^= part.charCodeAt(i)
        h = Math.imul(h, 0x01000193)
      }
      h = mix32(h ^ part.length)
    }
  }
  return h >>> 0
}

/** mulberry32: small, fast, and good enough for simulated consumption and fault rolls. */
export class Rng {
  private state: number

  constructor(seed: number) {
    this.state = seed >>> 0
  }

  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }

  /** Uniform integer in [lo, hi], both inclusive. */
  int(lo: number, hi: number): number {
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || hi < lo) throw new RangeError(`bad range [${lo}, ${hi}]`)
    const span = hi - lo + 1
    if (span <= 0x1_0000_0000) return lo + Math.floor((this.nextUint32() / 0x1_0000_0000) * span)
    return lo + Math.floor(((this.nextUint32() * 0x1_0000_0000 + this.nextUint32()) / 2 ** 64) * span)
  }

  /** True with probability p (0 never, 1 always). */
  chance(p: number): boolean {
    if (p <= 0) return false
    if (p >= 1) return true
    return this.nextUint32() < p * 0x1_0000_0000
  }

  /** One of the items, weighted by integer weights. */
  pick<T>(items: readonly (readonly [T, number])[]): T {
    let total = 0
    for (const [, w] of items) total += w
    let r = this.int(0, total - 1)
    for (const [item, w] of items) {
      if (r < w) return item
      r -= w
    }
    throw new Error('unreachable: weights changed during pick')
  }
}
