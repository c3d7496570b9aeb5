import { spawnSync } from 'node:child_process'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { chromium, type Browser } from 'playwright-core'
import { buildApi } from '../../services/api/app.ts'
import { sessionResolver } from '../../services/directory/session-service.ts'
import type { Config } from '../../shared/config.ts'
import type { DatabaseHandle } from '../../shared/db/database.ts'
import { createMetrics } from '../../shared/metrics.ts'
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

/** The HTTP API with the portal's sessions, listening on a free port of 127.0.0.1, for a browser to visit. */
export async function startPortalApi(handle: DatabaseHandle, config: Config): Promise<{ api: FastifyInstance; base: string }> {
  const api = await buildApi({
    config,
    db: handle,
    metrics: createMetrics({ defaultMetrics: false }),
    health: async () => ({ broker: true, database: true }),
    sessions: sessionResolver(handle.db),
  })
  await api.listen({ port: 0, host: '127.0.0.1' })
  return { api, base: `http://127.0.0.1:${(api.server.address() as AddressInfo).port}` }
}
