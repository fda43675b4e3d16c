import { sql, type RawBuilder } from "kysely";
import { redact } from "../secrets.js";
import type { ObjectInfo } from "../storage/types.js";
import type { FileStatus } from "./schema.js";
import type { StateStore } from "./store.js";

export type { FileStatus } from "./schema.js";

/** A file taken by `claim`: now PROCESSING in the caller's batch. */
export interface ClaimedFile {
  id: string;
  path: string;
  etag: string;
  size: number;
  lastModified: Date | null;
  /** Attempts so far, this one included. */
  attempts: number;
  /**
   * The batch of an earlier claim of this file that ended without being settled (its claim timed
   * out, or its worker released it), else null, for logs. A batch that a succeeded step recorded
   * is settled before claiming, so such a file is never claimed again.
   */
  previousBatchId: string | null;
}

/** A file of the ledger, as `list` and `filesOfBatch` return it. */
export interface FileRecord {
  id: string;
  source: string;
  /** null when the asset is unpartitioned. */
  partition: string | null;
  path: string;
  etag: string;
  size: number;
  lastModified: Date | null;
  status: FileStatus;
  claimedBy: string | null;
  claimedAt: Date | null;
  attempts: number;
  nextAttemptAt: Date | null;
  error: string | null;
  rows: number | null;
  bytes: number | null;
  runId: string | null;
  batchId: string | null;
  discoveredAt: Date;
  updatedAt: Date;
}

/** One file's outcome, for `settle`. */
export interface FileResult {
  id: string;
  status: "SUCCESS" | "FAILED" | "SKIPPED";
  rows?: number;
  bytes?: number;
  error?: string | null;
}

interface FileRow {
  id: string;
  source: string;
  partition: string;
  path: string;
  etag: string;
  size: string;
  last_modified: Date | null;
  status: FileStatus;
  claimed_by: string | null;
  claimed_at: Date | null;
  attempts: number;
  next_attempt_at: Date | null;
  error: string | null;
  rows: string | null;
  bytes: string | null;
  run_id: string | null;
  batch_id: string | null;
  discovered_at: Date;
  updated_at: Date;
}

/** Files per discover statement: 5,000 keeps a statement's JSON near 0.5 MB. */
const CHUNK = 5_000;
/** Discover statements in flight at once on PostgreSQL. */
const PARALLEL_CHUNKS = 3;
/** Failures double the wait up to 2^20 times the base (then it stays there). */
const MAX_BACKOFF_EXPONENT = 20;
const DEFAULT_RETRY_BASE_MS = 30_000;

const STATUSES: readonly FileStatus[] = ["DISCOVERED", "PROCESSING", "SUCCESS", "FAILED", "SKIPPED"];
const num = (v: string | null): number | null => (v === null ? null : Number(v));
const json = (v: unknown): string => JSON.stringify(v);
/** Byte-wise (UTF-8) order, the order of the "C" collation and of S3 listings. */
const byPath = (a: { path: string }, b: { path: string }): number => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path));
/** Seconds, as a float8 parameter. */
const secs = (ms: number): RawBuilder<number> => sql<number>`${ms / 1000}::float8`;

const columns = sql`id::text as id, source, partition, path, etag, size::text as size, last_modified, status, claimed_by, claimed_at,
  attempts, next_attempt_at, error, rows::text as rows, bytes::text as bytes, run_id, batch_id, discovered_at, updated_at`;

const toRecord = (r: FileRow): FileRecord => ({
  id: r.id,
  source: r.source,
  partition: r.partition === "" ? null : r.partition,
  path: r.path,
  etag: r.etag,
  size: Number(r.size),
  lastModified: r.last_modified,
  status: r.status,
  claimedBy: r.claimed_by,
  claimedAt: r.claimed_at,
  attempts: r.attempts,
  nextAttemptAt: r.next_attempt_at,
  error: r.error,
  rows: num(r.rows),
  bytes: num(r.bytes),
  runId: r.run_id,
  batchId: r.batch_id,
  discoveredAt: r.discovered_at,
  updatedAt: r.updated_at,
});

/**
 * The ledger of raw files (`processed_files`): what was listed (path, etag, size), who claimed it
 * in which batch, and how it ended. This is what makes ingestion exactly-once under crashes and
 * many workers:
 * - every write is one set-based statement (never one query per file);
 * - `claim` takes files with `FOR UPDATE SKIP LOCKED`, so concurrent workers never share a file;
 * - a claim that outlives `claimTimeoutMs` (its worker died) is taken again, with the earlier
 *   batch id, so the new claimant can find out whether that batch was committed after all;
 * - files are marked SUCCESS by batch (`settleBatch`) only once the batch's output is committed.
 *
 * @example
 * const ledger = new FileLedger(store);
 * for await (const page of storage.list("orders/")) await ledger.discover("raw_orders", "2025-01-01", page);
 * const files = await ledger.claim({ source: "raw_orders", partition: "2025-01-01", workerId, runId, batchId, limit: 100, claimTimeoutMs: 600_000, maxAttempts: 3 });
 * // ... ingest them, commit the batch, then:
 * await ledger.settleBatch(batchId, "SUCCESS");
 */
export class FileLedger {
  constructor(private readonly store: StateStore) {}

  /**
   * Records listed files of a source (and partition): a new path becomes DISCOVERED; a known path
   * whose etag or size changed is DISCOVERED again with attempts 0, no error and no batch (it
   * will be reprocessed); an unchanged file is not written at all, whatever its status (so a
   * SUCCESS file is never processed again). One statement per 5,000 files (on PostgreSQL,
   * three at a time), each reading the ledger by one index range scan; only new and changed
   * files are written. A path listed twice counts once (the last one wins). Files of one call
   * should belong to `partition`: a changed file takes the partition it is discovered with.
   *
   * @example
   * const { added, changed, unchanged } = await ledger.discover("raw_orders", "2025-01-01", page);
   */
  async discover(source: string, partition: string | null, files: readonly ObjectInfo[]): Promise<{ added: number; changed: number; unchanged: number }> {
    const unique = new Map<string, ObjectInfo>();
    for (const f of files) unique.set(f.key, f);
    // In path order (a listing already is), each chunk covers a narrow range of the index.
    const all = [...unique.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let added = 0;
    let changed = 0;
    const diffChunk = async (i: number): Promise<void> => {
      const chunk = all.slice(i, i + CHUNK).map((f) => ({ path: f.key, etag: f.etag, size: f.size, modified: f.lastModified.toISOString() }));
      // The diff reads the ledger's rows between the chunk's first and last path with one index
      // range scan (not one probe per file, and not the whole source), whatever the planner
      // guesses about the input's size. Only new or changed files reach the insert: an unchanged
      // file is neither written nor locked (ON CONFLICT DO UPDATE would lock the row it meets even
      // when its WHERE is false). The ON CONFLICT clause covers a concurrent discover of the same file.
      const { rows } = await sql<{ inserted: boolean }>`
        with listed as materialized (
          select * from json_to_recordset(${json(chunk)}::json) as l(path text, etag text, size bigint, modified text)
        ), known as (
          select p.path, p.etag, p.size from processed_files p, (select min(path collate "C") as lo, max(path collate "C") as hi from listed) r
          where p.source = ${source} and p.path between r.lo and r.hi
        )
        insert into processed_files (source, partition, path, etag, size, last_modified, status)
        select ${source}, ${partition ?? ""}, l.path, l.etag, l.size, l.modified::timestamptz, 'DISCOVERED'
        from listed l left join known k on k.path = l.path
        where k.path is null or k.etag <> l.etag or k.size <> l.size
        order by l.path collate "C"
        on conflict (source, path) do update set
          partition = excluded.partition, etag = excluded.etag, size = excluded.size, last_modified = excluded.last_modified,
          status = 'DISCOVERED', attempts = 0, error = null, batch_id = null, run_id = null, claimed_by = null, claimed_at = null,
          next_attempt_at = null, rows = null, bytes = null, updated_at = now()
        where processed_files.etag <> excluded.etag or processed_files.size <> excluded.size
        returning (xmax = 0) as inserted`.execute(this.store.db);
      for (const r of rows) {
        if (r.inserted) added++;
        else changed++;
      }
    };
    // Chunks touch disjoint paths: on PostgreSQL a few run at once, on separate connections.
    const lanes = this.store.engine === "postgres" ? PARALLEL_CHUNKS : 1;
    let next = 0;
    const lane = async (): Promise<void> => {
      for (;;) {
        const i = next;
        next += CHUNK;
        if (i >= all.length) return;
        await diffChunk(i);
      }
    };
    await Promise.all(Array.from({ length: Math.min(lanes, Math.ceil(all.length / CHUNK)) }, lane));
    return { added, changed, unchanged: all.length - added - changed };
  }

  /**
   * Claims up to `limit` files of a source's partition, in path order, in one statement
   * (`UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)`): files DISCOVERED, FAILED ones whose
   * backoff has passed and that have attempts left (`attempts < maxAttempts`), and PROCESSING
   * ones whose claim is older than `claimTimeoutMs` (their worker died; with `retryBaseMs`, such
   * a lost attempt also waits the failure backoff). Claimed files become PROCESSING with this
   * worker, run and batch, and one more attempt. Any number of workers may claim at once: each
   * file goes to one of them. Returns [] when nothing is claimable.
   *
   * @example
   * const files = await ledger.claim({ source: "raw_orders", partition: "2025-01-01", workerId: "host:123", runId, batchId, limit: 100, claimTimeoutMs: 600_000, maxAttempts: 3 });
   * const recovered = files.filter((f) => f.previousBatchId !== null); // check whether those batches were committed
   */
  async claim(opts: {
    source: string;
    partition?: string | null;
    workerId: string;
    runId: string;
    batchId: string;
    limit: number;
    claimTimeoutMs: number;
    maxAttempts: number;
    retryBaseMs?: number;
    /** Only files modified at or after this time (a file of unknown mtime is claimed). */
    modifiedSince?: Date;
  }): Promise<ClaimedFile[]> {
    if (opts.limit <= 0) return [];
    const lostWait =
      opts.retryBaseMs === undefined || opts.retryBaseMs <= 0
        ? sql`make_interval(secs => ${secs(opts.claimTimeoutMs)})`
        : sql`make_interval(secs => ${secs(opts.claimTimeoutMs)} + ${secs(opts.retryBaseMs)} * power(2::float8, least(greatest(attempts - 1, 0), ${MAX_BACKOFF_EXPONENT})))`;
    // A claim that timed out after its batch was recorded is done, not lost; one that timed out
    // on its last attempt (the file stopped its worker every time) is a failure, not a retry.
    await this.settleMaterialized(opts.source, opts.partition ?? null);
    await sql`update processed_files set status = 'FAILED', claimed_by = null, claimed_at = null, updated_at = now(),
        error = 'its worker stopped (crashed, killed or timed out) on each of ' || attempts || ' attempts while processing it'
      where source = ${opts.source} and partition = ${opts.partition ?? ""} and status = 'PROCESSING'
        and attempts >= ${opts.maxAttempts}::int and claimed_at < now() - ${lostWait}`.execute(this.store.db);
    const { rows } = await sql<{ id: string; path: string; etag: string; size: string; last_modified: Date | null; attempts: number; previous_batch_id: string | null }>`
      update processed_files f set
        status = 'PROCESSING', claimed_by = ${opts.workerId}, claimed_at = now(), attempts = f.attempts + 1,
        run_id = ${opts.runId}, batch_id = ${opts.batchId}, next_attempt_at = null, rows = null, bytes = null, updated_at = now()
      from (
        select id, status as old_status, batch_id as old_batch_id
        from processed_files
        where source = ${opts.source} and partition = ${opts.partition ?? ""}
          and (status = 'DISCOVERED'
            or (status = 'FAILED' and attempts < ${opts.maxAttempts}::int and next_attempt_at <= now())
            or (status = 'PROCESSING' and attempts < ${opts.maxAttempts}::int and claimed_at < now() - ${lostWait}))
          ${opts.modifiedSince === undefined ? sql`` : sql`and (last_modified is null or last_modified >= ${opts.modifiedSince.toISOString()}::timestamptz)`}
        order by path
        limit ${opts.limit}::int
        for update skip locked
      ) old
      where f.id = old.id
      returning f.id::text as id, f.path, f.etag, f.size::text as size, f.last_modified, f.attempts,
        case when old.old_status in ('PROCESSING', 'DISCOVERED') then old.old_batch_id end as previous_batch_id`.execute(this.store.db);
    return rows
      .map((r) => ({ id: r.id, path: r.path, etag: r.etag, size: Number(r.size), lastModified: r.last_modified, attempts: r.attempts, previousBatchId: r.previous_batch_id }))
      .sort(byPath);
  }

  /**
   * Ends claims, one statement for all: SUCCESS and SKIPPED are final; FAILED records the error
   * and may be claimed again after `retryBaseMs · 2^(attempts-1)` (default base 30 s) while
   * attempts remain. The claim is cleared; the batch id stays as history. Only files still
   * PROCESSING are touched (with `batchId`, only those still in that batch), so a worker whose
   * claim was taken over, or whose file changed meanwhile, cannot overwrite the newer state.
   *
   * @example
   * await ledger.settle([{ id: a.id, status: "SUCCESS", rows: 120, bytes: a.size }, { id: b.id, status: "FAILED", error: "line 3: unterminated quote" }], { retryBaseMs: 10_000 });
   */
  async settle(results: readonly FileResult[], opts: { retryBaseMs?: number; batchId?: string } = {}): Promise<void> {
    if (results.length === 0) return;
    for (const r of results) {
      if (r.status !== "SUCCESS" && r.status !== "FAILED" && r.status !== "SKIPPED") throw new Error(`settle: file ${r.id} has status ${String(r.status)}; expected SUCCESS, FAILED or SKIPPED`);
    }
    // An error may quote a resolved secret (a URL with a token, a connection string): never store it.
    const input = results.map((r) => ({ id: r.id, status: r.status, rows: r.rows ?? null, bytes: r.bytes ?? null, error: r.error == null ? null : redact(r.error) }));
    const base = opts.retryBaseMs ?? DEFAULT_RETRY_BASE_MS;
    await sql`
      update processed_files f set
        status = r.status, rows = r.rows, bytes = r.bytes, error = r.error, claimed_by = null, claimed_at = null, updated_at = now(),
        next_attempt_at = case when r.status = 'FAILED'
          then now() + make_interval(secs => ${secs(base)} * power(2::float8, least(greatest(f.attempts - 1, 0), ${MAX_BACKOFF_EXPONENT}))) end
      from json_to_recordset(${json(input)}::json) as r(id bigint, status text, rows bigint, bytes bigint, error text)
      where f.id = r.id and f.status = 'PROCESSING' ${opts.batchId === undefined ? sql`` : sql`and f.batch_id = ${opts.batchId}`}`.execute(this.store.db);
  }

  /**
   * Records what a worker did with the files of one claimed batch, in one statement for all:
   * FAILED files end as `settle` ends them (error, backoff); ingested (SUCCESS) files get their
   * `rows` and `bytes` but stay PROCESSING in the batch until `settleBatch` marks them done after
   * the batch's output is committed. Only rows still PROCESSING in `batchId` and claimed by
   * `workerId` are touched: a worker whose claim was taken over changes nothing. Errors are
   * redacted (no resolved secret is stored). Returns how many files it updated.
   *
   * @example
   * await ledger.recordBatch([{ id: a.id, status: "SUCCESS", rows: 120, bytes: 4096 }, { id: b.id, status: "FAILED", error: "line 3: unterminated quote" }], { batchId, workerId: "host:123" });
   * await ledger.settleBatch(batchId); // after the commit: a is SUCCESS with rows 120, bytes 4096
   */
  async recordBatch(results: readonly FileResult[], opts: { batchId: string; workerId: string; retryBaseMs?: number }): Promise<number> {
    if (results.length === 0) return 0;
    for (const r of results) {
      if (r.status !== "SUCCESS" && r.status !== "FAILED") throw new Error(`recordBatch: file ${r.id} has status ${String(r.status)}; expected SUCCESS or FAILED`);
    }
    const input = results.map((r) => ({ id: r.id, failed: r.status === "FAILED", rows: r.rows ?? null, bytes: r.bytes ?? null, error: r.error == null ? null : redact(r.error) }));
    const base = opts.retryBaseMs ?? DEFAULT_RETRY_BASE_MS;
    const r = await sql`
      update processed_files f set
        status = case when r.failed then 'FAILED' else f.status end,
        rows = r.rows, bytes = r.bytes,
        error = case when r.failed then r.error end,
        claimed_by = case when r.failed then null else f.claimed_by end,
        claimed_at = case when r.failed then null else f.claimed_at end,
        next_attempt_at = case when r.failed
          then now() + make_interval(secs => ${secs(base)} * power(2::float8, least(greatest(f.attempts - 1, 0), ${MAX_BACKOFF_EXPONENT}))) end,
        updated_at = now()
      from json_to_recordset(${json(input)}::json) as r(id bigint, failed boolean, rows bigint, bytes bigint, error text)
      where f.id = r.id and f.status = 'PROCESSING' and f.batch_id = ${opts.batchId} and f.claimed_by = ${opts.workerId}`.execute(this.store.db);
    return Number(r.numAffectedRows ?? 0);
  }

  /**
   * Marks every file of a batch that is still PROCESSING as SUCCESS, in one statement: right
   * after the batch's output is committed, or on recovery when that commit is found already done.
   * Returns how many files it marked.
   *
   * @example
   * await commitSnapshot({ summary: { "floe.batch-id": batchId } });
   * const done = await ledger.settleBatch(batchId, "SUCCESS");
   */
  async settleBatch(batchId: string, status: "SUCCESS" = "SUCCESS"): Promise<number> {
    const r = await sql`update processed_files set status = ${status}, error = null, claimed_by = null, claimed_at = null, updated_at = now()
      where batch_id = ${batchId} and status = 'PROCESSING'`.execute(this.store.db);
    return Number(r.numAffectedRows ?? 0);
  }

  /**
   * Recovery after a crash between a batch's commit and its settlement: marks SUCCESS the files
   * still PROCESSING whose batch a succeeded step of the asset partition recorded
   * (`metadata.batchId`), whichever materialization that was, so two crashes in a row hide no
   * batch. Returns how many files it marked.
   *
   * @example
   * await ledger.settleMaterialized("raw_orders", "2025-01-01"); // before claiming
   */
  async settleMaterialized(source: string, partition: string | null): Promise<number> {
    const r = await sql`update processed_files set status = 'SUCCESS', error = null, claimed_by = null, claimed_at = null, updated_at = now()
      where source = ${source} and partition = ${partition ?? ""} and status = 'PROCESSING' and batch_id in (
        select s.metadata->>'batchId' from run_steps s
        where s.asset = ${source} and s.partition = ${partition ?? ""} and s.status = 'success' and s.metadata->>'batchId' is not null)`.execute(this.store.db);
    return Number(r.numAffectedRows ?? 0);
  }

  /**
   * Renews the claims of a batch still being worked on (claimed_at = now), in one statement, so
   * that a long batch is not taken for lost. Returns how many claims it renewed.
   *
   * @example
   * setInterval(() => void ledger.touch(batchId), claimTimeoutMs / 3);
   */
  async touch(batchId: string): Promise<number> {
    const r = await sql`update processed_files set claimed_at = now() where batch_id = ${batchId} and status = 'PROCESSING'`.execute(this.store.db);
    return Number(r.numAffectedRows ?? 0);
  }

  /**
   * Returns a worker's PROCESSING claims (of one batch, when given) to DISCOVERED (a graceful
   * stop, a broken source), in one statement; the attempt is given back. The batch id is kept: the next claim reports it as `previousBatchId`.
   * Returns how many files it released.
   *
   * @example
   * process.once("SIGTERM", () => void ledger.release(workerId));
   */
  async release(workerId: string, batchId?: string): Promise<number> {
    const r = await sql`update processed_files set status = 'DISCOVERED', claimed_by = null, claimed_at = null,
        attempts = greatest(attempts - 1, 0), rows = null, bytes = null, updated_at = now()
      where claimed_by = ${workerId} and status = 'PROCESSING' ${batchId === undefined ? sql`` : sql`and batch_id = ${batchId}`}`.execute(this.store.db);
    return Number(r.numAffectedRows ?? 0);
  }

  /**
   * Partitions of a source that have files waiting (DISCOVERED), for sensors; null is the
   * unpartitioned one. With `modifiedSince`, only files modified at or after it count (rawFiles `since`).
   *
   * @example
   * const partitions = await ledger.pendingPartitions("raw_orders"); // ["2025-01-01", "2025-01-02"]
   * const recent = await ledger.pendingPartitions("raw_orders", new Date("2025-06-01T00:00:00Z")); // files modified since then only
   */
  async pendingPartitions(source: string, modifiedSince?: Date): Promise<Array<string | null>> {
    const { rows } = await sql<{ partition: string }>`select distinct partition from processed_files
      where source = ${source} and status = 'DISCOVERED'
        ${modifiedSince === undefined ? sql`` : sql`and (last_modified is null or last_modified >= ${modifiedSince.toISOString()}::timestamptz)`}
      order by partition`.execute(this.store.db);
    return rows.map((r) => (r.partition === "" ? null : r.partition));
  }

  /**
   * The batches with SUCCESS files of a source partition, oldest first (by when their files were
   * first settled). A batch whose files were all reprocessed since is not listed.
   *
   * @example
   * const batches = await ledger.settledBatches("raw_orders", "2025-01-01");
   */
  async settledBatches(source: string, partition: string | null): Promise<string[]> {
    const { rows } = await sql<{ batch_id: string }>`select batch_id from processed_files
      where source = ${source} and partition = ${partition ?? ""} and status = 'SUCCESS' and batch_id is not null
      group by batch_id order by min(updated_at), batch_id`.execute(this.store.db);
    return rows.map((r) => r.batch_id);
  }

  /**
   * The files of a batch (whatever their status now), by path.
   *
   * @example
   * const files = await ledger.filesOfBatch(batchId);
   */
  async filesOfBatch(batchId: string): Promise<FileRecord[]> {
    const { rows } = await sql<FileRow>`select ${columns} from processed_files where batch_id = ${batchId} order by path`.execute(this.store.db);
    return rows.map(toRecord);
  }

  /**
   * How many files of a source are in each status (every status present, 0 when none).
   *
   * @example
   * const { SUCCESS, FAILED } = await ledger.counts("raw_orders");
   */
  async counts(source: string): Promise<Record<FileStatus, number>> {
    const { rows } = await sql<{ status: FileStatus; n: number }>`select status, count(*)::int as n from processed_files
      where source = ${source} group by status`.execute(this.store.db);
    const out = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<FileStatus, number>;
    for (const r of rows) out[r.status] = r.n;
    return out;
  }

  /**
   * Files of a source by path; optionally only one status, and at most `limit`.
   *
   * @example
   * const failed = await ledger.list("raw_orders", { status: "FAILED", limit: 20 });
   */
  async list(source: string, opts: { status?: FileStatus; limit?: number } = {}): Promise<FileRecord[]> {
    const { rows } = await sql<FileRow>`select ${columns} from processed_files
      where source = ${source} ${opts.status === undefined ? sql`` : sql`and status = ${opts.status}`}
      order by path ${opts.limit === undefined ? sql`` : sql`limit ${opts.limit}::int`}`.execute(this.store.db);
    return rows.map(toRecord);
  }
}
