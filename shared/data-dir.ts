import { accessSync, constants, mkdirSync } from 'node:fs'
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
    mkdirSync(resolved, { recursive: true })
    accessSync(resolved, constants.W_OK)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new ConfigError(`${ENV_VARS.dataDir}: cannot use ${resolved} as the data folder: ${why(code, err as Error)}`)
  }
  return resolved
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
