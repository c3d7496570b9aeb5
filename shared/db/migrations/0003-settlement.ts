import { sql, type Kysely } from 'kysely'

// Migrations see the database as it was then: Kysely<any>, never application code.

const MONTH_CHECK = (column: string) => sql.raw(`${column} ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'`)

export async function up(db: Kysely<any>): Promise<void> {
  // Settlement reads a month of daily rollups in one pass: rows arrive roughly in day order,
  // so a block-range index on the day finds them at almost no cost to the ingest path.
  await sql`CREATE INDEX daily_rollups_day_brin ON daily_rollups USING brin (day)`.execute(db)

  // One row per settlement run that posted something or closed its month. `month` is the
  // month settled; `posting_month` the month its journals are booked in (the month itself
  // for the run that closes it, the then current month for later runs). Runs of one month
  // are numbered: the unique (month, seq) stops two racing runs from both posting.
  await db.schema
    .createTable('settlement_runs')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('month', 'text', (c) => c.notNull().check(MONTH_CHECK('month')))
    .addColumn('seq', 'integer', (c) => c.notNull().check(sql`seq > 0`))
    .addColumn('posting_month', 'text', (c) => c.notNull().check(MONTH_CHECK('posting_month')))
    .addColumn('watermark', 'timestamptz', (c) => c.notNull())
    .addColumn('input_hash', 'text', (c) => c.notNull())
    .addColumn('lines', 'integer', (c) => c.notNull().check(sql`lines >= 0`))
    .addColumn('data_count', 'bigint', (c) => c.notNull().check(sql`data_count >= 0`))
    .addColumn('gross_micros', 'bigint', (c) => c.notNull().check(sql`gross_micros >= 0`))
    // The gross's split by role, as this run computed it.
    .addColumn('household_micros', 'bigint', (c) => c.notNull())
    .addColumn('operators_micros', 'bigint', (c) => c.notNull())
    .addColumn('platform_micros', 'bigint', (c) => c.notNull())
    .addColumn('third_parties_micros', 'bigint', (c) => c.notNull())
    .addColumn('journals', 'integer', (c) => c.notNull().check(sql`journals >= 0`))
    .addColumn('payouts', 'integer', (c) => c.notNull().check(sql`payouts >= 0`))
    .addColumn('started_at', 'timestamptz', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('settlement_runs_month_seq_key', ['month', 'seq'])
    .addCheckConstraint('settlement_runs_posting_check', sql`(seq = 1) = (posting_month = month) AND posting_month >= month`)
    .addCheckConstraint(
      'settlement_runs_roles_check',
      sql`household_micros + operators_micros + platform_micros + third_parties_micros = gross_micros`,
    )
    .execute()

  // The state of a (month, consent) line as a run computed it, written only when it changed.
  // Derived rows written from what the same transaction read: no foreign keys but the run's
  // (tens of thousands of rows per run; the rows they name are never deleted).
  await db.schema
    .createTable('settlement_lines')
    .addColumn('run_id', 'text', (c) => c.notNull().references('settlement_runs.id'))
    .addColumn('month', 'text', (c) => c.notNull().check(MONTH_CHECK('month')))
    .addColumn('consent_id', 'text', (c) => c.notNull())
    .addColumn('household_id', 'text', (c) => c.notNull())
    .addColumn('recipient_id', 'text', (c) => c.notNull())
    .addColumn('offer_id', 'text')
    .addColumn('granularity', 'text', (c) => c.notNull().check(sql`granularity IN ('load_curve', 'daily', 'monthly')`))
    .addColumn('data_count', 'bigint', (c) => c.notNull().check(sql`data_count >= 0`))
    .addColumn('gross_micros', 'bigint', (c) => c.notNull().check(sql`gross_micros >= 0`))
    .addColumn('household_share_micros', 'bigint', (c) => c.notNull().check(sql`household_share_micros >= 0`))
    // One line per consent and run; the key also finds a month's lines, consent by consent.
    .addPrimaryKeyConstraint('settlement_lines_pkey', ['month', 'consent_id', 'run_id'])
    .addCheckConstraint('settlement_lines_share_check', sql`household_share_micros <= gross_micros`)
    .execute()
  await db.schema.createIndex('settlement_lines_household_idx').on('settlement_lines').columns(['household_id', 'month']).execute()
  await db.schema.createIndex('settlement_lines_recipient_idx').on('settlement_lines').columns(['recipient_id', 'month']).execute()

  // Accounts: a household's earnings, a party's shares (operator or third party), what a
  // recipient owes (its receivable), the platform's share, and the payouts sent out.
  await db.schema
    .createTable('ledger_accounts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind IN ('household', 'party', 'receivable', 'platform', 'payouts')`))
    .addColumn('owner_id', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('ledger_accounts_owner_check', sql`(kind IN ('platform', 'payouts')) = (owner_id IS NULL)`)
    .execute()

  // A run posts one journal of each kind it needs: its `settlement` (the closing run) or
  // `adjustment` journal, one entry per account whose total for the month changes, and, when
  // it closes a month, its `payout` journal, paying every household due at once.
  await db.schema
    .createTable('ledger_journals')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind IN ('settlement', 'adjustment', 'payout')`))
    .addColumn('run_id', 'text', (c) => c.notNull().references('settlement_runs.id'))
    .addColumn('posting_month', 'text', (c) => c.notNull().check(MONTH_CHECK('posting_month')))
    .addColumn('for_month', 'text', (c) => c.notNull().check(MONTH_CHECK('for_month')))
    // The transaction that created the journal: entries may be added to it in that one only.
    .addColumn('created_txid', 'bigint', (c) => c.notNull().defaultTo(sql`txid_current()`))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint(
      'ledger_journals_month_check',
      sql`CASE WHEN kind = 'adjustment' THEN for_month < posting_month ELSE for_month = posting_month END`,
    )
    .execute()
  await db.schema.createIndex('ledger_journals_for_month_idx').on('ledger_journals').column('for_month').execute()
  await db.schema.createIndex('ledger_journals_posting_idx').on('ledger_journals').column('posting_month').execute()

  // Signed amounts: positive credits the account (the platform owes its holder more),
  // negative debits it; a recipient's receivable goes negative by what it owes.
  await db.schema
    .createTable('ledger_entries')
    .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn('journal_id', 'text', (c) => c.notNull())
    .addColumn('account_id', 'text', (c) => c.notNull())
    .addColumn('amount_micros', 'bigint', (c) => c.notNull().check(sql`amount_micros <> 0`))
    .addUniqueConstraint('ledger_entries_journal_account_key', ['journal_id', 'account_id'])
    .execute()
  await db.schema.createIndex('ledger_entries_account_idx').on('ledger_entries').column('account_id').execute()

  // Every journal sums to zero and has at least two entries, checked by the database at the
  // commit of the transaction that created it (a deferred constraint trigger, once per
  // journal). Entries may be added only in that transaction, to a journal and accounts that
  // exist: checked once per statement over its new rows, which stands in for per-row
  // foreign keys (a run writes about a hundred thousand entries; journals and accounts are
  // never deleted).
  await sql`CREATE FUNCTION metershare_ledger_journals_balanced_trigger() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE total numeric; n bigint;
    BEGIN
      SELECT coalesce(sum(amount_micros), 0), count(*) INTO total, n FROM ledger_entries WHERE journal_id = NEW.id;
      IF total <> 0 THEN
        RAISE EXCEPTION 'journal % is unbalanced: its entries sum to % micro-euros', NEW.id, total
          USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_journals_balanced';
      END IF;
      IF n < 2 THEN
        RAISE EXCEPTION 'journal % has % entries, a journal needs at least two', NEW.id, n
          USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_journals_balanced';
      END IF;
      RETURN NULL;
    END $$`.execute(db)
  await sql`CREATE CONSTRAINT TRIGGER ledger_journals_balanced AFTER INSERT ON ledger_journals
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION metershare_ledger_journals_balanced_trigger()`.execute(db)
  await sql`CREATE FUNCTION metershare_ledger_entries_guard() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE bad text;
    BEGIN
      SELECT a.journal_id INTO bad FROM added a LEFT JOIN ledger_journals j ON j.id = a.journal_id
        WHERE j.id IS NULL OR j.created_txid <> txid_current() LIMIT 1;
      IF FOUND THEN
        RAISE EXCEPTION 'journal % is closed or does not exist: entries are added only by the transaction that creates the journal', bad
          USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_entries_journal';
      END IF;
      SELECT a.account_id INTO bad FROM added a LEFT JOIN ledger_accounts c ON c.id = a.account_id WHERE c.id IS NULL LIMIT 1;
      IF FOUND THEN
        RAISE EXCEPTION 'ledger account % does not exist', bad
          USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_entries_account';
      END IF;
      RETURN NULL;
    END $$`.execute(db)
  await sql`CREATE TRIGGER ledger_entries_guard AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION metershare_ledger_entries_guard()`.execute(db)

  // A payout per household and month at most; `journal_id` is the run's payout journal.
  await db.schema
    .createTable('payouts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('household_id', 'text', (c) => c.notNull())
    .addColumn('month', 'text', (c) => c.notNull().check(MONTH_CHECK('month')))
    .addColumn('amount_micros', 'bigint', (c) => c.notNull().check(sql`amount_micros > 0`))
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status IN ('paid')`))
    .addColumn('journal_id', 'text', (c) => c.notNull())
    .addColumn('run_id', 'text', (c) => c.notNull().references('settlement_runs.id'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('payouts_household_month_key', ['household_id', 'month'])
    .execute()

  // Append-only: what was posted stays posted; corrections are new journals.
  for (const table of ['settlement_runs', 'settlement_lines', 'ledger_accounts', 'ledger_journals', 'ledger_entries', 'payouts']) {
    await sql`CREATE TRIGGER ${sql.id(`${table}_append_only`)} BEFORE UPDATE OR DELETE ON ${sql.id(table)}
      FOR EACH ROW EXECUTE FUNCTION metershare_refuse_change()`.execute(db)
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('payouts').execute()
  await db.schema.dropTable('ledger_entries').execute()
  await db.schema.dropTable('ledger_journals').execute()
  await db.schema.dropTable('ledger_accounts').execute()
  await db.schema.dropTable('settlement_lines').execute()
  await db.schema.dropTable('settlement_runs').execute()
  await sql`DROP FUNCTION IF EXISTS metershare_ledger_journals_balanced_trigger()`.execute(db)
  await sql`DROP FUNCTION IF EXISTS metershare_ledger_entries_guard()`.execute(db)
  await sql`DROP INDEX IF EXISTS daily_rollups_day_brin`.execute(db)
}
