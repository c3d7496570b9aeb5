import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'

/**
 * `npm run bench`: every benchmark in this folder (each `*.ts` beside this file), one after
 * the other, each in its own process: ingest, settle and fanout first, then the others by
 * name. Only `--quick` is passed on, the one option every benchmark understands; a
 * benchmark's own options go to its own script (`npm run bench:ingest -- --seconds 30`).
 * Exits non-zero when one of them failed to run; figures themselves are never judged here.
 */

const FIRST = ['ingest', 'settle', 'fanout']
const TSX_LOADER = import.meta.resolve('tsx')

function run(file: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', TSX_LOADER, file, ...args], { stdio: 'inherit' })
    child.on('exit', (code, signal) => resolve(code ?? (signal !== null ? 1 : 0)))
  })
}

const { values } = parseArgs({ args: process.argv.slice(2), options: { quick: { type: 'boolean', default: false } }, strict: true })
const args = values.quick ? ['--quick'] : []
const names = readdirSync(import.meta.dirname)
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== 'all.ts')
  .map((f) => f.slice(0, -'.ts'.length))
  .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))

function rank(name: string): number {
  const i = FIRST.indexOf(name)
  return i < 0 ? FIRST.length : i
}

const failed: string[] = []
for (const name of names) {
  process.stdout.write(`\n# ${name}\n`)
  const code = await run(path.join(import.meta.dirname, `${name}.ts`), args)
  if (code !== 0) failed.push(`${name} (exit ${code})`)
}
process.stdout.write(`\nbenchmarks run: ${names.join(', ')}${failed.length > 0 ? `; failed: ${failed.join(', ')}` : ''}\n`)
process.exitCode = failed.length > 0 ? 1 : 0
