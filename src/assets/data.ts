import { mkdir, rm, rmdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { StepContext } from "../dag/types.js";
import { literal } from "../duckdb/sql.js";
import type { ProjectSettings } from "../project/config.js";
import type { ObjectStorage } from "../storage/types.js";
import { isAssetDefinition, type AssetDefinition } from "../dag/types.js";

/**
 * How data-plane kinds hand tables to each other: a materialization's metadata names a
 * `location`, a warehouse prefix whose `*.parquet` files are the data of that asset partition
 * (or `locations`, one per batch; or `files`, the Parquet keys themselves, as Iceberg tables do).
 * Each materialization writes a new location (by run), so readers never see a half-written one
 * and the state store's latest materialization says which location is current.
 */
export interface TableMetadata {
  location: string;
  rows: number;
}

/** The warehouse prefix for a new materialization of `asset`. */
export function newLocation(area: "tables" | "raw" | "quarantine", ctx: StepContext): string {
  return `${area}/${ctx.assetKey}/${ctx.partitionKey ?? "_"}/${ctx.runId}-${ctx.attempt}`;
}

/** Scratch folders made for steps still running, by step attempt. */
const scratchOf = new Map<string, string>();
const attemptKey = (ctx: StepContext): string => `${ctx.runId}\u0000${ctx.assetKey}\u0000${ctx.partitionKey ?? ""}\u0000${ctx.attempt}`;

/** A per-step local scratch folder under `<home>/tmp`; {@link withScratch} removes it when the step ends. */
export async function scratchDir(ctx: StepContext): Promise<string> {
  const settings = await ctx.resource<ProjectSettings>("project");
  const dir = join(settings.home, "tmp", ctx.runId, `${ctx.assetKey}-${ctx.partitionKey ?? "_"}-${ctx.attempt}`);
  await mkdir(dir, { recursive: true });
  scratchOf.set(attemptKey(ctx), dir);
  return dir;
}

/**
 * Runs a step's materialize and then removes its scratch folder (staged copies, typed rows),
 * whether it succeeded or failed: the data it keeps is in the warehouse by then.
 *
 * @example
 * materialize: (ctx) => withScratch(ctx, () => ingest(ctx, options)),
 */
export async function withScratch<T>(ctx: StepContext, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } finally {
    // only a step that made a scratch folder has one to remove
    const key = attemptKey(ctx);
    const dir = scratchOf.get(key);
    if (dir !== undefined) {
      scratchOf.delete(key);
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      await rmdir(dirname(dir)).catch(() => undefined); // the run's folder, once its last step is done
    }
  }
}

/**
 * Local paths of the Parquet files of one materialization's `locations`: the files themselves
 * for a folder warehouse, copies in `scratch` for a remote one (DuckDB never reads remote URLs
 * here). A file name in a later location replaces the same name in an earlier one.
 */
export async function localParquetFiles(warehouse: ObjectStorage, locations: readonly string[], scratch: string): Promise<string[]> {
  const byName = new Map<string, string>();
  for (const location of locations) {
    if (location.endsWith(".parquet")) {
      byName.set(location, location);
      continue;
    }
    for await (const page of warehouse.list(`${location}/`)) {
      for (const o of page) if (o.key.endsWith(".parquet")) byName.set(o.key.slice(o.key.lastIndexOf("/") + 1), o.key);
    }
  }
  const out: string[] = [];
  for (const key of byName.values()) {
    if (warehouse.uri.startsWith("file:")) out.push(fileURLToPath(warehouse.uriOf(key)));
    else {
      const local = join(scratch, "in", key);
      await warehouse.download(key, local);
      out.push(local);
    }
  }
  return out;
}

/**
 * The locations this step reads of an upstream asset, one group per upstream materialization
 * (a raw partition's group lists its batches, oldest first), or a message saying why there are none.
 */
export function upstreamLocations(ctx: StepContext, dep: AssetDefinition | string): string[][] {
  const key = isAssetDefinition(dep) ? dep.key : dep;
  if (!ctx.asset.deps.includes(key)) {
    throw new Error(`\`${ctx.assetKey}\` reads \`${key}\` but does not declare it in deps; add it to deps`);
  }
  const mats = ctx.upstreamPartitions(key);
  if (mats.length === 0) {
    throw new Error(`\`${key}\`${ctx.partitionKey ? ` partition ${ctx.partitionKey}` : ""} has not been materialized yet; materialize it first (select +${ctx.assetKey})`);
  }
  return mats.map((m) => {
    const { location, locations, files } = m.metadata;
    if (Array.isArray(files)) return files.filter((f): f is string => typeof f === "string");
    if (Array.isArray(locations)) return locations.filter((l): l is string => typeof l === "string");
    if (typeof location !== "string") {
      throw new Error(`\`${key}\` is not a table (no location in its metadata); ref() reads rawFiles, duckdbTable and icebergTable assets`);
    }
    return [location];
  });
}

/**
 * A DuckDB table expression over what this step reads of an upstream table asset: a
 * `read_parquet` of its current files (copied to `scratch` first when the warehouse is remote);
 * for a rawFiles asset, with `_floe_row`, each row's number in its source file.
 * Throws, naming the asset, when the upstream holds no file.
 *
 * @example
 * const from = await upstreamReadSql(ctx, warehouse, scratch, "orders"); // read_parquet([...], union_by_name = true)
 */
export async function upstreamReadSql(ctx: StepContext, warehouse: ObjectStorage, scratch: string, dep: string): Promise<string> {
  const files: string[] = [];
  for (const group of upstreamLocations(ctx, dep)) files.push(...(await localParquetFiles(warehouse, group, scratch)));
  if (files.length === 0) {
    throw new Error(`\`${dep}\`${ctx.partitionKey ? ` partition ${ctx.partitionKey}` : ""} has no data yet (its materialization holds no file)`);
  }
  const list = `[${files.map(literal).join(", ")}]`;
  if (!ctx.upstreamPartitions(dep).every((m) => typeof m.metadata.batchId === "string")) return `read_parquet(${list}, union_by_name = true)`;
  // Staged raw files keep their source's row order: `_floe_row` (1-based) is the row's place in
  // its file, numbered as it is read (a file staged before floe numbered rows this way holds the
  // same numbers in a column of that name, which this replaces).
  return `(SELECT COLUMNS(c -> c NOT IN ('file_row_number', '_floe_row')), file_row_number + 1 AS _floe_row FROM read_parquet(${list}, union_by_name = true, file_row_number = true))`;
}
