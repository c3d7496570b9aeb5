/** PostgreSQL for tests: present when TEST_DATABASE_URL is set (CI guarantees it). */
/** One template per test run, so that concurrent runs on one server do not collide. */
export const PG_TEMPLATE_DB = `metershare_test_template_${process.pid}`

export function pgAvailable(): boolean {
  return (process.env.TEST_DATABASE_URL ?? '') !== ''
}

export const PG_SKIP_REASON = 'TEST_DATABASE_URL is not set (no PostgreSQL server)'

export function adminUrl(): string {
  const url = process.env.TEST_DATABASE_URL
  if (url === undefined || url === '') throw new Error('TEST_DATABASE_URL is not set')
  return url
}

export function databaseUrl(name: string): string {
  const url = new URL(adminUrl())
  url.pathname = '/' + name
  return url.toString()
}
