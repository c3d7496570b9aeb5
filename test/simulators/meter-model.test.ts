import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { dayType } from '../../simulators/day-type.ts'
import { dynamisationFactorE4, loadProfile, parseLoadProfileCsv } from '../../simulators/load-profile.ts'
import { addDays, dayOfYear, startOfLocalDay } from '../../simulators/local-time.ts'
import { MeterModel, resolveMeter, type MeterSpec } from '../../simulators/meter-model.ts'
import { ModelCalendar } from '../../simulators/model-calendar.ts'

const TZ = 'Europe/Paris'
const QH = 15 * 60_000
const IMPORT = '1-0:1.8.0'
const EXPORT = '1-0:2.8.0'
const GAS = '7-0:3.0.0'

function model(spec: Partial<MeterSpec> & Pick<MeterSpec, 'commodity'>, seed = 1): MeterModel {
  return new MeterModel(resolveMeter({ meterId: 'm-test', intervalMinutes: 15, ...spec }, seed), new ModelCalendar(TZ))
}

/** The H25 file read here on its own: column (month, type) → 96 values in thousandths, as bigint. */
function rawProfile(file: string): Map<string, bigint[]> {
  const lines = readFileSync(new URL(`../../simulators/load-profiles/${file}`, import.meta.url), 'utf8').trim().split(/\r?\n/)
  const types = lines[1]!.split(',').slice(1)
  const out = new Map<string, bigint[]>()
  for (const line of lines.slice(2)) {
    line
      .split(',')
      .slice(1)
      .forEach((cell, c) => {
        const key = `${Math.floor(c / 3) + 1}-${types[c]}`
        const [int, frac = ''] = cell.split('.')
        const list = out.get(key) ?? []
        list.push(BigInt(int!) * 1000n + BigInt(frac.padEnd(3, '0')))
        out.set(key, list)
      })
  }
  return out
}

describe('load profiles', () => {
  it('keeps the published values as exact integer thousandths', () => {
    const h25 = loadProfile('H25')
    expect(h25.thousandths(1, 'SA', 0)).toBe(22152)
    expect(h25.thousandths(1, 'FT', 0)).toBe(23148)
    expect(h25.thousandths(12, 'WT', 95)).toBe(Number(rawProfile('bdew-h25.csv').get('12-WT')![95]))
    const raw = rawProfile('bdew-p25.csv')
    for (const [key, values] of raw) {
      const [month, type] = key.split('-') as [string, 'SA' | 'FT' | 'WT']
      expect(loadProfile('P25').daySum(Number(month), type)).toBe(Number(values.reduce((a, b) => a + b, 0n)))
    }
  })

  it('refuses a profile file that is not 96 quarter-hours of 36 columns', () => {
    const text = readFileSync(new URL('../../simulators/load-profiles/bdew-h25.csv', import.meta.url), 'utf8')
    const lines = text.trim().split('\n')
    expect(() => parseLoadProfileCsv('H25', lines.slice(0, 50).join('\n'))).toThrow(/96 quarter-hours/)
    expect(() => parseLoadProfileCsv('H25', [...lines.slice(0, 2), lines[2]!.replace('22.152', '22.1525'), ...lines.slice(3)].join('\n'))).toThrow(
      /row 1 column 1/,
    )
  })

  it('computes the BDEW dynamisation factor to four decimals (1.242030…, 0.796302…, 1.263163…)', () => {
    expect(dynamisationFactorE4(1)).toBe(12420)
    expect(dynamisationFactorE4(182)).toBe(7963)
    expect(dynamisationFactorE4(365)).toBe(12632)
  })
})

describe('meter model', () => {
  it('meters 3,500 kWh a year for a 3,500 kWh household, the exact integer sum of its dynamised profile', () => {
    const m = model({ commodity: 'electricity', annualKwh: 3500 })
    const start = startOfLocalDay('2026-01-01', TZ)
    const end = startOfLocalDay('2027-01-01', TZ)
    const annualWh = m.registersAt(end)[IMPORT]! - m.registersAt(start)[IMPORT]!
    // Within 1 % of the annual consumption.
    expect(Math.abs(annualWh - 3_500_000)).toBeLessThan(35_000)
    // And exactly the profile's own arithmetic: Σ day sum × dynamisation × 3,500 / 1e10, in bigint.
    const raw = rawProfile('bdew-h25.csv')
    let exact = 0n
    for (let d = '2026-01-01'; d < '2027-01-01'; d = addDays(d, 1)) {
      const column = raw.get(`${Number(d.slice(5, 7))}-${dayType(d)}`)!
      // Paris changes clocks at 02:00 on 29 March (no 02:00–03:00) and 25 October (02:00–03:00 twice).
      const hourTimes = d === '2026-03-29' ? 0n : d === '2026-10-25' ? 2n : 1n
      const sum = column.reduce((a, b) => a + b, 0n) + (hourTimes - 1n) * column.slice(8, 12).reduce((a, b) => a + b, 0n)
      exact += sum * BigInt(dynamisationFactorE4(dayOfYear(d))) * 3500n
    }
    // Each index is the floor of the exact cumulative energy: the difference of two floors is within 1 Wh.
    expect(Math.abs(annualWh - Number(exact / 10_000_000_000n))).toBeLessThanOrEqual(1)
  })

  it('never lets an index go down, and the interval energies add up to the year exactly', () => {
    for (const spec of [
      { commodity: 'electricity' as const, annualKwh: 3500 },
      { commodity: 'electricity' as const, pv: true, annualKwh: 4000, pvPeakW: 9000 },
      { commodity: 'gas' as const, annualGasM3: 1200 },
    ]) {
      const m = model(spec)
      const start = startOfLocalDay('2026-01-01', TZ)
      const end = startOfLocalDay('2027-01-01', TZ)
      const first = m.registersAt(start)
      let previous = first
      const total: Record<string, number> = {}
      for (let t = start + QH; t <= end; t += QH) {
        const values = m.registersAt(t)
        for (const [code, v] of Object.entries(values)) {
          const delta = v - previous[code]!
          if (!Number.isSafeInteger(v) || delta < 0) throw new Error(`${code} is ${v} after ${previous[code]} at ${new Date(t).toISOString()}`)
          total[code] = (total[code] ?? 0) + delta
        }
        previous = values
      }
      for (const code of Object.keys(first)) expect(total[code]).toBe(previous[code]! - first[code]!)
    }
  })

  it('gives the same readings for the same seed and different ones for another', () => {
    const a = model({ commodity: 'electricity' }, 42)
    const b = model({ commodity: 'electricity' }, 42)
    const c = model({ commodity: 'electricity' }, 43)
    const t = Date.parse('2026-10-01T12:00:00Z')
    expect(a.meter).toEqual(b.meter)
    for (let i = 0; i < 96; i++) expect(a.readingAt(t + i * QH)).toEqual(b.readingAt(t + i * QH))
    expect(a.readingAt(t)).not.toEqual(c.readingAt(t))
  })

  it('continues an earlier run exactly: an index depends on the instant only, not on where a run started', () => {
    const walked = model({ commodity: 'electricity', pv: true, power: true }, 5)
    const start = startOfLocalDay('2026-06-01', TZ)
    for (let t = start; t < start + 40 * 24 * 4 * QH; t += QH) walked.registersAt(t)
    const later = start + 40 * 24 * 4 * QH
    const fresh = model({ commodity: 'electricity', pv: true, power: true }, 5)
    expect(fresh.readingAt(later)).toEqual(walked.readingAt(later))
  })

  it('follows the clocks across daylight saving time changes, as BDEW applies its profiles in legal time', () => {
    const m = model({ commodity: 'electricity', annualKwh: 3500 })
    const spring = startOfLocalDay('2026-03-29', TZ)
    const springEnd = startOfLocalDay('2026-03-30', TZ)
    const autumn = startOfLocalDay('2026-10-25', TZ)
    const autumnEnd = startOfLocalDay('2026-10-26', TZ)
    expect((springEnd - spring) / QH).toBe(92)
    expect((autumnEnd - autumn) / QH).toBe(100)
    const raw = rawProfile('bdew-h25.csv')
    // Rows 8–11 are 02:00–03:00: skipped on the short day, twice on the long one.
    for (const [day, s, e, hourTimes] of [
      ['2026-03-29', spring, springEnd, 0n],
      ['2026-10-25', autumn, autumnEnd, 2n],
    ] as const) {
      const column = raw.get(`${Number(day.slice(5, 7))}-FT`)!
      const sum = column.reduce((a, b) => a + b, 0n) + (hourTimes - 1n) * column.slice(8, 12).reduce((a, b) => a + b, 0n)
      const exactWh = Number((sum * BigInt(dynamisationFactorE4(dayOfYear(day))) * 3500n) / 10_000_000_000n)
      const dayWh = m.registersAt(e)[IMPORT]! - m.registersAt(s)[IMPORT]!
      expect(Math.abs(dayWh - exactWh), day).toBeLessThanOrEqual(1)
      // Every quarter-hour of the day carries its row's energy: the repeated hour twice its own, not the day's spread thinner.
      const at = (k: number): number => m.registersAt(s + (k + 1) * QH)[IMPORT]! - m.registersAt(s + k * QH)[IMPORT]!
      const perWh = (row: number): number => Number((column[row]! * BigInt(dynamisationFactorE4(dayOfYear(day))) * 3500n) / 10_000_000_000n)
      let quarterHours = 0
      for (let k = 0; k < (e - s) / QH; k++) quarterHours += at(k)
      expect(quarterHours).toBe(dayWh)
      // The first quarter-hour (00:00–00:15) is within the ±15 % jitter of its row's value.
      expect(at(0)).toBeGreaterThanOrEqual(Math.floor(perWh(0) * 0.8))
      expect(at(0)).toBeLessThanOrEqual(Math.ceil(perWh(0) * 1.2))
    }
  })

  it('exports only when the sun is up, more in summer than in winter', () => {
    const m = model({ commodity: 'electricity', pv: true, annualKwh: 3000, pvPeakW: 6000 })
    const night = Date.parse('2026-06-15T00:00:00Z')
    expect(m.registersAt(night + 3 * 3_600_000)[EXPORT]).toBe(m.registersAt(night)[EXPORT])
    const dayExport = (day: string): number => m.registersAt(startOfLocalDay(addDays(day, 1), TZ))[EXPORT]! - m.registersAt(startOfLocalDay(day, TZ))[EXPORT]!
    let june = 0
    let december = 0
    for (let i = 1; i <= 30; i++) {
      june += dayExport(`2026-06-${String(i).padStart(2, '0')}`)
      december += dayExport(`2026-12-${String(i).padStart(2, '0')}`)
    }
    expect(june).toBeGreaterThan(2 * december)
    expect(june).toBeGreaterThan(0)
  })

  it('exports in local daylight whatever the zone: the sun peaks at 12:00 standard time, and in Paris at 12:00 UTC (its 11:51)', () => {
    const hoursOfExport = (tz: string, day: string): { first: number; last: number; centre: number } => {
      const m = new MeterModel(resolveMeter({ meterId: 'm-test', intervalMinutes: 15, commodity: 'electricity', pv: true, annualKwh: 100, pvPeakW: 5000 }, 1), new ModelCalendar(tz))
      const start = startOfLocalDay(day, tz)
      const end = startOfLocalDay(addDays(day, 1), tz)
      const byQuarter: number[] = []
      for (let t = start; t < end; t += QH) byQuarter.push(m.registersAt(t + QH)[EXPORT]! - m.registersAt(t)[EXPORT]!)
      const exporting = byQuarter.flatMap((e, k) => (e > 0 ? [k] : []))
      const total = byQuarter.reduce((a, b) => a + b, 0)
      // The export's centre of mass, in hours of the local clock (a quarter-hour counts at its middle).
      const centre = byQuarter.reduce((sum, e, k) => sum + e * (k + 0.5), 0) / total / 4
      return { first: exporting[0]! / 4, last: exporting[exporting.length - 1]! / 4, centre }
    }
    // 15 January, no daylight saving time in any of these zones: 8.5 h of sun around solar noon, the
    // export centred on it (but for the household's small load).
    for (const [tz, noon] of [
      ['Europe/Paris', 13],
      ['Europe/London', 12],
      ['America/New_York', 12],
      ['America/Los_Angeles', 12],
      ['Asia/Tokyo', 12],
      ['Asia/Kolkata', 12],
    ] as const) {
      const { first, last, centre } = hoursOfExport(tz, '2026-01-15')
      expect(first, tz).toBeGreaterThanOrEqual(noon - 4.25)
      expect(last, tz).toBeLessThan(noon + 4.25)
      expect(Math.abs(centre - noon), tz).toBeLessThan(0.25)
    }
  })

  it('generates about 1,100 kWh a year per kWp, the Paris area’s specific yield', () => {
    // A household that uses almost nothing exports almost all it generates.
    const m = model({ commodity: 'electricity', pv: true, annualKwh: 100, pvPeakW: 1000 })
    const year = m.registersAt(startOfLocalDay('2027-01-01', TZ))[EXPORT]! - m.registersAt(startOfLocalDay('2026-01-01', TZ))[EXPORT]!
    expect(year).toBeGreaterThan(1_000_000)
    expect(year).toBeLessThan(1_200_000)
  })

  it('balances a household with photovoltaics: import, plus generation, less export, is its consumption', () => {
    const yearOf = (spec: { annualKwh: number; pvPeakW: number }): { imported: number; exported: number } => {
      const m = model({ commodity: 'electricity', pv: true, ...spec })
      const [a, b] = [m.registersAt(startOfLocalDay('2026-01-01', TZ)), m.registersAt(startOfLocalDay('2027-01-01', TZ))]
      return { imported: b[IMPORT]! - a[IMPORT]!, exported: b[EXPORT]! - a[EXPORT]! }
    }
    const household = yearOf({ annualKwh: 3500, pvPeakW: 5000 })
    // Its generation: what the same panels export for a household that uses almost nothing (100 kWh a year, at most).
    const generated = yearOf({ annualKwh: 100, pvPeakW: 5000 }).exported + 50_000
    const consumed = household.imported + generated - household.exported
    expect(Math.abs(consumed - 3_500_000), JSON.stringify({ ...household, generated, consumed })).toBeLessThan(3_500_000 * 0.04)
    // And it draws from the grid less than the same household without panels.
    expect(household.imported).toBeLessThan(3_500_000 * 0.85)
  })

  it('burns more gas in winter than in summer, and about its annual volume in a year', () => {
    const m = model({ commodity: 'gas', annualGasM3: 1200, intervalMinutes: 60 })
    const vol = (from: string, to: string): number => m.registersAt(startOfLocalDay(to, TZ))[GAS]! - m.registersAt(startOfLocalDay(from, TZ))[GAS]!
    expect(vol('2026-01-01', '2026-02-01')).toBeGreaterThan(4 * vol('2026-07-01', '2026-08-01'))
    const year = vol('2026-01-01', '2027-01-01')
    expect(Math.abs(year - 1_200_000)).toBeLessThan(1_200_000 * 0.05)
  })

  it('reports average power of the interval in W from the energy of the interval', () => {
    const m = model({ commodity: 'electricity', power: true, intervalMinutes: 30 })
    const t = Date.parse('2026-10-01T18:00:00Z')
    const r = m.readingAt(t)
    const before = m.readingAt(t - 30 * 60_000)
    expect(r.values['1-0:1.7.0']).toBe((r.values[IMPORT]! - before.values[IMPORT]!) * 2)
    expect(() => m.readingAt(t + 15 * 60_000)).toThrow(/30-minute interval/)
  })

  it('draws household size, consumption and indexes from the seed when the spec leaves them open', () => {
    const sizes = new Set<number>()
    for (let seed = 0; seed < 200; seed++) {
      const r = resolveMeter({ meterId: 'x', commodity: 'electricity', intervalMinutes: 15 }, seed)
      sizes.add(r.persons)
      expect(r.annualKwh).toBeGreaterThanOrEqual(1500)
      expect(r.annualKwh).toBeLessThanOrEqual(6600)
      expect(r.epochImportWh).toBeGreaterThanOrEqual(500_000)
    }
    expect([...sizes].sort()).toEqual([1, 2, 3, 4, 5])
    expect(() => resolveMeter({ meterId: 'x', commodity: 'electricity', intervalMinutes: 15, annualKwh: 60_000 })).toThrow(/annualKwh/)
    expect(() => model({ commodity: 'electricity' }).registersAt(Date.parse('2023-06-01T00:00:00Z'))).toThrow(/epoch/)
  })
})
