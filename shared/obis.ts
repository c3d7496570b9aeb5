/**
 * The OBIS codes a meter may send, defined once. Values are integers in the register's
 * base unit: cumulative energy indexes in Wh, power in W, cumulative gas volume in dm³.
 */
export type Commodity = 'electricity' | 'gas'
export type ObisKind = 'cumulative' | 'instantaneous'

export interface ObisRegister {
  code: string
  kind: ObisKind
  unit: 'Wh' | 'W' | 'dm3'
  commodity: Commodity
  label: string
}

const TARIFFS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] as const

export const OBIS_IMPORT_ENERGY_TOTAL = '1-0:1.8.0'
export const OBIS_EXPORT_ENERGY_TOTAL = '1-0:2.8.0'
export const OBIS_IMPORT_POWER = '1-0:1.7.0'
export const OBIS_EXPORT_POWER = '1-0:2.7.0'
export const OBIS_GAS_VOLUME = '7-0:3.0.0'

export const OBIS_REGISTERS: ReadonlyMap<string, ObisRegister> = new Map(
  ([
    ...TARIFFS.map((t): ObisRegister => ({
      code: `1-0:1.8.${t}`,
      kind: 'cumulative',
      unit: 'Wh',
      commodity: 'electricity',
      label: t === 0 ? 'active energy import, total' : `active energy import, tariff ${t}`,
    })),
    ...TARIFFS.map((t): ObisRegister => ({
      code: `1-0:2.8.${t}`,
      kind: 'cumulative',
      unit: 'Wh',
      commodity: 'electricity',
      label: t === 0 ? 'active energy export, total' : `active energy export, tariff ${t}`,
    })),
    { code: OBIS_IMPORT_POWER, kind: 'instantaneous', unit: 'W', commodity: 'electricity', label: 'active power import' },
    { code: OBIS_EXPORT_POWER, kind: 'instantaneous', unit: 'W', commodity: 'electricity', label: 'active power export' },
    { code: OBIS_GAS_VOLUME, kind: 'cumulative', unit: 'dm3', commodity: 'gas', label: 'gas volume' },
  ] satisfies ObisRegister[]).map((r) => [r.code, r] as const),
)

/** The register if `code` is one a meter of this commodity may send, otherwise undefined. */
export function obisRegister(code: string, commodity: Commodity): ObisRegister | undefined {
  const r = OBIS_REGISTERS.get(code)
  return r !== undefined && r.commodity === commodity ? r : undefined
}

export function isCumulative(code: string): boolean {
  return OBIS_REGISTERS.get(code)?.kind === 'cumulative'
}
