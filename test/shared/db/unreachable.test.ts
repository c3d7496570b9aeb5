import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { ServerNotAnsweringError } from '../../../shared/db/server-watch.ts'
import { isDatabaseUnreachable, logDatabaseFailure } from '../../../shared/db/unreachable.ts'

const withCode = (code: string, message = 'x'): Error => Object.assign(new Error(message), { code })

describe('a database server that cannot be reached', () => {
  it('is told from an error the server answers by its SQLSTATE, its socket error or node-postgres’ words', () => {
    for (const err of [
      withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'),
      withCode('ECONNRESET'),
      withCode('57P01', 'terminating connection due to administrator command'),
      withCode('57P02'),
      withCode('57P03', 'the database system is starting up'),
      withCode('08006'),
      withCode('53300', 'sorry, too many clients already'),
      new Error('Connection terminated unexpectedly'),
      new Error('timeout exceeded when trying to connect'),
      // A connection not opened within its connectionTimeoutMillis; one closed by the server watch.
      new Error('timeout expired'),
      new ServerNotAnsweringError({ connectTimeoutMs: 5_000, answerWaitMs: 5_000 }),
    ]) {
      expect(isDatabaseUnreachable(err), err.message).toBe(true)
    }
    // What would fail again at every try: held for good, it would stop its lane.
    for (const err of [withCode('08P01', 'bind message supplies 3 parameters'), withCode('53100', 'No space left on device'), withCode('23505'), withCode('P0001'), new Error('x'), new Error('timeout expired: x'), null, 'ECONNREFUSED']) {
      expect(isDatabaseUnreachable(err), String(err)).toBe(false)
    }
  })

  it('is logged once a minute per message, with how many were kept quiet; other failures each time', () => {
    const lines: Array<{ msg: string; keptQuiet?: number; databaseUnreachable?: boolean; err?: unknown }> = []
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as (typeof lines)[number]) })
    let now = 0
    const refused = withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432')
    const msg = `test sweep failed ${Math.random()}`
    for (let i = 0; i < 5; i++) logDatabaseFailure(log, 'warn', refused, {}, msg, () => now)
    now = 60_000
    logDatabaseFailure(log, 'warn', refused, {}, msg, () => now)
    logDatabaseFailure(log, 'warn', withCode('P0001', 'a bug'), {}, msg, () => now)
    logDatabaseFailure(log, 'warn', withCode('P0001', 'a bug'), {}, msg, () => now)
    expect(lines.map((l) => [l.databaseUnreachable ?? false, l.keptQuiet])).toEqual([
      [true, undefined],
      [true, 4],
      [false, undefined],
      [false, undefined],
    ])
  })
})
