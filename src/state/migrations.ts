import { sql, type Kysely } from "kysely";
import { UserError } from "../errors.js";
import type { Database } from "./schema.js";

/**
 * One forward-only schema change. `id` is `<namespace>/<name>` (e.g. `core/0001_init`,
 * `iceberg/0001_catalog`); migrations run in list order, each once, recorded in `floe_migrations`.
 * `up` runs inside the migration transaction: one SQL statement per `execute`.
 */
export interface Migration {
  id: string;
  up(db: Kysely<unknown>): Promise<void>;
}

const statements = (...parts: string[]) => async (db: Kysely<unknown>): Promise<void> => {
  for (const s of parts) await sql.raw(s).execute(db);
};

/**
 * The core tables: runs, their steps, events and the latest materialization per asset partition.
 * Key columns use the "C" collation, so that ordering is byte-wise on every server.
 */
export const coreMigrations: readonly Migration[] = [
  {
    id: "core/0001_init",
    up: statements(
      `create table runs (
        id text collate "C" primary key,
        status text not null,
        trigger text not null,
        selection text,
        partition_range text,
        parent_run_id text,
        tags jsonb not null default '{}',
        error text,
        created_at timestamptz not null default now(),
        started_at timestamptz,
        ended_at timestamptz,
        worker text,
        heartbeat_at timestamptz,
        priority int not null default 0
      )`,
      `create index runs_queue_idx on runs (status, priority, created_at)`,
      `create index runs_created_at_idx on runs (created_at)`,
      `create table run_steps (
        run_id text collate "C" not null references runs (id) on delete cascade,
        asset text collate "C" not null,
        partition text collate "C" not null default '',
        seq int not null default 0,
        status text not null,
        attempts int not null default 0,
        started_at timestamptz,
        ended_at timestamptz,
        error text,
        metadata jsonb not null default '{}',
        created_at timestamptz not null default now(),
        primary key (run_id, asset, partition)
      )`,
      // created_at is the run's (same statement): latest step per asset partition without a join
      `create index run_steps_asset_idx on run_steps (asset, partition, created_at desc)`,
      `create table events (
        id bigserial primary key,
        run_id text,
        asset text,
        partition text,
        type text not null,
        level text not null default 'info',
        message text not null,
        data jsonb,
        created_at timestamptz not null default now()
      )`,
      `create index events_run_idx on events (run_id, id)`,
      `create index events_created_at_idx on events (created_at)`,
      `create table asset_partitions (
        asset text collate "C" not null,
        partition text collate "C" not null default '',
        last_run_id text not null,
        materialized_at timestamptz not null,
        code_version text,
        data_version text,
        metadata jsonb not null default '{}',
        primary key (asset, partition)
      )`,
    ),
  },
  {
    // The per-file ledger of raw-file ingestion (FileLedger in files.ts). `if not exists` adopts
    // the table that the earlier `files/0001_processed_files` created on development databases.
    id: "core/0002_processed_files",
    up: statements(
      `create table if not exists processed_files (
        id bigserial primary key,
        source text collate "C" not null,
        partition text collate "C" not null default '',
        path text collate "C" not null,
        etag text not null,
        size bigint not null,
        last_modified timestamptz,
        status text not null check (status in ('DISCOVERED', 'PROCESSING', 'SUCCESS', 'FAILED', 'SKIPPED')),
        claimed_by text,
        claimed_at timestamptz,
        attempts int not null default 0,
        next_attempt_at timestamptz,
        error text,
        rows bigint,
        bytes bigint,
        run_id text,
        batch_id text,
        discovered_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        unique (source, path)
      )`,
      // The files a claim may take (SUCCESS and SKIPPED, the bulk over time, are left out), in
      // claim order: a claim reads the first rows of (source, partition) by path and stops.
      `create index if not exists processed_files_open_idx on processed_files (source, partition, path)
        where status in ('DISCOVERED', 'PROCESSING', 'FAILED')`,
      `create index if not exists processed_files_batch_idx on processed_files (batch_id) where batch_id is not null`,
      `create index if not exists processed_files_claimed_by_idx on processed_files (claimed_by) where status = 'PROCESSING'`,
      // what that earlier table had and this one does not
      `drop index if exists processed_files_claim_idx`,
      `alter table processed_files drop column if exists previous_batch_id`,
    ),
  },
  {
    // A raw step reads its whole partition (vanished files, settled batches, failed files): one
    // index range per (source, partition), not a scan of every file of the source.
    id: "core/0003_processed_files_partition",
    up: statements(`create index if not exists processed_files_partition_idx on processed_files (source, partition, path)`),
  },
];

const namespace = (id: string): string => id.slice(0, Math.max(0, id.indexOf("/")));

/**
 * Brings the schema up to date in one transaction, under a transaction-scoped advisory lock so
 * that processes starting at once apply each migration exactly once. Recorded ids unknown to this
 * code, in a namespace this code knows, mean the database is newer than the code: a UserError.
 * (A namespace this process does not load, e.g. a plugin's, is left alone.)
 * Returns the ids applied now.
 *
 * @example
 * const applied = await migrate(db, [...coreMigrations, ...pluginMigrations], "PostgreSQL at db:5432/floe");
 */
export async function migrate(db: Kysely<Database>, migrations: readonly Migration[], where: string): Promise<string[]> {
  const ids = new Set<string>();
  for (const m of migrations) {
    if (ids.has(m.id)) throw new Error(`duplicate migration id ${m.id}`);
    ids.add(m.id);
  }
  const namespaces = new Set(migrations.map((m) => namespace(m.id)));
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(7380396369697925479)`.execute(trx); // "floe-mig" in ASCII
    await sql`create table if not exists floe_migrations (id text primary key, applied_at timestamptz not null default now())`.execute(trx);
    const done = new Set((await trx.selectFrom("floe_migrations").select("id").execute()).map((r) => r.id));
    const unknown = [...done].filter((id) => !ids.has(id) && namespaces.has(namespace(id))).sort();
    if (unknown.length > 0) {
      throw new UserError(
        `the state store (${where}) was migrated by a newer floe: unknown migration ${unknown.join(", ")}; upgrade floe to use it`,
      );
    }
    const applied: string[] = [];
    for (const m of migrations) {
      if (done.has(m.id)) continue;
      await m.up(trx as unknown as Kysely<unknown>); // a migration sees an untyped database
      await trx.insertInto("floe_migrations").values({ id: m.id }).execute();
      applied.push(m.id);
    }
    return applied;
  });
}
