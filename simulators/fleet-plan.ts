import type { Commodity, IntervalMinutes } from './meter-payload.ts'
import { PERSONS_WEIGHTS, type Persons } from './meter-model.ts'
import { hash32, Rng } from './random.ts'

/**
 * What a simulated district looks like: mostly electricity meters of households of one to
 * five persons, a quarter of them with photovoltaics, and every tenth meter a gas meter.
 * Deterministic from the seed; credentials come later, from the API or a file.
 */
export interface MeterPlan {
  commodity: Commodity
  intervalMinutes: IntervalMinutes
  persons: Persons
  pv: boolean
  power: boolean
  seed: number
}

/** A plan holds at most this many meters. */
export const PLAN_METERS_MAX = 1_000_000

const ELECTRICITY_INTERVAL_WEIGHTS: readonly (readonly [IntervalMinutes, number])[] = [
  [15, 60],
  [30, 30],
  [60, 10],
]
const PV_SHARE = 0.25
const POWER_SHARE = 0.5
const GAS_EVERY_NTH_METER = 10

export function planMeters(count: number, fleetSeed: number): MeterPlan[] {
  if (!Number.isInteger(count) || count < 0 || count > PLAN_METERS_MAX) {
    throw new RangeError(`meters: must be an integer from 0 to ${PLAN_METERS_MAX}, got ${count}`)
  }
  const plans: MeterPlan[] = []
  for (let i = 0; i < count; i++) {
    const seed = hash32(fleetSeed, 'plan', i)
    const rng = new Rng(seed)
    const persons = rng.pick(PERSONS_WEIGHTS)
    const gas = i % GAS_EVERY_NTH_METER === GAS_EVERY_NTH_METER - 1
    const intervalMinutes = rng.pick(ELECTRICITY_INTERVAL_WEIGHTS)
    const pv = rng.chance(PV_SHARE)
    const power = rng.chance(POWER_SHARE)
    plans.push(
      gas
        ? { commodity: 'gas', intervalMinutes: 60, persons, pv: false, power: false, seed }
        : { commodity: 'electricity', intervalMinutes, persons, pv, power, seed },
    )
  }
  return plans
}
