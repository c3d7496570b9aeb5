import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { PortalAssetUrls } from './portal-pages.ts'

/**
 * The portal's stylesheet, script and icon, read once at start and served under names that carry
 * a hash of their content, so that browsers may keep them for good and still never run a
 * stale copy after an upgrade.
 */

export const PORTAL_ASSETS_PATH = '/portal/assets'
/** How long a browser may keep an asset (its name changes with its content). */
export const ASSET_MAX_AGE_S = 365 * 24 * 60 * 60

export interface PortalAsset {
  contentType: string
  body: Buffer
}

export interface PortalAssets {
  urls: PortalAssetUrls
  /** By file name (`portal-<hash>.js`). */
  byName: ReadonlyMap<string, PortalAsset>
}

const FILES = [
  { key: 'css', file: 'portal.css', contentType: 'text/css; charset=utf-8' },
  { key: 'js', file: 'portal.js', contentType: 'text/javascript; charset=utf-8' },
  { key: 'icon', file: 'icon.svg', contentType: 'image/svg+xml' },
] as const

export function loadPortalAssets(): PortalAssets {
  const byName = new Map<string, PortalAsset>()
  const urls: Partial<PortalAssetUrls> = {}
  for (const { key, file, contentType } of FILES) {
    const body = readFileSync(new URL(`./assets/${file}`, import.meta.url))
    const hash = createHash('sha256').update(body).digest('base64url').slice(0, 12)
    const [base, ext] = file.split('.') as [string, string]
    const name = `${base}-${hash}.${ext}`
    byName.set(name, { contentType, body })
    urls[key] = `${PORTAL_ASSETS_PATH}/${name}`
  }
  return { urls: urls as PortalAssetUrls, byName }
}
