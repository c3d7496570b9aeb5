import { execFile, spawnSync } from 'node:child_process'

/** System tools some tests need; absent ones make those tests skip with the reason. */
export function hasCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}

export function skipReason(command: string, pkg: string): string {
  return hasCommand(command) ? '' : ` (skipped: ${command} not found; apt-get install ${pkg})`
}

export function run(command: string, args: string[], timeoutMs = 15_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, stdout, stderr })
    })
  })
}
