import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs'
import path from 'node:path'
import { DataDirInUseError } from '../errors.ts'

/**
 * One process at a time on an embedded database. PGlite is PostgreSQL in single-user mode inside
 * this process: two of them on one folder would each write its files as if alone, and corrupt it.
 * PostgreSQL guards its folder with `postmaster.pid`; PGlite does not, so a lock file beside the
 * folder (`<folder>.lock`, outside it: initdb wants an empty folder) names the owner: its pid and,
 * where /proc tells, when it started, so that a pid used again (a restarted container is often
 * pid 1 again) is not taken for the owner. A lock whose owner is gone (a crash, a SIGKILL) is
 * taken over (`onStale` is told: the process that held it did not stop cleanly).
 *
 * Returns the release, to call once the database is closed.
 */
export function lockDataDir(dir: string, onStale: (owner: { pid: number | null; file: string }) => void = () => {}): () => void {
  const file = path.resolve(dir) + '.lock'
  mkdirSync(path.dirname(file), { recursive: true })
  // Twice at most: once more after clearing a stale lock (another process may win that race).
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number
    try {
      fd = openSync(file, 'wx', 0o600)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const owner = lockOwner(file)
      if (owner !== null && isRunning(owner)) throw new DataDirInUseError(path.resolve(dir), owner.pid, file)
      // Its owner is gone (or never finished writing it): the lock is stale, and the last run did not stop cleanly.
      onStale({ pid: owner?.pid ?? null, file })
      unlinkQuietly(file)
      continue
    }
    try {
      writeSync(fd, `${process.pid}\n${startedAt(process.pid) ?? ''}\n`)
    } finally {
      closeSync(fd)
    }
    return () => {
      if (lockOwner(file)?.pid === process.pid) unlinkQuietly(file)
    }
  }
  throw new DataDirInUseError(path.resolve(dir), lockOwner(file)?.pid ?? null, file)
}

interface Owner {
  pid: number
  /** When it started (clock ticks since boot), if it was known. */
  startedAt: string | null
}

function lockOwner(file: string): Owner | null {
  try {
    const [pidText = '', started = ''] = readFileSync(file, 'utf8').split('\n')
    const pid = Number(pidText)
    return Number.isSafeInteger(pid) && pid > 0 ? { pid, startedAt: started === '' ? null : started } : null
  } catch {
    return null
  }
}

/** This process counts as running: a second open in it would be a second PostgreSQL on the folder too. */
function isRunning(owner: Owner): boolean {
  try {
    process.kill(owner.pid, 0)
  } catch (err) {
    // EPERM: it exists, under another user.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  // A process with that pid runs: the owner, unless it started at another time.
  const started = owner.startedAt === null ? null : startedAt(owner.pid)
  return started === null || started === owner.startedAt
}

/** A process's start time (field 22 of /proc/PID/stat, ticks since boot); null where there is no /proc. */
function startedAt(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null
  } catch {
    return null
  }
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}
