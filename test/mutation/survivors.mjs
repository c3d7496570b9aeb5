// Lists the mutants of a Stryker JSON report that no test killed: node test/mutation/survivors.mjs scratch/mutation/<file>.json
import { readFileSync } from 'node:fs'
const r = JSON.parse(readFileSync(process.argv[2], 'utf8'))
for (const [file, f] of Object.entries(r.files)) {
  const lines = f.source.split('\n')
  const counts = {}
  for (const m of f.mutants) counts[m.status] = (counts[m.status] ?? 0) + 1
  console.log(`== ${file} ${f.mutants.length} mutants ${JSON.stringify(counts)}`)
  for (const m of f.mutants) {
    if (m.status === 'Killed' || m.status === 'Timeout') continue
    const l = m.location.start.line
    const src = lines[l - 1]
    const orig = m.location.start.line === m.location.end.line ? src.slice(m.location.start.column - 1, m.location.end.column - 1) : src.slice(m.location.start.column - 1) + '…'
    console.log(`${m.status} ${l}:${m.location.start.column} ${m.mutatorName}: ${orig.trim().slice(0, 90)} => ${(m.replacement ?? '').replace(/\s+/g, ' ').slice(0, 90)}`)
  }
}
