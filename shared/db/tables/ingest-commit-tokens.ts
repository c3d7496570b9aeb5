import type { ColumnType, Generated } from 'kysely'

/**
 * A group commit of the broker's ingest thread (PostgreSQL): written in the group's transaction,
 * so that its row proves the commit when the answer was lost. Deleted by a later commit once the
 * answer came; what is left (outcomes asked about, a thread that stopped) goes after
 * COMMIT_TOKEN_KEPT_DAYS (ingest-repository.ts).
 */
export interface IngestCommitTokensTable {
  /** Random, 63 bits; also the key of the advisory lock the transaction holds from its start. */
  token: ColumnType<bigint, string, never>
  committed_at: Generated<Date>
}
