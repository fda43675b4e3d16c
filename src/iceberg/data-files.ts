// Parquet data files: DuckDB writes them (one per partition tuple, with field ids and the
// `iceberg.schema` key), and their Iceberg `data_file` records come from RETURN_STATS. The naming,
// upload and `data_file` helpers are shared with adopted files (adopt.ts).

import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DuckDBConnection } from "@duckdb/node-api";
import { stringifyJson } from "./json.js";
import type { DataFile, KeyValue } from "./manifest.js";
import { coercePartitionValue, partitionPath, partitionSql, resultType, sourceField, type PartitionSpec, type PartitionValue } from "./partition-spec.js";
import { duckdbTypeOf, sanitizeName, type PrimitiveType, type Schema, type SchemaField } from "./schema.js";
import type { ObjectStorage } from "../storage/types.js";
import { boundFromStat, serializeValue, type IcebergValue } from "./values.js";

/** A written and uploaded data file. */
export interface WrittenFile {
  key: string;
  dataFile: DataFile;
  /** The partition tuple, in spec field order. */
  partition: PartitionValue[];
}

export interface WriteDataFilesOptions {
  connection: DuckDBConnection;
  /** A relation for FROM: a table name or a parenthesized query. */
  relation: string;
  /** The table schema to write; each field is read from the relation's column of the same name. */
  schema: Schema;
  spec: PartitionSpec;
  storage: ObjectStorage;
  /** Key prefix of data files in the storage (`<table>/data`). */
  dataPrefix: string;
  /** Local folder for DuckDB's output before upload (default: the OS temp folder). */
  tmpDir?: string;
}

/**
 * A SQL identifier in double quotes.
 *
 * @example
 * ident("Breed Name") // → '"Breed Name"'
 */
export const ident = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/**
 * A SQL string literal.
 *
 * @example
 * literal("it's") // → "'it''s'"
 */
export const literal = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/**
 * Writes the relation's rows as Parquet data files of the table, one per partition tuple, uploads
 * them under `dataPrefix` and returns their `data_file` records. Columns are cast to the schema's
 * types and named Avro-sanitized with their field ids; partition values are computed in DuckDB.
 * Zero rows give zero files. On failure, files already uploaded are deleted (best effort).
 *
 * @example
 * const files = await writeDataFiles({ connection, relation: "(SELECT * FROM staged)", schema, spec, storage, dataPrefix: "db/events/data" });
 */
export async function writeDataFiles(o: WriteDataFilesOptions): Promise<WrittenFile[]> {
  const fields = o.schema.fields;
  const columns = fields.map((f) => `${requiredValue(f, `CAST(${ident(f.name)} AS ${duckdbTypeOf(f.type)})`)} AS ${ident(sanitizeName(f.name))}`);
  const partExprs = partitionExprs(o.schema, o.spec);
  const fieldIds = fields.map((f) => `${ident(sanitizeName(f.name))}: ${f.id}`).join(", ");
  const icebergSchema = stringifyJson(o.schema);
  const dir = await mkdtemp(join(o.tmpDir ?? tmpdir(), "floe-iceberg-"));
  try {
    const key = partExprs.length === 0 ? "0" : `hash(${partExprs.join(", ")})`;
    const reader = await o.connection.runAndReadAll(
      `COPY (SELECT *, ${key} AS __floe_pkey FROM (SELECT ${columns.join(", ")} FROM ${o.relation} AS __floe_src))
       TO ${literal(dir)} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (__floe_pkey), WRITE_PARTITION_COLUMNS false,
         FIELD_IDS {${fieldIds}}, KV_METADATA {'iceberg.schema': ${literal(icebergSchema)}}, RETURN_STATS)`,
    );
    const stats = reader
      .getRowObjectsJson()
      .map((row) => ({
        path: String(row.filename),
        count: BigInt(String(row.count)),
        size: BigInt(String(row.file_size_bytes)),
        columns: statsMap(row.column_statistics),
      }))
      .filter((s) => s.count > 0n); // an empty file would have no partition tuple: never list one
    const tuples = await partitionTuples(o, stats.map((s) => s.path), partExprs);
    const writeId = randomUUID();
    const files = stats.map((s, i): WrittenFile & { local: string } => {
      const partition = tuples.get(s.path) ?? [];
      const key = dataFileKey(o, partition, i, writeId);
      const dataFile = dataFileOf(o, { key, partition, records: s.count, size: s.size, columns: metricsOfReturnStats(o.schema, s.columns) });
      return { key, partition, dataFile, local: s.path };
    });
    await uploadDataFiles(o.storage, files);
    return files.map(({ local: _local, ...f }) => f);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Marks DuckDB's error for a NULL in a required column, followed by a JSON object naming it. */
export const REQUIRED_NULL = "floe-required-null ";

/**
 * The expression of a column's values as written: for a required field, a NULL stops the query
 * (so no data file is written) with an error that names the column (see requiredNullColumn).
 *
 * @example
 * requiredValue({ id: 1, name: "id", required: true, type: "long" }, 'CAST("id" AS BIGINT)')
 * // → `CASE WHEN CAST("id" AS BIGINT) IS NULL THEN error('floe-required-null {"column":"id"}') ELSE CAST("id" AS BIGINT) END`
 */
export function requiredValue(f: SchemaField, expr: string): string {
  if (!f.required) return expr;
  return `CASE WHEN ${expr} IS NULL THEN error(${literal(REQUIRED_NULL + JSON.stringify({ column: f.name }))}) ELSE ${expr} END`;
}

/**
 * The column named by a requiredValue error, or undefined for any other error.
 *
 * @example
 * requiredNullColumn(e) // → "id"
 */
export function requiredNullColumn(e: unknown): string | undefined {
  const message = e instanceof Error ? e.message : String(e);
  const at = message.indexOf(REQUIRED_NULL);
  if (at < 0) return undefined;
  try {
    const v = JSON.parse(message.slice(at + REQUIRED_NULL.length).split("\n")[0] ?? "") as { column?: unknown };
    return typeof v.column === "string" ? v.column : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The DuckDB expressions of a spec's partition values over the sanitized column names of the
 * schema (in internal form, see partitionSql), in spec field order.
 *
 * @example
 * partitionExprs(schema, spec) // → [`(CAST("ts" AS DATE) - DATE '1970-01-01')::INTEGER`]
 */
export function partitionExprs(schema: Schema, spec: PartitionSpec): string[] {
  return spec.fields.map((pf) => {
    const src = sourceField(schema, pf);
    return partitionSql(typeof src.type === "string" ? src.type : "nested", pf.transform, ident(sanitizeName(src.name)));
  });
}

/**
 * The storage key of a data file: `<dataPrefix>/<partition path>/<index>-0-<writeId>.parquet`
 * (PyIceberg's naming; the partition folder only for partitioned specs).
 *
 * @example
 * dataFileKey({ schema, spec, dataPrefix: "db/t/data" }, [19724], 0, id) // → "db/t/data/ts_day=2024-01-02/00000-0-<id>.parquet"
 */
export function dataFileKey(o: Pick<WriteDataFilesOptions, "schema" | "spec" | "dataPrefix">, partition: readonly PartitionValue[], index: number, writeId: string): string {
  const types = o.spec.fields.map((pf) => resultType(o.schema, pf));
  const folder = o.spec.fields.length > 0 ? `/${partitionPath(o.spec, types, partition)}` : "";
  return `${o.dataPrefix}${folder}/${String(index).padStart(5, "0")}-0-${writeId}.parquet`;
}

/**
 * Uploads local files to their keys, 8 at a time. On failure the keys already uploaded are
 * deleted (best effort) and the error is rethrown.
 *
 * @example
 * await uploadDataFiles(storage, [{ local: "/tmp/part-0.parquet", key: "db/t/data/00000-0-<id>.parquet" }]);
 */
export async function uploadDataFiles(storage: ObjectStorage, files: ReadonlyArray<{ local: string; key: string }>): Promise<void> {
  const uploaded: string[] = [];
  try {
    await inBatches(files, 8, async (f) => {
      uploaded.push(f.key);
      await storage.upload(f.local, f.key);
    });
  } catch (e) {
    await storage.delete(uploaded).catch(() => undefined);
    throw e;
  }
}

type ColumnStats = Map<string, Map<string, string>>;

/** `MAP(VARCHAR, MAP(VARCHAR, VARCHAR))` as JSON (arrays of {key, value}) → nested Maps. */
function statsMap(json: unknown): ColumnStats {
  const pairs = (v: unknown): Array<{ key: unknown; value: unknown }> => (Array.isArray(v) ? (v as Array<{ key: unknown; value: unknown }>) : []);
  return new Map(pairs(json).map((c) => [String(c.key), new Map(pairs(c.value).map((s) => [String(s.key), String(s.value)]))]));
}

/** One group of rows of some files: the file, its partition tuple (raw DuckDB values) and aggregates. */
export interface FileGroup {
  file: string;
  tuple: unknown[];
  aggregates: unknown[];
}

/**
 * Groups the rows of Parquet files by file and partition tuple (set-based, one query), with extra
 * aggregates per group. A file holding one partition gives one group; an empty file none.
 *
 * @example
 * const groups = await fileGroups(connection, ["/tmp/a.parquet"], partitionExprs(schema, spec), ['count(*) FILTER (WHERE isnan("x"))']);
 */
export async function fileGroups(connection: DuckDBConnection, paths: readonly string[], partExprs: readonly string[], aggregates: readonly string[] = []): Promise<FileGroup[]> {
  if (paths.length === 0) return [];
  const select = [...partExprs.map((e, i) => `${e} AS p${i}`), ...aggregates.map((a, i) => `${a} AS a${i}`)];
  const reader = await connection.runAndReadAll(
    `SELECT __floe_file${select.map((s) => `, ${s}`).join("")}
     FROM read_parquet([${paths.map(literal).join(", ")}], union_by_name = true, filename = '__floe_file') GROUP BY ALL`,
  );
  return reader.getRowObjectsJS().map((row) => ({
    file: String(row.__floe_file),
    tuple: partExprs.map((_, i) => row[`p${i}`]),
    aggregates: aggregates.map((_, i) => row[`a${i}`]),
  }));
}

/** The partition tuple of each file, read back from the files themselves (one tuple per file). */
async function partitionTuples(o: WriteDataFilesOptions, paths: string[], partExprs: string[]): Promise<Map<string, PartitionValue[]>> {
  const out = new Map<string, PartitionValue[]>();
  if (partExprs.length === 0) return out;
  const types = o.spec.fields.map((pf) => resultType(o.schema, pf));
  for (const g of await fileGroups(o.connection, paths, partExprs)) {
    if (out.has(g.file)) throw new Error(`data file ${g.file} holds more than one partition (a partition key hash collision); write again`);
    out.set(g.file, partitionTuple(types, g.tuple));
  }
  return out;
}

/**
 * Raw DuckDB partition values in the internal form of their result types.
 *
 * @example
 * partitionTuple(["date"], [19724]) // → [19724]
 */
export function partitionTuple(types: readonly PrimitiveType[], raw: readonly unknown[]): PartitionValue[] {
  return types.map((t, i) => coercePartitionValue(t, raw[i]));
}

/** What a data file's footer or writer says about one column; undefined means unknown and is left out. */
export interface ColumnMetrics {
  size: bigint | undefined;
  values: bigint | undefined;
  nulls: bigint | undefined;
  nans: bigint | undefined;
  lower: IcebergValue | undefined;
  upper: IcebergValue | undefined;
}

/** A data file to list: where it goes, its partition tuple, and its metrics by field id. */
export interface DataFileFacts {
  key: string;
  partition: readonly PartitionValue[];
  records: bigint;
  size: bigint;
  columns: ReadonlyMap<number, ColumnMetrics>;
}

/** RETURN_STATS per column (keyed by the quoted column name) → metrics by field id. */
function metricsOfReturnStats(schema: Schema, columns: ColumnStats): Map<number, ColumnMetrics> {
  const out = new Map<number, ColumnMetrics>();
  for (const f of schema.fields) {
    const st = columns.get(ident(sanitizeName(f.name)));
    if (!st) continue;
    const n = (k: string): bigint | undefined => (st.has(k) ? BigInt(st.get(k) as string) : undefined);
    const bound = (k: string, side: "lower" | "upper"): IcebergValue | undefined => {
      const text = st.get(k);
      return text === undefined ? undefined : boundFromStat(f.type, text, side);
    };
    out.set(f.id, {
      size: n("column_size_bytes"),
      values: n("num_values"),
      nulls: n("null_count"),
      // DuckDB only says whether there are NaNs: a count is known only when there are none
      nans: (f.type === "float" || f.type === "double") && st.get("has_nan") === "false" ? 0n : undefined,
      lower: bound("min", "lower"),
      upper: bound("max", "upper"),
    });
  }
  return out;
}

/**
 * The `data_file` record of a data file of the table: partition by field name, metrics by field
 * id in schema order, bounds serialized per type; unknown metrics are left out.
 *
 * @example
 * const df = dataFileOf({ schema, spec, storage }, { key, partition: [19724], records: 10n, size: 1234n, columns: new Map() });
 */
export function dataFileOf(o: Pick<WriteDataFilesOptions, "schema" | "spec" | "storage">, f: DataFileFacts): DataFile {
  const lists = { size: [] as KeyValue<bigint>[], values: [] as KeyValue<bigint>[], nulls: [] as KeyValue<bigint>[], nans: [] as KeyValue<bigint>[], lower: [] as KeyValue<Uint8Array>[], upper: [] as KeyValue<Uint8Array>[] };
  for (const field of o.schema.fields) {
    const m = f.columns.get(field.id);
    if (!m) continue;
    for (const k of ["size", "values", "nulls", "nans"] as const) {
      const v = m[k];
      if (v !== undefined) lists[k].push({ key: field.id, value: v });
    }
    for (const k of ["lower", "upper"] as const) {
      const v = m[k];
      if (v !== undefined) lists[k].push({ key: field.id, value: serializeValue(field.type, v) });
    }
  }
  return {
    content: 0,
    file_path: o.storage.uriOf(f.key),
    file_format: "PARQUET",
    partition: Object.fromEntries(o.spec.fields.map((pf, i) => [pf.name, f.partition[i] ?? null])),
    record_count: f.records,
    file_size_in_bytes: f.size,
    column_sizes: lists.size,
    value_counts: lists.values,
    null_value_counts: lists.nulls,
    nan_value_counts: lists.nans,
    lower_bounds: lists.lower,
    upper_bounds: lists.upper,
    key_metadata: null,
    split_offsets: null,
    equality_ids: null,
    sort_order_id: null,
  };
}

/**
 * Runs `fn` over items with at most `limit` at a time.
 *
 * @example
 * await inBatches(keys, 8, (k) => storage.delete([k]));
 */
export async function inBatches<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
