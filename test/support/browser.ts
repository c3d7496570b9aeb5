import { spawnSync } from 'node:child_process'
import { chromium, type Browser } from 'playwright-core'
import { hasCommand, skipReason } from './tools.ts'

/**
 * Chromium as Debian installs it, for the tests that drive the portal in a real browser
 * (never downloaded): its absolute path for Playwright, or null, and the reason a suite
 * is skipped without it.
 */
function chromiumPath(): string | null {
  for (const command of ['chromium', 'chromium-browser']) {
    if (!hasCommand(command)) continue
    const found = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).stdout.trim()
    if (found !== '') return found
  }
  return null
}

export const BROWSER_PATH = chromiumPath()
export const BROWSER_SKIP = BROWSER_PATH === null ? skipReason('chromium', 'chromium') : ''

export function launchChromium(): Promise<Browser> {
  if (BROWSER_PATH === null) throw new Error(`chromium not found${BROWSER_SKIP}`)
  return chromium.launch({ executablePath: BROWSER_PATH, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] })
}
