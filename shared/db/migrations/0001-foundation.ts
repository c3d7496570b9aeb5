import { sql, type Kysely } from 'kysely'

// Migrations see the database as it was then: Kysely<any>, never application code.

export async function up(db: Kysely<any>): Promise<void> {
  await sql`CREATE EXTENSION IF NOT EXISTS btree_gist`.execute(db)

  await db.schema
    .createTable('parties')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind IN ('utility', 'third_party')`))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('api_key_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()

  await db.schema
    .createTable('households')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('email', 'text', (c) => c.notNull().unique().check(sql`email = lower(email)`))
    .addColumn('password_hash', 'text', (c) => c.notNull())
    .addColumn('api_key_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()

  await db.schema
    .createTable('meters')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('operator_id', 'text', (c) => c.notNull().references('parties.id'))
    .addColumn('commodity', 'text', (c) => c.notNull().check(sql`commodity IN ('electricity', 'gas')`))
    .addColumn('interval_minutes', 'integer', (c) => c.notNull().check(sql`interval_minutes IN (15, 30, 60)`))
    .addColumn('secret_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  await db.schema.createIndex('meters_operator_idx').on('meters').column('operator_id').execute()

  await db.schema
    .createTable('occupancies')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('meter_id', 'text', (c) => c.notNull().references('meters.id'))
    .addColumn('household_id', 'text', (c) => c.notNull().references('households.id'))
    .addColumn('valid_from', 'timestamptz', (c) => c.notNull())
    .addColumn('valid_until', 'timestamptz')
    .addColumn('period', sql`tstzrange`, (c) =>
      c.notNull().generatedAlwaysAs(sql`tstzrange(valid_from, valid_until, '[)')`).stored(),
    )
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('occupancies_bounds_check', sql`valid_until IS NULL OR valid_until > valid_from`)
    .execute()
  // The database itself refuses two households at one meter at the same instant.
  await sql`ALTER TABLE occupancies ADD CONSTRAINT occupancies_no_overlap
    EXCLUDE USING gist (meter_id WITH =, period WITH &&)`.execute(db)
  await db.schema.createIndex('occupancies_household_idx').on('occupancies').column('household_id').execute()

  await sql`CREATE TABLE readings (
    meter_id text NOT NULL,
    ts timestamptz NOT NULL,
    household_id text,
    values jsonb NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, ts)
  ) PARTITION BY RANGE (ts)`.execute(db)

  await db.schema
    .createTable('quarantine')
    .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn('meter_id', 'text', (c) => c.notNull())
    .addColumn('received_at', 'timestamptz', (c) => c.notNull())
    .addColumn('reason', 'text', (c) =>
      c
        .notNull()
        .check(
          sql`reason IN ('malformed_json', 'invalid_schema', 'unknown_obis', 'too_large', 'conflict', 'future_timestamp', 'index_regression')`,
        ),
    )
    .addColumn('ts', 'timestamptz')
    .addColumn('payload', 'bytea', (c) => c.notNull())
    .addColumn('payload_bytes', 'integer', (c) => c.notNull())
    .addColumn('detail', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  await db.schema.createIndex('quarantine_meter_received_idx').on('quarantine').columns(['meter_id', 'received_at', 'id']).execute()
  await db.schema.createIndex('quarantine_received_idx').on('quarantine').columns(['received_at', 'id']).execute()

  await sql`CREATE TABLE daily_rollups (
    meter_id text NOT NULL,
    household_id text,
    day date NOT NULL,
    readings_count integer NOT NULL CHECK (readings_count > 0),
    first_ts timestamptz NOT NULL,
    last_ts timestamptz NOT NULL,
    index_min jsonb NOT NULL,
    index_max jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT daily_rollups_key UNIQUE NULLS NOT DISTINCT (meter_id, day, household_id)
  ) WITH (fillfactor = 70)`.execute(db)
  // Each group commit rewrites the rollup rows it touches; room left in each page lets PostgreSQL
  // update them in place (HOT), without touching the indexes (no indexed column changes).
  await sql`CREATE INDEX daily_rollups_household_day_idx ON daily_rollups (household_id, day) WHERE household_id IS NOT NULL`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('daily_rollups').execute()
  await db.schema.dropTable('quarantine').execute()
  await db.schema.dropTable('readings').execute()
  await db.schema.dropTable('occupancies').execute()
  await db.schema.dropTable('meters').execute()
  await db.schema.dropTable('households').execute()
  await db.schema.dropTable('parties').execute()
}
