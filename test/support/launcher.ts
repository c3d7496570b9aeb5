import { readFileSync } from 'node:fs'
import path from 'node:path'

/** The `metershare` command (package.json `bin`). */
export const LAUNCHER = path.resolve(import.meta.dirname, '../../cli/metershare.mjs')

/**
 * The Node flags the `metershare` command runs with, read from its launcher's first line
 * (`#!/usr/bin/env -S node <flags>`): tests and benchmarks start it as `npm start` and the
 * image do.
 */
export function launcherNodeFlags(): string[] {
  const first = readFileSync(LAUNCHER, 'utf8').split('\n', 1)[0]!
  const m = /^#!\/usr\/bin\/env -S node((?: --[\w-]+(?:=\S+)?)*)$/.exec(first)
  if (m === null) throw new Error(`assertion failed: ${LAUNCHER} starts with "${first}", not "#!/usr/bin/env -S node <flags>"`)
  return m[1]!.trim().split(' ').filter((f) => f !== '')
}
