import type { ColumnType, Generated } from "kysely";

// Row types of the state database, as Kysely sees them. Conventions (the same on both engines):
// - `partition` is text NOT NULL, '' meaning "unpartitioned" (so it can be part of a primary key);
//   records expose it as `string | null`.
// - jsonb reads as a parsed value and is written as a JSON string (`JSON.stringify`), because pg
//   would turn a JS array parameter into a PostgreSQL array literal.
// - int8 (bigint, bigserial, count(*)) reads as a decimal string on both engines (pg's default;
//   PGlite is configured to match): convert where a number is wanted.
// - timestamptz reads as a JS Date.

/** A jsonb column holding an object. */
export type JsonObject<T = Record<string, unknown>> = ColumnType<T, string, string>;
/** An int8 column: a decimal string when read. */
export type Int8 = ColumnType<string, string | number | bigint, string | number | bigint>;
/** A timestamptz column. */
export type Timestamp = ColumnType<Date, Date | string, Date | string>;

export interface RunsTable {
  id: string;
  status: string;
  trigger: string;
  selection: string | null;
  partition_range: string | null;
  parent_run_id: string | null;
  tags: JsonObject<Record<string, string>>;
  error: string | null;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
  started_at: Timestamp | null;
  ended_at: Timestamp | null;
  worker: string | null;
  heartbeat_at: Timestamp | null;
  priority: Generated<number>;
}

export interface RunStepsTable {
  run_id: string;
  asset: string;
  partition: string;
  /** Position of the step in the run's plan (dependency order). */
  seq: Generated<number>;
  status: string;
  attempts: Generated<number>;
  started_at: Timestamp | null;
  ended_at: Timestamp | null;
  error: string | null;
  metadata: JsonObject;
  /** The run's created_at (written in the same statement), for "latest step" queries. */
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface EventsTable {
  /** bigserial: an int8, read as a string. */
  id: ColumnType<string, never, never>;
  run_id: string | null;
  asset: string | null;
  partition: string | null;
  type: string;
  level: string;
  message: string;
  data: JsonObject | null;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface AssetPartitionsTable {
  asset: string;
  partition: string;
  last_run_id: string;
  materialized_at: Timestamp;
  code_version: string | null;
  data_version: string | null;
  metadata: JsonObject;
}

/** Status of a raw file in the ledger. */
export type FileStatus = "DISCOVERED" | "PROCESSING" | "SUCCESS" | "FAILED" | "SKIPPED";

/** The per-file ledger of raw-file ingestion (`src/state/files.ts`). */
export interface ProcessedFilesTable {
  /** bigserial: an int8, read as a string. */
  id: ColumnType<string, never, never>;
  /** The rawFiles asset key. */
  source: string;
  /** '' when the asset is unpartitioned. */
  partition: ColumnType<string, string | undefined, string>;
  /** The object's key in its storage. */
  path: string;
  etag: string;
  size: Int8;
  last_modified: Timestamp | null;
  status: FileStatus;
  claimed_by: string | null;
  claimed_at: Timestamp | null;
  attempts: Generated<number>;
  next_attempt_at: Timestamp | null;
  error: string | null;
  rows: Int8 | null;
  bytes: Int8 | null;
  run_id: string | null;
  batch_id: string | null;
  discovered_at: ColumnType<Date, Date | string | undefined, Date | string>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface MigrationsTable {
  id: string;
  applied_at: ColumnType<Date, Date | string | undefined, never>;
}

/** The state database, for `Kysely<Database>`. Other parts of floe add tables through migrations. */
export interface Database {
  runs: RunsTable;
  run_steps: RunStepsTable;
  events: EventsTable;
  asset_partitions: AssetPartitionsTable;
  processed_files: ProcessedFilesTable;
  floe_migrations: MigrationsTable;
}
