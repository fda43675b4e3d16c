import type { DuckDBInstance } from "@duckdb/node-api";
import { UserError } from "../errors.js";
import type { StepContext } from "../dag/types.js";
import { isAssetDefinition } from "../dag/types.js";
import { tableName, type Catalog, type TableIdentifier } from "../iceberg/catalog.js";
import type { PartitionFieldInput, Transform } from "../iceberg/partition-spec.js";
import type { Snapshot } from "../iceberg/metadata.js";
import type { WriteResult } from "../iceberg/table-writer.js";
import type { ObjectStorage } from "../storage/types.js";
import { defineAsset, type AssetDep, type AssetOptions } from "./asset.js";
import { localParquetFiles, scratchDir, upstreamLocations, withScratch } from "./data.js";

export interface IcebergTableOptions extends Omit<AssetOptions, "materialize" | "deps"> {
  /** The asset whose rows the table receives (a rawFiles, duckdbTable or icebergTable asset). */
  from: AssetDep;
  /** Further dependencies that only order the steps. */
  deps?: readonly AssetDep[];
  /** Iceberg identifier `namespace.table` (default: the asset key; a key without a dot goes to `default`). */
  table?: string;
  /**
   * Partitioning of the table when it is created: identity, year, month, day or hour of a column.
   * A year/month/day/hour of a text column (a CSV or JSON string from a rawFiles `from`, which
   * is staged as it came) makes that column a `timestamptz` column of the new table: its values
   * are cast as a `columns` contract casts `z.date()` (a date-time without an offset or zone is
   * UTC; one with `+02:00` or `Europe/Paris` is that instant). The cast is decided when the table
   * is created and holds from then on: every later write of text into that column is cast the
   * same way (as is text into any date, timestamp or timestamptz partition column). A value that
   * does not cast fails the step with one line naming the column and the value, and nothing is
   * committed; to set such rows aside instead, put a duckdbTable with a `columns` contract in
   * between. Other text columns stay strings.
   */
  partitionBy?: readonly PartitionFieldInput[];
  /**
   * `append` (default): every upstream row lands once. Batches of a rawFiles `from` are appended
   * as they arrive; a `from` that recomputes its partition (a duckdbTable) replaces the rows this
   * asset partition added before. `overwrite-partition`: the rows replace every row of the
   * Iceberg partitions they touch (dynamic partition overwrite), whoever wrote them.
   */
  mode?: "append" | "overwrite-partition";
  /** Allow int→long, float→double and wider decimals when upstream widens a column. */
  allowTypeWidening?: boolean;
  /** Drop table columns upstream no longer has (default: an error naming the column). */
  allowDropColumns?: boolean;
  /** Table properties when the table is created. */
  properties?: Readonly<Record<string, string>>;
}

const MODES = ["append", "overwrite-partition"] as const;
const TRANSFORMS: readonly Transform[] = ["identity", "year", "month", "day", "hour"];
/** Snapshot summary keys floe writes: what makes a retried or recovered commit a no-op. */
const SUMMARY = { run: "floe.run-id", asset: "floe.asset", partition: "floe.partition", batches: "floe.batches", source: "floe.source", commit: "floe.commit" } as const;

/**
 * An Apache Iceberg v2 table fed by an upstream asset, written under
 * `<warehouse>/iceberg/<namespace>/<table>` and committed through the SQL catalog in the state
 * database. Exactly once: every commit names the upstream batches it holds in its snapshot
 * summary, so a retried or recovered step appends only what no snapshot holds yet.
 *
 * @example
 * export const lakeOrders = icebergTable("lake.orders", {
 *   from: orders,
 *   partitionBy: [{ column: "ts", transform: "day" }],
 *   mode: "append",
 * });
 */
export function icebergTable(key: string, options: IcebergTableOptions) {
  const where = `icebergTable \`${key}\``;
  if (!options || (typeof options.from !== "string" && !isAssetDefinition(options.from))) {
    throw new UserError(`${where}: \`from\` must be an asset or an asset key string`);
  }
  const mode = options.mode ?? "append";
  if (!MODES.includes(mode)) throw new UserError(`${where}: mode must be "append" or "overwrite-partition", got \`${String(mode)}\``);
  for (const [i, f] of (options.partitionBy ?? []).entries()) {
    if (typeof f?.column !== "string" || f.column === "") throw new UserError(`${where}: partitionBy[${i}].column must be a column name`);
    if (f.transform !== undefined && !TRANSFORMS.includes(f.transform)) {
      throw new UserError(`${where}: partitionBy[${i}].transform must be one of ${TRANSFORMS.join(", ")}, got \`${String(f.transform)}\``);
    }
  }
  const table = identifier(options.table ?? key, where);
  const from = options.from;
  const partitions = options.partitions ?? (isAssetDefinition(from) ? from.partitions : undefined);
  const { from: _from, deps, table: _table, partitionBy: _by, mode: _mode, allowTypeWidening: _w, allowDropColumns: _d, properties: _p, ...rest } = options;
  return defineAsset(key, {
    ...rest,
    ...(partitions ? { partitions } : {}),
    kind: "iceberg",
    deps: [from, ...(deps ?? [])],
    materialize: (ctx) => withScratch(ctx, () => writeTable(ctx, options, table, mode)),
  });
}

function identifier(text: string, where: string): TableIdentifier {
  const parts = text.split(".");
  if (parts.some((p) => p === "" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(p))) {
    throw new UserError(`${where}: table \`${text}\` is not a valid Iceberg identifier (namespace.table, letters, digits and _)`);
  }
  return parts.length === 1 ? { namespace: ["default"], name: parts[0]! } : { namespace: parts.slice(0, -1), name: parts.at(-1)! };
}

async function writeTable(ctx: StepContext, options: IcebergTableOptions, table: TableIdentifier, mode: "append" | "overwrite-partition") {
  // The writer (avsc, manifests) loads only when a table is written: pipeline modules stay light.
  const [{ appendBatches, loadTable, overwritePartitions }, { liveDataFiles }] = await Promise.all([import("../iceberg/table-writer.js"), import("../iceberg/table-reader.js")]);
  const catalog = await ctx.resource<Catalog>("iceberg");
  const warehouse = await ctx.resource<ObjectStorage>("warehouse");
  const db = await ctx.resource<DuckDBInstance>("duckdb");
  const scratch = await scratchDir(ctx);
  const fromKey = typeof options.from === "string" ? options.from : options.from.key;
  const batches = upstreamLocations(ctx, fromKey).flat();
  const partition = ctx.partitionKey ?? "";
  const write = {
    table,
    catalog,
    storage: warehouse,
    location: ["iceberg", ...table.namespace, table.name].join("/"),
    tmpDir: scratch,
    ...(options.partitionBy ? { partitionBy: options.partitionBy } : {}),
    ...(options.properties ? { properties: { ...options.properties } } : {}),
    ...(options.allowTypeWidening ? { allowTypeWidening: true } : {}),
    ...(options.allowDropColumns ? { allowDropColumns: true } : {}),
  };
  const summary = { [SUMMARY.run]: ctx.runId, [SUMMARY.asset]: ctx.assetKey, [SUMMARY.partition]: partition };
  const con = await db.connect();
  try {
    let result: Pick<WriteResult, "addedRecords" | "commitRetries" | "adoptedFiles"> | undefined;
    let batchCounts: Record<string, number> = {};
    const batched = ctx.upstreamPartitions(fromKey).every((m) => Array.isArray(m.metadata.locations));
    if (mode === "append" && batched) {
      // Each upstream batch once: the writer appends, in one snapshot, the batches no snapshot
      // holds yet, looking again on every commit attempt. A batch's files are read only when the
      // table does not hold it.
      const r = await guard(ctx, table, fromKey, () =>
        appendBatches({
          ...write,
          connection: con,
          summary,
          batchesKey: SUMMARY.batches,
          batches: batches.map((id) => ({ id, files: () => localParquetFiles(warehouse, [id], scratch) })),
        }),
      );
      result = r;
      batchCounts = { icebergBatchesCommitted: r.committed.length, icebergBatchesFound: r.found.length };
      if (r.empty.length > 0) {
        ctx.log.warn(`${r.empty.length} batch${r.empty.length === 1 ? "" : "es"} of \`${fromKey}\` hold no file, nothing to append: ${r.empty.slice(0, 3).join(", ")}${r.empty.length > 3 ? ", …" : ""}`);
        batchCounts.icebergBatchesEmpty = r.empty.length;
      }
    } else if (mode === "append") {
      // `from` recomputes the whole partition: its rows replace the rows this asset partition
      // added before (and only those), once per upstream materialization.
      const source = JSON.stringify(batches);
      const files = await localParquetFiles(warehouse, batches, scratch);
      const mine = (s: Snapshot | undefined): boolean => s?.summary[SUMMARY.asset] === ctx.assetKey && s.summary[SUMMARY.partition] === partition;
      if (files.length > 0) {
        const r = await guard(ctx, table, fromKey, () =>
          overwritePartitions({
            ...write,
            connection: con,
            source: { parquet: files },
            summary: { ...summary, [SUMMARY.source]: source },
            committedIn: (m) => m.snapshots.find((s) => mine(s) && s.summary[SUMMARY.source] === source),
            replaceWhere: mine,
          }),
        );
        result = r.alreadyCommitted ? { ...r, addedRecords: 0 } : r;
      }
    } else {
      const files = await localParquetFiles(warehouse, batches, scratch);
      const commit = `${ctx.runId}:${ctx.attempt}:${partition}`;
      // no upstream rows touch any partition: a dynamic overwrite replaces nothing, so nothing is committed
      if (files.length > 0) {
        const r = await guard(ctx, table, fromKey, () =>
          overwritePartitions({
            ...write,
            connection: con,
            source: { parquet: files },
            summary: { ...summary, [SUMMARY.commit]: commit },
            dedupeKey: SUMMARY.commit,
          }),
        );
        result = r.alreadyCommitted ? { ...r, addedRecords: 0 } : r;
      }
    }
    const written = result?.addedRecords ?? 0;
    const current = await loadTable({ catalog, storage: warehouse, table });
    // What ref() reads of this asset partition: the live files its own commits added.
    const files = current
      ? await liveDataFiles(warehouse, current, { where: (f) => f.addedBy?.summary[SUMMARY.asset] === ctx.assetKey && f.addedBy.summary[SUMMARY.partition] === partition })
      : [];
    const snapshot = current?.metadata["current-snapshot-id"];
    return {
      metadata: {
        table: tableName(table),
        snapshotId: snapshot === undefined || snapshot === null || snapshot === -1n ? null : snapshot.toString(),
        metadataLocation: current?.metadataLocation ?? null,
        addedRecords: written,
        rows: written,
        partitionRows: files.reduce((a, f) => a + f.records, 0),
        files: files.map((f) => f.key),
        icebergCommitRetries: result?.commitRetries ?? 0,
        // upstream Parquet files listed in the table as they were, without a rewrite
        icebergAdoptedFiles: result?.adoptedFiles ?? 0,
        ...batchCounts,
        mode,
      },
    };
  } finally {
    con.closeSync();
  }
}

/**
 * Writer errors a user can act on become one line naming the asset and the table: a schema
 * change, or a text value in a date/time partition column that is not a date-time (the fix: a
 * duckdbTable with a `columns` contract between, which types it or sets the row aside).
 */
async function guard<T>(ctx: StepContext, table: TableIdentifier, fromKey: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof Error && e.name === "IcebergSchemaError") {
      throw new Error(`\`${ctx.assetKey}\` (Iceberg ${tableName(table)}): ${e.message}`);
    }
    if (e instanceof Error && e.name === "IcebergValueError") {
      const column = (e as Error & { column?: unknown }).column;
      const fix = `put a duckdbTable with a \`columns\` contract (${String(column)}: z.date()) between \`${fromKey}\` and \`${ctx.assetKey}\``;
      throw new Error(`\`${ctx.assetKey}\` (Iceberg ${tableName(table)}): ${e.message}; ${fix}`);
    }
    throw e;
  }
}
