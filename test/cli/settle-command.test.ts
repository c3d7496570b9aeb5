import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { progressLine, settleCommand } from '../../cli/settle-command.ts'
import { PGLITE_SUBDIR } from '../../shared/db/database.ts'
import { InvalidInputError } from '../../shared/errors.ts'

/** `metershare settle --month` on the embedded database of a data directory (a copy of the migrated template). */
describe('metershare settle', () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'metershare-settle-cli-'))
  cpSync(inject('pgliteTemplateDir'), path.join(dataDir, PGLITE_SUBDIR), { recursive: true })
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }))

  function capture(tty: boolean) {
    const out: string[] = []
    const err: string[] = []
    return { out, err, io: { out: { write: (s: string) => out.push(s) }, err: { write: (s: string) => err.push(s), isTTY: tty } } }
  }

  it('settles a month, drawing progress on a terminal, then prints a summary; again, it posts nothing', async () => {
    const first = capture(true)
    expect(await settleCommand(['--month', '2025-01', '--data-dir', dataDir], { pgliteFsync: 'off' }, first.io)).toBe(0)
    const table = first.out.join('')
    expect(table).toMatch(/^Settlement of 2025-01 \(Europe\/Paris\)\n/)
    expect(table).toMatch(/ run +run_[0-9a-z]{16} \(closes the month, run #1, booked in 2025-01\)\n/)
    expect(table).toMatch(/ gross +0\.00 EUR \(0 µ€\)\n/)
    expect(table).toMatch(/ journals posted +0\n/)
    const drawn = first.err.join('')
    expect(drawn).toContain('\r[##############################] 100 % done')
    expect(drawn.endsWith('\n')).toBe(true)

    const again = capture(false)
    expect(await settleCommand(['--month', '2025-01', '--data-dir', dataDir], { pgliteFsync: 'off' }, again.io)).toBe(0)
    expect(again.out.join('')).toMatch(/nothing new since run #1, nothing posted/)
    expect(again.err.join('')).toBe('')
  })

  it('refuses a month that is not one, naming the option', async () => {
    const c = capture(false)
    await expect(settleCommand(['--month', '2025-13', '--data-dir', dataDir], {}, c.io)).rejects.toThrow(InvalidInputError)
    await expect(settleCommand(['--data-dir', dataDir], {}, c.io)).rejects.toThrow(/^--month: expected a month as YYYY-MM/)
    // A month not over yet is said of the option, as the malformed one is, not of the API's field.
    await expect(settleCommand(['--month', '2099-01', '--data-dir', dataDir], { pgliteFsync: 'off' }, c.io)).rejects.toThrow(/^--month: 2099-01 is not over yet/)
  })

  it('refuses a data folder that holds no embedded database, rather than creating one and settling nothing', async () => {
    const c = capture(false)
    const mistyped = path.join(dataDir, 'no-such-folder')
    await expect(settleCommand(['--month', '2025-01', '--data-dir', mistyped], {}, c.io)).rejects.toThrow(
      `METERSHARE_DATA_DIR: no embedded database in ${mistyped} (start \`metershare up\` there first, or give --data-dir)`,
    )
    expect(existsSync(mistyped)).toBe(false)
  })

  it('draws a bar of the work done', () => {
    expect(progressLine({ phase: 'counting', done: 1_200, total: 4_800 })).toBe('[########----------------------]  25 % counting datums 1,200/4,800')
    expect(progressLine({ phase: 'reading', done: 0, total: 1 })).toBe('[------------------------------]   0 % reading consents')
    expect(progressLine({ phase: 'posting', done: 0, total: 0 })).toBe('[##############################] 100 % posting journals')
  })
})
