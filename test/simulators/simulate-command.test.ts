import { spawn } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { writeCredentialsFile, type MeterCredentials } from '../../simulators/credentials.ts'
import { runSimulateCommand } from '../../simulators/simulate-command.ts'
import { CLI } from '../support/cli.ts'
import { contractReadings } from './support/contract.ts'
import { startSubscriber, startTestBroker } from './support/test-broker.ts'

let cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.reverse()) await c()
  cleanups = []
})

const meters: MeterCredentials[] = [
  { meterId: 'cli-e15', secret: 'secret-e15', commodity: 'electricity', intervalMinutes: 15, pv: true },
  { meterId: 'cli-gas', secret: 'secret-gas', commodity: 'gas', intervalMinutes: 60 },
]

async function credentialsFile(): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'metershare-sim-cli-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'credentials.json')
  await writeCredentialsFile(file, meters)
  return file
}

interface Run {
  code: Promise<number | null>
  stdout: () => string
  stderr: () => string
  kill: (signal: NodeJS.Signals) => void
}

function runCli(args: string[]): Run {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr.on('data', (d: Buffer) => (err += d.toString()))
  const code = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  cleanups.push(async () => {
    if (child.exitCode === null) {
      child.kill('SIGKILL')
      await code
    }
  })
  return { code, stdout: () => out, stderr: () => err, kill: (s) => child.kill(s) }
}

function memoryIo(): { io: Parameters<typeof runSimulateCommand>[2] & object; out: () => string; err: () => string } {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  stdout.on('data', (d: Buffer) => (out += d.toString()))
  stderr.on('data', (d: Buffer) => (err += d.toString()))
  return {
    io: {
      stdout,
      stderr,
      signals: new EventEmitter(),
      exit: (code) => {
        throw new Error(`exit ${code}`)
      },
    },
    out: () => out,
    err: () => err,
  }
}

describe('metershare simulate', () => {
  it('simulates the meters of a credentials file for the days asked, prints a summary and exits 0', { timeout: 120_000 }, async () => {
    const broker = await startTestBroker(meters)
    cleanups.push(() => broker.close())
    const sub = await startSubscriber(broker.url)
    cleanups.push(() => sub.close())
    const file = await credentialsFile()
    const run = runCli(['simulate', '--credentials', file, '--mqtt', broker.url, '--from', '2026-01-01', '--days', '1', '--speed', 'max', '--seed', '5'])
    expect(await run.code).toBe(0)
    await sub.until((m) => m.length === 96 + 24)
    expect(run.stdout()).toContain('simulating 2 meters from 2026-01-01 00:00 (Europe/Paris) for 1 day at speed max')
    expect(run.stdout()).toMatch(/^done: simulated 2026-01-01 00:00 → 2026-01-02 00:00 \(Europe\/Paris\), 2 meters$/m)
    expect(run.stdout()).toContain('readings: generated 120, acknowledged 120, buffered 0, dropped 0, failed 0')
    for (const m of sub.messages) contractReadings(m.text)
  })

  it('says why meters do not connect: a refused secret, or nothing at the broker address', { timeout: 120_000 }, async () => {
    // Wrong secrets: refused, and the summary says what that means.
    const broker = await startTestBroker(meters)
    cleanups.push(() => broker.close())
    const dir = mkdtempSync(path.join(os.tmpdir(), 'metershare-sim-cli-'))
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
    const wrong = path.join(dir, 'wrong.json')
    await writeCredentialsFile(wrong, meters.map((m) => ({ ...m, secret: 'not-its-secret' })))
    const refused = runCli(['simulate', '--credentials', wrong, '--mqtt', broker.url, '--from', '2026-01-01', '--days', '1', '--speed', 'max'])
    // Nothing listening: the progress line gives the socket's error while no meter is connected. Run
    // beside the first, each a process of its own.
    const file = await credentialsFile()
    const nowhere = runCli(['simulate', '--credentials', file, '--mqtt', 'mqtt://127.0.0.1:1', '--from', '2026-01-01', '--days', '1', '--speed', 'max'])
    expect(await refused.code).toBe(1)
    expect(refused.stdout()).toContain('2 meters refused (CONNACK 4 or 5: the broker does not know their id or secret)')
    // Not "done" with exit code 1.
    expect(refused.stdout()).toMatch(/^failed, every meter refused: simulated /m)
    const deadline = Date.now() + 30_000
    while (!/connected 0\/2 \| connect ECONNREFUSED 127\.0\.0\.1:1/.test(nowhere.stdout()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
    expect(nowhere.stdout()).toMatch(/connected 0\/2 \| connect ECONNREFUSED 127\.0\.0\.1:1/)
    nowhere.kill('SIGINT')
    await nowhere.code
  })

  it('says in its progress line and its summary that readings were dropped once its offline buffer was full (found by probing: dropped unseen)', { timeout: 60_000 }, async () => {
    const broker = await startTestBroker(meters)
    let brokerUp = true
    cleanups.push(() => (brokerUp ? broker.close() : undefined))
    const sub = await startSubscriber(broker.url)
    const file = await credentialsFile()
    const run = runCli(['simulate', '--credentials', file, '--mqtt', broker.url, '--from', '2026-01-01', '--speed', '86400', '--offline-buffer', '10'])
    await sub.until((m) => m.length > 0, 30_000)
    // The broker goes away: the meters' readings pile up, past their buffer.
    await sub.close()
    await broker.close()
    brokerUp = false
    const deadline = Date.now() + 30_000
    while (!/\| dropped [\d,]+ \(offline buffer full\)/.test(run.stdout()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
    expect(run.stdout()).toMatch(/\| buffered 20 \| dropped [\d,]+ \(offline buffer full\)/)
    run.kill('SIGINT')
    expect(await run.code).toBe(0)
    expect(run.stdout(), run.stdout()).toMatch(/readings: generated [\d,]+, acknowledged [\d,]+, buffered 20, dropped [1-9][\d,]* \(the offline buffer was full: --offline-buffer\), failed [\d,]+$/m)
  })

  it('starts a fleet at real speed now, not at midnight (found by probing: it stayed hours behind the present for good)', { timeout: 60_000 }, async () => {
    const broker = await startTestBroker(meters)
    cleanups.push(() => broker.close())
    const file = await credentialsFile()
    const startedAt = Date.now()
    const run = runCli(['simulate', '--credentials', file, '--mqtt', broker.url, '--time-zone', 'UTC'])
    const deadline = Date.now() + 30_000
    while (!/simulating/.test(run.stdout()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
    const from = /simulating 2 meters from (\d{4}-\d\d-\d\d \d\d:\d\d) \(UTC\) at speed 1 /.exec(run.stdout())
    expect(from, run.stdout()).not.toBeNull()
    const fromMs = Date.parse(`${from![1]!.replace(' ', 'T')}:00Z`)
    expect(fromMs).toBeGreaterThan(startedAt - 120_000)
    expect(fromMs).toBeLessThanOrEqual(Date.now())
    run.kill('SIGINT')
    expect(await run.code).toBe(0)
  })

  it('stops cleanly on SIGINT, every reading it sent acknowledged', { timeout: 120_000 }, async () => {
    const broker = await startTestBroker(meters)
    cleanups.push(() => broker.close())
    const sub = await startSubscriber(broker.url)
    cleanups.push(() => sub.close())
    const file = await credentialsFile()
    const from = new Date(Date.now() - 60 * 24 * 3_600_000).toISOString().slice(0, 10)
    const run = runCli(['simulate', '--credentials', file, '--mqtt', broker.url, '--from', from, '--speed', '86400', '--fault', 'duplicate=0.1'])
    await sub.until((m) => m.length >= 50, 60_000)
    run.kill('SIGINT')
    expect(await run.code).toBe(0)
    const out = run.stdout()
    expect(out).toContain('stopping: waiting for outstanding acknowledgements')
    expect(out).toMatch(/^stopped: simulated /m)
    const readings = /readings: generated (\d+), acknowledged (\d+), buffered 0, dropped 0, failed 0/.exec(out)
    expect(readings).not.toBeNull()
    const messages = /messages: published (\d+) \(\d+ batches\), acknowledged (\d+)/.exec(out)
    expect(messages![1]).toBe(messages![2])
    // Every message acknowledged reached the subscriber.
    await sub.until((m) => m.length === Number(messages![2]))
    const genuine = new Set(sub.messages.flatMap((m) => contractReadings(m.text).map((r) => `${m.topic} ${r.ts}`)))
    expect(genuine.size).toBe(Number(readings![2]))
  })

  it('refuses bad options with exit code 2, naming the option', async () => {
    const cases: [string[], RegExp][] = [
      [['--speed', 'fast', '--credentials', 'x.json'], /--speed: must be a positive number or 'max'/],
      [['--fault', 'dupe=1', '--credentials', 'x.json'], /fault: unknown kind 'dupe'/],
      [['--days', '0', '--credentials', 'x.json'], /--days: must be an integer from 1/],
      [['--from', 'yesterday', '--credentials', 'x.json'], /--from: 'yesterday'/],
      // The simulated clock never runs ahead of the real one: it would only wait, silent (found by probing).
      [['--from', '2099-01-01', '--credentials', 'x.json'], /--from: 2099-01-01 is in the future; the simulated clock never runs ahead of the real one/],
      [['--offline-buffer', '0', '--credentials', 'x.json'], /--offline-buffer: must be an integer from 1/],
      [['--mqtt', 'http://x', '--credentials', 'x.json'], /--mqtt: 'http:\/\/x'/],
      [[], /give --credentials FILE, or --api URL and --admin-token T/],
      [['--credentials', '/nonexistent/creds.json'], /does not exist/],
      [['--api', 'http://127.0.0.1:1', '--meters', '3'], /--admin-token: required with --api/],
      [['--time-zone', 'Mars/Olympus', '--credentials', 'x.json'], /^metershare simulate: --time-zone: 'Mars\/Olympus' is not an IANA time zone/],
      [['--colour', 'red'], /colour/],
    ]
    for (const [args, message] of cases) {
      const m = memoryIo()
      expect(await runSimulateCommand(args, {}, m.io), args.join(' ')).toBe(2)
      expect(m.err()).toMatch(message)
    }
    const file = await credentialsFile()
    const m = memoryIo()
    expect(await runSimulateCommand(['--credentials', file, '--meters', '3'], {}, m.io)).toBe(2)
    expect(m.err()).toMatch(/--meters: .* holds 2 meters, 3 asked for/)
  })

  it('reuses the meters an earlier --api run saved in the default file, rather than provisioning and overwriting them', { timeout: 60_000 }, async () => {
    const file = await credentialsFile()
    const dir = path.dirname(file)
    renameSync(file, path.join(dir, 'simulator-credentials.json'))
    // Nothing answers at the API address: had it provisioned, it would say so.
    const child = spawn(process.execPath, [CLI, 'simulate', '--api', 'http://127.0.0.1:1', '--admin-token', 'any-token-0123456789', '--meters', '3'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
    expect(code).toBe(2)
    expect(err).toMatch(/--meters: simulator-credentials\.json holds 2 meters, 3 asked for \(give another --credentials file to provision a new fleet\)/)
    expect(readFileSync(path.join(dir, 'simulator-credentials.json'), 'utf8')).toContain('cli-e15')
  })
})
