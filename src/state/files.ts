import { sql, type RawBuilder } from "kysely";
import { goneLocalOwners } from "./owners.js";
import { redact } from "../secrets.js";
import { retryTransient } from "./transient.js";
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

/** Claim timeout when a caller gives none (rawFiles' default `claimTimeoutMs`). */
const DEFAULT_CLAIM_TIMEOUT_MS = 600_000;

/**
 * What tells a live owner of a PROCESSING file from a dead one, besides the claim timeout (the
 * last resort): the file's run (`run_id`) ended, or its heartbeat is older than `ownerStaleMs`;
 * or its owner (`claimed_by`) or batch is known dead ({@link FileLedger.deadClaims}).
 */
export interface OwnerLiveness {
  /** A running run whose heartbeat is older than this is dead (3 heartbeats; unset: heartbeats are not read). */
  ownerStaleMs?: number;
  /** Owners (`<hostname>:<pid>`) known dead: their process is gone. */
  deadOwners?: readonly string[];
  /** Batches known abandoned by their (live) owner. */
  deadBatches?: readonly string[];
}

/**
 * Whether the PROCESSING file `f` (an alias the statement must use) has lost its owner (see
 * {@link OwnerLiveness}); a file of a batch that a succeeded step of the asset partition recorded
 * is never lost: it is done.
 * A run still `queued` counts as live: no step of it can hold a claim, unless its transition to
 * `running` is still on its way to the store.
 */
function lostClaim(source: string, o: { claimTimeoutMs: number; retryBaseMs?: number } & OwnerLiveness): RawBuilder<boolean> {
  const timeout = o.retryBaseMs === undefined || o.retryBaseMs <= 0
    ? sql`make_interval(secs => ${secs(o.claimTimeoutMs)})`
    : sql`make_interval(secs => ${secs(o.claimTimeoutMs)} + ${secs(o.retryBaseMs)} * power(2::float8, least(greatest(f.attempts - 1, 0), ${MAX_BACKOFF_EXPONENT})))`;
  const stale = o.ownerStaleMs === undefined ? sql`` : sql` or r.heartbeat_at < now() - make_interval(secs => ${secs(o.ownerStaleMs)})`;
  const dead: Array<RawBuilder<unknown>> = [
    sql`f.claimed_at < now() - ${timeout}`,
    sql`exists (select 1 from runs r where r.id = f.run_id collate "C" and (r.status not in ('queued', 'running')${stale}))`,
  ];
  if (o.deadOwners !== undefined && o.deadOwners.length > 0) dead.push(sql`f.claimed_by in (select json_array_elements_text(${json(o.deadOwners)}::json))`);
  if (o.deadBatches !== undefined && o.deadBatches.length > 0) dead.push(sql`f.batch_id in (select json_array_elements_text(${json(o.deadBatches)}::json))`);
  return sql<boolean>`((${sql.join(dead, sql` or `)}) and not exists (select 1 from run_steps s
    where s.asset = ${source} and s.partition = f.partition and s.status = 'success'
      and (s.metadata->>'batchId' = f.batch_id or coalesce(s.metadata->'adoptedBatches', '[]'::jsonb) ? f.batch_id)))`;
}

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
 * - a PROCESSING claim belongs to a live owner: one whose run ended or stopped heartbeating, whose
 *   process on this host is gone, or (last resort) that outlived `claimTimeoutMs` is taken again,
 *   with the earlier batch id; a batch that a succeeded step recorded is settled, never retaken;
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
   * Every statement of the ledger rides out a transient store error (an outage, a restart) with
   * backoff for up to 2 minutes, so a raw step survives what a worker survives. Each statement is
   * safe to run again: a claim whose answer was lost is taken again by the retry (files of its
   * own batch not yet recorded are claimable by it), the other writes set values.
   */
  private retry<T>(fn: () => Promise<T>): Promise<T> {
    return retryTransient(fn);
  }

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
      const { rows } = await this.retry(() => sql<{ inserted: boolean }>`
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
        returning (xmax = 0) as inserted`.execute(this.store.db));
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
   * ones whose owner is gone (see {@link OwnerLiveness}): their run ended (failed, canceled, or
   * ended without settling them), their run's heartbeat is older than `ownerStaleMs`, their
   * owner or batch is in `deadOwners` / `deadBatches`, or, as a last resort, their claim is
   * older than `claimTimeoutMs` (with `retryBaseMs`, such a timed-out attempt also waits the
   * failure backoff). A PROCESSING file of a batch that a succeeded step recorded is never taken:
   * it is done, and is settled first. A lost file on its last attempt ends FAILED instead.
   * Claimed files become PROCESSING with this worker, run and batch, and one more attempt. Any
   * number of workers may claim at once: each file goes to one of them. Returns [] when nothing
   * is claimable.
   *
   * @example
   * const dead = await ledger.deadClaims("raw_orders", "2025-01-01");
   * const files = await ledger.claim({ source: "raw_orders", partition: "2025-01-01", workerId: "host:123", runId, batchId, limit: 100, claimTimeoutMs: 600_000, maxAttempts: 3, ownerStaleMs: 15_000, ...dead });
   * const recovered = files.filter((f) => f.previousBatchId !== null); // taken over from a dead owner
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
  } & OwnerLiveness): Promise<ClaimedFile[]> {
    if (opts.limit <= 0) return [];
    const partition = opts.partition ?? "";
    const lost = lostClaim(opts.source, opts);
    // A claim lost after its batch was recorded is done, not lost; one lost on its last attempt
    // (the file stopped its worker every time) is a failure, not a retry.
    await this.settleMaterialized(opts.source, opts.partition ?? null);
    await this.retry(() => sql`update processed_files f set status = 'FAILED', claimed_by = null, claimed_at = null, updated_at = now(),
        error = 'its worker stopped (crashed, killed or timed out) on each of ' || attempts || ' attempts while processing it'
      where f.source = ${opts.source} and f.partition = ${partition} and f.status = 'PROCESSING'
        and f.batch_id is distinct from ${opts.batchId} and f.attempts >= ${opts.maxAttempts}::int and ${lost}`.execute(this.store.db));
    const { rows } = await this.retry(() => sql<{ id: string; path: string; etag: string; size: string; last_modified: Date | null; attempts: number; previous_batch_id: string | null }>`
      update processed_files t set
        status = 'PROCESSING', claimed_by = ${opts.workerId}, claimed_at = now(), attempts = t.attempts + 1,
        run_id = ${opts.runId}, batch_id = ${opts.batchId}, next_attempt_at = null, rows = null, bytes = null, updated_at = now()
      from (
        select f.id, f.status as old_status, f.batch_id as old_batch_id
        from processed_files f
        where f.source = ${opts.source} and f.partition = ${partition}
          and (f.status = 'DISCOVERED'
            or (f.status = 'FAILED' and f.attempts < ${opts.maxAttempts}::int and f.next_attempt_at <= now())
            -- another owner's claim that is lost; this batch's own files are never taken for lost
            -- (its own run may look stale to itself right after an outage)
            or (f.status = 'PROCESSING' and f.batch_id is distinct from ${opts.batchId} and f.attempts < ${opts.maxAttempts}::int and ${lost})
            -- this batch's own claim whose answer was lost (an outage): taken again by the retry
            or (f.status = 'PROCESSING' and f.batch_id = ${opts.batchId} and f.claimed_by = ${opts.workerId} and f.rows is null))
          ${opts.modifiedSince === undefined ? sql`` : sql`and (f.last_modified is null or f.last_modified >= ${opts.modifiedSince.toISOString()}::timestamptz)`}
        order by f.path
        limit ${opts.limit}::int
        for update skip locked
      ) old
      where t.id = old.id
      returning t.id::text as id, t.path, t.etag, t.size::text as size, t.last_modified, t.attempts,
        case when old.old_status in ('PROCESSING', 'DISCOVERED') then old.old_batch_id end as previous_batch_id`.execute(this.store.db));
    return rows
      .map((r) => ({ id: r.id, path: r.path, etag: r.etag, size: Number(r.size), lastModified: r.last_modified, attempts: r.attempts, previousBatchId: r.previous_batch_id }))
      .sort(byPath);
  }

  /**
   * The owners known dead among those holding PROCESSING files of a source partition, from one
   * query: owners on this host (`claimed_by` is `<hostname>:<pid>`) whose process no longer
   * exists, and batches of this process (`self.workerId`) listed in `self.abandonedBatches` (a
   * step of this process gave up on them without giving them back). Pass the result to
   * {@link claim} or {@link pendingFiles}.
   *
   * @example
   * const dead = await ledger.deadClaims("raw_orders", "2025-01-01"); // { deadOwners: ["host:4711"], deadBatches: [] }
   * await ledger.claim({ ...opts, ...dead });
   */
  async deadClaims(
    source: string,
    partition: string | null | ReadonlyArray<string | null>,
    self?: { workerId: string; abandonedBatches: ReadonlySet<string> },
  ): Promise<{ deadOwners: string[]; deadBatches: string[] }> {
    const parts = (Array.isArray(partition) ? partition : [partition]).map((x: string | null) => x ?? "");
    const { rows } = await this.retry(() => sql<{ claimed_by: string | null; batch_id: string | null }>`
      select distinct claimed_by, batch_id from processed_files
      where source = ${source} and partition in (select json_array_elements_text(${json(parts)}::json)) and status = 'PROCESSING'`.execute(this.store.db));
    const owners = [...new Set(rows.flatMap((r) => (r.claimed_by === null ? [] : [r.claimed_by])))];
    const deadBatches = self === undefined
      ? []
      : [...new Set(rows.flatMap((r) => (r.claimed_by === self.workerId && r.batch_id !== null && self.abandonedBatches.has(r.batch_id) ? [r.batch_id] : [])))];
    return { deadOwners: goneLocalOwners(owners), deadBatches };
  }

  /**
   * The batches of a source partition that another step ingested whole and that wait for that
   * step's commit: every file of theirs still PROCESSING has its rows recorded. Taken, under the
   * partition's lock ({@link lockPartition}), by the step that goes next, which reports and settles
   * them with its own batch.
   *
   * @example
   * const adopted = await ledger.finishedBatches("raw_orders", "2025-01-01");
   */
  async finishedBatches(source: string, partition: string | null): Promise<string[]> {
    const { rows } = await this.retry(() => sql<{ batch_id: string }>`select batch_id from processed_files
      where source = ${source} and partition = ${partition ?? ""} and status = 'PROCESSING' and batch_id is not null
      group by batch_id having bool_and(rows is not null) order by min(claimed_at), batch_id`.execute(this.store.db));
    return rows.map((r) => r.batch_id);
  }

  /**
   * Takes the lock of a source partition, shared by every process on the store: raw steps of one
   * partition take turns. See `StateStore.holdLock`; `giveUp` lets a waiter go on without it.
   *
   * @example
   * const lock = await ledger.lockPartition("raw_orders", "2025-01-01", { signal });
   * try { … } finally { await lock.release(); }
   */
  lockPartition(source: string, partition: string | null, opts: { signal?: AbortSignal; giveUp?: () => Promise<boolean> } = {}): Promise<{ held: boolean; release(): Promise<void> }> {
    return this.store.holdLock(`floe.raw/${source}/${partition ?? ""}`, opts);
  }

  /**
   * How many files of a source partition are held by another batch than `batchId` and not yet
   * ingested (PROCESSING, no rows recorded): files a step must wait for before it may report the
   * partition done. Files already ingested by another run (rows recorded, waiting for that run's
   * commit) are not counted. With `modifiedSince`, only files modified at or after it count.
   *
   * @example
   * while ((await ledger.heldElsewhere("raw_orders", "2025-01-01", { batchId })) > 0) await sleep(500, signal);
   */
  async heldElsewhere(source: string, partition: string | null, opts: { batchId: string; modifiedSince?: Date; liveOnly?: { ownerStaleMs: number } }): Promise<number> {
    // liveOnly: any file (ingested or not) another batch holds whose run is running and heartbeating
    const which = opts.liveOnly === undefined
      ? sql`rows is null`
      : sql`exists (select 1 from runs r where r.id = processed_files.run_id collate "C" and r.status = 'running'
          and r.heartbeat_at >= now() - make_interval(secs => ${secs(opts.liveOnly.ownerStaleMs)}))`;
    const { rows } = await this.retry(() => sql<{ n: number }>`select count(*)::int as n from processed_files
      where source = ${source} and partition = ${partition ?? ""} and status = 'PROCESSING' and ${which}
        and batch_id is distinct from ${opts.batchId}
        ${opts.modifiedSince === undefined ? sql`` : sql`and (last_modified is null or last_modified >= ${opts.modifiedSince.toISOString()}::timestamptz)`}`.execute(this.store.db));
    return rows[0]?.n ?? 0;
  }

  /**
   * How many files of a source partition still wait to be ingested, in one query: DISCOVERED,
   * FAILED (with `maxAttempts`, only those with attempts left), and PROCESSING ones whose owner
   * is gone (as {@link claim} judges it). With `modifiedSince`, only files modified at or after
   * it count (rawFiles `since`).
   *
   * @example
   * const left = await ledger.pendingFiles("raw_orders", "2025-01-01", { ownerStaleMs: 15_000, claimTimeoutMs: 600_000, maxAttempts: 3 });
   */
  async pendingFiles(
    source: string,
    partition: string | null,
    opts: { claimTimeoutMs?: number; maxAttempts?: number; modifiedSince?: Date } & OwnerLiveness = {},
  ): Promise<number> {
    return (await this.pendingFilesOf(source, [partition], opts)).get(partition) ?? 0;
  }

  /**
   * {@link pendingFiles} for many partitions of a source in one query: the partitions with files
   * waiting, with how many (a partition with none is left out).
   *
   * @example
   * const waiting = await ledger.pendingFilesOf("raw_orders", ["2025-01-01", "2025-01-02"], { ownerStaleMs: 15_000 }); // Map { "2025-01-02" => 3 }
   */
  async pendingFilesOf(
    source: string,
    partitions: ReadonlyArray<string | null>,
    opts: { claimTimeoutMs?: number; maxAttempts?: number; modifiedSince?: Date } & OwnerLiveness = {},
  ): Promise<Map<string | null, number>> {
    if (partitions.length === 0) return new Map();
    const lost = lostClaim(source, { claimTimeoutMs: opts.claimTimeoutMs ?? DEFAULT_CLAIM_TIMEOUT_MS, ...opts });
    const { rows } = await this.retry(() => sql<{ partition: string; n: number }>`select f.partition, count(*)::int as n from processed_files f
      where f.source = ${source} and f.partition in (select json_array_elements_text(${json(partitions.map((x) => x ?? ""))}::json))
        and (f.status = 'DISCOVERED'
          or (f.status = 'FAILED' ${opts.maxAttempts === undefined ? sql`` : sql`and f.attempts < ${opts.maxAttempts}::int`})
          or (f.status = 'PROCESSING' and ${lost}))
        ${opts.modifiedSince === undefined ? sql`` : sql`and (f.last_modified is null or f.last_modified >= ${opts.modifiedSince.toISOString()}::timestamptz)`}
      group by f.partition`.execute(this.store.db));
    return new Map(rows.map((r) => [r.partition === "" ? null : r.partition, r.n]));
  }

  /**
   * The FAILED files of a source partition (whether in backoff or out of attempts): how many,
   * and the first `sample` of them by path with their errors. With `modifiedSince`, only files
   * modified at or after it count.
   *
   * @example
   * const { count, sample } = await ledger.failedFiles("raw_orders", "2025-01-01"); // { count: 1, sample: [{ path: "orders/2025-01-01/bad.csv", error: "line 2: …" }] }
   */
  async failedFiles(source: string, partition: string | null, opts: { modifiedSince?: Date; sample?: number } = {}): Promise<{ count: number; sample: Array<{ path: string; error: string | null }> }> {
    const { rows } = await this.retry(() => sql<{ n: number; path: string; error: string | null }>`select count(*) over ()::int as n, path, error from processed_files
      where source = ${source} and partition = ${partition ?? ""} and status = 'FAILED'
        ${opts.modifiedSince === undefined ? sql`` : sql`and (last_modified is null or last_modified >= ${opts.modifiedSince.toISOString()}::timestamptz)`}
      order by path limit ${opts.sample ?? 3}::int`.execute(this.store.db));
    return { count: rows[0]?.n ?? 0, sample: rows.map((r) => ({ path: r.path, error: r.error })) };
  }

  /**
   * The state store's clock, for {@link removeUnlisted}'s `listedSince`.
   *
   * @example
   * const listedSince = await ledger.now(); // then list the storage
   */
  async now(): Promise<Date> {
    const { rows } = await this.retry(() => sql<{ now: Date }>`select now() as now`.execute(this.store.db));
    return new Date(rows[0]!.now);
  }

  /**
   * Forgets the files of a source partition that a complete listing no longer holds: one select
   * of the partition's paths (those recorded before `listedSince`, so a file that landed after the
   * listing began is not taken for gone), the difference with `listed` in memory, then one
   * delete. A file PROCESSING by a live owner (as {@link claim} judges it) is kept; a later
   * listing decides. `beforeDelete` gets the files about to go first, to remove what was derived
   * from them (if it throws, nothing is deleted). Returns the files removed (id, path, batch), by
   * path. A file listed again later at the same path is simply new.
   *
   * @example
   * const listedSince = await ledger.now();
   * const listed = new Set<string>(); // every key the glob matched, over all pages
   * const removed = await ledger.removeUnlisted("raw_orders", "2025-01-01", listed, { listedSince, claimTimeoutMs: 600_000, ownerStaleMs: 15_000 });
   */
  async removeUnlisted(
    source: string,
    partition: string | null,
    listed: ReadonlySet<string>,
    opts: { listedSince: Date; claimTimeoutMs: number } & OwnerLiveness,
    beforeDelete?: (files: ReadonlyArray<{ id: string; path: string; batchId: string | null }>) => Promise<void>,
  ): Promise<Array<{ id: string; path: string; batchId: string | null }>> {
    const p = partition ?? "";
    const lost = lostClaim(source, opts);
    const { rows } = await this.retry(() => sql<{ id: string; path: string; batch_id: string | null; removable: boolean }>`
      select f.id::text as id, f.path, f.batch_id, (f.status <> 'PROCESSING' or ${lost}) as removable from processed_files f
      where f.source = ${source} and f.partition = ${p} and f.discovered_at < ${opts.listedSince.toISOString()}::timestamptz`.execute(this.store.db));
    const gone = rows.filter((r) => r.removable && !listed.has(r.path)).map((r) => ({ id: r.id, path: r.path, batchId: r.batch_id })).sort(byPath);
    if (gone.length === 0) return [];
    await beforeDelete?.(gone);
    const { rows: removed } = await this.retry(() => sql<{ id: string }>`
      delete from processed_files f
      where f.id in (select value::bigint from json_array_elements_text(${json(gone.map((g) => g.id))}::json))
        and f.source = ${source} and f.partition = ${p}
        and (f.status <> 'PROCESSING' or ${lost})
      returning f.id::text as id`.execute(this.store.db));
    const ids = new Set(removed.map((r) => r.id));
    return gone.filter((g) => ids.has(g.id));
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
    await this.retry(() => sql`
      update processed_files f set
        status = r.status, rows = r.rows, bytes = r.bytes, error = r.error, claimed_by = null, claimed_at = null, updated_at = now(),
        next_attempt_at = case when r.status = 'FAILED'
          then now() + make_interval(secs => ${secs(base)} * power(2::float8, least(greatest(f.attempts - 1, 0), ${MAX_BACKOFF_EXPONENT}))) end
      from json_to_recordset(${json(input)}::json) as r(id bigint, status text, rows bigint, bytes bigint, error text)
      where f.id = r.id and f.status = 'PROCESSING' ${opts.batchId === undefined ? sql`` : sql`and f.batch_id = ${opts.batchId}`}`.execute(this.store.db));
  }

  /**
   * Records what a worker did with the files of one claimed batch, in one statement for all:
   * FAILED files end as `settle` ends them (error, backoff); ingested (SUCCESS) files get their
   * `rows` and `bytes` but stay PROCESSING in the batch until `settleBatch` marks them done after
   * the batch's output is committed. Only rows still PROCESSING in `batchId` and claimed by
   * `workerId` are touched: a worker whose claim was taken over changes nothing. Errors are
   * redacted (no resolved secret is stored). Returns the ids of the files it recorded: a file
   * missing from them is no longer this claim's (another worker took it over).
   *
   * @example
   * const mine = await ledger.recordBatch([{ id: a.id, status: "SUCCESS", rows: 120, bytes: 4096 }, { id: b.id, status: "FAILED", error: "line 3: unterminated quote" }], { batchId, workerId: "host:123" });
   * await ledger.settleBatch(batchId); // after the commit: a is SUCCESS with rows 120, bytes 4096
   */
  async recordBatch(results: readonly FileResult[], opts: { batchId: string; workerId: string; retryBaseMs?: number }): Promise<string[]> {
    if (results.length === 0) return [];
    for (const r of results) {
      if (r.status !== "SUCCESS" && r.status !== "FAILED") throw new Error(`recordBatch: file ${r.id} has status ${String(r.status)}; expected SUCCESS or FAILED`);
    }
    const input = results.map((r) => ({ id: r.id, failed: r.status === "FAILED", rows: r.rows ?? null, bytes: r.bytes ?? null, error: r.error == null ? null : redact(r.error) }));
    const base = opts.retryBaseMs ?? DEFAULT_RETRY_BASE_MS;
    const { rows } = await this.retry(() => sql<{ id: string }>`
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
      where f.id = r.id and f.status = 'PROCESSING' and f.batch_id = ${opts.batchId} and f.claimed_by = ${opts.workerId}
      returning f.id::text as id`.execute(this.store.db));
    return rows.map((x) => x.id);
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
  async settleBatch(batchId: string, status: "SUCCESS" = "SUCCESS", opts: { recordedOnly?: boolean } = {}): Promise<number> {
    const r = await this.retry(() => sql`update processed_files set status = ${status}, error = null, claimed_by = null, claimed_at = null, updated_at = now()
      where batch_id = ${batchId} and status = 'PROCESSING' ${opts.recordedOnly ? sql`and rows is not null` : sql``}`.execute(this.store.db));
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
    const r = await this.retry(() => sql`update processed_files set status = 'SUCCESS', error = null, claimed_by = null, claimed_at = null, updated_at = now()
      where source = ${source} and partition = ${partition ?? ""} and status = 'PROCESSING' and batch_id in (
        select b from run_steps s, jsonb_array_elements_text(jsonb_build_array(s.metadata->'batchId') || coalesce(s.metadata->'adoptedBatches', '[]'::jsonb)) as x(b)
        where s.asset = ${source} and s.partition = ${partition ?? ""} and s.status = 'success' and s.metadata->>'batchId' is not null)`.execute(this.store.db));
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
    const r = await this.retry(() => sql`update processed_files set claimed_at = now() where batch_id = ${batchId} and status = 'PROCESSING'`.execute(this.store.db));
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
    const r = await this.retry(() => sql`update processed_files set status = 'DISCOVERED', claimed_by = null, claimed_at = null,
        attempts = greatest(attempts - 1, 0), rows = null, bytes = null, updated_at = now()
      where claimed_by = ${workerId} and status = 'PROCESSING' ${batchId === undefined ? sql`` : sql`and batch_id = ${batchId}`}`.execute(this.store.db));
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
    const { rows } = await this.retry(() => sql<{ partition: string }>`select distinct partition from processed_files
      where source = ${source} and status = 'DISCOVERED'
        ${modifiedSince === undefined ? sql`` : sql`and (last_modified is null or last_modified >= ${modifiedSince.toISOString()}::timestamptz)`}
      order by partition`.execute(this.store.db));
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
    const { rows } = await this.retry(() => sql<{ batch_id: string }>`select batch_id from processed_files
      where source = ${source} and partition = ${partition ?? ""} and status = 'SUCCESS' and batch_id is not null
      group by batch_id order by min(updated_at), batch_id`.execute(this.store.db));
    return rows.map((r) => r.batch_id);
  }

  /**
   * The files of a batch (whatever their status now), by path.
   *
   * @example
   * const files = await ledger.filesOfBatch(batchId);
   */
  async filesOfBatch(batchId: string): Promise<FileRecord[]> {
    const { rows } = await this.retry(() => sql<FileRow>`select ${columns} from processed_files where batch_id = ${batchId} order by path`.execute(this.store.db));
    return rows.map(toRecord);
  }

  /**
   * How many files of a source are in each status (every status present, 0 when none).
   *
   * @example
   * const { SUCCESS, FAILED } = await ledger.counts("raw_orders");
   */
  async counts(source: string): Promise<Record<FileStatus, number>> {
    const { rows } = await this.retry(() => sql<{ status: FileStatus; n: number }>`select status, count(*)::int as n from processed_files
      where source = ${source} group by status`.execute(this.store.db));
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
    const { rows } = await this.retry(() => sql<FileRow>`select ${columns} from processed_files
      where source = ${source} ${opts.status === undefined ? sql`` : sql`and status = ${opts.status}`}
      order by path ${opts.limit === undefined ? sql`` : sql`limit ${opts.limit}::int`}`.execute(this.store.db));
    return rows.map(toRecord);
  }
}
