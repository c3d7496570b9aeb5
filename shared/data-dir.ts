import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { ENV_VARS } from './config.ts'
import { ConfigError } from './errors.ts'

/**
 * The data folder (embedded database, demo credentials, log file), created if need be. A path
 * that cannot be a folder we write in is a configuration error naming METERSHARE_DATA_DIR.
 */
export function ensureDataDir(dir: string): string {
  const resolved = path.resolve(dir)
  try {
    makeDirs(resolved)
    accessSync(resolved, constants.W_OK)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new ConfigError(`${ENV_VARS.dataDir}: cannot use ${resolved} as the data folder: ${why(code, err as Error)}`)
  }
  return resolved
}

/**
 * `mkdir -p`, one level at a time. Node 20's `mkdirSync(…, { recursive: true })` never returns, its
 * CPU spinning, where a level cannot be made and says ENOENT (under /proc); made one by one, that
 * level's error comes back.
 */
function makeDirs(dir: string): void {
  const missing: string[] = []
  for (let at = dir; !existsSync(at); at = path.dirname(at)) {
    missing.push(at)
    if (path.dirname(at) === at) break
  }
  // A file where the folder would be, as mkdir says it.
  if (missing.length === 0 && !statSync(dir).isDirectory()) throw Object.assign(new Error(`EEXIST: file already exists, mkdir '${dir}'`), { code: 'EEXIST' })
  for (const level of missing.reverse()) {
    try {
      mkdirSync(level)
    } catch (err) {
      // Made meanwhile by another process: as good.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !statSync(level).isDirectory()) throw err
    }
  }
}

function why(code: string | undefined, err: Error): string {
  switch (code) {
    case 'EEXIST':
    case 'ENOTDIR':
      return `a file is in the way (${code})`
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${code})`
    case 'EROFS':
      return 'the file system is read-only (EROFS)'
    case 'ENOSPC':
      return 'no space left on the device (ENOSPC)'
  }
  return err.message
}
