import { readFileSync } from 'node:fs'
import { BlockList } from 'node:net'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { ENV_VARS } from '../../shared/config.ts'
import { DEFAULT_SERVER_WAIT_LIMITS } from '../../shared/db/server-watch.ts'

/**
 * There is no Docker engine here, so the production layout is checked as data: every
 * service refers to things that exist (commands of the CLI, variables the config reads,
 * services it depends on, folders the image needs).
 */
const ROOT = path.resolve(import.meta.dirname, '../..')
const compose = parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, { image?: string; build?: unknown; command?: string[]; stop_grace_period?: string; environment?: Record<string, string>; healthcheck?: { test?: string[]; disable?: boolean }; depends_on?: Record<string, { condition: string }>; ports?: string[]; configs?: Array<{ source: string }> }>
  configs: Record<string, { content: string }>
  volumes: Record<string, unknown>
}
const CLI_COMMANDS = ['up', 'migrate', 'broker', 'api', 'settlement', 'simulate', 'settle']

describe('docker-compose.yml', () => {
  const ours = Object.entries(compose.services).filter(([, s]) => s.image === 'metershare:latest')

  it('runs every component of the multi-process layout from the one image', () => {
    expect(ours.map(([, s]) => s.command?.[0]).sort()).toEqual(['api', 'broker', 'migrate', 'settlement'])
    for (const [, s] of ours) expect(CLI_COMMANDS).toContain(s.command![0])
    expect(compose.services.postgres?.image).toMatch(/^postgres:15/)
  })

  it('sets only variables the configuration reads, and the ones a multi-process layout needs', () => {
    const known = new Set<string>(Object.values(ENV_VARS))
    for (const [name, s] of ours) {
      for (const key of Object.keys(s.environment ?? {})) expect(known.has(key), `${name}: ${key}`).toBe(true)
      expect(s.environment).toHaveProperty('DATABASE_URL')
      expect(s.environment).toHaveProperty('METERSHARE_ADMIN_TOKEN')
      // Only the brokers use Redis, and only they wait for it.
      expect(s.environment?.REDIS_URL !== undefined, `${name}: REDIS_URL`).toBe(name === 'broker')
      expect(s.depends_on?.redis !== undefined, `${name}: depends on redis`).toBe(name === 'broker')
    }
  })

  it('checks the health of every long-running process on its own /healthz, the settlement worker included', () => {
    for (const [name, s] of ours) {
      if (name === 'migrate') {
        expect(s.healthcheck?.disable, name).toBe(true)
        continue
      }
      expect(s.healthcheck?.disable, name).toBeUndefined()
      expect(s.healthcheck?.test?.join(' '), name).toContain(`http://127.0.0.1:${s.environment?.HTTP_PORT}/healthz`)
    }
    expect(ours.map(([name]) => name).sort()).toEqual(['api', 'broker', 'migrate', 'settlement'])
  })

  it("gives each process the time to stop against a database that stopped answering, past Docker's default 10 s", () => {
    // A stop then waits for a statement's answer wait and a connection's opening, each (measured: 10-15 s).
    const { answerWaitMs, connectTimeoutMs } = DEFAULT_SERVER_WAIT_LIMITS
    for (const [name, s] of ours) {
      const grace = /^(\d+)s$/.exec(s.stop_grace_period ?? '')
      expect(grace, `${name}: stop_grace_period in seconds`).not.toBeNull()
      expect(Number(grace![1]) * 1000, name).toBeGreaterThanOrEqual(2 * (answerWaitMs + connectTimeoutMs))
    }
  })

  it('depends only on services that exist, and migrates before anything else starts', () => {
    for (const [name, s] of Object.entries(compose.services)) {
      for (const dep of Object.keys(s.depends_on ?? {})) expect(compose.services, `${name} → ${dep}`).toHaveProperty(dep)
    }
    for (const name of ['broker', 'api', 'settlement']) {
      expect(compose.services[name]!.depends_on?.migrate?.condition).toBe('service_completed_successfully')
    }
  })

  it('puts brokers and the API behind one load balancer, the only service published, and only over TLS: MQTT on 8883, HTTPS and /mqtt on 443, 80 a redirect', () => {
    for (const [name, s] of Object.entries(compose.services)) if (name !== 'lb') expect(s.ports, name).toBeUndefined()
    const lb = compose.services.lb!
    // Plaintext MQTT (1883) and HTTP (8080) stay inside the compose network.
    expect([...lb.ports!].sort()).toEqual(['443:443', '80:80', '8883:8883'])
    const haproxy = compose.configs[lb.configs![0]!.source]!.content
    const frontends = haproxy.split(/\n(?=\s*frontend )/).slice(1).map((f) => f.split(/\n(?=\s*(?:backend|resolvers) )/)[0]!)
    const binds = frontends.map((f) => /bind (\S+)(.*)/.exec(f)!.slice(1).join('').trim())
    expect(binds.sort()).toEqual([':443 ssl crt /usr/local/etc/haproxy/certs/', ':80', ':8883 ssl crt /usr/local/etc/haproxy/certs/'])
    expect(haproxy).toMatch(/bind :8883 ssl .*\n\s+mode tcp\n\s+default_backend brokers_mqtt/)
    expect(haproxy).toMatch(/backend brokers_mqtt\n[\s\S]*server-template broker 2 broker:1883/)
    const https = frontends.find((f) => f.includes('bind :443'))!
    expect(https).toMatch(/http-request set-header X-Forwarded-Proto https/)
    expect(https).toMatch(/acl is_mqtt path \/mqtt\n\s+use_backend brokers_ws if is_mqtt\n\s+default_backend api/)
    // Port 80 serves nothing: it only redirects.
    const plain = frontends.find((f) => f.includes('bind :80'))!
    expect(plain).toMatch(/http-request redirect scheme https/)
    expect(plain).not.toMatch(/backend/)
    expect(haproxy).toMatch(/ssl-default-bind-options ssl-min-ver TLSv1\.2/)
    expect(haproxy).toMatch(/server api api:8080/)
    // The certificates come from the operator's folder, mounted read-only where the configuration reads them.
    const volumes = (lb as unknown as { volumes: string[] }).volumes
    expect(volumes).toEqual([expect.stringMatching(/^\$\{METERSHARE_TLS_DIR:\?[^}]+\}:\/usr\/local\/etc\/haproxy\/certs:ro$/)])
  })

  it("gives the one-host recipe of docs/operations.md the compose file's TLS settings and timeouts", () => {
    const haproxy = compose.configs[compose.services.lb!.configs![0]!.source]!.content
    const recipe = /# \/etc\/haproxy\/haproxy\.cfg\n([\s\S]*?)```/.exec(readFileSync(path.join(ROOT, 'docs/operations.md'), 'utf8'))![1]!
    const settings = (text: string): string[] =>
      text
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => /^(ssl-default-bind-|timeout (client|http-request|tunnel) )/.test(l) || /^http-request (set|del)-header|^bind :\d+( ssl)?/.test(l))
        .map((l) => l.replace(/ crt \S+$/, ''))
        .sort()
    expect(settings(recipe)).toEqual(settings(haproxy))
  })

  it('builds an image holding every folder the command imports', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')
    for (const folder of ['broker', 'services', 'shared', 'simulators', 'cli']) expect(dockerfile).toContain(`COPY ${folder} ./${folder}`)
    expect(dockerfile).toMatch(/npm ci --omit=dev/)
    expect(dockerfile).toMatch(/ENTRYPOINT \["node", "cli\/metershare.mjs"\]/)
  })

  it('lets the image run `up` as its unprivileged user: the data folder is theirs, and a volume', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')
    const user = /^USER (\S+)$/m.exec(dockerfile)?.[1]
    expect(user).toBe('node')
    const chown = /^RUN mkdir -p \/app\/data && chown (\S+):\S+ \/app\/data$/m.exec(dockerfile)
    expect(chown?.[1]).toBe(user)
    expect(dockerfile.indexOf(chown![0])).toBeLessThan(dockerfile.indexOf(`USER ${user}`))
    expect(dockerfile).toMatch(/^VOLUME \["\/app\/data"\]$/m)
    expect(dockerfile).toMatch(/^WORKDIR \/app$/m)
  })

  it('names the load balancer as the trusted proxy, at the fixed address it has', () => {
    const lb = compose.services.lb as unknown as { networks: { default: { ipv4_address: string } } }
    const address = lb.networks.default.ipv4_address
    for (const [name, s] of ours) expect(s.environment?.METERSHARE_TRUSTED_PROXIES, name).toBe(address)
    const { subnet, ip_range: range } = (compose as unknown as { networks: { default: { ipam: { config: Array<{ subnet: string; ip_range: string }> } } } }).networks.default.ipam.config[0]!
    const within = (cidr: string): boolean => {
      const list = new BlockList()
      const [net, bits] = cidr.split('/')
      list.addSubnet(net!, Number(bits))
      return list.check(address)
    }
    // In the network, outside the range other containers get their addresses from.
    expect(within(subnet)).toBe(true)
    expect(within(range)).toBe(false)
    const haproxy = compose.configs[compose.services.lb!.configs![0]!.source]!.content
    expect(haproxy).toMatch(/server-template broker 2 broker:1883 send-proxy-v2 check port 8080/)
    expect(haproxy).toMatch(/backend brokers_ws\n(\s+\S.*\n)*?\s+option forwardfor/)
    expect(haproxy).toMatch(/backend api\n(\s+\S.*\n)*?\s+option forwardfor/)
  })
})
