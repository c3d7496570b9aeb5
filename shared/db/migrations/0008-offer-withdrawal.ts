import { sql, type Kysely } from 'kysely'

// Migrations see the database as it was then: Kysely<any>, never application code.

export async function up(db: Kysely<any>): Promise<void> {
  // An offer may be withdrawn: it then takes no new consents, and the consents that accepted it
  // keep its terms. Its terms still never change: the one change allowed is withdrawn_at, once,
  // from null to an instant.
  await db.schema.alterTable('offers').addColumn('withdrawn_at', 'timestamptz').execute()
  await sql`CREATE FUNCTION metershare_offers_withdraw_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF OLD.withdrawn_at IS NULL AND NEW.withdrawn_at IS NOT NULL
         AND (NEW.id, NEW.recipient_id, NEW.purpose, NEW.granularity, NEW.price_micros_per_datum,
              NEW.household_bps, NEW.operator_bps, NEW.platform_bps, NEW.created_at)
             IS NOT DISTINCT FROM
             (OLD.id, OLD.recipient_id, OLD.purpose, OLD.granularity, OLD.price_micros_per_datum,
              OLD.household_bps, OLD.operator_bps, OLD.platform_bps, OLD.created_at) THEN
        RETURN NEW;
      END IF;
      RAISE EXCEPTION 'offers are immutable (only withdrawn, once): % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
    END $$`.execute(db)
  await sql`DROP TRIGGER offers_immutable ON offers`.execute(db)
  await sql`CREATE TRIGGER offers_immutable BEFORE UPDATE ON offers
    FOR EACH ROW EXECUTE FUNCTION metershare_offers_withdraw_only()`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TRIGGER offers_immutable ON offers`.execute(db)
  await sql`CREATE TRIGGER offers_immutable BEFORE UPDATE ON offers
    FOR EACH ROW EXECUTE FUNCTION metershare_refuse_change()`.execute(db)
  await sql`DROP FUNCTION metershare_offers_withdraw_only()`.execute(db)
  await db.schema.alterTable('offers').dropColumn('withdrawn_at').execute()
}
