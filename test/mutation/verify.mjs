// Applies each mutant a Stryker JSON report says survived, one at a time, to a copy of the tree under
// scratch/, runs the covering test files there with vitest, and says whether it really survives (Stryker's
// vitest runner reports some mutants as surviving that the tests kill once the mutant is in the source).
// Usage: node test/mutation/verify.mjs scratch/mutation/<file>.json test/a.test.ts,test/b.test.ts
// MUTATION_ONLY="line:column:replacement;…" restricts it to those mutants.
import { spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'

const [report, tests] = process.argv.slice(2)
if (!report || !tests) throw new Error('usage: verify.mjs <report.json> <test files, comma-separated>')
const root = path.resolve(import.meta.dirname, '../..')
const tree = path.join(root, 'scratch', 'mutation', `verify-${process.pid}`)
const only = process.env.MUTATION_ONLY?.split(';')
mkdirSync(tree, { recursive: true })
for (const d of ['broker', 'cli', 'services', 'shared', 'simulators', 'test', 'vitest.config.ts', 'tsconfig.json', 'package.json']) cpSync(path.join(root, d), path.join(tree, d), { recursive: true })
symlinkSync(path.join(root, 'node_modules'), path.join(tree, 'node_modules'))
try {
  for (const [file, f] of Object.entries(JSON.parse(readFileSync(report, 'utf8')).files)) {
    if (readFileSync(path.join(root, file), 'utf8') !== f.source) console.log(`${file} has changed since the report: line numbers may be off`)
    const lines = f.source.split('\n')
    const offset = (loc) => lines.slice(0, loc.line - 1).reduce((n, l) => n + l.length + 1, 0) + loc.column - 1
    for (const m of f.mutants) {
      if (m.status !== 'Survived' && m.status !== 'NoCoverage') continue
      if (only !== undefined && !only.includes(`${m.location.start.line}:${m.location.start.column}:${m.replacement}`)) continue
      const [a, b] = [offset(m.location.start), offset(m.location.end)]
      writeFileSync(path.join(tree, file), f.source.slice(0, a) + m.replacement + f.source.slice(b))
      const run = spawnSync('npx', ['vitest', 'run', '--config', 'test/mutation/vitest.config.ts', '--bail=1'], { cwd: tree, env: { ...process.env, MUTATION_TESTS: tests }, encoding: 'utf8', timeout: 600_000 })
      const flat = (s) => s.replace(/\s+/g, ' ').slice(0, 70)
      console.log(`${run.status === 0 ? 'SURVIVES' : 'killed'} ${m.location.start.line}:${m.location.start.column} ${m.mutatorName}: ${flat(f.source.slice(a, b))} => ${flat(m.replacement)}`)
      writeFileSync(path.join(tree, file), f.source)
    }
  }
} finally {
  rmSync(tree, { recursive: true, force: true })
}
