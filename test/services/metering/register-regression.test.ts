import { expect, it } from 'vitest'
import { MeterTails, commitMessages, scriptedIngest, type IngestContext } from '../../../services/metering/ingest-service.ts'
import { validatePayload } from '../../../services/metering/ingest-validation.ts'
import { datumDayOf } from '../../../shared/calendar.ts'
import { DEFAULT_INGEST_LIMITS } from '../../../shared/config.ts'
import type { RegisterValues } from '../../../shared/wire.ts'
import { describeDatabases } from '../../support/database.ts'
import { seedHousehold, seedMeter, seedOccupancy } from '../../support/seed.ts'

const TZ = 'Europe/Paris'
const IMPORT = '1-0:1.8.0'
const EXPORT = '1-0:2.8.0'
const POWER = '1-0:1.7.0'
const at = (hhmm: string, day = '2026-10-20'): number => Date.parse(`${day}T${hhmm}:00Z`)

/**
 * A datum may carry some registers only (its power alone, or its export alone). An index is checked
 * against the nearest earlier and later readings that hold the same register, not against the
 * nearest readings of all: 100 after a stored 600 went in when a power reading stood between them.
 */
describeDatabases('index regressions register by register', (t) => {
  /** The ways a group finds a meter's neighbours: from this process's tails, or from the database (a new process). */
  const ways = [
    { name: 'tails', fresh: false, scripted: false },
    { name: 'database', fresh: true, scripted: false },
    ...(t.dialect === 'postgres' ? [{ name: 'database, as scripts', fresh: true, scripted: true }] : []),
  ]

  for (const way of ways) {
    it(`quarantines an index lower than the register's last one, or higher than its next, whatever readings lie between (${way.name})`, async () => {
      const meter = await seedMeter(t.db)
      await seedOccupancy(t.db, { meterId: meter, householdId: await seedHousehold(t.db), from: '2026-10-01T00:00:00Z' })
      const shared = new MeterTails()
      const context = (): IngestContext => ({
        dialect: t.dialect,
        datumDayOf: (ms) => datumDayOf(ms, TZ),
        tails: way.fresh ? new MeterTails() : shared,
        ...(way.scripted ? { scripted: scriptedIngest(t.handle) } : {}),
      })
      /** Commits a message of these datums in a group of its own; what became of its last. */
      const sendAll = async (datums: Array<[number, RegisterValues]>): Promise<string> => {
        const body = Buffer.from(JSON.stringify({ readings: datums.map(([ts, values]) => ({ ts: new Date(ts).toISOString(), values })) }))
        const message = validatePayload({ meterId: meter, commodity: 'electricity' }, body, at('23:00', '2026-10-21'), DEFAULT_INGEST_LIMITS)
        const [outcome] = (await commitMessages(t.db, [message], context())).outcomes
        const last = datums[datums.length - 1]![0]
        const refused = outcome!.quarantined.find((q) => q.tsMs === last)
        return refused === undefined ? 'stored' : `${refused.reason}: ${refused.detail}`
      }
      const send = (ts: number, values: RegisterValues): Promise<string> => sendAll([[ts, values]])
      expect(await send(at('00:00'), { [IMPORT]: 500 })).toBe('stored')
      expect(await send(at('01:00'), { [IMPORT]: 600 })).toBe('stored')
      expect(await send(at('02:00'), { [EXPORT]: 40 })).toBe('stored')
      expect(await send(at('02:30'), { [POWER]: 5 })).toBe('stored')
      expect(await send(at('03:00'), { [IMPORT]: 100 })).toBe(`index_regression: ${IMPORT}: 100 is lower than 600 at 2026-10-20T01:00:00Z`)
      expect(await send(at('03:30'), { [EXPORT]: 30 })).toBe(`index_regression: ${EXPORT}: 30 is lower than 40 at 2026-10-20T02:00:00Z`)
      expect(await send(at('04:00'), { [IMPORT]: 700, [EXPORT]: 45 })).toBe('stored')
      // A message whose last datum lacks the import: its earlier datum's import bounds the next message.
      expect(await sendAll([[at('05:00'), { [IMPORT]: 800 }], [at('05:30'), { [POWER]: 3 }]])).toBe('stored')
      expect(await send(at('06:00'), { [IMPORT]: 750 })).toBe(`index_regression: ${IMPORT}: 750 is lower than 800 at 2026-10-20T05:00:00Z`)
      // Later readings bound an earlier one the same way: 18:00 after power at 20:00, with 300 of the import stored the day after.
      expect(await send(at('10:00', '2026-10-21'), { [IMPORT]: 900 })).toBe('stored')
      expect(await send(at('20:00'), { [POWER]: 7 })).toBe('stored')
      expect(await send(at('18:00'), { [IMPORT]: 1000 })).toBe(`index_regression: ${IMPORT}: 1000 is higher than 900 at the later 2026-10-21T10:00:00Z`)
      expect(await send(at('19:00'), { [IMPORT]: 800 })).toBe('stored')
    })
  }
})
