import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DuckDBInstance } from "@duckdb/node-api";
import picomatch from "picomatch";
import { UserError, isUserError } from "../errors.js";
import type { SensorContext, StepContext } from "../dag/types.js";
import { stageFile, type CsvOptions, type RawFormat } from "../duckdb/stage.js";
import type { ProjectSettings } from "../project/config.js";
import type { FileLedger } from "../state/files.js";
import { checkStorageConfig, createStorage, storageProfile, type ResolvedStorageConfig, type StorageConfig as GenericStorageConfig } from "../storage/index.js";
import { ObjectNotFoundError, type ObjectInfo, type ObjectStorage } from "../storage/types.js";
import { processOwner } from "../state/owners.js";
import { resolveSecret, type SecretRef } from "../secrets.js";
import { sleep } from "../timers.js";
import { defineAsset, type AssetOptions } from "./asset.js";
import { newLocation, scratchDir, withScratch } from "./data.js";

/** A rawFiles source: a folder, or an S3 prefix whose credentials may be `secret()` references. */
export type StorageConfig = GenericStorageConfig<string | SecretRef>;

export interface RawFilesOptions extends Omit<AssetOptions, "materialize" | "deps"> {
  /** Inline, or the name of a storage profile of floe.config.ts (`storage: { landing: {…} }`). */
  storage: StorageConfig | string;
  /** Keys to ingest, relative to the storage root; `{partition}` expands to the partition key. */
  glob: string;
  format: RawFormat;
  csv?: CsvOptions;
  /** Failed files tolerated before the step fails (default 0). */
  maxFailedFiles?: number;
  /** Attempts per file across runs (default 3). */
  maxAttempts?: number;
  /** Files claimed per batch (default 500). */
  batchSize?: number;
  /** Files parsed at once (default 4). */
  parallelism?: number;
  /** A claim older than this is taken over by the next run (default 10 min). */
  claimTimeoutMs?: number;
  /**
   * Ignore files last modified before this time (a Date, or an ISO 8601 string such as
   * `"2025-06-01"` or `"2025-06-01T00:00:00Z"`; a date without a zone is UTC). Such files are
   * not listed at all: they are never recorded in the ledger, so moving `since` earlier later
   * picks them up on the next run. A file already discovered but older than `since` is not
   * claimed either. For a landing folder with years of history you do not want to backfill.
   */
  since?: Date | string;
  /** Watch the storage: `floe scheduler` / `floe dev` queue a run when new files land (default every 30 s). */
  sensor?: boolean | { intervalSeconds?: number };
}

const FORMATS: readonly RawFormat[] = ["csv", "json", "ndjson", "parquet"];

/**
 * Raw files landing in a folder or an S3 prefix. Each run ingests the files that are new or
 * changed since they were last ingested (etag, or size + mtime locally), each file on its own:
 * a corrupt file fails alone, with its error, and is retried up to `maxAttempts` times.
 *
 * @example
 * export const rawOrders = rawFiles("raw_orders", {
 *   storage: { type: "local", root: "data/landing" },
 *   glob: "orders/{partition}/*.csv",
 *   format: "csv",
 *   partitions: partitions.daily({ start: "2025-01-01" }),
 * });
 */
export function rawFiles(key: string, options: RawFilesOptions) {
  if (!FORMATS.includes(options.format)) {
    throw new UserError(`rawFiles \`${key}\`: format \`${String(options.format)}\` is not one of ${FORMATS.join(", ")}`);
  }
  checkStorage(key, options.storage);
  if (options.glob.includes("{partition}") && !options.partitions) {
    throw new UserError(`rawFiles \`${key}\`: glob uses {partition} but the asset has no partitions`);
  }
  const since = parseSince(key, options.since);
  const { sensor: watch, since: _since, ...rest } = options;
  const intervalMs = typeof watch === "object" ? (watch.intervalSeconds ?? 30) * 1000 : 30_000;
  return defineAsset(key, {
    ...rest,
    kind: "raw_files",
    materialize: (ctx) => withScratch(ctx, () => ingest(ctx, options, since)),
    pendingWork: (ctx, partitions) => pendingWork(ctx, key, partitions, options, since),
    ...(watch ? { sensor: { intervalMs, poll: (ctx) => sense(ctx, key, options, since) } } : {}),
  });
}

/** A run whose heartbeat is older than this many heartbeat intervals is dead (as the runner judges it). */
const MISSED_HEARTBEATS = 3;
/** Waiting for files another run holds: the first poll after 100 ms, doubling up to 1 s. */
const WAIT_MIN_MS = 100;
const WAIT_MAX_MS = 1_000;
/** Files named in a log line or an error, at most. */
const NAMED = 5;

/**
 * Batches of this process that a failed step could not give back (the state store did not
 * answer): their files are PROCESSING under this process's name, yet no step works on them, so
 * the next claim in this process (a retry of the step) takes them over at once.
 */
const abandonedBatches = new Set<string>();

/** The step stopped because the run is shutting down or was canceled. */
class Interrupted extends Error {
  constructor() {
    super("interrupted");
  }
}

/** Whether a materialized partition still has files waiting (DISCOVERED, FAILED with attempts left, or held by a dead owner). */
async function pendingWork(ctx: SensorContext, key: string, partitions: ReadonlyArray<string | null>, options: RawFilesOptions, since: Date | undefined): Promise<Array<string | null>> {
  const settings = await ctx.resource<ProjectSettings>("project");
  const ledger = await ctx.resource<FileLedger>("files");
  const dead = await ledger.deadClaims(key, partitions);
  const pending = await ledger.pendingFilesOf(key, partitions, {
    claimTimeoutMs: options.claimTimeoutMs ?? 600_000,
    maxAttempts: options.maxAttempts ?? 3,
    ownerStaleMs: settings.heartbeatMs * MISSED_HEARTBEATS,
    ...dead,
    ...(since === undefined ? {} : { modifiedSince: since }),
  });
  return [...pending.keys()];
}

/** A sensor pass: list, record what is new in the ledger, report the partitions with files waiting. */
async function sense(ctx: SensorContext, key: string, options: RawFilesOptions, since: Date | undefined): Promise<Array<string | null>> {
  const settings = await ctx.resource<ProjectSettings>("project");
  const ledger = await ctx.resource<FileLedger>("files");
  const storage = await openStorage(options.storage, settings, key);
  const [before, after = ""] = options.glob.split("{partition}");
  const prefix = before!.slice(0, before!.search(/[*?[{]|$/)).replace(/[^/]*$/, "");
  const matches = picomatch(options.glob.replaceAll("{partition}", "*"));
  const escape = (t: string): string => t.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("**", "\u0000").replaceAll("*", "[^/]*").replaceAll("?", "[^/]").replaceAll("\u0000", ".*");
  const partitionOf = options.glob.includes("{partition}") ? new RegExp(`^${escape(before!)}([^/]+)${escape(after)}$`) : undefined;
  const byPartition = new Map<string | null, ObjectInfo[]>();
  for await (const page of storage.list(prefix)) {
    for (const o of page) {
      if (!matches(o.key) || (since !== undefined && o.lastModified < since)) continue;
      const p = partitionOf ? (partitionOf.exec(o.key)?.[1] ?? undefined) : null;
      if (p === undefined) continue;
      // only partitions that exist (a day that has not closed yet waits)
      if (p !== null && options.partitions?.invalidReason(p) !== undefined) continue;
      const list = byPartition.get(p) ?? [];
      list.push(o);
      byPartition.set(p, list);
    }
  }
  for (const [p, files] of byPartition) await ledger.discover(key, p, files);
  return ledger.pendingPartitions(key, since);
}

async function ingest(ctx: StepContext, options: RawFilesOptions, since: Date | undefined) {
  const settings = await ctx.resource<ProjectSettings>("project");
  const ledger = await ctx.resource<FileLedger>("files");
  const storage = await openStorage(options.storage, settings, ctx.assetKey);
  const pattern = options.glob.replaceAll("{partition}", ctx.partitionKey ?? "");
  const prefix = pattern.slice(0, pattern.search(/[*?[{]|$/)).replace(/[^/]*$/, "");
  const matches = picomatch(pattern, { dot: false });
  const claimTimeoutMs = options.claimTimeoutMs ?? 600_000;
  const maxAttempts = options.maxAttempts ?? 3;
  const ownerStaleMs = settings.heartbeatMs * MISSED_HEARTBEATS;
  const modifiedSince = since === undefined ? {} : { modifiedSince: since };

  const db = await ctx.resource<DuckDBInstance>("duckdb");
  const scratch = await scratchDir(ctx);
  const warehouse = await ctx.resource<ObjectStorage>("warehouse");
  const location = newLocation("raw", ctx);
  // A batch is named by where its staged files go: the ledger alone then says which locations
  // hold the partition's data.
  const batchId = location;
  const workerId = processOwner();
  // Abandoned after the shutdown grace: this batch's claims go back to DISCOVERED now (the
  // attempt given back), not when their owner is found dead.
  ctx.onInterrupt(() => ledger.release(workerId, batchId));
  const local = storage.uri.startsWith("file:");
  let rows = 0;
  let bytes = 0;
  let ingested = 0;
  const failures: Array<{ path: string; error: string }> = [];
  // Runs ingesting the same partition take turns (a lock shared by every process on the store),
  // so the one that goes second finds the first one's batch finished and reports it too: no run
  // reports success while another holds files of its partition. A holder that looks dead for
  // longer than a heartbeat timeout is not waited for (exactly-once does not rest on the lock).
  let lockWaitLogged = false;
  let quietSince: number | undefined;
  const lock = await ledger.lockPartition(ctx.assetKey, ctx.partitionKey, {
    signal: ctx.signal,
    giveUp: async () => {
      if (!lockWaitLogged) ctx.log.info("waiting for another run that is ingesting this partition");
      lockWaitLogged = true;
      const held = await ledger.heldElsewhere(ctx.assetKey, ctx.partitionKey, { batchId, liveOnly: { ownerStaleMs } });
      if (held > 0) quietSince = undefined;
      else quietSince ??= Date.now();
      return quietSince !== undefined && Date.now() - quietSince > ownerStaleMs;
    },
  });
  // A batch can take longer than the claim timeout: keep its claims fresh while this step works,
  // so another worker never takes over files that are still being ingested.
  const keepClaims = setInterval(() => void ledger.touch(batchId).catch(() => undefined), Math.max(250, claimTimeoutMs / 3));
  try {
    // Discover: list a page, keep what the glob matches, diff it against the ledger set-based.
    const listedSince = await ledger.now();
    const listed = new Set<string>();
    let seen = 0;
    let beforeSince = 0;
    for await (const page of storage.list(prefix)) {
      const matched = page.filter((o) => matches(o.key));
      for (const o of matched) listed.add(o.key);
      const files = since === undefined ? matched : matched.filter((o) => o.lastModified >= since);
      beforeSince += matched.length - files.length;
      seen += files.length;
      if (files.length > 0) await ledger.discover(ctx.assetKey, ctx.partitionKey, files);
    }
    // The listing is complete: what the ledger holds and the landing no longer does is gone.
    const removedFiles = await forgetVanished(ctx, ledger, warehouse, listed, { listedSince, claimTimeoutMs, ownerStaleMs, workerId, location });

    let delay = WAIT_MIN_MS;
    let waitLogged = false;
    for (;;) {
      // Shutting down: claim nothing more; this batch is given back whole (below).
      if (ctx.signal.aborted) throw new Interrupted();
      const dead = await ledger.deadClaims(ctx.assetKey, ctx.partitionKey, { workerId, abandonedBatches });
      const claimed = await ledger.claim({
        source: ctx.assetKey,
        partition: ctx.partitionKey,
        workerId,
        runId: ctx.runId,
        batchId,
        limit: options.batchSize ?? 500,
        claimTimeoutMs,
        maxAttempts,
        ownerStaleMs,
        ...dead,
        ...modifiedSince,
      });
      if (claimed.length === 0) {
        // Nothing claimable: the partition is done unless files are still being ingested by
        // another live run (not yet recorded). Those may be abandoned yet (their owner dies), so
        // wait until they are recorded or become claimable. Files another run already ingested
        // (waiting for its commit) are its own: waiting on them could make two runs wait on each other.
        const held = await ledger.heldElsewhere(ctx.assetKey, ctx.partitionKey, { batchId, ...modifiedSince });
        if (held === 0) break;
        if (!waitLogged) ctx.log.info(`waiting for ${held} file${held === 1 ? "" : "s"} of this partition that another run is ingesting`);
        waitLogged = true;
        await sleep(delay, ctx.signal);
        delay = Math.min(WAIT_MAX_MS, delay * 2);
        continue;
      }
      delay = WAIT_MIN_MS;
      const taken = claimed.filter((f) => f.previousBatchId !== null && f.attempts > 1);
      if (taken.length > 0) ctx.log.info(`took over ${taken.length} file${taken.length === 1 ? "" : "s"} whose earlier claim was lost, e.g. ${taken[0]!.path}`);
      const results = await mapBounded(claimed, options.parallelism ?? 4, ctx.signal, async (file) => {
        const con = await db.connect();
        try {
          // A local source is read in place; a remote one is first copied to scratch by the SDK.
          const src = local ? fileURLToPath(storage.uriOf(file.path)) : join(scratch, "src", file.id);
          if (local) {
            if ((await storage.head(file.path)) === undefined) throw new ObjectNotFoundError(file.path, storage.uriOf(file.path));
          } else await storage.download(file.path, src);
          const staged = join(scratch, `${file.id}.parquet`);
          const { rows: n } = await stageFile(con, { path: src, format: options.format, source: file.path, target: staged, ...(options.csv ? { csv: options.csv } : {}) });
          await warehouse.upload(staged, `${location}/${file.id}.parquet`);
          return { id: file.id, status: "SUCCESS" as const, rows: n, bytes: file.size };
        } catch (e) {
          // The source itself is wrong (unreachable, access denied): fail the step, not the file.
          if (isUserError(e)) throw e;
          const error = e instanceof Error ? e.message : String(e);
          ctx.log.error(`${file.path}: ${error}`, { file: file.path });
          return { id: file.id, status: "FAILED" as const, error };
        } finally {
          con.closeSync();
        }
      });
      if (results === undefined) throw new Interrupted();
      // One statement for the batch: failures end now; ingested files get their rows and bytes and
      // stay PROCESSING in this batch until it is committed. Scoped to this claim: if another
      // worker took a file over meanwhile, its row is left alone.
      const mine = new Set(await ledger.recordBatch(results, { batchId, workerId }));
      // A file another worker took over meanwhile (it judged this one dead) is that worker's to
      // ingest: this batch drops its staged copy, so the file is never read twice.
      const lost = results.filter((r) => !mine.has(r.id));
      if (lost.length > 0) {
        await warehouse.delete(lost.map((r) => `${location}/${r.id}.parquet`));
        ctx.log.warn(`${lost.length} file${lost.length === 1 ? " was" : "s were"} taken over by another worker while this step ingested ${lost.length === 1 ? "it" : "them"}; left to that worker`);
      }
      const pathOf = new Map(claimed.map((f) => [f.id, f.path]));
      for (const r of results) {
        if (!mine.has(r.id)) continue;
        if (r.status === "SUCCESS") {
          rows += r.rows;
          bytes += r.bytes;
          ingested++;
        } else failures.push({ path: pathOf.get(r.id)!, error: r.error });
      }
    }

    // Failed files of the partition, this run's and those left FAILED by earlier runs (in their
    // backoff, or out of attempts): the step keeps failing on them until they are fixed or removed.
    const maxFailed = options.maxFailedFiles ?? 0;
    const failed = await ledger.failedFiles(ctx.assetKey, ctx.partitionKey, modifiedSince);
    if (failed.count > maxFailed) {
      const named = failures[0] ?? failed.sample.map((f) => ({ path: f.path, error: f.error ?? "failed" }))[0];
      const earlier = Math.max(0, failed.count - failures.length);
      throw new Error(
        `${failed.count} file${failed.count === 1 ? "" : "s"} failed (maxFailedFiles: ${maxFailed})${named ? `, e.g. ${named.path}: ${named.error}` : ""}` +
          `${earlier > 0 ? ` (${earlier} of them in an earlier run)` : ""}; fix or remove ${failed.count === 1 ? "the file" : "the files"}, then run again`,
      );
    }
    // The partition's data is every batch with files ingested so far, oldest first, then this one
    // (a reprocessed file's new version, same name, replaces its old one when read). Read from the
    // ledger, so a batch that a concurrent run settled after this list was made is in the next one.
    const earlier = (await ledger.settledBatches(ctx.assetKey, ctx.partitionKey)).filter((b) => b !== location);
    // Batches another run ingested whole before this one took its turn, still waiting for that
    // run's commit: this step reports them too, and settles them with its own.
    const adopted = lock.held ? (await ledger.finishedBatches(ctx.assetKey, ctx.partitionKey)).filter((b) => b !== location) : [];
    const locations = [...earlier, ...adopted, ...(ingested > 0 ? [location] : [])];
    ctx.afterCommit(async () => {
      await ledger.settleBatch(batchId);
      // of another step's batch, only what it had recorded when this step took it
      for (const b of adopted) await ledger.settleBatch(b, "SUCCESS", { recordedOnly: true });
    });
    return {
      metadata: {
        location, locations, rows, bytes, files: ingested, failedFiles: failures.length, listed: seen,
        ...(since !== undefined ? { ignoredBeforeSince: beforeSince } : {}),
        removedFiles,
        batchId,
        ...(adopted.length > 0 ? { adoptedBatches: adopted } : {}),
      },
    };
  } catch (e) {
    // Whatever failed, this batch's claims go back (the attempt given back): the next run takes
    // them at once. If even that fails (the state store is down), they are taken over once this
    // run is failed, or by the next claim of this process.
    let given: number | undefined;
    let why = "";
    try {
      given = await ledger.release(workerId, batchId);
    } catch (re) {
      abandonedBatches.add(batchId);
      why = re instanceof Error ? re.message : String(re);
    }
    // What this batch staged is never read now (a batch is read only once its step succeeded).
    await removeFolder(warehouse, location).catch(() => undefined);
    if (e instanceof Interrupted) {
      throw new Error(
        given === undefined
          ? `interrupted (the run is stopping); this step's claimed files could not be given back now (${why}): they return to the ledger once this run is failed; rerun with --from-failure`
          : `interrupted (the run is stopping): ${given} claimed file${given === 1 ? "" : "s"} given back to the ledger; rerun with --from-failure`,
      );
    }
    throw e;
  } finally {
    clearInterval(keepClaims);
    await lock.release();
  }
}

/**
 * After a complete listing: forgets the partition's files that the landing no longer holds, and
 * removes their staged copies first (in any batch folder of the partition, since a later batch's
 * copy of a file replaces an earlier one when read), so a table that recomputes the partition no
 * longer sees their rows. Logs one warning naming a few. Returns how many files were forgotten.
 */
async function forgetVanished(
  ctx: StepContext,
  ledger: FileLedger,
  warehouse: ObjectStorage,
  listed: ReadonlySet<string>,
  o: { listedSince: Date; claimTimeoutMs: number; ownerStaleMs: number; workerId: string; location: string },
): Promise<number> {
  const dead = await ledger.deadClaims(ctx.assetKey, ctx.partitionKey, { workerId: o.workerId, abandonedBatches });
  const partitionFolder = o.location.slice(0, o.location.lastIndexOf("/") + 1);
  const removed = await ledger.removeUnlisted(ctx.assetKey, ctx.partitionKey, listed, { listedSince: o.listedSince, claimTimeoutMs: o.claimTimeoutMs, ownerStaleMs: o.ownerStaleMs, ...dead }, async (gone) => {
    const names = new Set(gone.map((g) => `${g.id}.parquet`));
    const keys: string[] = [];
    for await (const page of warehouse.list(partitionFolder)) {
      for (const f of page) if (names.has(f.key.slice(f.key.lastIndexOf("/") + 1))) keys.push(f.key);
    }
    if (keys.length > 0) await warehouse.delete(keys);
  });
  if (removed.length > 0) {
    const shown = removed.slice(0, NAMED).map((r) => r.path).join(", ");
    ctx.log.warn(
      `${removed.length} file${removed.length === 1 ? "" : "s"} no longer in the landing, forgotten with ${removed.length === 1 ? "its" : "their"} staged rows: ${shown}${removed.length > NAMED ? `, … (${removed.length - NAMED} more)` : ""}. ` +
        `Tables that recompute this partition drop those rows; an append-mode icebergTable keeps the rows it already appended ` +
        `(to drop them, use mode "overwrite-partition", or put a duckdbTable in between)`,
      { removedFiles: removed.length, files: removed.slice(0, NAMED).map((r) => r.path) },
    );
  }
  return removed.length;
}

/** Deletes every object under `folder` (best effort by the caller). */
async function removeFolder(warehouse: ObjectStorage, folder: string): Promise<void> {
  const keys: string[] = [];
  for await (const page of warehouse.list(`${folder}/`)) for (const o of page) keys.push(o.key);
  if (keys.length > 0) await warehouse.delete(keys);
}

/** `since` as a Date, or a one-line UserError naming the asset and the value. */
function parseSince(key: string, since: Date | string | undefined): Date | undefined {
  if (since === undefined) return undefined;
  const iso = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;
  const d = since instanceof Date ? since : typeof since === "string" && iso.test(since.trim()) ? parseIso(since.trim()) : undefined;
  if (d === undefined || Number.isNaN(d.getTime())) {
    const shown = since instanceof Date ? "an invalid Date" : `\`${String(since)}\``;
    throw new UserError(`rawFiles \`${key}\`: since ${shown} is not a date; expected a Date or an ISO 8601 string such as "2025-06-01" or "2025-06-01T00:00:00Z"`);
  }
  return d;
}

/** An ISO date or date-time; without a zone it is UTC (as a partition key is), never the machine's zone. */
function parseIso(text: string): Date {
  const t = text.replace(" ", "T");
  const [y, m, d] = t.slice(0, 10).split("-").map(Number) as [number, number, number];
  // reject overflowing fields (2025-02-30), which Date would roll over into the next month
  if (m < 1 || m > 12 || d < 1 || d > new Date(Date.UTC(y, m, 0)).getUTCDate()) return new Date(Number.NaN);
  if (!t.includes("T")) return new Date(`${t}T00:00:00Z`);
  return new Date(/(?:Z|[+-]\d{2}:?\d{2})$/.test(t) ? t : `${t}Z`);
}

/** The source's storage (inline, or a profile of floe.config.ts by name), with its own credentials resolved now (never process-global). */
async function openStorage(given: StorageConfig | string, settings: ProjectSettings, key: string): Promise<ObjectStorage> {
  const label = typeof given === "string" ? `rawFiles \`${key}\` storage \`${given}\`` : `rawFiles \`${key}\` storage`;
  const config = typeof given === "string" ? storageProfile(given, settings.storage ?? {}, `rawFiles \`${key}\` storage`)! : given;
  const resolved: ResolvedStorageConfig =
    config.type === "s3" && config.credentials
      ? { ...config, credentials: resolveCredentials(config.credentials, resolveSecret) }
      : (config as ResolvedStorageConfig);
  return createStorage(resolved, settings.dir, label);
}

/** Checks a storage config's shape at definition time (secrets stand in as placeholders); a profile name against floe.config.ts when it is loaded. */
function checkStorage(key: string, given: StorageConfig | string): void {
  const config = typeof given === "string" ? storageProfile(given, undefined, `rawFiles \`${key}\` storage`) : given;
  if (config === undefined) return; // a profile name, checked when the step opens it
  const shaped = typeof config === "object" && config !== null && config.type === "s3" && config.credentials
    ? { ...config, credentials: resolveCredentials(config.credentials, (v) => (typeof v === "string" ? v : "secret")) }
    : config;
  checkStorageConfig(shaped, `rawFiles \`${key}\` storage`);
}

function resolveCredentials(c: NonNullable<Extract<StorageConfig, { type: "s3" }>["credentials"]>, value: (v: string | SecretRef) => string) {
  return { accessKeyId: value(c.accessKeyId), secretAccessKey: value(c.secretAccessKey), ...(c.sessionToken !== undefined ? { sessionToken: value(c.sessionToken) } : {}) };
}

/**
 * Maps with at most `limit` calls in flight, results in input order. Once `signal` aborts, no
 * further call starts: the calls in flight finish, and the result is undefined.
 */
async function mapBounded<T, R>(items: readonly T[], limit: number, signal: AbortSignal, fn: (item: T) => Promise<R>): Promise<R[] | undefined> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length && !signal.aborted) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return signal.aborted ? undefined : out;
}
