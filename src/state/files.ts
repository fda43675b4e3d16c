import { sql } from "kysely";
import type { ObjectInfo } from "../storage/types.js";
import type { Migration } from "./migrations.js";
import type { StateStore } from "./store.js";

/** The per-file ledger of raw-file ingestion. */
export const fileMigrations: readonly Migration[] = [
  {
    id: "files/0001_processed_files",
    async up(db) {
      await sql`create table processed_files (
        id bigserial primary key,
        source text collate "C" not null,
        partition text collate "C" not null default '',
        path text collate "C" not null,
        etag text not null,
        size bigint not null,
        last_modified timestamptz,
        status text not null,
        claimed_by text,
        claimed_at timestamptz,
        attempts int not null default 0,
        next_attempt_at timestamptz,
        error text,
        rows bigint,
        bytes bigint,
        run_id text,
        batch_id text,
        previous_batch_id text,
        discovered_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        unique (source, path)
      )`.execute(db);
      await sql`create index processed_files_claim_idx on processed_files (source, partition, status, path)`.execute(db);
      await sql`create index processed_files_batch_idx on processed_files (batch_id) where batch_id is not null`.execute(db);
    },
  },
];

export type FileStatus = "DISCOVERED" | "PROCESSING" | "SUCCESS" | "FAILED" | "SKIPPED";

export interface ClaimedFile {
  id: string;
  path: string;
  etag: string;
  size: number;
  attempts: number;
  /** The batch this file was claimed in before, when its earlier claim timed out. */
  previousBatchId: string | null;
}

export interface FileRecord extends ClaimedFile {
  source: string;
  partition: string | null;
  status: FileStatus;
  error: string | null;
  rows: number | null;
  batchId: string | null;
}

const CHUNK = 5_000;

/**
 * The ledger of raw files: what was seen (path, etag, size), what was claimed by whom, and how
 * it ended. Every write is one set-based statement; claims use `FOR UPDATE SKIP LOCKED`, so any
 * number of workers claim each file once.
 *
 * @example
 * const ledger = new FileLedger(store);
 * await ledger.discover("raw_orders", "2025-01-01", page);
 * const files = await ledger.claim({ source: "raw_orders", partition: "2025-01-01", workerId, runId, batchId, limit: 100, claimTimeoutMs: 600_000, maxAttempts: 3 });
 */
export class FileLedger {
  constructor(private readonly store: StateStore) {}

  /**
   * Records listed files: new paths become DISCOVERED; a known path whose etag or size changed is
   * DISCOVERED again (it will be reprocessed); unchanged files are left as they are.
   */
  async discover(source: string, partition: string | null, files: readonly ObjectInfo[]): Promise<{ added: number; changed: number; unchanged: number }> {
    let added = 0;
    let changed = 0;
    for (let i = 0; i < files.length; i += CHUNK) {
      const chunk = files.slice(i, i + CHUNK).map((f) => ({ path: f.key, etag: f.etag, size: f.size, modified: f.lastModified.toISOString() }));
      const { rows } = await sql<{ inserted: boolean }>`
        insert into processed_files (source, partition, path, etag, size, last_modified, status)
        select ${source}, ${partition ?? ""}, e->>'path', e->>'etag', (e->>'size')::bigint, (e->>'modified')::timestamptz, 'DISCOVERED'
        from jsonb_array_elements(${JSON.stringify(chunk)}::jsonb) as t(e)
        on conflict (source, path) do update set
          etag = excluded.etag, size = excluded.size, last_modified = excluded.last_modified, partition = excluded.partition,
          status = 'DISCOVERED', attempts = 0, error = null, batch_id = null, previous_batch_id = null, claimed_by = null,
          claimed_at = null, next_attempt_at = null, rows = null, bytes = null, updated_at = now()
        where processed_files.etag <> excluded.etag or processed_files.size <> excluded.size
        returning (xmax = 0) as inserted`.execute(this.store.db);
      for (const r of rows) if (r.inserted) added++;
      else changed++;
    }
    return { added, changed, unchanged: files.length - added - changed };
  }

  /** Claims up to `limit` files that are new, due for a retry, or whose claim timed out. */
  async claim(opts: {
    source: string;
    partition?: string | null;
    workerId: string;
    runId: string;
    batchId: string;
    limit: number;
    claimTimeoutMs: number;
    maxAttempts: number;
  }): Promise<ClaimedFile[]> {
    const { rows } = await sql<{ id: string; path: string; etag: string; size: string; attempts: number; previous_batch_id: string | null }>`
      update processed_files f set
        status = 'PROCESSING', claimed_by = ${opts.workerId}, claimed_at = now(), attempts = f.attempts + 1,
        run_id = ${opts.runId}, previous_batch_id = case when f.status = 'PROCESSING' then f.batch_id else f.previous_batch_id end,
        batch_id = ${opts.batchId}, updated_at = now()
      where f.id in (
        select id from processed_files
        where source = ${opts.source} and partition = ${opts.partition ?? ""}
          and (status = 'DISCOVERED'
            or (status = 'FAILED' and attempts < ${opts.maxAttempts} and next_attempt_at <= now())
            or (status = 'PROCESSING' and claimed_at < now() - make_interval(secs => ${opts.claimTimeoutMs / 1000})))
        order by path
        limit ${opts.limit}
        for update skip locked)
      returning f.id::text as id, f.path, f.etag, f.size::text as size, f.attempts, f.previous_batch_id`.execute(this.store.db);
    return rows
      .map((r) => ({ id: r.id, path: r.path, etag: r.etag, size: Number(r.size), attempts: r.attempts, previousBatchId: r.previous_batch_id }))
      .sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  /** Ends claims: SUCCESS, SKIPPED, or FAILED (retried after `retryBaseMs · 2^(attempts-1)`). */
  async settle(
    results: ReadonlyArray<{ id: string; status: "SUCCESS" | "FAILED" | "SKIPPED"; rows?: number; bytes?: number; error?: string | null }>,
    opts: { retryBaseMs?: number } = {},
  ): Promise<void> {
    if (results.length === 0) return;
    await sql`
      update processed_files f set
        status = e->>'status', rows = (e->>'rows')::bigint, bytes = (e->>'bytes')::bigint, error = e->>'error',
        claimed_by = null, updated_at = now(),
        next_attempt_at = case when e->>'status' = 'FAILED'
          then now() + make_interval(secs => ${(opts.retryBaseMs ?? 30_000) / 1000} * power(2, greatest(f.attempts - 1, 0))) end
      from jsonb_array_elements(${JSON.stringify(results.map((r) => ({ ...r, rows: r.rows ?? null, bytes: r.bytes ?? null, error: r.error ?? null })))}::jsonb) as t(e)
      where f.id = (e->>'id')::bigint`.execute(this.store.db);
  }

  /** Marks every PROCESSING file of a batch SUCCESS (after the batch's commit); returns the count. */
  async settleBatch(batchId: string): Promise<number> {
    const r = await sql`update processed_files set status = 'SUCCESS', claimed_by = null, updated_at = now() where batch_id = ${batchId} and status = 'PROCESSING'`.execute(this.store.db);
    return Number(r.numAffectedRows ?? 0);
  }

  /**
   * Recovery after a crash between a batch's commit and its settlement: marks SUCCESS the files
   * still PROCESSING in a batch that the asset's latest materialization names (`metadata.batchId`).
   */
  async settleMaterialized(source: string, partition: string | null): Promise<number> {
    const r = await sql`update processed_files set status = 'SUCCESS', claimed_by = null, updated_at = now()
      where source = ${source} and status = 'PROCESSING' and batch_id in (
        select metadata->>'batchId' from asset_partitions where asset = ${source} and partition = ${partition ?? ""})`.execute(this.store.db);
    return Number(r.numAffectedRows ?? 0);
  }

  /** Partitions of a source that have files waiting (DISCOVERED), for sensors. */
  async pendingPartitions(source: string): Promise<Array<string | null>> {
    const { rows } = await sql<{ partition: string }>`select distinct partition from processed_files where source = ${source} and status = 'DISCOVERED' order by partition`.execute(this.store.db);
    return rows.map((r) => (r.partition === "" ? null : r.partition));
  }

  /** The warehouse locations that hold a raw asset partition's files so far (its latest materialization's). */
  async currentLocations(source: string, partition: string | null): Promise<string[]> {
    const { rows } = await sql<{ locations: unknown }>`select metadata->'locations' as locations from asset_partitions where asset = ${source} and partition = ${partition ?? ""}`.execute(this.store.db);
    const v = rows[0]?.locations;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
  }

  /** Returns a worker's PROCESSING claims to DISCOVERED (a graceful stop); returns the count. */
  async release(workerId: string): Promise<number> {
    const r = await sql`update processed_files set status = 'DISCOVERED', claimed_by = null, claimed_at = null, attempts = greatest(attempts - 1, 0), updated_at = now()
      where claimed_by = ${workerId} and status = 'PROCESSING'`.execute(this.store.db);
    return Number(r.numAffectedRows ?? 0);
  }

  /** Files of a source by status. */
  async counts(source: string): Promise<Record<FileStatus, number>> {
    const { rows } = await sql<{ status: FileStatus; n: number }>`select status, count(*)::int as n from processed_files where source = ${source} group by status`.execute(this.store.db);
    const out: Record<FileStatus, number> = { DISCOVERED: 0, PROCESSING: 0, SUCCESS: 0, FAILED: 0, SKIPPED: 0 };
    for (const r of rows) out[r.status] = r.n;
    return out;
  }

  /** Files of a source, by path; optionally one status, at most `limit`. */
  async list(source: string, opts: { status?: FileStatus; limit?: number } = {}): Promise<FileRecord[]> {
    const { rows } = await sql<{ id: string; source: string; partition: string; path: string; etag: string; size: string; attempts: number; previous_batch_id: string | null; status: FileStatus; error: string | null; rows: string | null; batch_id: string | null }>`
      select id::text as id, source, partition, path, etag, size::text as size, attempts, previous_batch_id, status, error, rows::text as rows, batch_id
      from processed_files where source = ${source} ${opts.status ? sql`and status = ${opts.status}` : sql``}
      order by path ${opts.limit ? sql`limit ${opts.limit}` : sql``}`.execute(this.store.db);
    return rows.map((r) => ({
      id: r.id, source: r.source, partition: r.partition === "" ? null : r.partition, path: r.path, etag: r.etag, size: Number(r.size),
      attempts: r.attempts, previousBatchId: r.previous_batch_id, status: r.status, error: r.error, rows: r.rows === null ? null : Number(r.rows), batchId: r.batch_id,
    }));
  }
}
