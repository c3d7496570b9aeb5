/**
 * Figures for benchmark output: percentiles, plain tables, target marks. Printed, never asserted.
 */

/** The p-th percentile (0–100) of ascending values, nearest rank. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[nearestRank(p, sorted.length) - 1]!
}

/** The 1-based nearest rank of the p-th percentile (0–100) among `n` > 0 values. */
function nearestRank(p: number, n: number): number {
  return Math.min(n, Math.max(1, Math.ceil((p / 100) * n)))
}

/**
 * The upper bound (seconds) of the histogram bucket holding the p-th percentile (0–100) of what was
 * observed between two readings of its cumulative counts (`from` may be empty: since the start).
 * A histogram knows no more than that; NaN when nothing was observed.
 */
export function bucketPercentile(from: ReadonlyArray<{ le: number; count: number }>, to: ReadonlyArray<{ le: number; count: number }>, p: number): number {
  const counts = to.map((b, i) => ({ le: b.le, count: b.count - (from[i]?.count ?? 0) }))
  const total = counts.at(-1)?.count ?? 0
  if (total === 0) return Number.NaN
  const rank = nearestRank(p, total)
  return counts.find((b) => b.count >= rank)!.le
}

export function sortedCopy(values: Uint32Array): Uint32Array {
  return values.slice().sort()
}

/** `3 scavenges`, `1 scavenge`: a count with its noun. */
export function counted(n: number, noun: string): string {
  return `${fmtInt(n)} ${noun}${n === 1 ? '' : 's'}`
}

export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–'
}

export function fmtFixed(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '–'
}

export function fmtMs(us: number): string {
  if (!Number.isFinite(us)) return '–'
  const ms = us / 1000
  return ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0)
}

export function fmtPercent(share: number): string {
  return Number.isFinite(share) ? `${Math.round(share * 100)}%` : '–'
}

export function fmtMb(bytes: number): string {
  return Number.isFinite(bytes) ? (bytes / (1024 * 1024)).toFixed(0) : '–'
}

export function mark(pass: boolean | null): string {
  return pass === null ? '----' : pass ? 'PASS' : 'MISS'
}

export interface Column {
  title: string
  align?: 'left' | 'right'
}

/** A plain-text table: titles, a rule, rows; cells already formatted. */
export function formatTable(columns: Column[], rows: string[][]): string {
  const widths = columns.map((c, i) => Math.max(c.title.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (columns[i]!.align === 'left' ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join('  ')
      .trimEnd()
  return [line(columns.map((c) => c.title)), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}
