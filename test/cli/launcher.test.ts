import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { LAUNCHER, launcherNodeFlags } from '../support/launcher.ts'
import { run } from '../support/tools.ts'

/**
 * The `metershare` command runs with the same Node flags however it is started: as an
 * executable (its first line), by `npm start`, and as the image's entry point.
 */
const ROOT = path.resolve(import.meta.dirname, '../..')

describe('the metershare launcher', () => {
  it('runs Node with a young generation sized for the publishes a broker holds in flight', () => {
    expect(launcherNodeFlags()).toEqual(['--max-semi-space-size=64'])
  })

  it('starts as an executable through its first line', async () => {
    const { code, stdout, stderr } = await run(LAUNCHER, ['--help'], 30_000)
    expect(stderr).toBe('')
    expect(code).toBe(0)
    expect(stdout).toMatch(/^usage: metershare <command>/)
  })

  it('gets the same flags from npm start and from the image', () => {
    const flags = launcherNodeFlags()
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; bin: Record<string, string> }
    expect(pkg.bin.metershare).toBe('cli/metershare.mjs')
    expect(pkg.scripts.start).toBe(['node', ...flags, 'cli/metershare.mjs', 'up'].join(' '))
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)
    expect(entrypoint).not.toBeNull()
    expect(JSON.parse(entrypoint![1]!)).toEqual(['node', ...flags, 'cli/metershare.mjs'])
  })
})
