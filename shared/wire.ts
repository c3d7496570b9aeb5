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
export const ingressReadingSchema = z
  .object({
    ts: z.string().max(64),
    values: z
      .record(z.string().max(32), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER))
      .refine((v) => Object.keys(v).length > 0, { message: 'must hold at least one register' }),
  })
  .strict()

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
