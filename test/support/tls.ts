import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { run } from './tools.ts'

/**
 * A throwaway public-key infrastructure made with `openssl` for a test: a certificate authority and
 * server certificates it signed for 127.0.0.1 and localhost (ECDSA P-256, valid two days).
 */
export interface TestPki {
  /** The authority's certificate (PEM), as a client that trusts it is given it. */
  readonly caFile: string
  readonly ca: Buffer
}

/** Days a test certificate is valid: long enough for any run, short enough to be worthless after. */
const TEST_CERT_DAYS = 2

async function openssl(args: string[]): Promise<void> {
  const r = await run('openssl', args)
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed (${r.code}):\n${r.stderr}`)
}

/** A new certificate authority in `dir` (created if needed), named `name`. */
export async function makeTestCa(dir: string, name: string): Promise<TestPki & { key: string }> {
  mkdirSync(dir, { recursive: true })
  const caFile = path.join(dir, `${name}.pem`)
  const key = path.join(dir, `${name}.key`)
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', caFile, '-days', String(TEST_CERT_DAYS), '-subj', `/CN=${name}`])
  return { caFile, ca: readFileSync(caFile), key }
}

/**
 * A server certificate for 127.0.0.1 and localhost signed by `ca`, written as HAProxy takes it: one
 * PEM file holding the certificate, then its key, at `file`. Returns the certificate's serial number (hex).
 */
export async function issueServerCertificate(ca: TestPki & { key: string }, file: string): Promise<string> {
  // The work files beside the authority's: a folder HAProxy loads certificates from must hold nothing else.
  const serialHex = randomSerial()
  const base = path.join(path.dirname(ca.caFile), `server-${serialHex}`)
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(`${base}.ext`, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', '/CN=localhost'])
  await openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', ca.caFile, '-CAkey', ca.key, '-set_serial', `0x${serialHex}`, '-days', String(TEST_CERT_DAYS), '-extfile', `${base}.ext`, '-out', `${base}.crt`])
  writeFileSync(file, Buffer.concat([readFileSync(`${base}.crt`), readFileSync(`${base}.key`)]))
  const serial = await run('openssl', ['x509', '-in', `${base}.crt`, '-noout', '-serial'])
  return serial.stdout.trim().replace(/^serial=/, '').toUpperCase()
}

function randomSerial(): string {
  // Positive and nonzero: the top bit cleared, the lowest set.
  const bytes = randomBytes(16)
  bytes[0] = bytes[0]! & 0x7f
  bytes[15] = bytes[15]! | 1
  return bytes.toString('hex')
}
