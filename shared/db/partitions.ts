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

function knownOf(db: object): Set<string> {
  let done = known.get(db)
  if (done === undefined) {
    done = new Set()
    known.set(db, done)
  }
  return done
}

async function createPartition(db: Kysely<any>, month: string): Promise<void> {
  if (!/^\d{4}-\d{2}$/.test(month)) throw new Error(`assertion failed: partition month ${month}`)
  const name = partitionName(month)
  const from = `${month}-01T00:00:00Z`
  const to = `${nextMonth(month)}-01T00:00:00Z`
  try {
    await sql`CREATE TABLE IF NOT EXISTS ${sql.id(name)} PARTITION OF readings FOR VALUES FROM (${sql.lit(from)}) TO (${sql.lit(to)})`.execute(db)
  } catch (err) {
    if (!DUPLICATE_CODES.has((err as { code?: string }).code ?? '')) throw err
  }
}

export async function ensureReadingsPartitions(db: Kysely<any>, months: Iterable<string>): Promise<void> {
  const done = knownOf(db)
  for (const month of months) {
    if (done.has(month)) continue
    await createPartition(db, month)
    done.add(month)
  }
}

/**
 * Longest wait for the lock that creating a partition ahead of need takes on `readings`. Creating a
 * partition waits for every transaction that holds a lock on the table, and every query on it then
 * waits behind the creation: a `pg_dump`, which holds one until it ends, would otherwise hold up
 * ingest and every reading query for as long as it runs.
 */
export const PARTITION_AHEAD_LOCK_WAIT_MS = 100
/** How often a broker makes sure this UTC month's and the next one's partitions exist. */
export const PARTITIONS_AHEAD_INTERVAL_MS = 3_600_000
const LOCK_NOT_AVAILABLE = '55P03'

/**
 * Creates the partitions of the UTC month of `nowMs` and of the month after it, before their first
 * datum, so that the first datum of a month needs no DDL (which would wait for a running pg_dump,
 * and every reading query behind it). Gives up on a lock busy for PARTITION_AHEAD_LOCK_WAIT_MS:
 * returns the months left to create, for a later try.
 */
export async function prepareReadingsPartitions(db: Kysely<any>, nowMs: number): Promise<string[]> {
  const current = partitionMonthOf(nowMs)
  const done = knownOf(db)
  const left: string[] = []
  for (const month of [current, nextMonth(current)]) {
    if (done.has(month)) continue
    try {
      await db.transaction().execute(async (trx) => {
        await sql`SET LOCAL lock_timeout = ${sql.lit(`${PARTITION_AHEAD_LOCK_WAIT_MS}ms`)}`.execute(trx)
        await createPartition(trx, month)
      })
      done.add(month)
    } catch (err) {
      if ((err as { code?: string }).code !== LOCK_NOT_AVAILABLE) throw err
      left.push(month)
    }
  }
  return left
}
