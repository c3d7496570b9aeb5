import { describe, expect, it } from 'vitest'
import { laneOf } from '../../broker/ingest-lanes.ts'

describe('ingest lanes', () => {
  it('puts a meter in the same lane every time, within range, and spreads meters evenly', () => {
    const ids = Array.from({ length: 10_000 }, (_, i) => `mtr_${i.toString(36).padStart(6, '0')}`)
    for (const lanes of [1, 2, 3, 4]) {
      const counts = new Array<number>(lanes).fill(0)
      for (const id of ids) {
        const lane = laneOf(id, lanes)
        expect(lane).toBe(laneOf(id, lanes))
        expect(Number.isInteger(lane) && lane >= 0 && lane < lanes).toBe(true)
        counts[lane]!++
      }
      for (const n of counts) expect(Math.abs(n - ids.length / lanes)).toBeLessThan(ids.length / lanes / 10)
    }
    // FNV-1a 32-bit of "a" is 0xe40c292c: the hash is the published one, not an accident of this build.
    expect(laneOf('a', 0x7fffffff)).toBe(0xe40c292c % 0x7fffffff)
  })
})
