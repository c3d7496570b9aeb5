import { MeterTails, commitMessages } from '../../../services/metering/ingest-service.ts'
import { validatePayload } from '../../../services/metering/ingest-validation.ts'
import { datumDayOf } from '../../../shared/calendar.ts'
import { envToConfig } from '../../../shared/config.ts'
import type { TestDatabase } from '../../support/database.ts'

/** Feeds a payload through the real ingest rules (validation, then the commit transaction). */
export async function ingest(t: TestDatabase, meterId: string, payload: unknown, receivedAt: Date): Promise<void> {
  const config = envToConfig({})
  const bytes = Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload), 'utf8')
  const message = validatePayload({ meterId, commodity: 'electricity' }, bytes, receivedAt.getTime(), config.ingest)
  await commitMessages(t.db, [message], { dialect: t.dialect, datumDayOf: (ms) => datumDayOf(ms, config.timezone), tails: new MeterTails() })
}
