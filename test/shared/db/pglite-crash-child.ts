import { writeSync } from 'node:fs'
import { openPglite } from '../../../shared/db/database.ts'

/**
 * The process that pglite-durability.test.ts kills: opens PGlite on a folder the way the
 * system does, commits groups of rows one transaction each, and prints `committed G` on
 * stdout (unbuffered) only after group G's commit has returned. Stops by itself after
 * `groupsMax` groups, in case nobody kills it.
 *
 *   crash-child <dir> <on|off> <firstGroup> <groupsMax> <rowsPerGroup>
 */

const [dir, fsyncArg, firstGroupArg, groupsMaxArg, rowsPerGroupArg] = process.argv.slice(2)
if (dir === undefined || (fsyncArg !== 'on' && fsyncArg !== 'off') || rowsPerGroupArg === undefined) {
  throw new Error('usage: crash-child <dir> <on|off> <firstGroup> <groupsMax> <rowsPerGroup>')
}
const firstGroup = Number(firstGroupArg)
const groupsMax = Number(groupsMaxArg)
const rowsPerGroup = Number(rowsPerGroupArg)

const pglite = await openPglite(dir, fsyncArg === 'on')
await pglite.exec('CREATE TABLE IF NOT EXISTS crash_rows (id integer PRIMARY KEY, grp integer NOT NULL, payload text NOT NULL)')
writeSync(1, 'ready\n')
for (let g = firstGroup; g < firstGroup + groupsMax; g++) {
  await pglite.transaction(async (tx) => {
    await tx.query(
      `INSERT INTO crash_rows (id, grp, payload)
       SELECT $1::integer * $2::integer + x, $1::integer, repeat(md5(x::text), 4) FROM generate_series(0, $2::integer - 1) AS x`,
      [g, rowsPerGroup],
    )
  })
  writeSync(1, `committed ${g}\n`)
}
writeSync(1, 'done\n')
await pglite.close()
