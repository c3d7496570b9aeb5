/**
 * Why a connection to a server named by a variable (DATABASE_URL, REDIS_URL) could not be made,
 * when the network says so, in one sentence for the person who set it. Null: not a network cause.
 */
export function networkCause(code: string | undefined, message: string, variable: string, where: string, server: string, timeoutMs: number): string | null {
  switch (code) {
    case 'ECONNREFUSED':
      return `${variable}: nothing accepts connections at ${where}: is ${server} running there?`
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${variable}: the host of ${where} is not known (${code})`
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${variable}: ${where} cannot be reached from here (${code})`
  }
  if (code === 'ETIMEDOUT' || /timeout|timed out/i.test(message)) return `${variable}: ${server} at ${where} did not answer within ${timeoutMs} ms`
  return null
}

/** `host:port` of a server URL (the password never shown); the default port when it has none. */
export function hostAndPort(url: string, defaultPort: number): string | null {
  const u = parsedUrl(url)
  return u === null ? null : hostAndPortOf(u, defaultPort)
}

export function hostAndPortOf(u: URL, defaultPort: number): string {
  return `${u.hostname || 'localhost'}:${u.port || String(defaultPort)}`
}

/** The URL, or null when it is not one. */
export function parsedUrl(url: string): URL | null {
  try {
    return new URL(url)
  } catch {
    return null
  }
}
