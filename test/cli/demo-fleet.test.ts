import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { expect, it } from 'vitest'
import { createDemoWorld } from '../../cli/demo-world.ts'
import { demoMetersInService, resumePoint } from '../../cli/system.ts'
import { renewMeterSecret, retireMeter } from '../../services/directory/directory-service.ts'
import { describeDatabases } from '../support/database.ts'
import { seedReadings } from '../support/seed.ts'

describeDatabases('the demo fleet started again', (t) => {
  it('leaves out a meter retired and one whose secret was renewed, and resumes from the meters it keeps', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'metershare-demo-'))
    try {
      const world = await createDemoWorld(t.db, { dataDir, timezone: 'Europe/Paris', now: new Date('2026-11-15T12:00:00Z') })
      const [retired, renewed, ...others] = world.meters
      // Every meter has data up to 1 November but the two, stopped in October.
      for (const m of others) await seedReadings(t.db, m.meterId, [{ ts: '2026-11-01T00:00:00Z', values: { '1-0:1.8.0': 1 } }], 'Europe/Paris')
      for (const m of [retired!, renewed!]) await seedReadings(t.db, m.meterId, [{ ts: '2026-10-10T00:00:00Z', values: { '1-0:1.8.0': 1 } }], 'Europe/Paris')
      expect((await resumePoint(t.handle, world)).fromMs).toBe(Date.parse('2026-10-10T00:00:00Z'))

      await retireMeter(t.db, retired!.meterId, new Date())
      await renewMeterSecret(t.db, renewed!.meterId)
      const kept = await demoMetersInService(t.handle, world)
      expect(kept.meters.map((m) => m.meterId)).toEqual(others.map((m) => m.meterId))
      const resume = await resumePoint(t.handle, kept)
      expect(resume.fromMs).toBe(Date.parse('2026-11-01T00:00:00Z'))
      // Each meter's registers as last stored: the fleet carries its indexes on from them.
      expect(resume.registers.get(others[0]!.meterId)).toEqual({ '1-0:1.8.0': 1 })
      expect(resume.after.get(others[0]!.meterId)).toBe(Date.parse('2026-11-01T00:00:00Z'))
      expect(await demoMetersInService(t.handle, kept)).toBe(kept)
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 60_000)
})
