import { spawn } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest'
import { lockDataDir } from '../../../shared/db/data-dir-lock.ts'
import { openDatabase } from '../../../shared/db/database.ts'
import { DataDirInUseError } from '../../../shared/errors.ts'

const REPO_ROOT = path.resolve(import.meta.dirname, '../../..')
const LOCK_MODULE = path.join(REPO_ROOT, 'shared/db/data-dir-lock.ts')

/** Another process that takes the folder's lock, says so, and holds it until killed. */
async function holder(dir: string): Promise<{ pid: number; kill(): Promise<void> }> {
  const script = `const { lockDataDir } = await import(${JSON.stringify(LOCK_MODULE)}); lockDataDir(${JSON.stringify(dir)}); console.log('locked'); setInterval(() => {}, 60_000)`
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('locked') && resolve())
    child.once('exit', (code) => reject(new Error(`the holder exited (${code}) before locking`)))
  })
  return {
    pid: child.pid!,
    kill: async () => {
      const exited = new Promise((r) => child.once('exit', r))
      child.kill('SIGKILL')
      await exited
    },
  }
}

const ownerLine = (file: string): string => readFileSync(file, 'utf8').split('\n')[0]!

describe('the embedded database folder’s lock', () => {
  let root: string
  let dir: string
  let lockFile: string

  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'metershare-lock-'))
    dir = path.join(root, 'data', 'pglite')
    lockFile = dir + '.lock'
    mkdirSync(path.dirname(dir), { recursive: true })
  })

  afterEach(() => rmSync(root, { recursive: true, force: true }))

  it('refuses a second open of a folder this process holds, and opens it again once closed', async () => {
    cpSync(inject('pgliteTemplateDir'), dir, { recursive: true })
    const options = { databaseUrl: null, pgliteDir: dir, pgliteFsync: false, poolSize: 1 }
    const first = await openDatabase(options)
    expect(ownerLine(lockFile)).toBe(String(process.pid))
    const refused = await openDatabase(options).catch((err: unknown) => err)
    expect(refused).toBeInstanceOf(DataDirInUseError)
    expect((refused as DataDirInUseError).code).toBe('DATA_DIR_IN_USE')
    expect((refused as DataDirInUseError).ownerPid).toBe(process.pid)
    await first.close()
    expect(existsSync(lockFile)).toBe(false)
    const again = await openDatabase(options)
    await again.close()
  })

  it('refuses a folder another running process holds, naming it and the lock file; takes it over once that process is killed', async () => {
    const other = await holder(dir)
    try {
      expect(() => lockDataDir(dir)).toThrow(
        `the embedded database in ${dir} is in use by another process (pid ${other.pid}): stop it first, or use PostgreSQL (DATABASE_URL) to run several processes; if no such process runs, delete ${lockFile}`,
      )
      expect(ownerLine(lockFile)).toBe(String(other.pid))
    } finally {
      await other.kill()
    }
    // Killed: its lock is left behind, and stale; taking it over is said (the last run did not stop cleanly).
    expect(ownerLine(lockFile)).toBe(String(other.pid))
    const stale: unknown[] = []
    const release = lockDataDir(dir, (owner) => stale.push(owner))
    expect(stale).toEqual([{ pid: other.pid, file: lockFile }])
    expect(ownerLine(lockFile)).toBe(String(process.pid))
    release()
    expect(existsSync(lockFile)).toBe(false)
  }, 30_000)

  it('takes over a lock naming a pid that now belongs to a process started later, or naming no pid', () => {
    // This very pid, with another start time: a lock from an earlier life of a restarted container.
    for (const left of [`${process.pid}\n1\n`, '', 'not a pid\n']) {
      writeFileSync(lockFile, left)
      const release = lockDataDir(dir)
      expect(ownerLine(lockFile)).toBe(String(process.pid))
      release()
    }
  })

  it('leaves alone a lock another process took after this one let go', () => {
    const release = lockDataDir(dir)
    writeFileSync(lockFile, '1\n')
    release()
    expect(readFileSync(lockFile, 'utf8')).toBe('1\n')
  })
})
