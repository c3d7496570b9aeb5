import { sql, type Kysely } from 'kysely'

// Migrations see the database as it was then: Kysely<any>, never application code.

const GRANULARITY_CHECK = sql`granularity IN ('load_curve', 'daily', 'monthly')`
const BPS_TOTAL = 10_000

export async function up(db: Kysely<any>): Promise<void> {
  // Offers are immutable once published: a consent shows a price and a split before it is
  // granted, and settlement must find the same terms later. A new price is a new offer.
  await db.schema
    .createTable('offers')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('recipient_id', 'text', (c) => c.notNull().references('parties.id'))
    .addColumn('purpose', 'text', (c) => c.notNull().check(sql`length(purpose) BETWEEN 1 AND 500`))
    .addColumn('granularity', 'text', (c) => c.notNull().check(GRANULARITY_CHECK))
    .addColumn('price_micros_per_datum', 'bigint', (c) => c.notNull().check(sql`price_micros_per_datum >= 0`))
    .addColumn('household_bps', 'integer', (c) => c.notNull().check(sql`household_bps BETWEEN 0 AND ${sql.lit(BPS_TOTAL)}`))
    .addColumn('operator_bps', 'integer', (c) => c.notNull().check(sql`operator_bps BETWEEN 0 AND ${sql.lit(BPS_TOTAL)}`))
    .addColumn('platform_bps', 'integer', (c) => c.notNull().check(sql`platform_bps BETWEEN 0 AND ${sql.lit(BPS_TOTAL)}`))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  await db.schema.createIndex('offers_recipient_idx').on('offers').column('recipient_id').execute()

  await db.schema
    .createTable('offer_shares')
    .addColumn('offer_id', 'text', (c) => c.notNull().references('offers.id').onDelete('cascade'))
    .addColumn('party_id', 'text', (c) => c.notNull().references('parties.id'))
    .addColumn('bps', 'integer', (c) => c.notNull().check(sql`bps BETWEEN 0 AND ${sql.lit(BPS_TOTAL)}`))
    .addPrimaryKeyConstraint('offer_shares_pkey', ['offer_id', 'party_id'])
    .execute()

  // The split sums to exactly 10,000 basis points, checked at commit (the offer and its
  // shares are written by several statements of one transaction).
  await sql`CREATE FUNCTION metershare_check_offer_split(p_offer_id text) RETURNS void
    LANGUAGE plpgsql AS $$
    DECLARE total bigint;
    BEGIN
      SELECT o.household_bps + o.operator_bps + o.platform_bps
             + coalesce((SELECT sum(s.bps) FROM offer_shares s WHERE s.offer_id = o.id), 0)
        INTO total FROM offers o WHERE o.id = p_offer_id;
      IF FOUND AND total <> ${sql.lit(BPS_TOTAL)} THEN
        RAISE EXCEPTION 'offer % split sums to % basis points, not 10000', p_offer_id, total
          USING ERRCODE = 'check_violation', CONSTRAINT = 'offers_split_total';
      END IF;
    END $$`.execute(db)
  await sql`CREATE FUNCTION metershare_offers_split_trigger() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM metershare_check_offer_split(NEW.id);
      RETURN NULL;
    END $$`.execute(db)
  await sql`CREATE FUNCTION metershare_offer_shares_split_trigger() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        PERFORM metershare_check_offer_split(OLD.offer_id);
      ELSE
        PERFORM metershare_check_offer_split(NEW.offer_id);
      END IF;
      RETURN NULL;
    END $$`.execute(db)
  await sql`CREATE CONSTRAINT TRIGGER offers_split_total AFTER INSERT OR UPDATE ON offers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION metershare_offers_split_trigger()`.execute(db)
  await sql`CREATE CONSTRAINT TRIGGER offer_shares_split_total AFTER INSERT OR UPDATE OR DELETE ON offer_shares
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION metershare_offer_shares_split_trigger()`.execute(db)

  await sql`CREATE FUNCTION metershare_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
    END $$`.execute(db)
  await sql`CREATE TRIGGER offers_immutable BEFORE UPDATE ON offers
    FOR EACH ROW EXECUTE FUNCTION metershare_refuse_change()`.execute(db)
  await sql`CREATE TRIGGER offer_shares_immutable BEFORE UPDATE ON offer_shares
    FOR EACH ROW EXECUTE FUNCTION metershare_refuse_change()`.execute(db)

  await db.schema
    .createTable('consents')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('household_id', 'text', (c) => c.notNull().references('households.id'))
    .addColumn('recipient_id', 'text', (c) => c.notNull().references('parties.id'))
    .addColumn('offer_id', 'text', (c) => c.references('offers.id'))
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind IN ('offer', 'legal_basis')`))
    .addColumn('purpose', 'text', (c) => c.notNull().check(sql`length(purpose) BETWEEN 1 AND 500`))
    .addColumn('granularity', 'text', (c) => c.notNull().check(GRANULARITY_CHECK))
    .addColumn('all_meters', 'boolean', (c) => c.notNull())
    .addColumn('valid_from', 'timestamptz', (c) => c.notNull())
    .addColumn('valid_until', 'timestamptz', (c) => c.notNull())
    .addColumn('data_from', 'timestamptz', (c) => c.notNull())
    .addColumn('data_until', 'timestamptz')
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sql`status IN ('active', 'revoked', 'expired', 'ended_by_move_out')`),
    )
    .addColumn('status_changed_at', 'timestamptz', (c) => c.notNull())
    .addColumn('revoked_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('consents_kind_offer_check', sql`(kind = 'offer') = (offer_id IS NOT NULL)`)
    .addCheckConstraint('consents_legal_basis_monthly_check', sql`kind <> 'legal_basis' OR granularity = 'monthly'`)
    // At most three years; computed in UTC so that the session's time zone cannot change the answer.
    .addCheckConstraint(
      'consents_validity_check',
      sql`valid_until > valid_from
        AND valid_until <= ((valid_from AT TIME ZONE 'UTC') + interval '3 years') AT TIME ZONE 'UTC'`,
    )
    .addCheckConstraint('consents_data_window_check', sql`data_until IS NULL OR data_until > data_from`)
    .addCheckConstraint('consents_revoked_check', sql`(status = 'revoked') = (revoked_at IS NOT NULL)`)
    .execute()
  await db.schema.createIndex('consents_household_idx').on('consents').columns(['household_id', 'valid_from']).execute()
  await db.schema.createIndex('consents_recipient_idx').on('consents').columns(['recipient_id', 'valid_from']).execute()
  await sql`CREATE INDEX consents_active_until_idx ON consents (valid_until) WHERE status = 'active'`.execute(db)

  // A consent's terms never change after it is granted; only its status moves on, from active, once.
  await sql`CREATE FUNCTION metershare_consents_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF (NEW.id, NEW.household_id, NEW.recipient_id, NEW.offer_id, NEW.kind, NEW.purpose, NEW.granularity,
          NEW.all_meters, NEW.valid_from, NEW.valid_until, NEW.data_from, NEW.data_until, NEW.created_at)
         IS DISTINCT FROM
         (OLD.id, OLD.household_id, OLD.recipient_id, OLD.offer_id, OLD.kind, OLD.purpose, OLD.granularity,
          OLD.all_meters, OLD.valid_from, OLD.valid_until, OLD.data_from, OLD.data_until, OLD.created_at) THEN
        RAISE EXCEPTION 'consent % terms are immutable', OLD.id USING ERRCODE = 'restrict_violation';
      END IF;
      IF NEW.status IS DISTINCT FROM OLD.status AND OLD.status <> 'active' THEN
        RAISE EXCEPTION 'consent % is % and cannot become %', OLD.id, OLD.status, NEW.status
          USING ERRCODE = 'restrict_violation';
      END IF;
      RETURN NEW;
    END $$`.execute(db)
  await sql`CREATE TRIGGER consents_guard BEFORE UPDATE ON consents
    FOR EACH ROW EXECUTE FUNCTION metershare_consents_guard()`.execute(db)

  // The meters a consent covers; an "all meters" consent lists those the household occupied at grant.
  await db.schema
    .createTable('consent_meters')
    .addColumn('consent_id', 'text', (c) => c.notNull().references('consents.id'))
    .addColumn('meter_id', 'text', (c) => c.notNull().references('meters.id'))
    .addPrimaryKeyConstraint('consent_meters_pkey', ['consent_id', 'meter_id'])
    .execute()
  await db.schema.createIndex('consent_meters_meter_idx').on('consent_meters').column('meter_id').execute()
  await sql`CREATE TRIGGER consent_meters_immutable BEFORE UPDATE OR DELETE ON consent_meters
    FOR EACH ROW EXECUTE FUNCTION metershare_refuse_change()`.execute(db)

  await db.schema
    .createTable('consent_log')
    .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn('consent_id', 'text', (c) => c.notNull().references('consents.id'))
    .addColumn('household_id', 'text', (c) => c.notNull().references('households.id'))
    .addColumn('event', 'text', (c) =>
      c.notNull().check(sql`event IN ('granted', 'revoked', 'expired', 'ended_by_move_out')`),
    )
    .addColumn('meter_id', 'text', (c) => c.references('meters.id'))
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('at', 'timestamptz', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('consent_log_meter_check', sql`(event = 'ended_by_move_out') = (meter_id IS NOT NULL)`)
    .execute()
  await db.schema.createIndex('consent_log_household_idx').on('consent_log').columns(['household_id', 'at', 'id']).execute()
  // Each event happens once per consent (per meter for a move-out), even with several sweepers.
  await sql`CREATE UNIQUE INDEX consent_log_once_idx ON consent_log (consent_id, event) WHERE meter_id IS NULL`.execute(db)
  await sql`CREATE UNIQUE INDEX consent_log_once_per_meter_idx ON consent_log (consent_id, meter_id) WHERE meter_id IS NOT NULL`.execute(
    db,
  )
  await sql`CREATE TRIGGER consent_log_append_only BEFORE UPDATE OR DELETE ON consent_log
    FOR EACH ROW EXECUTE FUNCTION metershare_refuse_change()`.execute(db)

  await db.schema
    .createTable('access_log')
    .addColumn('recipient_id', 'text', (c) => c.notNull().references('parties.id'))
    .addColumn('household_id', 'text', (c) => c.notNull().references('households.id'))
    .addColumn('meter_id', 'text', (c) => c.notNull().references('meters.id'))
    .addColumn('day', 'date', (c) => c.notNull())
    .addColumn('channel', 'text', (c) => c.notNull().check(sql`channel IN ('mqtt', 'http')`))
    .addColumn('datums', 'bigint', (c) => c.notNull().check(sql`datums >= 0`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('access_log_pkey', ['recipient_id', 'household_id', 'meter_id', 'day', 'channel'])
    .execute()
  await db.schema.createIndex('access_log_household_day_idx').on('access_log').columns(['household_id', 'day']).execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('access_log').execute()
  await db.schema.dropTable('consent_log').execute()
  await db.schema.dropTable('consent_meters').execute()
  await db.schema.dropTable('consents').execute()
  await db.schema.dropTable('offer_shares').execute()
  await db.schema.dropTable('offers').execute()
  await sql`DROP FUNCTION IF EXISTS metershare_consents_guard()`.execute(db)
  await sql`DROP FUNCTION IF EXISTS metershare_refuse_change()`.execute(db)
  await sql`DROP FUNCTION IF EXISTS metershare_offer_shares_split_trigger()`.execute(db)
  await sql`DROP FUNCTION IF EXISTS metershare_offers_split_trigger()`.execute(db)
  await sql`DROP FUNCTION IF EXISTS metershare_check_offer_split(text)`.execute(db)
}
