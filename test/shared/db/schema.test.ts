import { sql, type SelectType } from 'kysely'
import { expect, it } from 'vitest'
import type { Database } from '../../../shared/db/schema.ts'
import { describeDatabases } from '../../support/database.ts'

/**
 * The hand-written table types must match the migrated schema. The map below is checked by
 * the compiler against the types (every column, nullability derived from the type), and by
 * this test against the database.
 */
type Nullability<T> = { [K in keyof T]-?: null extends SelectType<T[K]> ? 'null' : 'not null' }
type SchemaMap = { [Table in keyof Database]: Nullability<Database[Table]> }

export const SCHEMA: SchemaMap = {
  parties: { id: 'not null', kind: 'not null', name: 'not null', api_key_hash: 'not null', created_at: 'not null' },
  households: {
    id: 'not null',
    name: 'not null',
    email: 'not null',
    password_hash: 'not null',
    api_key_hash: 'not null',
    created_at: 'not null',
  },
  meters: {
    id: 'not null',
    operator_id: 'not null',
    commodity: 'not null',
    interval_minutes: 'not null',
    secret_hash: 'not null',
    created_at: 'not null',
    retired_at: 'null',
  },
  occupancies: {
    id: 'not null',
    meter_id: 'not null',
    household_id: 'not null',
    valid_from: 'not null',
    valid_until: 'null',
    consents_end_at: 'null',
    period: 'not null',
    created_at: 'not null',
  },
  readings: { meter_id: 'not null', ts: 'not null', household_id: 'null', values: 'not null', ingested_at: 'not null' },
  quarantine: {
    id: 'not null',
    meter_id: 'not null',
    received_at: 'not null',
    reason: 'not null',
    ts: 'null',
    payload: 'not null',
    payload_bytes: 'not null',
    detail: 'not null',
    created_at: 'not null',
  },
  daily_rollups: {
    meter_id: 'not null',
    household_id: 'null',
    day: 'not null',
    readings_count: 'not null',
    first_ts: 'not null',
    last_ts: 'not null',
    index_min: 'not null',
    index_max: 'not null',
    updated_at: 'not null',
  },
  daily_publications_due: { id: 'not null', meter_id: 'not null', household_id: 'not null', day: 'not null', values: 'not null', created_at: 'not null' },
  ingest_commit_tokens: { token: 'not null', committed_at: 'not null' },
  offers: {
    id: 'not null',
    recipient_id: 'not null',
    purpose: 'not null',
    granularity: 'not null',
    price_micros_per_datum: 'not null',
    household_bps: 'not null',
    operator_bps: 'not null',
    platform_bps: 'not null',
    created_at: 'not null',
    withdrawn_at: 'null',
  },
  offer_shares: { offer_id: 'not null', party_id: 'not null', bps: 'not null' },
  consents: {
    id: 'not null',
    household_id: 'not null',
    recipient_id: 'not null',
    offer_id: 'null',
    kind: 'not null',
    purpose: 'not null',
    granularity: 'not null',
    all_meters: 'not null',
    valid_from: 'not null',
    valid_until: 'not null',
    data_from: 'not null',
    data_until: 'null',
    status: 'not null',
    status_changed_at: 'not null',
    revoked_at: 'null',
    created_at: 'not null',
  },
  consent_meters: { consent_id: 'not null', meter_id: 'not null' },
  consent_log: {
    id: 'not null',
    consent_id: 'not null',
    household_id: 'not null',
    event: 'not null',
    meter_id: 'null',
    actor: 'not null',
    at: 'not null',
    created_at: 'not null',
  },
  access_log: {
    recipient_id: 'not null',
    household_id: 'not null',
    meter_id: 'not null',
    day: 'not null',
    channel: 'not null',
    datums: 'not null',
    updated_at: 'not null',
  },
  settlement_runs: {
    id: 'not null',
    month: 'not null',
    seq: 'not null',
    posting_month: 'not null',
    watermark: 'not null',
    input_hash: 'not null',
    lines: 'not null',
    data_count: 'not null',
    gross_micros: 'not null',
    household_micros: 'not null',
    operators_micros: 'not null',
    platform_micros: 'not null',
    third_parties_micros: 'not null',
    journals: 'not null',
    payouts: 'not null',
    started_at: 'not null',
    created_at: 'not null',
  },
  settlement_lines: {
    run_id: 'not null',
    month: 'not null',
    consent_id: 'not null',
    household_id: 'not null',
    recipient_id: 'not null',
    offer_id: 'null',
    granularity: 'not null',
    data_count: 'not null',
    gross_micros: 'not null',
    household_share_micros: 'not null',
  },
  ledger_accounts: { id: 'not null', kind: 'not null', owner_id: 'null', created_at: 'not null' },
  ledger_journals: {
    id: 'not null',
    kind: 'not null',
    run_id: 'not null',
    posting_month: 'not null',
    for_month: 'not null',
    created_txid: 'not null',
    created_at: 'not null',
  },
  ledger_entries: { id: 'not null', journal_id: 'not null', account_id: 'not null', amount_micros: 'not null' },
  payouts: {
    id: 'not null',
    household_id: 'not null',
    month: 'not null',
    amount_micros: 'not null',
    status: 'not null',
    journal_id: 'not null',
    run_id: 'not null',
    created_at: 'not null',
  },
  sessions: { id: 'not null', household_id: 'not null', token_hash: 'not null', created_at: 'not null', expires_at: 'not null' },
  mqtt_sessions: { client_id: 'not null', principal: 'not null', created_at: 'not null', seen_at: 'not null' },
  settings: { key: 'not null', value: 'not null', set_at: 'not null' },
}

describeDatabases('table types', (t) => {
  it('match the migrated schema column for column, with the same nullability', async () => {
    const rows = (
      await sql<{ table_name: string; column_name: string; is_nullable: string }>`
        SELECT c.table_name, c.column_name, c.is_nullable FROM information_schema.columns c
        JOIN pg_class k ON k.relname = c.table_name AND NOT k.relispartition
        WHERE c.table_schema = 'public' AND c.table_name NOT LIKE 'schema_migrations%'`.execute(t.db)
    ).rows
    const actual: Record<string, Record<string, string>> = {}
    for (const r of rows) (actual[r.table_name] ??= {})[r.column_name] = r.is_nullable === 'YES' ? 'null' : 'not null'
    expect(actual).toEqual(SCHEMA)
  })
})
