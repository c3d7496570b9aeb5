import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { CredentialsError, parseCredentials, readCredentialsFile, writeCredentialsFile, type MeterCredentials } from '../../simulators/credentials.ts'
import { planMeters } from '../../simulators/fleet-plan.ts'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'metershare-sim-'))
  dirs.push(d)
  return d
}

const sample: MeterCredentials[] = [
  { meterId: 'mtr_abc', secret: 's3cret', commodity: 'electricity', intervalMinutes: 15, persons: 3, pv: true, power: true, seed: 42 },
  { meterId: 'GAZPAR-1', secret: 'x', commodity: 'gas', intervalMinutes: 60 },
]

describe('credentials file', () => {
  it('writes a file only its owner can read, and reads back the same meters', async () => {
    const file = path.join(tmp(), 'creds.json')
    await writeCredentialsFile(file, sample)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(await readCredentialsFile(file)).toEqual(sample)
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(sample)
  })

  it('names the entry and field of what is wrong', async () => {
    expect(() => parseCredentials([{ ...sample[0], intervalMinutes: 20 }])).toThrow(/credentials\[0\]\.intervalMinutes/)
    expect(() => parseCredentials([sample[1], { ...sample[0], meterId: 'a/b' }])).toThrow(/credentials\[1\]\.meterId/)
    expect(() => parseCredentials([{ ...sample[0], persons: 6 }])).toThrow(/credentials\[0\]\.persons/)
    expect(() => parseCredentials([sample[0], sample[0]])).toThrow(/credentials\[1\]\.meterId: 'mtr_abc' appears twice/)
    expect(() => parseCredentials([{ ...sample[0], colour: 'red' }])).toThrow(CredentialsError)
    expect(() => parseCredentials({})).toThrow(/credentials/)
    const file = path.join(tmp(), 'bad.json')
    writeFileSync(file, '[{')
    await expect(readCredentialsFile(file)).rejects.toThrow(/not JSON/)
    await expect(readCredentialsFile(path.join(tmp(), 'missing.json'))).rejects.toThrow(CredentialsError)
  })
})

describe('fleet plan', () => {
  it('plans households of one to five persons, a quarter with photovoltaics and every tenth meter on gas, the same for the same seed', () => {
    const plan = planMeters(1000, 9)
    expect(planMeters(1000, 9)).toEqual(plan)
    expect(planMeters(1000, 10)).not.toEqual(plan)
    expect(plan.filter((p) => p.commodity === 'gas')).toHaveLength(100)
    for (const p of plan.filter((x) => x.commodity === 'gas')) expect(p).toMatchObject({ intervalMinutes: 60, pv: false, power: false })
    const pv = plan.filter((p) => p.pv).length
    expect(pv).toBeGreaterThan(180)
    expect(pv).toBeLessThan(270)
    expect(new Set(plan.map((p) => p.persons))).toEqual(new Set([1, 2, 3, 4, 5]))
    expect(new Set(plan.map((p) => p.intervalMinutes))).toEqual(new Set([15, 30, 60]))
    expect(() => planMeters(-1, 1)).toThrow(/meters/)
  })
})
