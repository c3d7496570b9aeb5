import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'

/**
 * Secrets we generate (meter secrets, API keys) are 256 random bits: a salted SHA-256 is
 * enough and costs microseconds, which matters when 20,000 meters reconnect at once.
 * Human passwords get scrypt. Every comparison is constant-time. Stored forms:
 * `sha256$<salt>$<digest>` and `scrypt$<N>$<r>$<p>$<salt>$<digest>` (base64url).
 */

const scrypt = promisify(scryptCb) as (password: string, salt: Buffer, keylen: number, options: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>

export const SECRET_BYTES = 32
const SALT_BYTES = 16
const SCRYPT = { N: 16_384, r: 8, p: 1, keyBytes: 32 }

export function generateSecret(): string {
  return randomBytes(SECRET_BYTES).toString('base64url')
}

export function hashSecret(secret: string): string {
  const salt = randomBytes(SALT_BYTES)
  return `sha256$${salt.toString('base64url')}$${sha256(salt, secret).toString('base64url')}`
}

export function verifySecret(secret: string, stored: string): boolean {
  const parts = stored.split('$')
  if (parts.length !== 3 || parts[0] !== 'sha256') return false
  const expected = Buffer.from(parts[2]!, 'base64url')
  const actual = sha256(Buffer.from(parts[1]!, 'base64url'), secret)
  return expected.length === actual.length && timingSafeEqual(expected, actual)
}

function sha256(salt: Buffer, secret: string): Buffer {
  return createHash('sha256').update(salt).update(secret, 'utf8').digest()
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const key = await scrypt(password.normalize('NFKC'), salt, SCRYPT.keyBytes, { ...SCRYPT, maxmem: 64 * 1024 * 1024 })
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64url')}$${key.toString('base64url')}`
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])]
  const expected = Buffer.from(parts[5]!, 'base64url')
  const key = await scrypt(password.normalize('NFKC'), Buffer.from(parts[4]!, 'base64url'), expected.length, {
    N,
    r,
    p,
    maxmem: 64 * 1024 * 1024,
  })
  return key.length === expected.length && timingSafeEqual(key, expected)
}

/** Constant-time equality of two strings of possibly different lengths. */
export function safeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest()
  const hb = createHash('sha256').update(b).digest()
  return timingSafeEqual(ha, hb) && a.length === b.length
}

/**
 * API keys carry the id of their owner so that a bearer token can be looked up:
 * `<ownerId>.<secret>`. Only the secret part's salted hash is stored.
 */
export function formatApiKey(ownerId: string, secret: string): string {
  return `${ownerId}.${secret}`
}

export function parseApiKey(apiKey: string): { ownerId: string; secret: string } | null {
  const dot = apiKey.lastIndexOf('.')
  if (dot <= 0 || dot === apiKey.length - 1) return null
  return { ownerId: apiKey.slice(0, dot), secret: apiKey.slice(dot + 1) }
}
