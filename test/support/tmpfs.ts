import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, statfsSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { freePort, run } from './tools.ts'

/**
 * A small disk of its own for a test: a tmpfs of a few MiB, filled on demand with a file that is
 * deleted again to free the space. Mounting needs root (or CAP_SYS_ADMIN): where it is not
 * permitted, `tmpfsSkipReason` says why and the suites using it are reported as skipped.
 */
export interface SmallDisk {
  dir: string
  /** Bytes free now. */
  free(): number
  /** Fills the disk until `leaveBytes` remain free (a filler file). */
  fillLeaving(leaveBytes: number): void
  /** Deletes the filler: its space is free again. */
  unfill(): void
  /** Unmounts (lazily if busy) and removes the mount point. */
  unmount(): void
}

const FILLER = 'filler'

let checked: string | undefined

/** '' when a tmpfs can be mounted here; otherwise why not, for a skipped suite's name. */
export function tmpfsSkipReason(): string {
  if (checked !== undefined) return checked
  if (process.platform !== 'linux') return (checked = ' (skipped: mounting a tmpfs needs Linux)')
  if (process.getuid?.() !== 0) return (checked = ' (skipped: mounting a tmpfs needs root)')
  const probe = mkdtempSync(path.join(os.tmpdir(), 'metershare-tmpfs-probe-'))
  try {
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { encoding: 'utf8' })
    if (mounted.status !== 0) {
      const why = (mounted.stderr || mounted.error?.message || 'mount failed').trim().split('\n')[0]!
      return (checked = ` (skipped: mounting a tmpfs failed: ${why})`)
    }
    spawnSync('umount', [probe])
    return (checked = '')
  } finally {
    rmSync(probe, { recursive: true, force: true })
  }
}

/** Mounts a tmpfs of `sizeMiB` MiB (mode 0777: a PostgreSQL server's own user writes there too). */
export function mountSmallDisk(sizeMiB: number): SmallDisk {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'metershare-disk-'))
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0777`, 'tmpfs', dir], { encoding: 'utf8' })
  if (mounted.status !== 0) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`mount -t tmpfs on ${dir} failed: ${mounted.stderr}`)
  }
  const filler = path.join(dir, FILLER)
  const free = (): number => {
    const s = statfsSync(dir)
    return s.bavail * s.bsize
  }
  return {
    dir,
    free,
    fillLeaving(leaveBytes) {
      const bytes = free() - leaveBytes
      if (bytes <= 0) return
      const r = spawnSync('fallocate', ['-l', String(bytes), filler], { encoding: 'utf8' })
      if (r.status !== 0) throw new Error(`fallocate failed: ${r.stderr}`)
    },
    unfill() {
      rmSync(filler, { force: true })
    },
    unmount() {
      if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir])
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** The newest PostgreSQL server's binaries installed (Debian's layout), or null. */
export function postgresBinDir(): string | null {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return null
  const versions = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a))
  return versions.length === 0 ? null : path.join(root, versions[0]!, 'bin')
}

/** A PostgreSQL server of a test's own, with its data folder on `disk`, run as the `postgres` user. */
export interface PrivateCluster {
  url: string
  stop(): Promise<void>
}

/** initdb and start a cluster in `<disk>/pgdata` on a free port; its log goes outside the disk. */
export async function startPrivateCluster(bin: string, disk: SmallDisk, logFile: string): Promise<PrivateCluster> {
  const data = path.join(disk.dir, 'pgdata')
  const port = await freePort()
  const asPostgres = (command: string): Promise<{ code: number; stdout: string; stderr: string }> =>
    run('su', ['postgres', '-s', '/bin/sh', '-c', command], { timeoutMs: 60_000 })
  const init = await asPostgres(`${bin}/initdb -D ${data} -U postgres --auth=trust -N`)
  if (init.code !== 0) throw new Error(`initdb failed: ${init.stderr}`)
  spawnSync('sh', ['-c', `: > ${logFile} && chown postgres ${logFile}`])
  const options = `-p ${port} -k ${disk.dir} -c listen_addresses=127.0.0.1 -c shared_buffers=16MB -c fsync=on`
  const start = await asPostgres(`${bin}/pg_ctl -D ${data} -w -o '${options}' -l ${logFile} start`)
  if (start.code !== 0) throw new Error(`pg_ctl start failed: ${start.stderr}`)
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      await asPostgres(`${bin}/pg_ctl -D ${data} -m immediate stop`)
    },
  }
}
