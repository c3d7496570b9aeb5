import { sql, type Kysely } from 'kysely'

/**
 * Readings are range-partitioned by UTC month. Partitions are created on demand, before the
 * transaction that needs them, and remembered per process. Several processes may race to
 * create the same one: losing that race is success.
 */
const known = new WeakMap<object, Set<string>>()

const DUPLICATE_CODES = new Set(['42P07', '23505'])

/** The UTC month (YYYY-MM) of an instant, the partition key. */
export function partitionMonthOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 7)
}

export function partitionName(month: string): string {
  return `readings_y${month.slice(0, 4)}m${month.slice(5, 7)}`
}

function nextMonth(month: string): string {
  const y = Number(month.slice(0, 4))
  const m = Number(month.slice(5, 7))
  return m === 12 ? `${String(y + 1).padStart(4, '0')}-01` : `${month.slice(0, 4)}-${String(m + 1).padStart(2, '0')}`
}

export async function ensureReadingsPartitions(db: Kysely<any>, months: Iterable<string>): Promise<void> {
  let done = known.get(db)
  if (done === undefined) {
    done = new Set()
    known.set(db, done)
  }
  for (const month of months) {
    if (done.has(month)) continue
    if (!/^\d{4}-\d{2}$/.test(month)) throw new Error(`assertion failed: partition month ${month}`)
    const name = partitionName(month)
    const from = `${month}-01T00:00:00Z`
    const to = `${nextMonth(month)}-01T00:00:00Z`
    try {
      await sql`CREATE TABLE IF NOT EXISTS ${sql.id(name)} PARTITION OF readings FOR VALUES FROM (${sql.lit(from)}) TO (${sql.lit(to)})`.execute(db)
    } catch (err) {
      if (!DUPLICATE_CODES.has((err as { code?: string }).code ?? '')) throw err
    }
    done.add(month)
  }
}
