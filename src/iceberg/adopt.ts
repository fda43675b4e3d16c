// Zero-copy adoption of Parquet files (like Iceberg's `add_files`): a source file whose footer
// already says what the table needs — the table's columns with their field ids and exact types,
// the same `iceberg.schema`, one partition — is listed as a data file as it is, instead of being
// rewritten through DuckDB. Its `data_file` metrics come from the footer; what the footer cannot
// vouch for is left out (a missing metric is always valid, a wrong one is not).

import { randomUUID } from "node:crypto";
import { stat } from "node:fs/promises";
import type { DuckDBConnection } from "@duckdb/node-api";
import {
  dataFileKey,
  dataFileOf,
  fileGroups,
  ident,
  literal,
  partitionExprs,
  partitionTuple,
  uploadDataFiles,
  type ColumnMetrics,
  type WriteDataFilesOptions,
  type WrittenFile,
} from "./data-files.js";
import { resultType, type PartitionSpec, type PartitionValue } from "./partition-spec.js";
import { duckdbTypeOf, parsePrimitiveType, sanitizeName, type PrimitiveType, type Schema, type SchemaField } from "./schema.js";
import { boundFromStat, compareValues, type IcebergValue } from "./values.js";

/**
 * The rows of local Parquet files as a relation for FROM: columns unioned by name, floe's lineage
 * columns (`_floe_*`) left out. With `only`, just the rows of those files, with the columns (and
 * types) all the files give, so that a part of the files reads like the whole.
 *
 * @example
 * parquetRelation(["/tmp/a.parquet", "/tmp/b.parquet"], ["/tmp/b.parquet"])
 * // → "(SELECT COLUMNS(…) FROM read_parquet([…], union_by_name = true, filename = '_floe_file') WHERE _floe_file IN ('/tmp/b.parquet'))"
 */
export function parquetRelation(files: readonly string[], only?: readonly string[]): string {
  if (files.length === 0) throw new Error("the Parquet source lists no file");
  const list = `[${files.map(literal).join(", ")}]`;
  const columns = "COLUMNS(c -> NOT starts_with(c, '_floe_'))";
  if (!only) return `(SELECT ${columns} FROM read_parquet(${list}, union_by_name = true))`;
  return `(SELECT ${columns} FROM read_parquet(${list}, union_by_name = true, filename = '_floe_file') WHERE _floe_file IN (${only.map(literal).join(", ")}))`;
}

/** A source file that can be listed as it is, with what its `data_file` record needs. */
export interface AdoptableFile {
  path: string;
  partition: PartitionValue[];
  records: bigint;
  columns: Map<number, ColumnMetrics>;
}

/** Which source files are adopted and which are rewritten (empty files are neither). */
export interface AdoptionPlan {
  adopt: AdoptableFile[];
  /** Paths to rewrite, each with the reason it cannot be adopted. */
  rewrite: Array<{ path: string; reason: string }>;
}

/**
 * Decides per file whether it can be listed in the table as it is: its top-level columns are
 * exactly the schema's fields (same names, unsanitized-safe, primitive, no `_floe_*`), each with
 * the field's id and the DuckDB type the writer would cast to, stored as Iceberg needs it (µs
 * timestamps, UTF-8 strings…); its `iceberg.schema` has the same (id, name, type) fields; and
 * all its rows fall in one partition tuple. Reads footers (four set-based queries over all files)
 * and, for partitioned specs or float columns, scans those columns once (partition tuples, NaN
 * counts). Files with zero rows are dropped.
 *
 * @example
 * const plan = await planAdoption({ connection, paths: ["/tmp/part-0.parquet"], schema, spec });
 * plan.adopt.length // → 1 when the file was written with icebergParquetOptions of the same columns
 */
export async function planAdoption(o: { connection: DuckDBConnection; paths: readonly string[]; schema: Schema; spec: PartitionSpec }): Promise<AdoptionPlan> {
  const footers = await readFooters(o.connection, [...new Set(o.paths)]);
  const rewrite: AdoptionPlan["rewrite"] = [];
  const candidates: Footer[] = [];
  for (const path of o.paths) {
    const footer = footers.get(path);
    if (footer?.rows === 0n) continue; // an empty file adds nothing: never listed, never rewritten
    const reason = footer ? refusal(footer, o.schema) : "its footer could not be read";
    if (reason) rewrite.push({ path, reason });
    else if (footer) candidates.push(footer);
  }
  const scans = await scanFiles(o.connection, candidates.map((f) => f.path), o.schema, o.spec);
  const adopt: AdoptableFile[] = [];
  for (const footer of candidates) {
    const scan = scans.get(footer.path);
    const tuples = scan?.tuples ?? [[]];
    if (o.spec.fields.length > 0 && tuples.length !== 1) {
      rewrite.push({ path: footer.path, reason: `its rows fall in ${tuples.length} partitions` });
      continue;
    }
    const columns = metricsOfFooter(o.schema, footer, scan?.nans ?? new Map());
    adopt.push({ path: footer.path, partition: tuples[0] ?? [], records: footer.rows, columns });
  }
  return { adopt, rewrite };
}

/**
 * Copies adoptable files into the table's data folder (`storage.upload`, keys named like
 * writeDataFiles names them) and returns their `data_file` records; the file size is the size of
 * the uploaded bytes. On failure, files already uploaded are deleted (best effort).
 *
 * @example
 * const files = await adoptDataFiles({ schema, spec, storage, dataPrefix: "db/events/data" }, plan.adopt);
 */
export async function adoptDataFiles(o: Pick<WriteDataFilesOptions, "schema" | "spec" | "storage" | "dataPrefix">, files: readonly AdoptableFile[]): Promise<WrittenFile[]> {
  const writeId = randomUUID();
  const out = await Promise.all(
    files.map(async (f, i) => {
      const key = dataFileKey(o, f.partition, i, writeId);
      const size = BigInt((await stat(f.path)).size);
      return { key, local: f.path, partition: f.partition, dataFile: dataFileOf(o, { key, partition: f.partition, records: f.records, size, columns: f.columns }) };
    }),
  );
  await uploadDataFiles(o.storage, out);
  return out.map(({ local: _local, ...f }) => f);
}

/** A top-level Parquet column as `parquet_schema()` describes it. */
interface FooterColumn {
  name: string;
  fieldId: number | undefined;
  physical: string;
  converted: string;
  logical: string;
  duckdbType: string;
  nested: boolean;
}

/** One row group's min/max of a column (only row groups holding a non-null value, or not saying). */
interface RowGroupBounds {
  min: string | null;
  max: string | null;
  min_exact: boolean | null;
  max_exact: boolean | null;
}

/** A column's statistics, summed over the row groups; undefined when a row group does not say. */
interface FooterStats {
  size: bigint | undefined;
  values: bigint | undefined;
  nulls: bigint | undefined;
  groups: RowGroupBounds[];
}

interface Footer {
  path: string;
  rows: bigint;
  columns: FooterColumn[];
  icebergSchema: string | undefined;
  stats: Map<string, FooterStats>;
}

/** The footers of local Parquet files: row counts, schema, `iceberg.schema` and column statistics. */
async function readFooters(connection: DuckDBConnection, paths: readonly string[]): Promise<Map<string, Footer>> {
  const out = new Map<string, Footer>();
  if (paths.length === 0) return out;
  const list = `[${paths.map(literal).join(", ")}]`;
  const query = async (sql: string): Promise<Array<Record<string, unknown>>> => (await connection.runAndReadAll(sql)).getRowObjectsJson() as Array<Record<string, unknown>>;
  const files = await query(`SELECT file_name, num_rows FROM parquet_file_metadata(${list})`);
  const columns = await query(`SELECT file_name, name, field_id, type, converted_type, logical_type, duckdb_type, num_children
    FROM parquet_schema(${list}) WHERE column_id > 0 ORDER BY file_name, column_id`);
  const kvs = await query(`SELECT file_name, try(decode(value)) AS value FROM parquet_kv_metadata(${list}) WHERE key = 'iceberg.schema'::BLOB`);
  // per column: counts summed over row groups; min/max of the row groups that hold a value
  const stats = await query(`SELECT file_name, path_in_schema AS name, sum(num_values) AS "values", sum(total_compressed_size) AS size,
      CASE WHEN count(stats_null_count) = count(*) THEN sum(stats_null_count) END AS nulls,
      list({min: stats_min_value, max: stats_max_value, min_exact: min_is_exact, max_exact: max_is_exact} ORDER BY row_group_id)
        FILTER (WHERE stats_null_count IS NULL OR stats_null_count < num_values) AS groups
    FROM parquet_metadata(${list}) GROUP BY ALL`);
  const text = (v: unknown): string => (v === null || v === undefined ? "" : String(v));
  const big = (v: unknown): bigint | undefined => (v === null || v === undefined ? undefined : BigInt(String(v)));
  for (const f of files) out.set(text(f.file_name), { path: text(f.file_name), rows: big(f.num_rows) ?? 0n, columns: [], icebergSchema: undefined, stats: new Map() });
  for (const c of columns) {
    out.get(text(c.file_name))?.columns.push({
      name: text(c.name),
      fieldId: c.field_id === null || c.field_id === undefined ? undefined : Number(c.field_id),
      physical: text(c.type),
      converted: text(c.converted_type),
      logical: text(c.logical_type),
      duckdbType: text(c.duckdb_type),
      nested: Number(c.num_children ?? 0) > 0,
    });
  }
  for (const kv of kvs) {
    const footer = out.get(text(kv.file_name));
    if (footer && kv.value !== null) footer.icebergSchema = text(kv.value);
  }
  for (const s of stats) {
    const groups = Array.isArray(s.groups) ? (s.groups as RowGroupBounds[]) : [];
    out.get(text(s.file_name))?.stats.set(text(s.name), { size: big(s.size), values: big(s.values), nulls: big(s.nulls), groups });
  }
  return out;
}

/** Why a file cannot be listed as it is for `schema` (footer checks), or undefined when it can. */
function refusal(footer: Footer, schema: Schema): string | undefined {
  const lineage = footer.columns.find((c) => c.name.startsWith("_floe_"));
  if (lineage) return `it has floe's column "${lineage.name}"`;
  if (footer.columns.length !== schema.fields.length) return `it has ${footer.columns.length} columns, the table ${schema.fields.length}`;
  const byName = new Map(footer.columns.map((c) => [c.name, c]));
  for (const f of schema.fields) {
    const c = byName.get(f.name);
    if (!c || sanitizeName(f.name) !== f.name) return `it has no column named "${f.name}" as Parquet spells it`;
    const why = columnRefusal(c, f);
    if (why) return `column "${f.name}" ${why}`;
    // a required column is listed as it is only when the footer vouches it holds no NULL; the
    // rewrite checks every value
    if (f.required && footer.stats.get(f.name)?.nulls !== 0n) return `column "${f.name}" is required and the footer does not rule out NULLs`;
  }
  return sameIcebergSchema(footer.icebergSchema, schema) ? undefined : "its iceberg.schema is missing or differs from the table's";
}

/** Why a Parquet column does not hold field `f` as the writer would write it, or undefined. */
function columnRefusal(c: FooterColumn, f: SchemaField): string | undefined {
  if (c.nested || typeof f.type !== "string") return "is nested";
  if (c.fieldId !== f.id) return `has field id ${c.fieldId ?? "none"}, the table ${f.id}`;
  const want = writableDuckdbType(f.type);
  if (!want || normalType(c.duckdbType) !== normalType(want)) return `is ${c.duckdbType}, the table needs ${want ?? "a rewrite"}`;
  return storedAsIceberg(f.type, c) ? undefined : `is stored as ${c.physical} ${c.logical || c.converted}, not as Iceberg needs`;
}

function writableDuckdbType(t: PrimitiveType): string | undefined {
  try {
    return duckdbTypeOf(t);
  } catch {
    return undefined;
  }
}

/** One spelling per DuckDB type: upper case, no blanks in parameters, TIMESTAMPTZ for its long name. */
function normalType(t: string): string {
  return t.toUpperCase().replace(/\s*([(),])\s*/g, "$1").replace(/^TIMESTAMP WITH TIME ZONE$/, "TIMESTAMPTZ");
}

const PHYSICAL: Partial<Record<PrimitiveType, readonly string[]>> = {
  boolean: ["BOOLEAN"],
  int: ["INT32"],
  long: ["INT64"],
  float: ["FLOAT"],
  double: ["DOUBLE"],
  date: ["INT32"],
  time: ["INT64"],
  timestamp: ["INT64"],
  timestamptz: ["INT64"],
  string: ["BYTE_ARRAY"],
  uuid: ["FIXED_LEN_BYTE_ARRAY"],
  binary: ["BYTE_ARRAY"],
};

/**
 * Whether the Parquet storage is what the Iceberg spec requires for the type, beyond what DuckDB's
 * type says: DuckDB reads millisecond and INT96 timestamps as TIMESTAMP, but Iceberg v2 needs µs.
 */
function storedAsIceberg(t: PrimitiveType, c: FooterColumn): boolean {
  const physical = t.startsWith("decimal(") ? ["INT32", "INT64", "FIXED_LEN_BYTE_ARRAY"] : (PHYSICAL[t] ?? []);
  if (!physical.includes(c.physical)) return false;
  if (t === "time" || t === "timestamp" || t === "timestamptz") return c.logical.includes("MICROS=MicroSeconds()") || c.converted === "TIME_MICROS" || c.converted === "TIMESTAMP_MICROS";
  if (t === "string") return c.converted === "UTF8" || c.logical.startsWith("StringType");
  return true;
}

/** Whether a footer's `iceberg.schema` has the same (id, name, type) fields as `schema`. */
function sameIcebergSchema(text: string | undefined, schema: Schema): boolean {
  if (text === undefined) return false;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return false;
  }
  const fields = (parsed as { fields?: unknown } | null)?.fields;
  if (!Array.isArray(fields)) return false;
  const key = (id: unknown, name: unknown, type: unknown): string =>
    JSON.stringify([id, name, typeof type === "string" ? (parsePrimitiveType(type) ?? type) : type]);
  const theirs = fields.map((f: { id?: unknown; name?: unknown; type?: unknown }) => key(f.id, f.name, f.type)).sort();
  const ours = schema.fields.map((f) => key(f.id, f.name, f.type)).sort();
  return JSON.stringify(theirs) === JSON.stringify(ours);
}

/** What one scan of the candidate files tells: each file's partition tuples and NaN counts by field id. */
interface FileScan {
  tuples: PartitionValue[][];
  nans: Map<number, bigint>;
}

/**
 * One query over the candidate files (only their partition source and float columns are read):
 * the distinct partition tuples of each file and its exact NaN counts. Skipped when the spec is
 * unpartitioned and no column is a float.
 */
async function scanFiles(connection: DuckDBConnection, paths: readonly string[], schema: Schema, spec: PartitionSpec): Promise<Map<string, FileScan>> {
  const out = new Map<string, FileScan>();
  const floats = schema.fields.filter((f) => f.type === "float" || f.type === "double");
  if (paths.length === 0 || (spec.fields.length === 0 && floats.length === 0)) return out;
  const types = spec.fields.map((pf) => resultType(schema, pf));
  const nanCounts = floats.map((f) => `count(*) FILTER (WHERE isnan(${ident(f.name)}))`);
  for (const g of await fileGroups(connection, [...new Set(paths)], partitionExprs(schema, spec), nanCounts)) {
    const scan = out.get(g.file) ?? { tuples: [], nans: new Map<number, bigint>() };
    out.set(g.file, scan);
    scan.tuples.push(partitionTuple(types, g.tuple));
    floats.forEach((f, i) => scan.nans.set(f.id, (scan.nans.get(f.id) ?? 0n) + BigInt(String(g.aggregates[i] ?? 0))));
  }
  return out;
}

/** The footer's statistics as metrics by field id (the file's column names are the field names). */
function metricsOfFooter(schema: Schema, footer: Footer, nans: ReadonlyMap<number, bigint>): Map<number, ColumnMetrics> {
  const out = new Map<number, ColumnMetrics>();
  for (const f of schema.fields) {
    const st = footer.stats.get(f.name);
    if (!st || typeof f.type !== "string") continue;
    out.set(f.id, {
      size: st.size,
      values: st.values,
      nulls: st.nulls,
      nans: nans.get(f.id),
      lower: footerBound(f.type, st.groups, "lower"),
      upper: footerBound(f.type, st.groups, "upper"),
    });
  }
  return out;
}

/**
 * A column's bound over its row groups: the least min (or greatest max) of every row group that
 * holds a value, parsed and truncated as boundFromStat does. Undefined (left out) when any of them
 * is missing or not exact — for strings, exactness must be stated, since DuckDB cuts long string
 * statistics — and always for binary, whose footer rendering is ambiguous.
 */
function footerBound(type: PrimitiveType, groups: readonly RowGroupBounds[], side: "lower" | "upper"): IcebergValue | undefined {
  if (type === "binary" || groups.length === 0) return undefined;
  let best: IcebergValue | undefined;
  for (const g of groups) {
    const text = side === "lower" ? g.min : g.max;
    const exact = side === "lower" ? g.min_exact : g.max_exact;
    if (text === null || exact === false || (exact !== true && type === "string")) return undefined;
    const v = boundFromStat(type, text, side);
    if (v === undefined) return undefined;
    const order = best === undefined ? 0 : compareValues(type, v, best);
    if (best === undefined || (side === "lower" ? order < 0 : order > 0)) best = v;
  }
  return best;
}
