import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'

/**
 * `npm run bench`: every benchmark that exists, one after the other, each in its own
 * process, with the same arguments (`--quick`, `--seconds`, …). Exits non-zero when one
 * of them failed to run; figures themselves are never judged here.
 */

const BENCHES = ['ingest', 'settle', 'fanout'] as const
const TSX_LOADER = import.meta.resolve('tsx')

function run(file: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', TSX_LOADER, file, ...args], { stdio: 'inherit' })
    child.on('exit', (code, signal) => resolve(code ?? (signal !== null ? 1 : 0)))
  })
}

const args = process.argv.slice(2)
const failed: string[] = []
for (const name of BENCHES) {
  const file = path.join(import.meta.dirname, `${name}.ts`)
  if (!existsSync(file)) {
    process.stdout.write(`\n# ${name}: not present (${path.relative(process.cwd(), file)}), skipped\n`)
    continue
  }
  process.stdout.write(`\n# ${name}\n`)
  const code = await run(file, args)
  if (code !== 0) failed.push(`${name} (exit ${code})`)
}
if (failed.length > 0) process.stdout.write(`\nbenchmarks that failed to run: ${failed.join(', ')}\n`)
process.exitCode = failed.length > 0 ? 1 : 0
