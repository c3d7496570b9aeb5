import { chmod, readFile, rename, writeFile } from 'node:fs/promises'
import { z } from 'zod'
import type { MeterSpec } from './meter-model.ts'

/**
 * The credentials file of a simulated fleet: a JSON array, one entry per meter. `metershare up`
 * writes it for its demo world; `metershare simulate --api …` writes it after provisioning,
 * so a later run can resume with `--credentials FILE`. It holds secrets: written mode 0600.
 *
 * ```json
 * [{ "meterId": "mtr_…", "secret": "…", "commodity": "electricity", "intervalMinutes": 15,
 *    "persons": 3, "pv": true, "power": true, "seed": 1234 }]
 * ```
 */
export interface MeterCredentials extends MeterSpec {
  /** MQTT password. */
  secret: string
  /** The household the simulator created for this meter, when it provisioned it. */
  householdId?: string
  email?: string
  password?: string
  operatorId?: string
}

/** Meter ids are MQTT client ids and topic levels: no `/`, `+` or `#`. */
export const METER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/

/** A fleet file holds at most this many meters. */
export const CREDENTIALS_METERS_MAX = 1_000_000

const meterCredentialsSchema = z
  .object({
    meterId: z.string().regex(METER_ID_RE, 'must be 1–64 letters, digits or . _ : - (no / + #)'),
    secret: z.string().min(1).max(1024),
    commodity: z.enum(['electricity', 'gas']),
    intervalMinutes: z.union([z.literal(15), z.literal(30), z.literal(60)]),
    persons: z.union([z.literal(1), z.literal(2), z.literal(3), z.literal(4), z.literal(5)]).optional(),
    pv: z.boolean().optional(),
    power: z.boolean().optional(),
    seed: z.number().int().min(0).max(0xffff_ffff).optional(),
    annualKwh: z.number().int().positive().optional(),
    pvPeakW: z.number().int().positive().optional(),
    annualGasM3: z.number().int().positive().optional(),
    householdId: z.string().optional(),
    email: z.string().optional(),
    password: z.string().optional(),
    operatorId: z.string().optional(),
  })
  .strict()

const credentialsFileSchema = z.array(meterCredentialsSchema).max(CREDENTIALS_METERS_MAX)

/** Validates a parsed credentials file; the error names the entry and field at fault. */
export function parseCredentials(data: unknown): MeterCredentials[] {
  const result = credentialsFileSchema.safeParse(data)
  if (!result.success) {
    const issue = result.error.issues[0]!
    const where = issue.path.length === 0 ? 'credentials' : `credentials[${issue.path.map(String).join('].')}`
    throw new CredentialsError(`${where}: ${issue.message}`)
  }
  const seen = new Set<string>()
  for (const [i, c] of result.data.entries()) {
    if (seen.has(c.meterId)) throw new CredentialsError(`credentials[${i}].meterId: '${c.meterId}' appears twice`)
    seen.add(c.meterId)
  }
  return result.data as MeterCredentials[]
}

export class CredentialsError extends Error {
  override readonly name = 'CredentialsError'
}

export async function readCredentialsFile(path: string): Promise<MeterCredentials[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new CredentialsError(`credentials file ${path}: ${(err as Error).message}`)
  }
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (err) {
    throw new CredentialsError(`credentials file ${path}: not JSON (${(err as Error).message})`)
  }
  return parseCredentials(data)
}

/** Writes atomically (temporary file, then rename), readable by the owner only. */
export async function writeCredentialsFile(path: string, credentials: readonly MeterCredentials[]): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify(credentials, null, 2) + '\n', { mode: 0o600 })
  await chmod(tmp, 0o600)
  await rename(tmp, path)
}
