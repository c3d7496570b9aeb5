import { readFileSync } from 'node:fs'
import path from 'node:path'

/**
 * A short reading of a V8 `.cpuprofile` (`node --cpu-prof`): where the time went, by function
 * (self time), heaviest first.
 */

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
}

interface Profile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples?: number[]
}

export interface ProfileEntry {
  name: string
  where: string
  selfShare: number
}

export function summarizeProfile(file: string, top: number, root: string): { totalMs: number; entries: ProfileEntry[] } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const totalHits = profile.nodes.reduce((n, node) => n + (node.hitCount ?? 0), 0)
  const byFunction = new Map<string, { name: string; where: string; hits: number }>()
  for (const node of profile.nodes) {
    const f = node.callFrame
    const where = f.url === '' ? '' : `${shortUrl(f.url, root)}:${f.lineNumber + 1}`
    const key = `${f.functionName}@${where}`
    const entry = byFunction.get(key) ?? { name: f.functionName === '' ? '(anonymous)' : f.functionName, where, hits: 0 }
    entry.hits += node.hitCount ?? 0
    byFunction.set(key, entry)
  }
  const entries = [...byFunction.values()]
    .sort((a, b) => b.hits - a.hits)
    .slice(0, top)
    .map((e) => ({ name: e.name, where: e.where, selfShare: totalHits === 0 ? 0 : e.hits / totalHits }))
  return { totalMs: (profile.endTime - profile.startTime) / 1000, entries }
}

function shortUrl(url: string, root: string): string {
  const p = url.startsWith('file://') ? new URL(url).pathname : url
  return p.startsWith(root) ? path.relative(root, p) : p
}
