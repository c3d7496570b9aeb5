import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs'
import path from 'node:path'
import { DataDirInUseError } from '../errors.ts'

/**
 * One process at a time on an embedded database. PGlite is PostgreSQL in single-user mode inside
 * this process: two of them on one folder would each write its files as if alone, and corrupt it.
 * PostgreSQL guards its folder with `postmaster.pid`; PGlite does not, so a lock file beside the
 * folder (`<folder>.lock`, outside it: initdb wants an empty folder) holds the owner's pid. A lock
 * left by a process that is gone (a crash, a SIGKILL) is taken over.
 *
 * Returns the release, to call once the database is closed.
 */
export function lockDataDir(dir: string): () => void {
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
      if (owner !== null && isRunning(owner)) throw new DataDirInUseError(path.resolve(dir), owner, file)
      // Its owner is gone (or never finished writing it): the lock is stale.
      unlinkQuietly(file)
      continue
    }
    try {
      writeSync(fd, `${process.pid}\n`)
    } finally {
      closeSync(fd)
    }
    return () => {
      if (lockOwner(file) === process.pid) unlinkQuietly(file)
    }
  }
  throw new DataDirInUseError(path.resolve(dir), lockOwner(file), file)
}

function lockOwner(file: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8'), 10)
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null
  } catch {
    return null
  }
}

/** This process counts as running: a second open in it would be a second PostgreSQL on the folder too. */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}
