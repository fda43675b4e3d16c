import { hostname } from "node:os";
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
import { resolveSecret, type SecretRef } from "../secrets.js";
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
    ...(watch ? { sensor: { intervalMs, poll: (ctx) => sense(ctx, key, options, since) } } : {}),
  });
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

  // Discover: list a page, keep what the glob matches, diff it against the ledger set-based.
  let seen = 0;
  let beforeSince = 0;
  for await (const page of storage.list(prefix)) {
    const matched = page.filter((o) => matches(o.key));
    const files = since === undefined ? matched : matched.filter((o) => o.lastModified >= since);
    beforeSince += matched.length - files.length;
    seen += files.length;
    if (files.length > 0) await ledger.discover(ctx.assetKey, ctx.partitionKey, files);
  }

  const db = await ctx.resource<DuckDBInstance>("duckdb");
  const scratch = await scratchDir(ctx);
  const warehouse = await ctx.resource<ObjectStorage>("warehouse");
  const location = newLocation("raw", ctx);
  // A batch is named by where its staged files go: the ledger alone then says which locations
  // hold the partition's data.
  const batchId = location;
  const workerId = `${hostname()}:${process.pid}`;
  // Abandoned after the shutdown grace: this batch's claims go back to DISCOVERED now (the
  // attempt given back), not when the claim timeout frees them.
  ctx.onInterrupt(() => ledger.release(workerId, batchId));
  const local = storage.uri.startsWith("file:");
  let rows = 0;
  let bytes = 0;
  let ingested = 0;
  const failures: Array<{ path: string; error: string }> = [];
  // A batch can take longer than the claim timeout: keep its claims fresh while this step works,
  // so another worker never takes over files that are still being ingested.
  const claimTimeoutMs = options.claimTimeoutMs ?? 600_000;
  const keepClaims = setInterval(() => void ledger.touch(batchId).catch(() => undefined), Math.max(250, claimTimeoutMs / 3));
  try {
    for (;;) {
      // Shutting down: claim nothing more; what is ingested so far is committed as this batch, the
      // rest stays DISCOVERED for the next run.
      if (ctx.signal.aborted) break;
      const claimed = await ledger.claim({
        source: ctx.assetKey,
        partition: ctx.partitionKey,
        workerId,
        runId: ctx.runId,
        batchId,
        limit: options.batchSize ?? 500,
        claimTimeoutMs,
        maxAttempts: options.maxAttempts ?? 3,
        ...(since !== undefined ? { modifiedSince: since } : {}),
      });
      if (claimed.length === 0) break;
      const results = await mapBounded(claimed, options.parallelism ?? 4, async (file) => {
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
          failures.push({ path: file.path, error });
          ctx.log.error(`${file.path}: ${error}`, { file: file.path });
          return { id: file.id, status: "FAILED" as const, error };
        } finally {
          con.closeSync();
        }
      }).catch(async (e: unknown) => {
        await ledger.release(workerId, batchId); // the claims go back to DISCOVERED for the next run
        throw e;
      });
      // One statement for the batch: failures end now; ingested files get their rows and bytes and
      // stay PROCESSING in this batch until it is committed. Scoped to this claim: if another
      // worker took a file over meanwhile, its row is left alone.
      await ledger.recordBatch(results, { batchId, workerId });
      for (const r of results) {
        if (r.status === "SUCCESS") {
          rows += r.rows;
          bytes += r.bytes;
          ingested++;
        }
      }
    }
  } finally {
    clearInterval(keepClaims);
  }
  ctx.afterCommit(async () => void (await ledger.settleBatch(batchId)));
  const maxFailed = options.maxFailedFiles ?? 0;
  if (failures.length > maxFailed) {
    const first = failures[0]!;
    throw new Error(`${failures.length} file${failures.length === 1 ? "" : "s"} failed (maxFailedFiles: ${maxFailed}), e.g. ${first.path}: ${first.error}`);
  }
  // The partition's data is every batch with files ingested so far, oldest first, then this one
  // (a reprocessed file's new version, same name, replaces its old one when read). Read from the
  // ledger, so a batch that a concurrent run settled after this list was made is in the next one.
  const earlier = (await ledger.settledBatches(ctx.assetKey, ctx.partitionKey)).filter((b) => b !== location);
  const locations = ingested > 0 ? [...earlier, location] : earlier;
  return { metadata: { location, locations, rows, bytes, files: ingested, failedFiles: failures.length, listed: seen, ...(since !== undefined ? { ignoredBeforeSince: beforeSince } : {}), batchId } };
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

/** Maps with at most `limit` calls in flight, results in input order. */
async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}
