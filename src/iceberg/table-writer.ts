// Appends and partition overwrites as Iceberg v2 snapshots: data files, manifests, manifest list,
// metadata file, then a compare-and-swap in the catalog — the only step that makes anything
// visible. On a conflict the commit is re-applied on the new table version (bounded retries).

import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { DuckDBConnection } from "@duckdb/node-api";
import { castSql } from "../duckdb/contract.js";
import type { ObjectStorage } from "../storage/types.js";
import { tableName, type Catalog, type TableIdentifier } from "./catalog.js";
import { adoptDataFiles, parquetRelation, planAdoption } from "./adopt.js";
import { ident, inBatches, literal, requiredNullColumn, writeDataFiles, type WrittenFile } from "./data-files.js";
import { DeleteContent, indexDataFiles, partitionKeyOf, stillApplies, unpartitionedSpecs, type ScopedFile } from "./deletes.js";
import {
  decodeManifest,
  decodeManifestList,
  encodeManifest,
  encodeManifestList,
  EntryStatus,
  manifestFileFor,
  rewriteManifest,
  type ManifestEntry,
  type ManifestFile,
} from "./manifest.js";
import {
  currentSchema,
  currentSnapshot,
  defaultSpec,
  findSnapshotBySummary,
  metadataFileName,
  metadataVersion,
  newSnapshotId,
  newTableMetadata,
  parseTableMetadata,
  serializeTableMetadata,
  TOTAL_KEYS,
  totals,
  withSchema,
  type Removed,
  withSnapshot,
  type Snapshot,
  type TableMetadata,
} from "./metadata.js";
import {
  buildPartitionSpec,
  coercePartitionValue,
  partitionKey,
  resultType,
  samePartitioning,
  type PartitionFieldInput,
  type PartitionSpec,
  type PartitionValue,
} from "./partition-spec.js";
import {
  IcebergSchemaError,
  reconcileSchema,
  schemaFromColumns,
  type Schema,
  type SchemaChangeOptions,
  type SourceColumn,
} from "./schema.js";

export interface TableWriteOptions extends SchemaChangeOptions {
  /** The DuckDB connection that can see the rows. */
  connection: DuckDBConnection;
  /**
   * The rows: a SQL query, a table/view name (as SQL: quote it if it needs quoting), or local
   * Parquet files (columns unioned by name, `_floe_*` columns left out). Parquet files that
   * already are valid data files of the table (see planAdoption) are listed as they are.
   */
  source: { sql: string } | { table: string } | { parquet: readonly string[] };
  table: TableIdentifier;
  catalog: Catalog;
  /** The warehouse; every table file is written through it. */
  storage: ObjectStorage;
  /** Table folder as a key of `storage`, used when the table is created (default `<namespace…>/<name>`). */
  location?: string;
  /**
   * Partitioning of a new table; for an existing one it must match (spec evolution is not
   * supported). Default: the table's, or unpartitioned. A text (VARCHAR) column under a year,
   * month, day or hour transform becomes a `timestamptz` column of the new table, its values
   * cast as floe's contracts cast date-times (no offset or zone: UTC); later writes of text into
   * a date/time partition source column are cast the same way. A value that does not cast fails
   * the write with an IcebergValueError naming the column and the value; nothing is committed.
   */
  partitionBy?: readonly PartitionFieldInput[];
  /** Table properties of a new table. */
  properties?: Record<string, string>;
  /** Extra snapshot summary properties, e.g. `{ "floe.run-id": runId, "floe.batch": "3" }`. */
  summary?: Record<string, string>;
  /**
   * Exactly-once: a key of `summary`. When a snapshot of the table already has the same value for
   * it, nothing is written and that snapshot is returned (`alreadyCommitted: true`); checked before
   * writing and again on every retry.
   */
  dedupeKey?: string;
  /**
   * Exactly-once, generalized: returns the snapshot that already holds this write (or part of it),
   * checked like `dedupeKey` before writing and on every retry; a hit returns `alreadyCommitted: true`.
   */
  committedIn?: (metadata: TableMetadata) => Snapshot | undefined;
  /**
   * Overwrite only: delete the live files whose adding snapshot matches (instead of the files of
   * the partitions the rows touch), e.g. the files an earlier write of the same source added.
   */
  replaceWhere?: (addedBy: Snapshot | undefined) => boolean;
  /** Commit attempts after the first, on conflicts (default 10). */
  maxCommitRetries?: number;
  /** First backoff between attempts, doubled each time up to 2 s, plus jitter (default 50). */
  retryWaitMs?: number;
  /** Local folder for Parquet files before upload (default: the OS temp folder). */
  tmpDir?: string;
}

export interface WriteResult {
  /** The committed snapshot id (64-bit, as a decimal string). */
  snapshotId: string;
  metadataLocation: string;
  addedRecords: number;
  addedFiles: number;
  /** Of the added files, the source Parquet files listed as they were (not rewritten). */
  adoptedFiles: number;
  deletedRecords: number;
  deletedFiles: number;
  /** Commit attempts that lost a compare-and-swap (or failed) and were re-applied. */
  commitRetries: number;
  /** True when `dedupeKey` found this write already committed: nothing was written. */
  alreadyCommitted: boolean;
}

/** An upstream batch to append once: its id, as snapshot summaries list it, and its rows. */
export interface UpstreamBatch {
  id: string;
  /**
   * The batch's local Parquet files, or a function giving them, called only while no snapshot
   * holds the batch (so a batch already in the table is never read, nor downloaded).
   */
  files: readonly string[] | (() => Promise<readonly string[]>);
}

export interface BatchAppendOptions extends Omit<TableWriteOptions, "source" | "dedupeKey" | "committedIn" | "replaceWhere"> {
  /** The batches; a batch id given twice counts once. */
  batches: readonly UpstreamBatch[];
  /** The snapshot summary key that lists a snapshot's batches as a JSON array (default `floe.batches`). */
  batchesKey?: string;
}

export interface BatchAppendResult {
  /** The snapshot this call committed (64-bit, as a decimal string), or null when it committed nothing. */
  snapshotId: string | null;
  /** The table's metadata when the call ended, or null when there is no table (no batch had a file). */
  metadataLocation: string | null;
  /** The batches this call's snapshot holds, in the order given. */
  committed: string[];
  /** The batches another snapshot already held when this call committed (or gave up): not appended again. */
  found: string[];
  /** The batches without any Parquet file: nothing to append, so no snapshot lists them. */
  empty: string[];
  addedRecords: number;
  addedFiles: number;
  /** Of the added files, the source Parquet files listed as they were (not rewritten). */
  adoptedFiles: number;
  /** Commit attempts that lost a compare-and-swap (or failed) and were re-applied. */
  commitRetries: number;
}

/** The commit lost every compare-and-swap; nothing of this write is visible. */
export class CommitConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CommitConflictError";
  }
}

/** A value the table cannot take (text in a date/time partition column that is not a date-time); nothing was committed. */
export class IcebergValueError extends Error {
  constructor(
    readonly column: string,
    readonly value: string,
    message: string,
  ) {
    super(message);
    this.name = "IcebergValueError";
  }
}

/** A loaded table: its metadata and where that metadata lives. */
export interface LoadedTable {
  metadataLocation: string;
  metadata: TableMetadata;
}

/** The summary key of the batches a snapshot holds, unless the caller names another. */
const BATCHES_KEY = "floe.batches";

/**
 * Loads a table's current metadata through the catalog, or undefined when it does not exist.
 *
 * @example
 * const t = await loadTable({ catalog, storage, table: { namespace: ["db"], name: "events" } });
 * if (t && findSnapshotBySummary(t.metadata, "floe.run-id", runId)) return;
 */
export async function loadTable(o: { catalog: Catalog; storage: ObjectStorage; table: TableIdentifier }): Promise<LoadedTable | undefined> {
  const ptr = await o.catalog.loadTable(o.table);
  if (!ptr) return undefined;
  const bytes = await o.storage.read(keyOf(o.storage, ptr.metadataLocation));
  return { metadataLocation: ptr.metadataLocation, metadata: parseTableMetadata(new TextDecoder().decode(bytes)) };
}

/**
 * Appends the rows as a new snapshot (operation `append`), creating the table when needed.
 * New columns are added to the schema; see SchemaChangeOptions for type changes and drops.
 *
 * @example
 * const r = await appendRows({ connection, source: { sql: "SELECT * FROM staged" }, table: { namespace: ["db"], name: "events" },
 *   catalog, storage, partitionBy: [{ column: "ts", transform: "day" }], summary: { "floe.run-id": runId } });
 * console.log(r.snapshotId, r.addedRecords);
 */
export function appendRows(o: TableWriteOptions): Promise<WriteResult> {
  return write(o, "append");
}

/**
 * Replaces every partition the rows touch (dynamic partition overwrite, operation `overwrite`):
 * live files of those partitions are deleted in the same snapshot that adds the rows; other
 * partitions are untouched. On an unpartitioned table this replaces the whole table.
 *
 * @example
 * await overwritePartitions({ connection, source: { sql: "SELECT * FROM day_2024_01_02" }, table, catalog, storage });
 */
export function overwritePartitions(o: TableWriteOptions): Promise<WriteResult> {
  return write(o, "overwrite");
}

/**
 * Appends a set of upstream batches exactly once, in one snapshot (operation `append`) whose
 * summary lists them (`floe.batches`, a JSON array of ids). On every commit attempt the current
 * table version is read again and the batches some snapshot of it already lists are dropped
 * (their rows are rewritten without them when that changes what this call writes); the commit
 * is a compare-and-swap on that very version, so no other snapshot can have taken a batch in
 * between. Nothing is committed when no batch is left. A call repeated after its commit (a step
 * that crashed before recording it) finds every batch and appends nothing.
 *
 * @example
 * const r = await appendBatches({ connection, table, catalog, storage, summary: { "floe.run-id": runId },
 *   batches: [{ id: "raw/orders/2025-01-01/run1-1", files: ["/wh/raw/orders/2025-01-01/run1-1/7.parquet"] }] });
 * r.committed; // → ["raw/orders/2025-01-01/run1-1"], or [] with r.found listing it when a snapshot already held it
 */
export async function appendBatches(o: BatchAppendOptions): Promise<BatchAppendResult> {
  const key = o.batchesKey ?? BATCHES_KEY;
  const seen = new Set<string>();
  const batches = o.batches.filter((b) => !seen.has(b.id) && seen.add(b.id));
  const filesOf = new Map<string, readonly string[]>();
  let found: string[] = [];
  let empty: string[] = [];
  const decide = async (m: TableMetadata | undefined): Promise<Intent> => {
    const held = m ? heldBatches(m, key) : new Set<string>();
    const pending = batches.filter((b) => !held.has(b.id));
    found = batches.filter((b) => held.has(b.id)).map((b) => b.id);
    await inBatches(pending.filter((b) => !filesOf.has(b.id)), 4, async (b) => {
      filesOf.set(b.id, typeof b.files === "function" ? await b.files() : b.files);
    });
    const todo = pending.filter((b) => (filesOf.get(b.id) ?? []).length > 0);
    empty = pending.filter((b) => (filesOf.get(b.id) ?? []).length === 0).map((b) => b.id);
    if (todo.length === 0) return { stop: null };
    const ids = todo.map((b) => b.id);
    return { key: JSON.stringify(ids), source: { parquet: todo.flatMap((b) => filesOf.get(b.id) ?? []) }, summary: { ...o.summary, [key]: JSON.stringify(ids) } };
  };
  const out = await commit(o, "append", decide);
  const n = (k: string): number => (out.ours && out.snapshot ? Number(out.snapshot.summary[k] ?? 0) : 0);
  return {
    snapshotId: out.ours && out.snapshot ? out.snapshot["snapshot-id"].toString() : null,
    metadataLocation: out.metadataLocation,
    committed: out.ours && out.snapshot ? batchesOf(out.snapshot, key) : [],
    found,
    empty,
    addedRecords: n("added-records"),
    addedFiles: n("added-data-files"),
    adoptedFiles: out.ours ? out.adopted : 0,
    commitRetries: out.commitRetries,
  };
}

/** Every batch id some snapshot of the table lists under `key`. */
function heldBatches(m: TableMetadata, key: string): Set<string> {
  const out = new Set<string>();
  for (const s of m.snapshots) for (const b of batchesOf(s, key)) out.add(b);
  return out;
}

/** The batch ids a snapshot lists under `key` (a JSON array of strings; anything else lists none). */
function batchesOf(s: Snapshot, key: string): string[] {
  const text = s.summary[key];
  if (text === undefined) return [];
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v) ? v.filter((b): b is string => typeof b === "string") : [];
  } catch {
    return [];
  }
}

type Mode = "append" | "overwrite";
type Source = TableWriteOptions["source"];
type WriterOptions = Omit<TableWriteOptions, "source">;

/**
 * What a write commits on a given table version: rows (`key` names them: the same key, the same
 * rows) with their snapshot summary, or nothing, with the snapshot that already holds them if any.
 */
type Intent = { stop: Snapshot | null } | { key: string; source: Source; summary: Record<string, string> };

/** An intent's rows as the data files are written from them. */
interface Rows {
  key: string;
  source: Source;
  summary: Record<string, string>;
  /** The rows as a relation for FROM, text date-times of partition columns cast. */
  relation: string;
  /** The relation's columns. */
  columns: SourceColumn[];
  /** Applies the same casts to another relation over the source (a part of its Parquet files). */
  cast: (relation: string) => string;
}

/** The data files written for some rows, and the schema and spec they were written with. */
interface WrittenData {
  files: WrittenFile[];
  adopted: number;
  schema: Schema;
  spec: PartitionSpec;
}

/** How a commit loop ended: with its own snapshot, with one that already held the rows, or with nothing to do. */
interface Outcome {
  snapshot: Snapshot | null;
  metadataLocation: string | null;
  commitRetries: number;
  /** The snapshot is this call's. */
  ours: boolean;
  adopted: number;
}

async function write(o: TableWriteOptions, mode: Mode): Promise<WriteResult> {
  const dedupe = o.dedupeKey === undefined ? undefined : { key: o.dedupeKey, value: o.summary?.[o.dedupeKey] };
  if (dedupe && dedupe.value === undefined) throw new Error(`dedupeKey "${dedupe.key}" is not a key of summary`);
  const held = (m: TableMetadata): Snapshot | undefined => (dedupe && findSnapshotBySummary(m, dedupe.key, dedupe.value as string)) || o.committedIn?.(m);
  const intent: Intent = { key: "rows", source: o.source, summary: o.summary ?? {} };
  const out = await commit(o, mode, async (m) => {
    const earlier = m && held(m);
    return earlier ? { stop: earlier } : intent;
  });
  if (!out.snapshot || out.metadataLocation === null) throw new Error(`table ${tableName(o.table)}: the write ended without a snapshot`);
  return resultOf(out.snapshot, out.metadataLocation, out.commitRetries, !out.ours, out.ours ? out.adopted : 0);
}

/**
 * The optimistic commit loop. `decide` says what to commit on a table version; it is asked on the
 * version loaded first and again on every version reloaded after a lost compare-and-swap. Data
 * files are written once, and again only when the answer names other rows (another key); the
 * snapshot id stays the same across attempts, so an attempt whose outcome was unknown and that
 * did land is recognized.
 */
async function commit(o: WriterOptions, mode: Mode, decide: (m: TableMetadata | undefined) => Promise<Intent>): Promise<Outcome> {
  const name = tableName(o.table);
  // Nothing is written into the table's folder before a commit is known to be valid: the version
  // hint is healed only once this call ends without error, on the version it ends on.
  const stopped = async (snapshot: Snapshot | null, table: LoadedTable | undefined, commitRetries: number): Promise<Outcome> => {
    if (table) await healVersionHint(o, table);
    return { snapshot, metadataLocation: table?.metadataLocation ?? null, commitRetries, ours: false, adopted: 0 };
  };
  let base = await loadTable(o);
  let intent = await decide(base?.metadata);
  if ("stop" in intent) return stopped(intent.stop, base, 0);
  if (!base) {
    base = await createTable(o, (await rowsOf(o, intent, undefined)).columns);
    // another writer may have created it first, and committed since
    intent = await decide(base.metadata);
    if ("stop" in intent) return stopped(intent.stop, base, 0);
  }
  let rows = await rowsOf(o, intent, base.metadata);
  let data = await writeRows(o, base, rows);
  const dataKeys = (): string[] => data.files.map((f) => f.key);
  const snapshotId = newSnapshotId(base.metadata);
  const maxRetries = o.maxCommitRetries ?? 10;
  let maybeLanded: string[] = []; // files of an attempt whose commit outcome is unknown
  let lastError: unknown;
  for (let attempt = 1; attempt <= maxRetries + 1; attempt++) {
    if (attempt > 1) {
      await sleep(Math.min(2000, (o.retryWaitMs ?? 50) * 2 ** (attempt - 2)) * (1 + Math.random() / 2));
      const reloaded = await loadTable(o);
      if (!reloaded) {
        await removeQuietly(o.storage, dataKeys());
        throw new Error(`table ${name} disappeared during the commit`);
      }
      base = reloaded;
      const mine = base.metadata.snapshots.find((s) => s["snapshot-id"] === snapshotId);
      if (mine) {
        // an "unknown" commit did land
        await healVersionHint(o, base);
        return { snapshot: mine, metadataLocation: base.metadataLocation, commitRetries: attempt - 2, ours: true, adopted: data.adopted };
      }
      await removeQuietly(o.storage, maybeLanded);
      maybeLanded = [];
      const next = await decide(base.metadata);
      if ("stop" in next) {
        await removeQuietly(o.storage, dataKeys());
        return stopped(next.stop, base, attempt - 1);
      }
      if (next.key !== rows.key) {
        // another writer committed some of these rows meanwhile: write the rest alone
        await removeQuietly(o.storage, dataKeys());
        rows = await rowsOf(o, next, base.metadata);
        data = await writeRows(o, base, rows);
      }
    }
    const written: string[] = [];
    try {
      const next = await prepareCommit(o, mode, base, rows, data, snapshotId, attempt, written);
      let committed: boolean;
      try {
        committed = await o.catalog.commitTable(o.table, base.metadataLocation, next.location);
      } catch (e) {
        lastError = e; // the swap may or may not have happened: keep this attempt's files for now
        maybeLanded = written;
        continue;
      }
      if (committed) {
        await publishVersionHint(o, base.metadata.location, next.version, next.text);
        return { snapshot: next.snapshot, metadataLocation: next.location, commitRetries: attempt - 1, ours: true, adopted: data.adopted };
      }
      lastError = new CommitConflictError(`table ${name} changed during the commit`);
    } catch (e) {
      await removeQuietly(o.storage, [...written, ...dataKeys()]);
      throw e; // not a conflict (schema clash, I/O error…): nothing was committed
    }
    await removeQuietly(o.storage, written);
  }
  if (maybeLanded.length === 0) await removeQuietly(o.storage, dataKeys());
  throw new CommitConflictError(`could not commit to table ${name} after ${maxRetries + 1} attempts: ${String(lastError)}`);
}

/** The source as a relation for FROM. */
function relationOf(source: Source): string {
  if ("sql" in source) return `(${source.sql.replace(/;\s*$/, "")})`;
  if ("table" in source) return source.table;
  return parquetRelation(source.parquet);
}

/** An intent's rows on table version `m` (undefined: the table is to be created): columns described, text date-times cast. */
async function rowsOf(o: WriterOptions, intent: Extract<Intent, { key: string }>, m: TableMetadata | undefined): Promise<Rows> {
  const raw = relationOf(intent.source);
  const described: SourceColumn[] = (await o.connection.runAndReadAll(`DESCRIBE SELECT * FROM ${raw} AS __floe_src`))
    .getRowObjectsJS()
    .map((r) => ({ name: String(r.column_name), duckdbType: String(r.column_type) }));
  const casts = dateTimeCasts(m, o.partitionBy, described);
  const cast = (relation: string): string => castRelation(relation, casts);
  const typeOf = new Map(casts.map((c) => [c.column, c.type === "TIMESTAMPTZ" ? "TIMESTAMP WITH TIME ZONE" : c.type]));
  const columns = described.map((c) => ({ name: c.name, duckdbType: typeOf.get(c.name) ?? c.duckdbType }));
  return { key: intent.key, source: intent.source, summary: intent.summary, relation: cast(raw), columns, cast };
}

/** A text column cast to the date/time type its partition field needs. */
interface DateTimeCast {
  column: string;
  type: "TIMESTAMPTZ" | "TIMESTAMP" | "DATE";
  /** The partition field, for messages: `day(ts)`. */
  by: string;
}

/**
 * The text (VARCHAR) columns of the rows that partition the table by a date or a time: on an
 * existing table, sources of its partition fields typed date, timestamp or timestamptz (cast to
 * that type); for a new one, columns under a year/month/day/hour transform of `partitionBy`
 * (cast to timestamptz, which the new table's column then is).
 */
function dateTimeCasts(m: TableMetadata | undefined, partitionBy: readonly PartitionFieldInput[] | undefined, columns: readonly SourceColumn[]): DateTimeCast[] {
  const text = new Set(columns.filter((c) => c.duckdbType.trim().toUpperCase() === "VARCHAR").map((c) => c.name));
  const by = (transform: string, column: string): string => (transform === "identity" ? column : `${transform}(${column})`);
  const out = new Map<string, DateTimeCast>();
  if (m) {
    const schema = currentSchema(m);
    for (const pf of defaultSpec(m).fields) {
      const src = schema.fields.find((f) => f.id === pf["source-id"]);
      if (!src || !text.has(src.name) || out.has(src.name)) continue;
      const type = src.type === "timestamptz" ? "TIMESTAMPTZ" : src.type === "timestamp" ? "TIMESTAMP" : src.type === "date" ? "DATE" : undefined;
      if (type) out.set(src.name, { column: src.name, type, by: by(pf.transform, src.name) });
    }
  } else {
    for (const p of partitionBy ?? []) {
      const transform = p.transform ?? "identity";
      if (transform !== "identity" && text.has(p.column) && !out.has(p.column)) out.set(p.column, { column: p.column, type: "TIMESTAMPTZ", by: by(transform, p.column) });
    }
  }
  return [...out.values()];
}

/** Marks DuckDB's error for a value that does not cast, followed by a JSON object naming it. */
const CAST_FAILED = "floe-cast-failed ";

/**
 * The relation with its text date-time columns cast in place (set-based, each cast evaluated
 * once). A value that does not cast stops the query with an error carrying the column and the
 * value, rather than becoming a NULL that would land in the null partition.
 */
function castRelation(relation: string, casts: readonly DateTimeCast[]): string {
  if (casts.length === 0) return relation;
  const tmp = (i: number): string => ident(`__floe_dt${i}`);
  const typed = casts.map((c, i) => {
    const instant = castSql(ident(c.column), "TIMESTAMPTZ", "VARCHAR");
    const value = c.type === "TIMESTAMPTZ" ? instant : c.type === "TIMESTAMP" ? `timezone('UTC', ${instant})` : `CAST(timezone('UTC', ${instant}) AS DATE)`;
    return `${value} AS ${tmp(i)}`;
  });
  const checked = casts.map((c, i) => {
    const col = ident(c.column);
    const report = `error(${literal(CAST_FAILED)} || to_json({'column': ${literal(c.column)}, 'value': left(${col}, 80), 'by': ${literal(c.by)}})::VARCHAR)`;
    return `CASE WHEN ${col} IS NOT NULL AND ${tmp(i)} IS NULL THEN ${report} ELSE ${tmp(i)} END AS ${col}`;
  });
  return `(SELECT * EXCLUDE (${casts.map((_, i) => tmp(i)).join(", ")}) REPLACE (${checked.join(", ")}) FROM (SELECT *, ${typed.join(", ")} FROM ${relation} AS __floe_text) AS __floe_cast)`;
}

/** The IcebergValueError a cast failure in DuckDB stands for, or undefined for any other error. */
function castFailure(e: unknown): IcebergValueError | undefined {
  const message = e instanceof Error ? e.message : String(e);
  const at = message.indexOf(CAST_FAILED);
  if (at < 0) return undefined;
  try {
    const v = JSON.parse(message.slice(at + CAST_FAILED.length).split("\n")[0] ?? "") as { column?: unknown; value?: unknown; by?: unknown };
    const column = String(v.column);
    const value = String(v.value);
    const shown = value.replace(/[\u0000-\u001f]/g, " ");
    return new IcebergValueError(column, value, `column "${column}" holds '${shown}', which is not a date-time (the table is partitioned by ${String(v.by)})`);
  } catch {
    return undefined;
  }
}

/** Writes the data files of `rows`, planned on `base`; a value that does not cast becomes an IcebergValueError. */
async function writeRows(o: WriterOptions, base: LoadedTable, rows: Rows): Promise<WrittenData> {
  const planned = plan(o, base.metadata, rows.columns);
  try {
    const { files, adopted } = await writeFiles(o, rows, planned.schema, planned.spec, `${keyOf(o.storage, base.metadata.location)}/data`);
    return { files, adopted, schema: planned.schema, spec: planned.spec };
  } catch (e) {
    const column = requiredNullColumn(e);
    if (column !== undefined) {
      throw new IcebergSchemaError(column, `column "${column}" of table ${tableName(o.table)} is required, and the rows hold a NULL in it; nothing was committed`);
    }
    throw castFailure(e) ?? e;
  }
}

/**
 * The data files of this write, uploaded: Parquet source files that already are data files of the
 * table are adopted as they are, the rest is written by DuckDB (in one pass over those files).
 * On failure nothing of this write stays in the storage.
 */
async function writeFiles(o: WriterOptions, rows: Rows, schema: Schema, spec: PartitionSpec, dataPrefix: string): Promise<{ files: WrittenFile[]; adopted: number }> {
  const target = { connection: o.connection, schema, spec, storage: o.storage, dataPrefix, tmpDir: o.tmpDir };
  if (!("parquet" in rows.source)) return { files: await writeDataFiles({ ...target, relation: rows.relation }), adopted: 0 };
  const paths = rows.source.parquet;
  const plan = await planAdoption({ connection: o.connection, paths, schema, spec });
  const adopted = await adoptDataFiles(target, plan.adopt);
  try {
    const rest = plan.rewrite.map((r) => r.path);
    const rewritten = rest.length > 0 ? await writeDataFiles({ ...target, relation: rows.cast(parquetRelation(paths, rest)) }) : [];
    return { files: [...adopted, ...rewritten], adopted: adopted.length };
  } catch (e) {
    await removeQuietly(o.storage, adopted.map((f) => f.key));
    throw e;
  }
}

/** Creates the table from the rows' columns, or loads it when another writer created it first. */
async function createTable(o: WriterOptions, columns: SourceColumn[]): Promise<LoadedTable> {
  const schema = schemaFromColumns(columns);
  const spec = buildPartitionSpec(schema, o.partitionBy ?? []);
  const prefix = (o.location ?? [...o.table.namespace, o.table.name].join("/")).replace(/^\/+|\/+$/g, "");
  const properties = { "write.parquet.compression-codec": "zstd", ...o.properties };
  const metadata = newTableMetadata({ location: o.storage.uriOf(prefix), schema, spec, properties });
  const key = `${prefix}/metadata/${metadataFileName(0)}`;
  const text = serializeTableMetadata(metadata);
  await createMetadataFile(o.storage, key, text);
  if (await o.catalog.createTable(o.table, o.storage.uriOf(key))) {
    await publishVersionHint(o, metadata.location, 0, text);
    return { metadataLocation: o.storage.uriOf(key), metadata };
  }
  await removeQuietly(o.storage, [key]);
  const existing = await loadTable(o);
  if (!existing) throw new Error(`table ${tableName(o.table)} could not be created nor loaded`);
  return existing;
}

/** The schema and spec to write with on `m`; throws naming the column for refused changes. */
function plan(o: WriterOptions, m: TableMetadata, columns: readonly SourceColumn[]): { schema: Schema; lastColumnId: number; changed: boolean; spec: PartitionSpec } {
  const r = reconcileSchema(currentSchema(m), m["last-column-id"], columns, o);
  const spec = defaultSpec(m);
  for (const pf of spec.fields) {
    const src = currentSchema(m).fields.find((f) => f.id === pf["source-id"]);
    if (src && !r.schema.fields.some((f) => f.id === src.id)) {
      throw new IcebergSchemaError(src.name, `column "${src.name}" partitions table ${tableName(o.table)} and cannot be dropped`);
    }
  }
  if (o.partitionBy && !samePartitioning(spec, buildPartitionSpec(r.schema, o.partitionBy))) {
    const by = spec.fields.map((f) => `${f.transform}(${f.name})`).join(", ") || "nothing";
    throw new Error(`table ${tableName(o.table)} is partitioned by ${by}; changing the partitioning is not supported`);
  }
  // The files carry the schema they are written with (`iceberg.schema` in Parquet): give a changed
  // schema the id it will have once committed on this version, never a placeholder.
  const schema = r.changed ? withSchema(m, r.schema, r.lastColumnId).schema : { ...r.schema, "schema-id": currentSchema(m)["schema-id"] };
  return { ...r, schema, spec };
}

interface PreparedCommit {
  location: string;
  version: number;
  text: string;
  snapshot: Snapshot;
}

/**
 * Writes this attempt's manifests, manifest list and metadata file on `base` (keys pushed to
 * `written` as they are written) and returns the new metadata's location.
 */
async function prepareCommit(
  o: WriterOptions,
  mode: Mode,
  base: LoadedTable,
  rows: Rows,
  data: WrittenData,
  snapshotId: bigint,
  attempt: number,
  written: string[],
): Promise<PreparedCommit> {
  const { schema: writtenSchema, spec: writtenSpec, files } = data;
  // Re-plan on this version: a concurrent schema change must agree with the files' field ids.
  const again = plan(o, base.metadata, rows.columns);
  for (const f of writtenSchema.fields) {
    const now = again.schema.fields.find((x) => x.name === f.name);
    if (!now || now.id !== f.id || JSON.stringify(now.type) !== JSON.stringify(f.type)) {
      throw new IcebergSchemaError(f.name, `column "${f.name}" of table ${tableName(o.table)} was changed by a concurrent writer; write again`);
    }
  }
  const { metadata: withCols, schema } = again.changed ? withSchema(base.metadata, again.schema, again.lastColumnId) : { metadata: base.metadata, schema: currentSchema(base.metadata) };
  if (schema["schema-id"] !== writtenSchema["schema-id"]) {
    // a concurrent writer added another schema meanwhile: the files name an id that is now someone else's
    throw new CommitConflictError(`the schema of table ${tableName(o.table)} was changed by a concurrent writer; write again`);
  }
  const spec = again.spec;
  if (spec["spec-id"] !== writtenSpec["spec-id"] || !samePartitioning(spec, writtenSpec)) {
    throw new Error(`the partitioning of table ${tableName(o.table)} was changed by a concurrent writer; write again`);
  }
  const m = withCols;
  const metaPrefix = `${keyOf(o.storage, m.location)}/metadata`;
  const commitId = randomUUID();
  const sequenceNumber = m["last-sequence-number"] + 1n;
  const parent = currentSnapshot(m);
  const manifests: ManifestFile[] = [];
  const entriesOf = new Map<string, ManifestEntry[]>(); // the entries of manifests this attempt wrote, by path
  const manifestKey = (): string => `${metaPrefix}/${commitId}-m${manifests.length}.avro`;
  const writeManifest = async (entries: ManifestEntry[]): Promise<void> => {
    const key = manifestKey();
    const bytes = encodeManifest(schema, spec, entries);
    written.push(key);
    await o.storage.write(key, bytes);
    manifests.push(manifestFileFor({ path: o.storage.uriOf(key), length: bytes.length, schema, spec, entries, snapshotId, sequenceNumber }));
    entriesOf.set(o.storage.uriOf(key), entries);
  };

  if (files.length > 0) {
    await writeManifest(files.map((f) => ({ status: EntryStatus.Added, snapshot_id: snapshotId, sequence_number: null, file_sequence_number: null, data_file: f.dataFile })));
  }
  const carried = parent ? decodeManifestList(await o.storage.read(keyOf(o.storage, parent["manifest-list"]))) : [];
  const removed: Required<Removed> = { files: 0, records: 0n, size: 0n, deleteFiles: 0, positionDeleteFiles: 0, equalityDeleteFiles: 0, positionDeletes: 0n, equalityDeletes: 0n };
  const partitions = new Set(files.map((f) => partitionKey(f.partition)));
  const touched = new Set(partitions);
  if (mode === "overwrite") {
    const snapshotById = new Map(m.snapshots.map((x) => [x["snapshot-id"], x]));
    const kept: ManifestFile[] = [];
    const deleteManifests: ManifestFile[] = [];
    const rewritten: ManifestEntry[] = [];
    // the data files still live once this commit lands, but for its own (no delete of the table can apply to those)
    const remaining: ScopedFile[] = [];
    for (const mf of carried) {
      if (mf.content !== 0) {
        deleteManifests.push(mf);
        continue;
      }
      const entries = decodeManifest(await o.storage.read(keyOf(o.storage, mf.manifest_path)));
      const live = entries.filter((e) => e.status !== EntryStatus.Deleted);
      const scoped = (e: ManifestEntry): ScopedFile => scopedFile(e, mf);
      const tupleOf = (e: ManifestEntry): PartitionValue[] => spec.fields.map((pf) => coercePartitionValue(resultType(schema, pf), e.data_file.partition[pf.name]));
      const hit = (e: ManifestEntry): boolean =>
        o.replaceWhere
          ? o.replaceWhere(snapshotById.get(e.snapshot_id ?? mf.added_snapshot_id))
          : spec.fields.length === 0 || partitions.has(partitionKey(tupleOf(e)));
      if (!live.some(hit)) {
        kept.push(mf);
        remaining.push(...live.map(scoped));
        continue;
      }
      if (mf.partition_spec_id !== spec["spec-id"]) throw new Error(`table ${tableName(o.table)} has files of another partition spec; overwrite is not supported`);
      for (const e of live) {
        const data_file = { ...e.data_file, partition: Object.fromEntries(spec.fields.map((pf, i) => [pf.name, tupleOf(e)[i] ?? null])) };
        const seq = { sequence_number: e.sequence_number ?? mf.sequence_number, file_sequence_number: e.file_sequence_number ?? mf.sequence_number };
        if (hit(e)) {
          rewritten.push({ status: EntryStatus.Deleted, snapshot_id: snapshotId, ...seq, data_file });
          removed.files++;
          removed.records += e.data_file.record_count;
          removed.size += e.data_file.file_size_in_bytes;
          touched.add(partitionKey(tupleOf(e)));
        } else {
          rewritten.push({ status: EntryStatus.Existing, snapshot_id: e.snapshot_id ?? mf.added_snapshot_id, ...seq, data_file });
          remaining.push(scoped(e));
        }
      }
    }
    if (rewritten.length > 0) await writeManifest(rewritten);
    manifests.push(...kept);
    // A delete file that no data file left can be subject to goes with the data files it applied to.
    const global = unpartitionedSpecs(m);
    const left = indexDataFiles(remaining);
    for (const mf of deleteManifests) {
      if (removed.files === 0) {
        manifests.push(mf);
        continue;
      }
      const bytes = await o.storage.read(keyOf(o.storage, mf.manifest_path));
      const entries = decodeManifest(bytes);
      const verdicts = entries.map((e) =>
        e.status === EntryStatus.Deleted ? "gone" : stillApplies(scopedFile(e, mf), left, global) ? "keep" : "drop",
      );
      if (!verdicts.includes("drop")) {
        manifests.push(mf);
        continue;
      }
      const key = manifestKey();
      const out = rewriteManifest(bytes, mf, verdicts, snapshotId, sequenceNumber, o.storage.uriOf(key));
      written.push(key);
      await o.storage.write(key, out.bytes);
      manifests.push(out.manifest);
      entriesOf.set(out.manifest.manifest_path, out.entries);
      for (const e of out.entries) {
        if (e.status !== EntryStatus.Deleted) continue;
        const equality = e.data_file.content === DeleteContent.Equality;
        removed.deleteFiles++;
        removed.size += e.data_file.file_size_in_bytes;
        if (equality) {
          removed.equalityDeleteFiles++;
          removed.equalityDeletes += e.data_file.record_count;
        } else {
          removed.positionDeleteFiles++;
          removed.positionDeletes += e.data_file.record_count;
        }
      }
    }
  } else manifests.push(...carried);

  const listKey = `${metaPrefix}/snap-${snapshotId}-${attempt}-${commitId}.avro`;
  written.push(listKey);
  await o.storage.write(listKey, encodeManifestList(manifests, { snapshotId, parentSnapshotId: parent?.["snapshot-id"] ?? null, sequenceNumber }));

  const added = { files: files.length, records: files.reduce((a, f) => a + f.dataFile.record_count, 0n), size: files.reduce((a, f) => a + f.dataFile.file_size_in_bytes, 0n) };
  // Totals follow the parent's; one the parent does not give (BigQuery writes none) is counted
  // from the manifests of the new snapshot rather than from zero.
  let total = totals(parent?.summary, added, removed);
  if (TOTAL_KEYS.some((k) => total[k] === undefined)) total = { ...(await totalsOfManifests(o.storage, manifests, entriesOf)), ...total };
  const summary: Record<string, string> = {
    ...rows.summary,
    operation: mode,
    "added-data-files": String(added.files),
    "added-records": String(added.records),
    "added-files-size": String(added.size),
    "changed-partition-count": String(touched.size),
    ...(mode === "overwrite"
      ? { "deleted-data-files": String(removed.files), "deleted-records": String(removed.records), "removed-files-size": String(removed.size), ...(o.replaceWhere ? {} : { "replace-partitions": "true" }) }
      : {}),
    ...(removed.deleteFiles > 0
      ? {
          "removed-delete-files": String(removed.deleteFiles),
          "removed-position-delete-files": String(removed.positionDeleteFiles),
          "removed-equality-delete-files": String(removed.equalityDeleteFiles),
          "removed-position-deletes": String(removed.positionDeletes),
          "removed-equality-deletes": String(removed.equalityDeletes),
        }
      : {}),
    ...total,
  };
  const snapshot: Snapshot = {
    "snapshot-id": snapshotId,
    ...(parent ? { "parent-snapshot-id": parent["snapshot-id"] } : {}),
    "sequence-number": sequenceNumber,
    "timestamp-ms": Math.max(Date.now(), m["last-updated-ms"]),
    "manifest-list": o.storage.uriOf(listKey),
    summary,
    "schema-id": schema["schema-id"],
  };
  const next = withSnapshot(m, snapshot, base.metadataLocation);
  const known = metadataVersion(base.metadataLocation);
  const version = (known >= 0 ? known : next["metadata-log"].length) + 1;
  const key = `${metaPrefix}/${metadataFileName(version)}`;
  const text = serializeTableMetadata(next);
  await createMetadataFile(o.storage, key, text);
  written.push(key);
  return { location: o.storage.uriOf(key), version, text, snapshot };
}

/**
 * After a commit: `metadata/v<N>.metadata.json` (a byte-for-byte copy of the committed metadata
 * file) and `metadata/version-hint.text` = N, for readers that open a table by its folder (DuckDB,
 * PyIceberg StaticTable, icebird). Best effort; the catalog remains the source of truth. A
 * `v<N>.metadata.json` is only ever created, never replaced: when one exists with other bytes
 * (another writer's, in a folder floe shares), it and the hint are left alone. The hint never
 * moves backwards: a hint already higher is left alone, and after writing, the catalog is read
 * again: if a concurrent committer got further meanwhile (and may have read the hint before this
 * write), its version is published instead. So the last hint written is always the catalog's
 * version at that time.
 */
async function publishVersionHint(o: TableRef, location: string, version: number, text: string | Uint8Array): Promise<void> {
  const prefix = `${keyOf(o.storage, location)}/metadata`;
  try {
    let v = version;
    let t = typeof text === "string" ? new TextEncoder().encode(text) : text;
    for (let round = 0; round < 10; round++) {
      if (!((await readVersionHint(o.storage, prefix)) >= v)) {
        const copy = `${prefix}/v${v}.metadata.json`;
        const ours = (await o.storage.writeIfAbsent(copy, t)) || Buffer.from(await o.storage.read(copy)).equals(t);
        if (!ours) return;
        await o.storage.write(`${prefix}/version-hint.text`, String(v));
      }
      const now = await o.catalog.loadTable(o.table);
      const current = now ? metadataVersion(now.metadataLocation) : -1;
      if (!now || current <= v) return;
      v = current;
      t = await o.storage.read(keyOf(o.storage, now.metadataLocation));
    }
  } catch {
    // a stale hint only affects path-based readers; the next commit heals it
  }
}

/**
 * Heals a hint left stale (a writer killed between its catalog commit and the hint, or a hint
 * deleted): when it is missing or names an older version than `table`, `table`'s metadata file is
 * published as it is.
 */
async function healVersionHint(o: TableRef, table: LoadedTable): Promise<void> {
  const version = metadataVersion(table.metadataLocation);
  if (version < 0) return;
  const prefix = `${keyOf(o.storage, table.metadata.location)}/metadata`;
  const hint = await readVersionHint(o.storage, prefix).catch(() => -1);
  if (hint >= version) return;
  const bytes = await o.storage.read(keyOf(o.storage, table.metadataLocation)).catch(() => undefined);
  if (bytes) await publishVersionHint(o, table.metadata.location, version, bytes);
}

/** The version in `metadata/version-hint.text`, or -1 when there is none (or it is not a number). */
async function readVersionHint(storage: ObjectStorage, prefix: string): Promise<number> {
  const text = await storage.read(`${prefix}/version-hint.text`).then((b) => new TextDecoder().decode(b).trim(), () => "");
  return /^\d+$/.test(text) ? Number(text) : -1;
}

type TableRef = { catalog: Catalog; storage: ObjectStorage; table: TableIdentifier };

/** A manifest entry as delete scope rules see it (sequence number inherited from its manifest when null). */
function scopedFile(e: ManifestEntry, mf: ManifestFile): ScopedFile {
  return { path: e.data_file.file_path, specId: mf.partition_spec_id, partition: partitionKeyOf(e.data_file.partition), sequenceNumber: e.sequence_number ?? mf.sequence_number, dataFile: e.data_file };
}

/**
 * The six `total-*` summary values of a snapshot counted from its manifests (live entries: data
 * files and their records, delete files and their deletes, and the size of all of them). Entries
 * of manifests in `known` are not read again.
 */
async function totalsOfManifests(storage: ObjectStorage, manifests: readonly ManifestFile[], known: ReadonlyMap<string, ManifestEntry[]>): Promise<Record<string, string>> {
  const t = { records: 0n, size: 0n, dataFiles: 0n, deleteFiles: 0n, positionDeletes: 0n, equalityDeletes: 0n };
  await inBatches(manifests, 8, async (mf) => {
    const entries = known.get(mf.manifest_path) ?? decodeManifest(await storage.read(keyOf(storage, mf.manifest_path)));
    for (const e of entries) {
      if (e.status === EntryStatus.Deleted) continue;
      const d = e.data_file;
      t.size += d.file_size_in_bytes;
      if (mf.content === 0 && d.content === 0) {
        t.dataFiles++;
        t.records += d.record_count;
      } else {
        t.deleteFiles++;
        if (d.content === DeleteContent.Equality) t.equalityDeletes += d.record_count;
        else t.positionDeletes += d.record_count;
      }
    }
  });
  return {
    "total-records": String(t.records),
    "total-files-size": String(t.size),
    "total-data-files": String(t.dataFiles),
    "total-delete-files": String(t.deleteFiles),
    "total-position-deletes": String(t.positionDeletes),
    "total-equality-deletes": String(t.equalityDeletes),
  };
}

/** Writes a new metadata file; a metadata file is never replaced (its name holds a fresh UUID, so one in the way is not ours). */
async function createMetadataFile(storage: ObjectStorage, key: string, text: string): Promise<void> {
  if (!(await storage.writeIfAbsent(key, text))) throw new Error(`${storage.uriOf(key)} already exists; a metadata file is never replaced`);
}

function resultOf(s: Snapshot, metadataLocation: string, commitRetries: number, alreadyCommitted: boolean, adoptedFiles = 0): WriteResult {
  const n = (k: string): number => Number(s.summary[k] ?? 0);
  return {
    snapshotId: s["snapshot-id"].toString(),
    metadataLocation,
    addedRecords: n("added-records"),
    addedFiles: n("added-data-files"),
    adoptedFiles,
    deletedRecords: n("deleted-records"),
    deletedFiles: n("deleted-data-files"),
    commitRetries,
    alreadyCommitted,
  };
}

/**
 * The storage key of an absolute URI inside the storage; throws for a URI elsewhere. In an S3
 * storage, `s3a://` and `s3n://` URIs (Hadoop's names, which Spark and Java tables often record)
 * name the same objects as `s3://`.
 *
 * @example
 * keyOf(storage, storage.uriOf("db/t/metadata/v1.metadata.json")) // → "db/t/metadata/v1.metadata.json"
 * keyOf(s3Storage({ bucket: "wh" }), "s3a://wh/db/t/data/a.parquet") // → "db/t/data/a.parquet"
 */
export function keyOf(storage: ObjectStorage, uri: string): string {
  const root = `${storage.uri}/`;
  // Hadoop's S3 schemes (Spark and Java tables often say s3a://) name the same objects as s3://
  const same = root.startsWith("s3://") ? uri.replace(/^s3[an]:\/\//, "s3://") : uri;
  if (!same.startsWith(root)) throw new Error(`${uri} is outside the warehouse ${storage.uri}`);
  return same.slice(root.length);
}

async function removeQuietly(storage: ObjectStorage, keys: readonly string[]): Promise<void> {
  if (keys.length > 0) await storage.delete(keys).catch(() => undefined);
}
