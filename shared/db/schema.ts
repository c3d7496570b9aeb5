import type { AccessLogTable } from './tables/access-log.ts'
import type { ConsentLogTable } from './tables/consent-log.ts'
import type { ConsentMetersTable } from './tables/consent-meters.ts'
import type { ConsentsTable } from './tables/consents.ts'
import type { DailyPublicationsDueTable } from './tables/daily-publications-due.ts'
import type { DailyRollupsTable } from './tables/daily-rollups.ts'
import type { HouseholdsTable } from './tables/households.ts'
import type { IngestCommitTokensTable } from './tables/ingest-commit-tokens.ts'
import type { LedgerAccountsTable } from './tables/ledger-accounts.ts'
import type { LedgerEntriesTable } from './tables/ledger-entries.ts'
import type { LedgerJournalsTable } from './tables/ledger-journals.ts'
import type { MetersTable } from './tables/meters.ts'
import type { OccupanciesTable } from './tables/occupancies.ts'
import type { OfferSharesTable } from './tables/offer-shares.ts'
import type { OffersTable } from './tables/offers.ts'
import type { PartiesTable } from './tables/parties.ts'
import type { PayoutsTable } from './tables/payouts.ts'
import type { QuarantineTable } from './tables/quarantine.ts'
import type { ReadingsTable } from './tables/readings.ts'
import type { SessionsTable } from './tables/sessions.ts'
import type { MqttSessionsTable } from './tables/mqtt-sessions.ts'
import type { SettlementLinesTable } from './tables/settlement-lines.ts'
import type { SettlementRunsTable } from './tables/settlement-runs.ts'
import type { SettingsTable } from './tables/settings.ts'

export interface Database {
  settings: SettingsTable
  parties: PartiesTable
  households: HouseholdsTable
  meters: MetersTable
  occupancies: OccupanciesTable
  readings: ReadingsTable
  quarantine: QuarantineTable
  daily_rollups: DailyRollupsTable
  daily_publications_due: DailyPublicationsDueTable
  ingest_commit_tokens: IngestCommitTokensTable
  offers: OffersTable
  offer_shares: OfferSharesTable
  consents: ConsentsTable
  consent_meters: ConsentMetersTable
  consent_log: ConsentLogTable
  access_log: AccessLogTable
  settlement_runs: SettlementRunsTable
  settlement_lines: SettlementLinesTable
  ledger_accounts: LedgerAccountsTable
  ledger_journals: LedgerJournalsTable
  ledger_entries: LedgerEntriesTable
  payouts: PayoutsTable
  sessions: SessionsTable
  mqtt_sessions: MqttSessionsTable
}
