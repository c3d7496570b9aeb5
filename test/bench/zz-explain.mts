import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { findMonthRollupTotals } from '../../services/settlement/settlement-repository.ts'
const url = `postgres://postgres:postgres@localhost:5432/${process.argv[2]}`
const pool = new pg.Pool({ connectionString: url, options: '-c jit=off' })
let captured: { sql: string; params: readonly unknown[] } | null = null
const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }), log: (e) => { if (e.level === 'query') captured = { sql: e.query.sql, params: e.query.parameters } } })
const t0 = Date.now()
await findMonthRollupTotals(db as never, '2026-11-01', '2026-11-30', 'Europe/Paris')
console.log('findMonthRollupTotals ms', Date.now() - t0)
const c = captured!
const r = await pool.query('EXPLAIN (ANALYZE, BUFFERS) ' + c.sql, c.params as unknown[])
console.log(r.rows.map((x: any) => x['QUERY PLAN']).join('\n'))
await pool.end()
