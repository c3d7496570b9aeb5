/**
 * Every error code the product emits, defined once. HTTP answers carry them as
 * `{"error":{"code","message"}}`; operating errors are handled and reported,
 * programmer errors are asserted and crash.
 */
export const ERROR_CODES = {
  CONFIG_INVALID: 'CONFIG_INVALID',
  DATA_DIR_IN_USE: 'DATA_DIR_IN_USE',
  SERVICE_UNAVAILABLE: 'SERVICE_UNAVAILABLE',
  STORAGE_FULL: 'STORAGE_FULL',
  DATABASE_UNAVAILABLE: 'DATABASE_UNAVAILABLE',
  SCHEMA_TOO_NEW: 'SCHEMA_TOO_NEW',
  INVALID_INPUT: 'INVALID_INPUT',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  METHOD_NOT_ALLOWED: 'METHOD_NOT_ALLOWED',
  CONFLICT: 'CONFLICT',
  OCCUPANCY_OVERLAP: 'OCCUPANCY_OVERLAP',
  OCCUPANCY_SAME_DAY_RETURN: 'OCCUPANCY_SAME_DAY_RETURN',
  CONSENT_OVERLAP: 'CONSENT_OVERLAP',
  OFFER_WITHDRAWN: 'OFFER_WITHDRAWN',
  EMAIL_TAKEN: 'EMAIL_TAKEN',
  METER_EXISTS: 'METER_EXISTS',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  URI_TOO_LONG: 'URI_TOO_LONG',
  HEADERS_TOO_LARGE: 'HEADERS_TOO_LARGE',
  REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  TOO_MANY_REQUESTS: 'TOO_MANY_REQUESTS',
  INTERNAL: 'INTERNAL',
} as const

export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES]

/** Why a datum (or a whole payload) went to quarantine instead of the readings table. */
export const QUARANTINE_REASONS = [
  'malformed_json',
  'invalid_schema',
  'unknown_obis',
  'too_large',
  'conflict',
  'future_timestamp',
  'index_regression',
] as const

export type QuarantineReason = (typeof QUARANTINE_REASONS)[number]

export class MetershareError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number

  constructor(code: ErrorCode, statusCode: number, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.code = code
    this.statusCode = statusCode
  }
}

/** A configuration value is missing or malformed; the message names the variable. */
export class ConfigError extends MetershareError {
  constructor(message: string) {
    super(ERROR_CODES.CONFIG_INVALID, 500, message)
  }
}

/** A server we depend on (PostgreSQL, Redis) cannot be reached, or refuses us, at start; the message names the variable and the cause. */
export class ServiceUnavailableError extends MetershareError {
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_CODES.SERVICE_UNAVAILABLE, 503, message, options)
  }
}

/** The database holds a migration this version does not know: a later Metershare migrated it. */
export class SchemaTooNewError extends MetershareError {
  constructor(migration: string, options?: ErrorOptions) {
    super(
      ERROR_CODES.SCHEMA_TOO_NEW,
      409,
      `the database was migrated by a later version of Metershare (migration ${migration} is unknown to this one): run that version or a later one, or restore a backup taken before it`,
      options,
    )
  }
}

/** The embedded database's folder is held by another process (or already open in this one). */
export class DataDirInUseError extends MetershareError {
  readonly dir: string
  readonly ownerPid: number | null
  constructor(dir: string, ownerPid: number | null, lockFile: string) {
    super(
      ERROR_CODES.DATA_DIR_IN_USE,
      409,
      `the embedded database in ${dir} is in use by ${ownerPid === null ? 'another process' : `another process (pid ${ownerPid})`}: ` +
        `stop it first, or use PostgreSQL (DATABASE_URL) to run several processes; if no such process runs, delete ${lockFile}`,
    )
    this.dir = dir
    this.ownerPid = ownerPid
  }
}

/** Bad input from a user or an outside program; the message names the field. */
export class InvalidInputError extends MetershareError {
  readonly field: string | undefined
  /** Set when the field holds a value of another type than it takes (a number where a string belongs), or is no field at all. */
  readonly misplaced: boolean
  constructor(message: string, field?: string, options: { misplaced?: boolean } = {}) {
    super(ERROR_CODES.INVALID_INPUT, 400, message)
    this.field = field
    this.misplaced = options.misplaced ?? false
  }
}

export class UnauthenticatedError extends MetershareError {
  constructor(message = 'missing or invalid credentials') {
    super(ERROR_CODES.UNAUTHENTICATED, 401, message)
  }
}

export class ForbiddenError extends MetershareError {
  constructor(message = 'not allowed') {
    super(ERROR_CODES.FORBIDDEN, 403, message)
  }
}

export class NotFoundError extends MetershareError {
  constructor(message = 'not found') {
    super(ERROR_CODES.NOT_FOUND, 404, message)
  }
}

/** A request body in a form the API does not read (a charset other than UTF-8): 415. */
export class UnsupportedMediaTypeError extends MetershareError {
  constructor(message: string) {
    super(ERROR_CODES.UNSUPPORTED_MEDIA_TYPE, 415, message)
  }
}

export class ConflictError extends MetershareError {
  constructor(message: string, code: ErrorCode = ERROR_CODES.CONFLICT) {
    super(code, 409, message)
  }
}

/** The body of every error answer, over the API and the brokers' HTTP ports alike. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string }
}

export function errorBody(code: ErrorCode, message: string): ErrorBody {
  return { error: { code, message } }
}

/** What a 404 says of an address no route serves: its method and path (the query left out, 200 characters at most). */
export function noRouteMessage(method: string, url: string): string {
  return `no route ${method} ${url.split('?')[0]!.slice(0, 200)}`
}

/** Too many failed attempts (sign-in), or too many under way at once (`busy`); try again after `retryAfterMs`. */
export class TooManyRequestsError extends MetershareError {
  readonly retryAfterMs: number
  readonly busy: boolean
  constructor(message: string, retryAfterMs: number, options: { busy?: boolean } = {}) {
    super(ERROR_CODES.TOO_MANY_REQUESTS, 429, message)
    this.retryAfterMs = retryAfterMs
    this.busy = options.busy ?? false
  }
}

/** Programmer error: an invariant that cannot fail unless the code is wrong. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`)
}
