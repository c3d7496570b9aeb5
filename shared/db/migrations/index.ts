import type { Migration } from 'kysely/migration'
import * as m0001 from './0001-foundation.ts'
import * as m0002 from './0002-consents.ts'
import * as m0003 from './0003-settlement.ts'
import * as m0004 from './0004-sessions.ts'
import * as m0005 from './0005-mqtt-sessions.ts'
import * as m0006 from './0006-occupancy-consents-end.ts'
import * as m0007 from './0007-settings.ts'
import * as m0008 from './0008-offer-withdrawal.ts'
import * as m0009 from './0009-meter-retirement.ts'
import * as m0010 from './0010-rollups-by-interval-end.ts'
import * as m0011 from './0011-mqtt-sessions-by-principal.ts'
import * as m0012 from './0012-mqtt-sessions-seen.ts'
import * as m0013 from './0013-daily-publications-due.ts'
import * as m0014 from './0014-ingest-commit-tokens.ts'

/** Every migration, in order. A static list: adding one means adding a line here. */
export const migrations: Record<string, Migration> = {
  '0001-foundation': m0001,
  '0002-consents': m0002,
  '0003-settlement': m0003,
  '0004-sessions': m0004,
  '0005-mqtt-sessions': m0005,
  '0006-occupancy-consents-end': m0006,
  '0007-settings': m0007,
  '0008-offer-withdrawal': m0008,
  '0009-meter-retirement': m0009,
  '0010-rollups-by-interval-end': m0010,
  '0011-mqtt-sessions-by-principal': m0011,
  '0012-mqtt-sessions-seen': m0012,
  '0013-daily-publications-due': m0013,
  '0014-ingest-commit-tokens': m0014,
}
