import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectMeter, endClient, publishAcked } from '../support/broker.ts'
import { CliProcess, runCli } from '../support/cli.ts'
import { waitFor } from '../support/tools.ts'

/**
 * `metershare up --no-demo --no-simulate` as an outside program sees it: one process, the
 * embedded database, configured by the environment, driven only through the public contract.
 */
const ADMIN_TOKEN = 'e2e-admin-token-0123456789'

/** `up` on its own data folder, on ports the system picks, quiet but for warnings. */
function upEnv(dataDir: string): NodeJS.ProcessEnv {
  return { ...process.env, METERSHARE_DATA_DIR: dataDir, MQTT_PORT: '0', HTTP_PORT: '0', METERSHARE_HOST: '127.0.0.1', METERSHARE_ADMIN_TOKEN: ADMIN_TOKEN, METERSHARE_LOG_LEVEL: 'warn' }
}

describe('metershare up (empty world)', () => {
  let up: CliProcess
  let dataDir: string
  let http = ''
  let mqttUrl = ''
  let meterCredentials: { id: string; secret: string } | undefined

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'metershare-up-'))
    up = new CliProcess(['up', '--no-demo', '--no-simulate'], upEnv(dataDir))
    http = (await up.printed(/HTTP API\s+(http:\/\/\S+)/, 90_000))[1]!
    mqttUrl = (await up.printed(/MQTT\s+(mqtt:\/\/\S+)/, 90_000))[1]!
  }, 120_000)

  afterAll(async () => {
    up.kill()
    rmSync(dataDir, { recursive: true, force: true })
  })

  async function admin(method: string, url: string, body?: unknown): Promise<{ status: number; body: any }> {
    const res = await fetch(http + url, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    return { status: res.status, body: await res.json() }
  }

  it('answers /healthz once the broker and the database are up', async () => {
    const res = await fetch(http + '/healthz')
    expect(res.status).toBe(200)
  })

  it('settles no month by itself unless asked (--settle-periodically): the operator settles', async () => {
    const text = await (await fetch(http + '/metrics')).text()
    expect(text).toMatch(/^metershare_readings_stored_total /m)
    expect(text).not.toMatch(/^metershare_settlement_runs_total/m)
  })

  it('stores what a provisioned meter publishes and shows it to its household', async () => {
    const utility = await admin('POST', '/admin/parties', { kind: 'utility', name: 'Grid' })
    expect(utility.status).toBe(201)
    const household = await admin('POST', '/admin/households', { name: 'Doe', email: 'doe@example.test', password: 'long enough password' })
    expect(household.status).toBe(201)
    const meter = await admin('POST', '/admin/meters', { operatorId: utility.body.id, commodity: 'electricity', intervalMinutes: 30 })
    expect(meter.status).toBe(201)
    const occ = await admin('POST', '/admin/occupancies', { meterId: meter.body.id, householdId: household.body.id, from: '2026-10-01T00:00:00Z' })
    expect(occ.status).toBe(201)

    meterCredentials = { id: meter.body.id, secret: meter.body.secret }
    const client = await connectMeter(mqttUrl, { id: meter.body.id, secret: meter.body.secret })
    await publishAcked(client, `meters/${meter.body.id}/readings`, JSON.stringify({ ts: '2026-10-01T00:30:00Z', values: { '1-0:1.8.0': 1234567 } }))
    await endClient(client)

    const res = await fetch(`${http}/me/readings?meterId=${meter.body.id}&from=2026-10-01T00:00:00Z&to=2026-10-02T00:00:00Z&granularity=load_curve`, {
      headers: { authorization: `Bearer ${household.body.apiKey}` },
    })
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({
      items: [{ meterId: meter.body.id, ts: '2026-10-01T00:30:00Z', granularity: 'load_curve', values: { '1-0:1.8.0': 1234567 } }],
      nextCursor: null,
    })
  })

  it('keeps a second process off its embedded database, and that one says who holds it', async () => {
    const { code, stderr } = await runCli(['settle', '--month', '2026-10'], { ...process.env, METERSHARE_DATA_DIR: dataDir, METERSHARE_LOG_LEVEL: 'silent' })
    expect(stderr).toBe(
      `metershare settle: the embedded database in ${path.join(dataDir, 'pglite')} is in use by another process (pid ${up.pid}): ` +
        `stop it first, or use PostgreSQL (DATABASE_URL) to run several processes; if no such process runs, delete ${path.join(dataDir, 'pglite.lock')}\n`,
    )
    expect(code).toBe(2)
    const res = await fetch(http + '/healthz')
    expect(res.status).toBe(200)
  }, 60_000)

  it('stops cleanly on SIGHUP, as when its terminal closes, releasing the embedded database, MQTT over WebSocket connected or not (SIGTERM: layout and demo tests)', async () => {
    expect(existsSync(path.join(dataDir, 'pglite.lock'))).toBe(true)
    // A client on the HTTP port's WebSocket held the stop for as long as it stayed (the HTTP server waited for it
    // before the broker let anyone go), and the broker took data meanwhile.
    const ws = await connectMeter(http.replace(/^http/, 'ws') + '/mqtt', meterCredentials!)
    const letGo = new Promise<void>((r) => ws.once('close', () => r()))
    const started = Date.now()
    expect(await up.stop('SIGHUP')).toBe(0)
    await letGo
    expect(Date.now() - started).toBeLessThan(20_000)
    expect(up.output).toContain('stopped; everything acknowledged is stored')
    expect(existsSync(path.join(dataDir, 'pglite.lock'))).toBe(false)
    await endClient(ws)
  }, 60_000)
})

describe('metershare up interrupted while it creates the demo world', () => {
  let dataDir: string

  beforeAll(() => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'metershare-up-interrupted-'))
  })

  afterAll(() => {
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('finishes the world, then stops in order: started again, it runs the demo (it used to die halfway, leaving a world without its fleet for good)', async () => {
    const env = { ...process.env, METERSHARE_DATA_DIR: dataDir, MQTT_PORT: '0', HTTP_PORT: '0', METERSHARE_HOST: '127.0.0.1', METERSHARE_LOG_LEVEL: 'info' }
    const up = new CliProcess(['up', '--no-simulate'], env)
    try {
      await up.printed(/creating the demo world/, 90_000)
      expect(await up.stop('SIGINT')).toBe(0)
      expect(up.output).toContain('stopped; everything acknowledged is stored')
      expect(existsSync(path.join(dataDir, 'demo-world.json'))).toBe(true)
    } finally {
      up.kill()
    }
    const again = new CliProcess(['up', '--no-simulate'], env)
    try {
      await again.printed(/Portal\s+\S+\s+sign in as demo01@/, 90_000)
      expect(await again.stop('SIGTERM')).toBe(0)
    } finally {
      again.kill()
    }
  }, 200_000)
})

describe('metershare up --settle-periodically', () => {
  it('settles completed months on its timer, the first run at its start, and exports its runs', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'metershare-up-settle-'))
    const up = new CliProcess(['up', '--no-demo', '--no-simulate', '--settle-periodically'], upEnv(dataDir))
    try {
      const http = (await up.printed(/HTTP API\s+(http:\/\/\S+)/, 90_000))[1]!
      const text = await waitFor(async () => {
        const t = await (await fetch(http + '/metrics')).text()
        return /^metershare_settlement_runs_total\{outcome="ok"\} [1-9]/m.test(t) ? t : undefined
      }, 30_000, 'the first settlement run')
      expect(text).toMatch(/^metershare_settlement_runs_total\{outcome="failed"\} 0$/m)
      expect(Number(/^metershare_settlement_last_success_timestamp_seconds (\d+)$/m.exec(text)?.[1])).toBeGreaterThan(Date.now() / 1000 - 600)
      expect(await up.stop('SIGTERM')).toBe(0)
    } finally {
      up.kill()
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 120_000)
})

describe('metershare up on a port that is taken', () => {
  let taken: net.Server
  let port: number
  let dataDir: string

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'metershare-up-port-'))
    taken = net.createServer()
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()))
    port = (taken.address() as net.AddressInfo).port
  })

  afterAll(async () => {
    await new Promise<void>((r) => taken.close(() => r()))
    rmSync(dataDir, { recursive: true, force: true })
  })

  /** Runs `up` to its end; its exit code and what it printed on stderr. */
  function upWith(env: { MQTT_PORT: string; HTTP_PORT: string; METERSHARE_HOST?: string }, dir = dataDir): Promise<{ code: number; stderr: string }> {
    return runCli(['up', '--no-demo', '--no-simulate'], {
      ...process.env,
      METERSHARE_HOST: '127.0.0.1',
      ...env,
      METERSHARE_DATA_DIR: dir,
      METERSHARE_ADMIN_TOKEN: ADMIN_TOKEN,
      METERSHARE_LOG_LEVEL: 'silent',
    })
  }

  it('names the variable of the port it cannot listen on, and exits 2 without a stack trace', async () => {
    for (const [variable, ports, likely] of [
      ['MQTT_PORT', { MQTT_PORT: String(port), HTTP_PORT: '0' }, 'another Metershare or MQTT broker?'],
      ['HTTP_PORT', { MQTT_PORT: '0', HTTP_PORT: String(port) }, 'another Metershare or web server?'],
    ] as const) {
      const fresh = path.join(dataDir, `port-taken-${variable}`)
      const { code, stderr } = await upWith(ports, fresh)
      expect(stderr).toBe(`metershare up: ${variable}: port ${port} on 127.0.0.1 is already in use (${likely})\n`)
      expect(code).toBe(2)
      // Found before the embedded database is created (seconds), not once it has opened.
      expect(existsSync(path.join(fresh, 'pglite'))).toBe(false)
    }
  }, 120_000)

  it('says MQTT_PORT and HTTP_PORT are the same port, rather than that the port is in use', async () => {
    const fresh = path.join(dataDir, 'same-port')
    const { code, stderr } = await upWith({ MQTT_PORT: String(port), HTTP_PORT: String(port) }, fresh)
    expect(stderr).toBe(`metershare up: HTTP_PORT: port ${port} is MQTT_PORT too; each needs a port of its own\n`)
    expect(code).toBe(2)
    expect(existsSync(path.join(fresh, 'pglite'))).toBe(false)
  }, 60_000)

  it('names METERSHARE_HOST when the host is not an address of this machine, or not a known name', async () => {
    for (const [host, reason] of [
      // 198.51.100.0/24 is reserved for documentation (RFC 5737): no machine has it.
      ['198.51.100.7', 'is not an address of this machine'],
      // .invalid is reserved (RFC 2606): no resolver knows a name in it.
      ['metershare.invalid', 'is not a known host name'],
    ] as const) {
      const fresh = path.join(dataDir, 'bad-host')
      const { code, stderr } = await upWith({ MQTT_PORT: '0', HTTP_PORT: '0', METERSHARE_HOST: host }, fresh)
      expect(stderr).toBe(`metershare up: METERSHARE_HOST: ${host} ${reason}\n`)
      expect(code).toBe(2)
      // Found before the embedded database is created.
      expect(existsSync(path.join(fresh, 'pglite'))).toBe(false)
    }
  }, 120_000)

  it('refuses to run the API alone without PostgreSQL or without an operator token, naming the variable', async () => {
    const { METERSHARE_ADMIN_TOKEN: _token, DATABASE_URL: _url, ...env } = process.env
    const alone = await runCli(['api'], { ...env, METERSHARE_DATA_DIR: dataDir })
    expect(alone.stderr).toMatch(/^metershare api: DATABASE_URL: `metershare api` runs beside other processes and needs PostgreSQL/)
    expect(alone.code).toBe(2)
    const tokenless = await runCli(['api'], { ...env, DATABASE_URL: 'postgres://metershare@127.0.0.1:1/none' })
    expect(tokenless.stderr).toBe("metershare api: METERSHARE_ADMIN_TOKEN: `metershare api` needs the operator's bearer token (at least 16 characters; give every process of a layout the same one)\n")
    expect(tokenless.code).toBe(2)
  }, 60_000)

  it("answers --help for every command with that command's usage, and nothing else; no command or an unknown one is a usage error", async () => {
    // Side by side: each is a process of its own, most of whose time is spent starting.
    const env = { ...process.env, METERSHARE_DATA_DIR: path.join(dataDir, 'never-made') }
    const commands = ['up', 'migrate', 'broker', 'api', 'settlement', 'settle', 'simulate']
    const [general, settle, bare, unknown, ...answers] = await Promise.all([
      runCli(['--help'], env),
      runCli(['settle', '-h'], env),
      runCli([], env),
      runCli(['bogus'], env),
      ...commands.map((command) => runCli([command, '--help'], env)),
    ])
    const help: Record<string, string> = {}
    for (const [i, command] of commands.entries()) {
      const { code, stdout, stderr } = answers[i]!
      expect(stderr, command).toBe('')
      expect(code, command).toBe(0)
      expect(stdout, command).toMatch(new RegExp(`^usage: metershare ${command}( |\n)`))
      help[command] = stdout
    }
    // Each says what it needs: the options it takes and the variables it requires.
    expect(settle!.stdout).toContain('--month YYYY-MM    the month to settle')
    expect(help.api).toContain('METERSHARE_ADMIN_TOKEN  required')
    expect(help.api).not.toContain('--mqtt-port')
    // "metershare <command> --help gives a command's options and the variables it reads": all of them.
    const reads: Record<string, string[]> = {
      migrate: ['DATABASE_URL', 'METERSHARE_DATA_DIR', 'METERSHARE_TIMEZONE', 'METERSHARE_PGLITE_FSYNC', 'METERSHARE_DB_POOL_SIZE', 'METERSHARE_DB_CONNECT_TIMEOUT_MS', 'METERSHARE_DB_ANSWER_WAIT_MS', 'METERSHARE_LOG_LEVEL'],
      broker: ['DATABASE_URL', 'REDIS_URL', 'METERSHARE_TRUSTED_PROXIES', 'MQTT_PORT', 'HTTP_PORT', 'METERSHARE_HOST', 'METERSHARE_TIMEZONE', 'METERSHARE_DB_POOL_SIZE', 'METERSHARE_DB_CONNECT_TIMEOUT_MS', 'METERSHARE_DB_ANSWER_WAIT_MS', 'METERSHARE_LOG_LEVEL'],
      api: ['DATABASE_URL', 'METERSHARE_ADMIN_TOKEN', 'METERSHARE_TRUSTED_PROXIES', 'HTTP_PORT', 'METERSHARE_HOST', 'METERSHARE_TIMEZONE', 'METERSHARE_PAYOUT_MIN_MICROS', 'METERSHARE_DB_POOL_SIZE', 'METERSHARE_DB_CONNECT_TIMEOUT_MS', 'METERSHARE_DB_ANSWER_WAIT_MS', 'METERSHARE_LOG_LEVEL'],
      settlement: ['DATABASE_URL', 'METERSHARE_PAYOUT_MIN_MICROS', 'METERSHARE_TIMEZONE', 'METERSHARE_DB_POOL_SIZE', 'METERSHARE_DB_CONNECT_TIMEOUT_MS', 'METERSHARE_DB_ANSWER_WAIT_MS', 'METERSHARE_LOG_LEVEL'],
      settle: ['DATABASE_URL', 'METERSHARE_DATA_DIR', 'METERSHARE_PAYOUT_MIN_MICROS', 'METERSHARE_TIMEZONE', 'METERSHARE_PGLITE_FSYNC', 'METERSHARE_DB_POOL_SIZE', 'METERSHARE_DB_CONNECT_TIMEOUT_MS', 'METERSHARE_DB_ANSWER_WAIT_MS', 'METERSHARE_LOG_LEVEL'],
    }
    for (const [command, names] of Object.entries(reads)) {
      for (const name of names) expect(help[command], `${command} --help: ${name}`).toContain(name)
    }
    expect(general!.stdout).toMatch(/^usage: metershare <command> \[options\]\n/)
    expect(general!.code).toBe(0)
    // No command, or one it does not know, is a usage error like any other: on stderr, exit 2.
    expect(bare).toEqual({ code: 2, stdout: '', stderr: `metershare: a command is required\n\n${general!.stdout}` })
    expect(unknown).toEqual({ code: 2, stdout: '', stderr: `metershare: unknown command 'bogus'\n\n${general!.stdout}` })
    expect(existsSync(path.join(dataDir, 'never-made'))).toBe(false)
  }, 120_000)


  it('refuses an option a command does not take, as its usage says, rather than ignoring it', async () => {
    for (const [command, option] of [
      ['broker', '--data-dir'],
      ['api', '--mqtt-port'],
      ['settlement', '--mqtt-port'],
      ['migrate', '--mqtt-port'],
    ] as const) {
      const r = await runCli([command, option, '5'], { ...process.env, DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', METERSHARE_LOG_LEVEL: 'silent' })
      expect([r.code, r.stderr.split('\n')[0]], `${command} ${option}`).toEqual([2, `metershare ${command}: Unknown option '${option}'`])
    }
  }, 60_000)

  it('names METERSHARE_DATA_DIR when a file stands where its folder would be, for up and for migrate', async () => {
    const file = path.join(dataDir, 'not-a-folder')
    writeFileSync(file, 'a file\n')
    for (const [command, dir, code] of [
      ['up', file, 'EEXIST'],
      ['migrate', path.join(file, 'data'), 'ENOTDIR'],
    ] as const) {
      const { DATABASE_URL: _url, ...env } = process.env
      const r = await runCli([command], { ...env, METERSHARE_DATA_DIR: dir, METERSHARE_ADMIN_TOKEN: ADMIN_TOKEN, METERSHARE_LOG_LEVEL: 'silent' })
      expect(r.stderr).toBe(`metershare ${command}: METERSHARE_DATA_DIR: cannot use ${dir} as the data folder: a file is in the way (${code})\n`)
      expect(r.code).toBe(2)
    }
    expect(readFileSync(file, 'utf8')).toBe('a file\n')
  }, 60_000)

  it('names METERSHARE_DATA_DIR for a folder that cannot be made under /proc, rather than hanging (Node 20 recursive mkdir spins there)', async () => {
    const dir = '/proc/metershare-data'
    const { DATABASE_URL: _url, ...env } = process.env
    const r = await runCli(['up', '--no-demo', '--no-simulate'], { ...env, METERSHARE_DATA_DIR: path.join(dir, 'data'), METERSHARE_ADMIN_TOKEN: ADMIN_TOKEN, METERSHARE_LOG_LEVEL: 'silent' }, 30_000)
    expect(r.stderr).toMatch(new RegExp(`^metershare up: METERSHARE_DATA_DIR: cannot use ${dir}/data as the data folder: .*ENOENT`))
    expect(r.code).toBe(2)
  }, 60_000)
})
