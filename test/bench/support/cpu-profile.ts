import { readFileSync } from 'node:fs'
import path from 'node:path'

/**
 * A short reading of a V8 `.cpuprofile` (`node --cpu-prof`): where the time of a window went
 * (self time), by module (our source files, each npm package, Node's internals, PGlite's
 * WebAssembly, the garbage collector, idle) and by function, heaviest first. Sample times are
 * in microseconds of the monotonic clock, the same as `process.hrtime`.
 */

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
}

interface Profile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

export interface ProfileEntry {
  name: string
  share: number
}

export interface ProfileSummary {
  windowMs: number
  samples: number
  byModule: ProfileEntry[]
  byFunction: ProfileEntry[]
}

/** Self time of the samples taken between `fromUs` and `toUs` (monotonic µs; the whole profile when absent). */
export function summarizeProfile(file: string, options: { root: string; top: number; fromUs?: number; toUs?: number }): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const fromUs = options.fromUs ?? profile.startTime
  const toUs = options.toUs ?? profile.endTime
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const modules = new Map<string, number>()
  const functions = new Map<string, number>()
  let t = profile.startTime
  let counted = 0
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0
    if (t < fromUs || t > toUs) continue
    const node = byId.get(profile.samples[i]!)
    if (node === undefined) continue
    counted++
    const f = node.callFrame
    const module = moduleOf(f.url, f.functionName, options.root)
    modules.set(module, (modules.get(module) ?? 0) + 1)
    const fn = `${f.functionName === '' ? '(anonymous)' : f.functionName}${f.url === '' ? '' : `  ${shortUrl(f.url, options.root)}:${f.lineNumber + 1}`}`
    functions.set(fn, (functions.get(fn) ?? 0) + 1)
  }
  const top = (m: Map<string, number>): ProfileEntry[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, options.top)
      .map(([name, hits]) => ({ name, share: counted === 0 ? 0 : hits / counted }))
  return { windowMs: (toUs - fromUs) / 1000, samples: counted, byModule: top(modules), byFunction: top(functions) }
}

function moduleOf(url: string, functionName: string, root: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native code)'
  if (url.startsWith('wasm://')) return 'WebAssembly (PGlite)'
  if (url.startsWith('node:')) return 'node internals'
  const p = shortUrl(url, root)
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(p)
  if (m !== null) return m[1]!
  return p
}

function shortUrl(url: string, root: string): string {
  const p = url.startsWith('file://') ? new URL(url).pathname : url
  return p.startsWith(root + '/') ? path.relative(root, p) : p
}
