import { spawn } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest'
import { lockDataDir } from '../../../shared/db/data-dir-lock.ts'
import { openDatabase } from '../../../shared/db/database.ts'
import { DataDirInUseError } from '../../../shared/errors.ts'

/** A Node process that idles until killed, and its pid; or, with `exited`, one that has already ended. */
async function otherProcess(options: { exited: boolean }): Promise<{ pid: number; kill(): void }> {
  const child = spawn(process.execPath, ['-e', options.exited ? '' : 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' })
  if (options.exited) await new Promise((r) => child.once('exit', r))
  else await new Promise((r) => child.once('spawn', r))
  return { pid: child.pid!, kill: () => child.kill('SIGKILL') }
}

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
    expect(readFileSync(lockFile, 'utf8')).toBe(`${process.pid}\n`)
    const refused = await openDatabase(options).catch((err: unknown) => err)
    expect(refused).toBeInstanceOf(DataDirInUseError)
    expect((refused as DataDirInUseError).code).toBe('DATA_DIR_IN_USE')
    expect((refused as DataDirInUseError).ownerPid).toBe(process.pid)
    await first.close()
    expect(existsSync(lockFile)).toBe(false)
    const again = await openDatabase(options)
    await again.close()
  })

  it('refuses a folder another running process holds, naming it and the lock file', async () => {
    const other = await otherProcess({ exited: false })
    try {
      writeFileSync(lockFile, `${other.pid}\n`)
      expect(() => lockDataDir(dir)).toThrow(
        `the embedded database in ${dir} is in use by another process (pid ${other.pid}): stop it first, or use PostgreSQL (DATABASE_URL) to run several processes; if no such process runs, delete ${lockFile}`,
      )
      expect(readFileSync(lockFile, 'utf8')).toBe(`${other.pid}\n`)
    } finally {
      other.kill()
    }
  })

  it('takes over a lock left by a process that is gone, or one that holds no pid', async () => {
    const gone = await otherProcess({ exited: true })
    for (const left of [`${gone.pid}\n`, '', 'not a pid']) {
      writeFileSync(lockFile, left)
      const release = lockDataDir(dir)
      expect(readFileSync(lockFile, 'utf8')).toBe(`${process.pid}\n`)
      release()
      expect(existsSync(lockFile)).toBe(false)
    }
  })

  it('leaves alone a lock another process took after this one let go', () => {
    const release = lockDataDir(dir)
    writeFileSync(lockFile, '1\n')
    release()
    expect(readFileSync(lockFile, 'utf8')).toBe('1\n')
  })
})
