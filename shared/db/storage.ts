import { statfs } from 'node:fs/promises'
import type { Logger } from 'pino'
import { ERROR_CODES, MetershareError } from '../errors.ts'
import { HOLD_REMIND_MS, HoldAlarm } from './hold-alarm.ts'

/**
 * A full disk under the database. PostgreSQL (server or PGlite) answers a write it cannot make
 * room for with SQLSTATE 53100 `disk_full` ("could not extend file …: No space left on device")
 * and rolls the transaction back: nothing is lost, nothing is half-written, and the same write
 * succeeds once space is back. Ingest therefore holds such a group, unacknowledged, and retries it
 * (`IngestQueue`), instead of giving up after `commitAttemptsMax` attempts and cutting its meters off.
 *
 * PGlite needs more than that: when its write-ahead log cannot grow (a new 16 MiB segment), the
 * error is raised inside a critical section, PostgreSQL PANICs, and PGlite 0.5.17 then spins in
 * WebAssembly with the event loop blocked (no /healthz, SIGTERM ignored; measured). So on PGlite,
 * ingest stops before the disk is that full: below `storageFreeBytesMin` free in the data folder a
 * group is not even tried (`StorageFullError`), `up` refuses the API's writes meanwhile, and PGlite
 * failing to open on a full disk is said as such (database.ts, `diskFullAtOpen`).
 */

/** PostgreSQL's SQLSTATE for "could not extend file …: No space left on device". */
export const DISK_FULL_SQLSTATE = '53100'

/** MiB, for messages. */
const MIB = 1024 * 1024

/** The data folder's disk has less free than PGlite needs (ingest held, or a start refused). */
export class StorageFullError extends MetershareError {
  constructor(
    readonly dir: string,
    readonly freeBytes: number,
    readonly reserveBytes: number,
    what = 'the embedded database keeps in reserve',
    options?: ErrorOptions,
  ) {
    super(ERROR_CODES.STORAGE_FULL, 503, `no space left on the device of ${dir}: ${formatMiB(freeBytes)} free, below the ${formatMiB(reserveBytes)} ${what}`, options)
  }
}

/** Whether an error says the database's disk is full (SQLSTATE 53100, ENOSPC, or PostgreSQL's own wording). */
export function isDiskFull(err: unknown): boolean {
  if (err === null || typeof err !== 'object') return false
  const { code, message } = err as { code?: unknown; message?: unknown }
  if (code === DISK_FULL_SQLSTATE || code === 'ENOSPC' || code === ERROR_CODES.STORAGE_FULL) return true
  return typeof message === 'string' && /no space left on device/i.test(message)
}

/** Bytes an unprivileged process may still write on the file system holding `dir`. */
export async function freeBytesOf(dir: string): Promise<number> {
  const s = await statfs(dir)
  return s.bavail * s.bsize
}

export function formatMiB(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`
}

/**
 * Whether ingest is held for lack of space, shared by a broker's lanes, /healthz and /metrics, and
 * said in the log once when it starts, at most every `remindMs` while it lasts, and once when it ends
 * (not at every retry of every group: a full disk lasts until someone frees space).
 */
export class StorageAlarm extends HoldAlarm {
  constructor(log: Logger, onChange: (full: boolean) => void = () => {}, remindMs = HOLD_REMIND_MS, now: () => number = Date.now) {
    super(
      log,
      {
        started: (retryMs) =>
          `database storage full (no space left on device): ingest holds publishes unacknowledged and retries every ${retryMs} ms; free space on the database's disk`,
        lasting: 'database storage still full (no space left on device): ingest still held',
        ended: 'database storage available again: ingest resumed',
        givenUp: 'ingest closing with publishes held for lack of space: they are not acknowledged (their meters send them again)',
        forMs: 'fullForMs',
      },
      onChange,
      remindMs,
      now,
    )
  }

  get full(): boolean {
    return this.active
  }
}
