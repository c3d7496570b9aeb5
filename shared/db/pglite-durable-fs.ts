import { fsyncSync } from 'node:fs'
import { open, readdir } from 'node:fs/promises'
import path from 'node:path'
import type { PGlite } from '@electric-sql/pglite'
import { NodeFS } from '@electric-sql/pglite/nodefs'
import { ConfigError } from '../errors.ts'

/**
 * PGlite's data folder on the host with an fsync that reaches the disk. As shipped (0.5), PGlite's
 * host file system (emscripten's NODEFS) has no fsync operation: PostgreSQL's fsync() returns
 * success without a system call and fdatasync() is a no-op, so `fsync = on` alone syncs nothing.
 * This forwards fsync() to the host file. fdatasync() cannot be forwarded (emscripten answers it
 * before any file system hook), so the WAL must be synced with `wal_sync_method = fsync`; then a
 * commit returns after its WAL is on disk, and a checkpoint syncs data files, pg_control and
 * directories as a PostgreSQL server does. See docs/durability.md.
 */
export class DurableNodeFS extends NodeFS {
  override async init(pg: PGlite, opts: Parameters<NodeFS['init']>[1]): ReturnType<NodeFS['init']> {
    const { emscriptenOpts } = await super.init(pg, opts)
    return { emscriptenOpts: { ...emscriptenOpts, preRun: [...(emscriptenOpts.preRun ?? []), forwardFsync] } }
  }
}

interface NodefsInternals {
  stream_ops: { fsync?: (stream: { nfd?: number }) => number }
  tryFSOperation(operation: () => unknown): unknown
}

function forwardFsync(mod: { NODEFS: unknown }): void {
  const nodefs = mod.NODEFS as Partial<NodefsInternals> | undefined
  if (typeof nodefs?.stream_ops !== 'object' || typeof nodefs.tryFSOperation !== 'function') {
    throw new ConfigError('METERSHARE_PGLITE_FSYNC: this PGlite build offers no way to fsync its files; set it to off to run without')
  }
  // A later emscripten may bring its own; keep it.
  if (typeof nodefs.stream_ops.fsync === 'function') return
  const tryFSOperation = nodefs.tryFSOperation.bind(nodefs)
  // tryFSOperation turns a host error (EIO…) into an errno PostgreSQL sees, and PostgreSQL
  // then stops rather than trust pages it could not sync (data_sync_retry = off).
  nodefs.stream_ops.fsync = (stream) => {
    tryFSOperation(() => fsyncSync(stream.nfd as number))
    return 0
  }
}

/** Files synced at once when a whole folder is synced (each holds a descriptor). */
const syncConcurrencyMax = 16

/**
 * Syncs every file under `dir`, then every folder, `dir` last, as initdb does on a server.
 * A new PGlite cluster is copied into its folder without any fsync; without this, a power cut
 * soon after the first start could lose the cluster along with what was acknowledged since.
 */
export async function syncFolderTree(dir: string): Promise<void> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  const files = entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name))
  const folders = entries.filter((e) => e.isDirectory()).map((e) => path.join(e.parentPath, e.name))
  await syncEach(files)
  await syncEach(folders)
  await syncPath(dir)
}

async function syncEach(paths: string[]): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < paths.length) await syncPath(paths[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(syncConcurrencyMax, paths.length) }, worker))
}

async function syncPath(p: string): Promise<void> {
  const handle = await open(p, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
