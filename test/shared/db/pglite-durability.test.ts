import { spawn } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, inject, it } from 'vitest'
import { openPglite } from '../../../shared/db/database.ts'
import { hasCommand, skipReason } from '../../support/tools.ts'

/**
 * What a commit on PGlite survives, checked on real processes: a child commits groups of rows
 * and prints each group once its commit has returned; it is killed with SIGKILL and the folder
 * is reopened (PostgreSQL's crash recovery replays the WAL). Every printed group must be there,
 * whole. Then, under strace, which commits reach fsync() on the WAL before they return.
 * A power cut cannot be simulated here; fsync reaching the disk is what stands for it.
 */

const REPO_ROOT = path.resolve(import.meta.dirname, '../../..')
const CHILD = path.join(import.meta.dirname, 'pglite-crash-child.ts')
const rowsPerGroup = 50
/** Printed commits awaited before the kill: the child is then mid-stream, commits in flight. */
const groupsBeforeKill = 20
/** The child stops by itself after this many groups if nobody kills it. */
const groupsMax = 10_000
const childStartMsMax = 180_000
const TEST_TIMEOUT_MS = 600_000

type Fsync = 'on' | 'off'

let dirs: string[] = []
afterEach(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  dirs = []
})

function templateCopy(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'metershare-durability-'))
  dirs.push(dir)
  const data = path.join(dir, 'pglite')
  cpSync(inject('pgliteTemplateDir'), data, { recursive: true })
  return data
}

function childArgs(dir: string, fsync: Fsync, firstGroup: number, groups: number): string[] {
  return ['--import', 'tsx', CHILD, dir, fsync, String(firstGroup), String(groups), String(rowsPerGroup)]
}

/** Runs the child until it has printed `groupsBeforeKill` commits, SIGKILLs it; the groups it printed. */
async function commitThenKill(dir: string, fsync: Fsync, firstGroup: number): Promise<number[]> {
  const child = spawn(process.execPath, childArgs(dir, fsync, firstGroup, groupsMax), { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  const printed: number[] = []
  let stderr = ''
  let pending = ''
  let killed = false
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
  const stdoutClosed = new Promise<void>((resolve) => child.stdout.on('close', resolve))
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)))
  const startTimer = setTimeout(() => child.kill('SIGKILL'), childStartMsMax)
  child.stdout.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8')
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
      const match = /^committed (\d+)$/.exec(pending.slice(0, nl))
      pending = pending.slice(nl + 1)
      if (match !== null) printed.push(Number(match[1]))
    }
    if (!killed && printed.length >= groupsBeforeKill) {
      killed = true
      child.kill('SIGKILL')
    }
  })
  const signal = await exited
  clearTimeout(startTimer)
  // Lines the child wrote before it died are still in the pipe: they count too.
  await stdoutClosed
  if (!killed) throw new Error(`the child ended before it was killed (signal ${signal}): ${stderr}`)
  expect(signal).toBe('SIGKILL')
  expect(printed.length).toBeGreaterThanOrEqual(groupsBeforeKill)
  return printed
}

/** Reopens the folder and returns the groups stored, checking each is whole and the folder writable. */
async function reopenAndRead(dir: string, fsync: Fsync): Promise<number[]> {
  const pglite = await openPglite(dir, fsync === 'on')
  try {
    const groups = await pglite.query<{ grp: number; rows: number; ids_ok: boolean }>(
      `SELECT grp, count(*)::integer AS rows,
              bool_and(id BETWEEN grp * ${rowsPerGroup} AND grp * ${rowsPerGroup} + ${rowsPerGroup - 1}) AS ids_ok
       FROM crash_rows GROUP BY grp ORDER BY grp`,
    )
    for (const g of groups.rows) expect({ grp: g.grp, rows: g.rows, idsOk: g.ids_ok }).toEqual({ grp: g.grp, rows: rowsPerGroup, idsOk: true })
    // The primary key index agrees with the table after replay.
    await pglite.exec('SET enable_seqscan = off')
    const viaIndex = await pglite.query<{ n: number }>('SELECT count(*)::integer AS n FROM crash_rows WHERE id >= 0')
    await pglite.exec('RESET enable_seqscan')
    expect(viaIndex.rows[0]!.n).toBe(groups.rows.length * rowsPerGroup)
    await pglite.query('INSERT INTO crash_rows (id, grp, payload) VALUES (-1, -1, $1)', ['after recovery'])
    await pglite.query('DELETE FROM crash_rows WHERE id = -1')
    return groups.rows.map((g) => g.grp)
  } finally {
    await pglite.close()
  }
}

describe('PGlite after its process is killed (SIGKILL)', () => {
  for (const fsync of ['on', 'off'] as const) {
    it(
      `keeps every group whose commit returned, whole, and recovers twice in a row (fsync ${fsync})`,
      async () => {
        const dir = templateCopy()
        let firstGroup = 0
        for (let round = 0; round < 2; round++) {
          const printed = await commitThenKill(dir, fsync, firstGroup)
          const stored = await reopenAndRead(dir, fsync)
          const storedSet = new Set(stored)
          expect(printed.filter((g) => !storedSet.has(g))).toEqual([])
          // Commits are in order: what is stored is a prefix, with no gap.
          expect(stored).toEqual(Array.from({ length: stored.length }, (_, i) => i))
          firstGroup = stored.length
        }
      },
      TEST_TIMEOUT_MS,
    )
  }
})

interface TracedRun {
  /** System calls in order: fsync/fdatasync with the file, or a line the child printed. */
  events: Array<{ call: 'fsync' | 'fdatasync'; file: string } | { call: 'print'; line: string }>
}

/** Runs the child to its end under strace, recording fsync/fdatasync (with paths) and its printed lines. */
async function traceChild(dir: string, fsync: Fsync, groups: number): Promise<TracedRun> {
  const out = path.join(path.dirname(dir), 'strace.txt')
  const args = ['-f', '-qq', '-y', '-s', '64', '-e', 'trace=fsync,fdatasync,write', '-o', out, process.execPath, ...childArgs(dir, fsync, 0, groups)]
  const child = spawn('strace', args, { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  if (code !== 0) throw new Error(`traced child failed (exit ${code}): ${stderr}`)
  const events: TracedRun['events'] = []
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const sync = /^\d+ +(fsync|fdatasync)\(\d+<([^>]*)>/.exec(line)
    if (sync !== null) {
      events.push({ call: sync[1] as 'fsync' | 'fdatasync', file: sync[2]! })
      continue
    }
    const print = /^\d+ +write\(1<[^>]*>, "((?:ready|committed \d+|done))\\n"/.exec(line)
    if (print !== null) events.push({ call: 'print', line: print[1]! })
  }
  return { events }
}

function syncedBetween(run: TracedRun, from: string, to: string): string[] {
  const start = run.events.findIndex((e) => e.call === 'print' && e.line === from)
  const end = run.events.findIndex((e, i) => i > start && e.call === 'print' && e.line === to)
  expect(start, `'${from}' printed`).toBeGreaterThanOrEqual(0)
  expect(end, `'${to}' printed`).toBeGreaterThan(start)
  return run.events.slice(start + 1, end).flatMap((e) => (e.call === 'print' ? [] : [`${e.call} ${e.file}`]))
}

describe.skipIf(!hasCommand('strace'))(`PGlite's system calls on commit${skipReason('strace', 'strace')}`, () => {
  const groups = 5

  it(
    'with fsync on, syncs a new cluster once, fsyncs the WAL before each commit returns, and syncs pg_control at close',
    async () => {
      const base = mkdtempSync(path.join(os.tmpdir(), 'metershare-durability-'))
      dirs.push(base)
      const dir = path.join(base, 'pglite')
      const run = await traceChild(dir, 'on', groups)
      const ready = run.events.findIndex((e) => e.call === 'print' && e.line === 'ready')
      const atOpen = run.events.slice(0, ready).flatMap((e) => (e.call === 'fsync' ? [e.file] : []))
      expect(atOpen).toEqual(expect.arrayContaining([path.join(dir, 'PG_VERSION'), path.join(dir, 'global', 'pg_control'), dir]))
      const wal = new RegExp(`^fsync ${escapeRegExp(path.join(dir, 'pg_wal'))}/[0-9A-F]{24}$`)
      expect(syncedBetween(run, 'ready', 'committed 0').some((s) => wal.test(s))).toBe(true)
      for (let g = 1; g < groups; g++) {
        expect(syncedBetween(run, `committed ${g - 1}`, `committed ${g}`).some((s) => wal.test(s)), `group ${g}`).toBe(true)
      }
      expect(run.events.filter((e) => e.call === 'fdatasync')).toEqual([])
      const atClose = run.events.slice(run.events.findIndex((e) => e.call === 'print' && e.line === 'done'))
      expect(atClose).toContainEqual({ call: 'fsync', file: path.join(dir, 'global', 'pg_control') })
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'with fsync off, never syncs anything in the data folder',
    async () => {
      const dir = templateCopy()
      const run = await traceChild(dir, 'off', groups)
      expect(run.events.some((e) => e.call === 'print' && e.line === 'done')).toBe(true)
      expect(run.events.filter((e) => e.call !== 'print' && e.file.startsWith(dir))).toEqual([])
    },
    TEST_TIMEOUT_MS,
  )
})

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
