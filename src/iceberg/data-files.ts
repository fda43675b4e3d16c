// Parquet data files: DuckDB writes them (one per partition tuple, with field ids and the
// `iceberg.schema` key), and their Iceberg `data_file` records come from RETURN_STATS.

import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DuckDBConnection } from "@duckdb/node-api";
import { stringifyJson } from "./json.js";
import type { DataFile, KeyValue } from "./manifest.js";
import { coercePartitionValue, partitionPath, partitionSql, resultType, sourceField, type PartitionSpec, type PartitionValue } from "./partition-spec.js";
import { duckdbTypeOf, sanitizeName, type Schema } from "./schema.js";
import type { ObjectStorage } from "../storage/types.js";
import { boundFromStat, serializeValue } from "./values.js";

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
  const columns = fields.map((f) => `CAST(${ident(f.name)} AS ${duckdbTypeOf(f.type)}) AS ${ident(sanitizeName(f.name))}`);
  const partExprs = o.spec.fields.map((pf) => {
    const src = sourceField(o.schema, pf);
    return partitionSql(typeof src.type === "string" ? src.type : "nested", pf.transform, ident(sanitizeName(src.name)));
  });
  const fieldIds = fields.map((f) => `${ident(sanitizeName(f.name))}: ${f.id}`).join(", ");
  const icebergSchema = stringifyJson(o.schema);
  const dir = await mkdtemp(join(o.tmpDir ?? tmpdir(), "floe-iceberg-"));
  const uploaded: string[] = [];
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
    const types = o.spec.fields.map((pf) => resultType(o.schema, pf));
    const writeId = randomUUID();
    const files = stats.map((s, i): WrittenFile => {
      const partition = tuples.get(s.path) ?? [];
      const folder = o.spec.fields.length > 0 ? `/${partitionPath(o.spec, types, partition)}` : "";
      const key = `${o.dataPrefix}${folder}/${String(i).padStart(5, "0")}-0-${writeId}.parquet`;
      return { key, partition, dataFile: dataFileOf(o, s, key, partition) };
    });
    await inBatches(files, 8, async (f, i) => {
      const local = stats[i]?.path as string;
      uploaded.push(f.key);
      await o.storage.upload(local, f.key);
    });
    return files;
  } catch (e) {
    await o.storage.delete(uploaded).catch(() => undefined);
    throw e;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

type ColumnStats = Map<string, Map<string, string>>;

/** `MAP(VARCHAR, MAP(VARCHAR, VARCHAR))` as JSON (arrays of {key, value}) → nested Maps. */
function statsMap(json: unknown): ColumnStats {
  const pairs = (v: unknown): Array<{ key: unknown; value: unknown }> => (Array.isArray(v) ? (v as Array<{ key: unknown; value: unknown }>) : []);
  return new Map(pairs(json).map((c) => [String(c.key), new Map(pairs(c.value).map((s) => [String(s.key), String(s.value)]))]));
}

/** The partition tuple of each file, read back from the files themselves (one tuple per file). */
async function partitionTuples(o: WriteDataFilesOptions, paths: string[], partExprs: string[]): Promise<Map<string, PartitionValue[]>> {
  const out = new Map<string, PartitionValue[]>();
  if (partExprs.length === 0 || paths.length === 0) return out;
  const types = o.spec.fields.map((pf) => resultType(o.schema, pf));
  const reader = await o.connection.runAndReadAll(
    `SELECT __floe_file, ${partExprs.map((e, i) => `${e} AS p${i}`).join(", ")}
     FROM read_parquet([${paths.map(literal).join(", ")}], filename = '__floe_file') GROUP BY ALL`,
  );
  for (const row of reader.getRowObjectsJS()) {
    const path = String(row.__floe_file);
    if (out.has(path)) throw new Error(`data file ${path} holds more than one partition (a partition key hash collision); write again`);
    out.set(
      path,
      types.map((t, i) => coercePartitionValue(t, row[`p${i}`])),
    );
  }
  return out;
}

function dataFileOf(o: WriteDataFilesOptions, s: { count: bigint; size: bigint; columns: ColumnStats }, key: string, partition: PartitionValue[]): DataFile {
  const sizes: KeyValue<bigint>[] = [];
  const values: KeyValue<bigint>[] = [];
  const nulls: KeyValue<bigint>[] = [];
  const nans: KeyValue<bigint>[] = [];
  const lower: KeyValue<Uint8Array>[] = [];
  const upper: KeyValue<Uint8Array>[] = [];
  for (const f of o.schema.fields) {
    const st = s.columns.get(ident(sanitizeName(f.name)));
    if (!st) continue;
    const n = (k: string): bigint | undefined => (st.has(k) ? BigInt(st.get(k) as string) : undefined);
    const push = <V>(list: KeyValue<V>[], v: V | undefined): void => {
      if (v !== undefined) list.push({ key: f.id, value: v });
    };
    push(sizes, n("column_size_bytes"));
    push(values, n("num_values"));
    push(nulls, n("null_count"));
    // DuckDB only says whether there are NaNs: a count is known only when there are none
    if ((f.type === "float" || f.type === "double") && st.get("has_nan") === "false") push(nans, 0n);
    const min = st.get("min");
    const max = st.get("max");
    const lo = min === undefined ? undefined : boundFromStat(f.type, min, "lower");
    const hi = max === undefined ? undefined : boundFromStat(f.type, max, "upper");
    if (lo !== undefined) push(lower, serializeValue(f.type, lo));
    if (hi !== undefined) push(upper, serializeValue(f.type, hi));
  }
  return {
    content: 0,
    file_path: o.storage.uriOf(key),
    file_format: "PARQUET",
    partition: Object.fromEntries(o.spec.fields.map((pf, i) => [pf.name, partition[i] ?? null])),
    record_count: s.count,
    file_size_in_bytes: s.size,
    column_sizes: sizes,
    value_counts: values,
    null_value_counts: nulls,
    nan_value_counts: nans,
    lower_bounds: lower,
    upper_bounds: upper,
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
