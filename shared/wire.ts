import { z } from 'zod'

/**
 * Payloads on the wire (CONTRACT.md), defined once. Ingress: what a meter publishes.
 * Egress: what recipients receive over MQTT and over HTTP (same shapes both ways).
 */

export type Granularity = 'load_curve' | 'daily' | 'monthly'
export const GRANULARITIES: readonly Granularity[] = ['load_curve', 'daily', 'monthly']

/** Finer covers coarser: a load-curve consent also releases daily and monthly data. */
export const GRANULARITY_RANK: Readonly<Record<Granularity, number>> = { load_curve: 0, daily: 1, monthly: 2 }

/** OBIS code → integer in the register's base unit (Wh, W, dm³). */
export type RegisterValues = Record<string, number>

/** One reading as a meter sends it; `ts` is checked as RFC 3339 separately. */
const REGISTER_VALUE_MESSAGE = `must be a whole number from 0 to ${Number.MAX_SAFE_INTEGER}, in the register's base unit`

export const ingressReadingSchema = z.strictObject(
  {
    ts: z.string({ error: 'must be an RFC 3339 timestamp string' }).max(64, 'must be an RFC 3339 timestamp of at most 64 characters'),
    values: z
      .record(
        z.string().max(32, 'an OBIS code has at most 32 characters'),
        z.number({ error: REGISTER_VALUE_MESSAGE }).int(REGISTER_VALUE_MESSAGE).min(0, REGISTER_VALUE_MESSAGE).max(Number.MAX_SAFE_INTEGER, REGISTER_VALUE_MESSAGE),
        { error: 'must be an object of OBIS code → value' },
      )
      .refine((v) => Object.keys(v).length > 0, { message: 'must hold at least one register' }),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unexpected key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')}: a reading holds ts and values only`
        : 'must be an object {"ts","values"}',
  },
)

export type IngressReading = z.infer<typeof ingressReadingSchema>

export interface LoadCurveDatum {
  meterId: string
  ts: string
  granularity: 'load_curve'
  values: RegisterValues
}

export interface DailyDatum {
  meterId: string
  day: string
  granularity: 'daily'
  values: RegisterValues
}

export interface MonthlyDatum {
  meterId: string
  month: string
  granularity: 'monthly'
  values: RegisterValues
}

export type EgressDatum = LoadCurveDatum | DailyDatum | MonthlyDatum

/** What the broker tells a meter on `meters/{id}/status` when it quarantines something. */
export interface MeterStatusMessage {
  status: 'quarantined'
  reason: string
  detail: string
  ts?: string
  receivedAt: string
}
