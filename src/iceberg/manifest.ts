// Manifests (data files of one spec, with stats) and manifest lists (the manifests of a snapshot),
// with the v2 Avro schemas and field ids of the Iceberg spec.

import { decodeAvroFile, encodeAvroFile } from "./avro.js";
import { stringifyJson, type JsonObject, type JsonValue } from "./json.js";
import { resultType, type PartitionSpec, type PartitionValue } from "./partition-spec.js";
import { sanitizeName, type PrimitiveType, type Schema } from "./schema.js";
import { compareValues, serializeValue } from "./values.js";

export interface KeyValue<V> {
  key: number;
  value: V;
}

/** `data_file` of a manifest entry (v2). Maps keyed by field id; bounds single-value serialized. */
export interface DataFile {
  content: number;
  file_path: string;
  file_format: string;
  /** By partition field name (the Iceberg name; in the Avro file it is Avro-sanitized). */
  partition: Record<string, PartitionValue>;
  record_count: bigint;
  file_size_in_bytes: bigint;
  column_sizes: KeyValue<bigint>[] | null;
  value_counts: KeyValue<bigint>[] | null;
  null_value_counts: KeyValue<bigint>[] | null;
  nan_value_counts: KeyValue<bigint>[] | null;
  lower_bounds: KeyValue<Uint8Array>[] | null;
  upper_bounds: KeyValue<Uint8Array>[] | null;
  key_metadata: Uint8Array | null;
  split_offsets: bigint[] | null;
  equality_ids: number[] | null;
  sort_order_id: number | null;
  /** Position deletes only: the one data file all of its deletes are in, when the writer says so (field 143). */
  referenced_data_file?: string | null;
}

/** Manifest entry status: EXISTING 0, ADDED 1, DELETED 2. */
export const EntryStatus = { Existing: 0, Added: 1, Deleted: 2 } as const;
export type EntryStatus = (typeof EntryStatus)[keyof typeof EntryStatus];

export interface ManifestEntry {
  status: EntryStatus;
  snapshot_id: bigint | null;
  /** Null only for ADDED entries (inherited from the manifest list). */
  sequence_number: bigint | null;
  file_sequence_number: bigint | null;
  data_file: DataFile;
}

export interface FieldSummary {
  contains_null: boolean;
  contains_nan: boolean | null;
  lower_bound: Uint8Array | null;
  upper_bound: Uint8Array | null;
}

/** A manifest-list record (`manifest_file`, v2). */
export interface ManifestFile {
  manifest_path: string;
  manifest_length: bigint;
  partition_spec_id: number;
  content: number;
  sequence_number: bigint;
  min_sequence_number: bigint;
  added_snapshot_id: bigint;
  added_files_count: number;
  existing_files_count: number;
  deleted_files_count: number;
  added_rows_count: bigint;
  existing_rows_count: bigint;
  deleted_rows_count: bigint;
  partitions: FieldSummary[] | null;
  key_metadata: Uint8Array | null;
}

const optional = (name: string, type: JsonValue, id: number): JsonObject => ({ name, type: ["null", type], default: null, "field-id": id });
const intMap = (name: string, id: number, k: number, v: number, valueType: string): JsonObject =>
  optional(
    name,
    {
      type: "array",
      logicalType: "map",
      items: { type: "record", name: `k${k}_v${v}`, fields: [{ name: "key", type: "int", "field-id": k }, { name: "value", type: valueType, "field-id": v }] },
    },
    id,
  );

/** The Avro type of a partition value (spec "Avro" type mapping), by Iceberg result type. */
function avroPartitionType(t: PrimitiveType): JsonValue {
  switch (t) {
    case "date":
      return { type: "int", logicalType: "date" };
    case "timestamp":
    case "timestamptz":
      return { type: "long", logicalType: "timestamp-micros", "adjust-to-utc": t === "timestamptz" };
    case "boolean":
    case "int":
    case "long":
    case "float":
    case "double":
    case "string":
      return t;
    default:
      throw new Error(`partition values of type ${t} are not supported`);
  }
}

/**
 * The v2 `manifest_entry` Avro schema for a partition spec (partition struct `r102` built from the
 * spec; every field with its field id).
 *
 * @example
 * const avroSchema = manifestEntrySchema(schema, spec);
 */
export function manifestEntrySchema(schema: Schema, spec: PartitionSpec): JsonObject {
  // Avro names are [A-Za-z_][A-Za-z0-9_]*: a partition field "Breed Name" is "Breed_x20Name" in the
  // file (Java's AvroSchemaUtil.makeCompatibleName); readers match it by field id, and the
  // spec in the table metadata keeps the Iceberg name.
  const partition = spec.fields.map((f) => optional(sanitizeName(f.name), avroPartitionType(resultType(schema, f)), f["field-id"]));
  return {
    type: "record",
    name: "manifest_entry",
    fields: [
      { name: "status", type: "int", "field-id": 0 },
      optional("snapshot_id", "long", 1),
      optional("sequence_number", "long", 3),
      optional("file_sequence_number", "long", 4),
      {
        name: "data_file",
        "field-id": 2,
        type: {
          type: "record",
          name: "r2",
          fields: [
            { name: "content", type: "int", "field-id": 134 },
            { name: "file_path", type: "string", "field-id": 100 },
            { name: "file_format", type: "string", "field-id": 101 },
            { name: "partition", type: { type: "record", name: "r102", fields: partition }, "field-id": 102 },
            { name: "record_count", type: "long", "field-id": 103 },
            { name: "file_size_in_bytes", type: "long", "field-id": 104 },
            intMap("column_sizes", 108, 117, 118, "long"),
            intMap("value_counts", 109, 119, 120, "long"),
            intMap("null_value_counts", 110, 121, 122, "long"),
            intMap("nan_value_counts", 137, 138, 139, "long"),
            intMap("lower_bounds", 125, 126, 127, "bytes"),
            intMap("upper_bounds", 128, 129, 130, "bytes"),
            optional("key_metadata", "bytes", 131),
            optional("split_offsets", { type: "array", items: "long", "element-id": 133 }, 132),
            optional("equality_ids", { type: "array", items: "int", "element-id": 136 }, 135),
            optional("sort_order_id", "int", 140),
          ],
        },
      },
    ],
  };
}

/** The v2 `manifest_file` Avro schema of manifest lists. */
export const MANIFEST_LIST_SCHEMA: JsonObject = {
  type: "record",
  name: "manifest_file",
  fields: [
    { name: "manifest_path", type: "string", "field-id": 500 },
    { name: "manifest_length", type: "long", "field-id": 501 },
    { name: "partition_spec_id", type: "int", "field-id": 502 },
    { name: "content", type: "int", "field-id": 517 },
    { name: "sequence_number", type: "long", "field-id": 515 },
    { name: "min_sequence_number", type: "long", "field-id": 516 },
    { name: "added_snapshot_id", type: "long", "field-id": 503 },
    { name: "added_files_count", type: "int", "field-id": 504 },
    { name: "existing_files_count", type: "int", "field-id": 505 },
    { name: "deleted_files_count", type: "int", "field-id": 506 },
    { name: "added_rows_count", type: "long", "field-id": 512 },
    { name: "existing_rows_count", type: "long", "field-id": 513 },
    { name: "deleted_rows_count", type: "long", "field-id": 514 },
    optional(
      "partitions",
      {
        type: "array",
        "element-id": 508,
        items: {
          type: "record",
          name: "r508",
          fields: [
            { name: "contains_null", type: "boolean", "field-id": 509 },
            optional("contains_nan", "boolean", 518),
            optional("lower_bound", "bytes", 510),
            optional("upper_bound", "bytes", 511),
          ],
        },
      },
      507,
    ),
    optional("key_metadata", "bytes", 519),
  ],
};

/**
 * Encodes a data manifest. Its header carries the table schema (not the entry schema), the
 * schema id, the spec's fields and id, format version 2 and content "data".
 *
 * @example
 * const bytes = encodeManifest(schema, spec, [{ status: EntryStatus.Added, snapshot_id: sid, sequence_number: null, file_sequence_number: null, data_file }]);
 */
export function encodeManifest(schema: Schema, spec: PartitionSpec, entries: readonly ManifestEntry[]): Uint8Array {
  const renamed = spec.fields.some((f) => sanitizeName(f.name) !== f.name);
  const records = !renamed
    ? entries
    : entries.map((e) => ({
        ...e,
        data_file: { ...e.data_file, partition: Object.fromEntries(spec.fields.map((f) => [sanitizeName(f.name), e.data_file.partition[f.name] ?? null])) },
      }));
  return encodeAvroFile(manifestEntrySchema(schema, spec), records, {
    schema: stringifyJson(schema),
    "schema-id": String(schema["schema-id"]),
    "partition-spec": stringifyJson(spec.fields),
    "partition-spec-id": String(spec["spec-id"]),
    "format-version": "2",
    content: "data",
  });
}

/**
 * Decodes a manifest (ours or another writer's) into entries.
 *
 * @example
 * const live = decodeManifest(await storage.read(key)).filter((e) => e.status !== EntryStatus.Deleted);
 */
export function decodeManifest(bytes: Uint8Array): ManifestEntry[] {
  const file = decodeAvroFile(bytes);
  const rename = partitionNames(file.schema, file.metadata["partition-spec"]);
  return file.records.map((raw) => {
    const r = raw as Partial<ManifestEntry> & { data_file: Partial<DataFile> & Pick<DataFile, "file_path" | "record_count" | "file_size_in_bytes"> };
    const d = r.data_file;
    if (rename.size > 0 && d.partition) d.partition = Object.fromEntries(Object.entries(d.partition).map(([k, v]) => [rename.get(k) ?? k, v]));
    return {
      status: r.status ?? EntryStatus.Existing,
      snapshot_id: r.snapshot_id ?? null,
      sequence_number: r.sequence_number ?? null,
      file_sequence_number: r.file_sequence_number ?? null,
      data_file: {
        content: d.content ?? 0,
        file_path: d.file_path,
        file_format: d.file_format ?? "PARQUET",
        partition: { ...(d.partition ?? {}) },
        record_count: d.record_count,
        file_size_in_bytes: d.file_size_in_bytes,
        column_sizes: d.column_sizes ?? null,
        value_counts: d.value_counts ?? null,
        null_value_counts: d.null_value_counts ?? null,
        nan_value_counts: d.nan_value_counts ?? null,
        lower_bounds: d.lower_bounds ?? null,
        upper_bounds: d.upper_bounds ?? null,
        key_metadata: d.key_metadata ?? null,
        split_offsets: d.split_offsets ?? null,
        equality_ids: d.equality_ids ?? null,
        sort_order_id: d.sort_order_id ?? null,
        ...(typeof d.referenced_data_file === "string" ? { referenced_data_file: d.referenced_data_file } : {}),
      },
    };
  });
}

/**
 * Avro partition field name → Iceberg partition field name, matched by field id between the
 * file's `r102` record and the `partition-spec` header (only the names that differ).
 */
function partitionNames(schema: JsonObject, specJson: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (specJson === undefined) return out;
  let spec: unknown;
  try {
    spec = JSON.parse(specJson);
  } catch {
    return out;
  }
  if (!Array.isArray(spec)) return out;
  const nameOfId = new Map<number, string>();
  for (const f of spec as unknown[]) {
    if (f && typeof f === "object" && typeof (f as { name?: unknown }).name === "string") nameOfId.set(Number((f as { "field-id"?: unknown })["field-id"]), (f as { name: string }).name);
  }
  const record = (t: JsonValue | undefined): JsonObject | undefined => (t && typeof t === "object" && !Array.isArray(t) ? t : undefined);
  const fieldsOf = (t: JsonValue | undefined): JsonValue[] => {
    const rec = record(t);
    return rec && Array.isArray(rec.fields) ? rec.fields : [];
  };
  const dataFile = fieldsOf(schema).map(record).find((f) => f?.name === "data_file");
  const partition = fieldsOf(dataFile?.type).map(record).find((f) => f?.name === "partition");
  for (const f of fieldsOf(partition?.type).map(record)) {
    if (!f || typeof f.name !== "string") continue;
    const name = nameOfId.get(Number(f["field-id"]));
    if (name !== undefined && name !== f.name) out.set(f.name, name);
  }
  return out;
}

/**
 * Encodes a manifest list with the header keys Java and PyIceberg write (`snapshot-id`,
 * `parent-snapshot-id` — "null" without a parent —, `sequence-number`, `format-version`).
 *
 * @example
 * const bytes = encodeManifestList([added, ...carried], { snapshotId: sid, parentSnapshotId: parent, sequenceNumber: seq });
 */
export function encodeManifestList(
  manifests: readonly ManifestFile[],
  header: { snapshotId: bigint; parentSnapshotId: bigint | null; sequenceNumber: bigint },
): Uint8Array {
  return encodeAvroFile(MANIFEST_LIST_SCHEMA, manifests, {
    "snapshot-id": header.snapshotId.toString(),
    "parent-snapshot-id": header.parentSnapshotId === null ? "null" : header.parentSnapshotId.toString(),
    "sequence-number": header.sequenceNumber.toString(),
    "format-version": "2",
  });
}

/**
 * Decodes a manifest list, reading fields by field id so that lists written with older names
 * (`added_data_files_count`, …) or by v1 writers (no sequence numbers: 0) decode too.
 *
 * @example
 * const manifests = decodeManifestList(await storage.read(key));
 */
export function decodeManifestList(bytes: Uint8Array): ManifestFile[] {
  const file = decodeAvroFile(bytes);
  const fields = Array.isArray(file.schema.fields) ? file.schema.fields : [];
  const nameOfId = new Map<number, string>();
  for (const f of fields) {
    if (f && typeof f === "object" && !Array.isArray(f) && typeof f.name === "string") nameOfId.set(Number(f["field-id"]), f.name);
  }
  return file.records.map((raw) => {
    const r = raw as Record<string, unknown>;
    const get = <T>(id: number, name: string, fallback: T): T => (r[nameOfId.get(id) ?? name] ?? fallback) as T;
    return {
      manifest_path: get(500, "manifest_path", ""),
      manifest_length: get(501, "manifest_length", 0n),
      partition_spec_id: get(502, "partition_spec_id", 0),
      content: get(517, "content", 0),
      sequence_number: get(515, "sequence_number", 0n),
      min_sequence_number: get(516, "min_sequence_number", 0n),
      added_snapshot_id: get(503, "added_snapshot_id", 0n),
      added_files_count: get(504, "added_files_count", 0),
      existing_files_count: get(505, "existing_files_count", 0),
      deleted_files_count: get(506, "deleted_files_count", 0),
      added_rows_count: get(512, "added_rows_count", 0n),
      existing_rows_count: get(513, "existing_rows_count", 0n),
      deleted_rows_count: get(514, "deleted_rows_count", 0n),
      partitions: get<FieldSummary[] | null>(507, "partitions", null),
      key_metadata: get<Uint8Array | null>(519, "key_metadata", null),
    };
  });
}

/**
 * The manifest-list record of a manifest just written: counts per status, partition summaries
 * over all its entries, and `min_sequence_number` = the least data sequence number of its live
 * entries (or this snapshot's number when it has none or only ADDED ones).
 *
 * @example
 * const record = manifestFileFor({ path, length: bytes.length, schema, spec, entries, snapshotId: sid, sequenceNumber: seq });
 */
export function manifestFileFor(m: {
  path: string;
  length: number;
  schema: Schema;
  spec: PartitionSpec;
  entries: readonly ManifestEntry[];
  snapshotId: bigint;
  sequenceNumber: bigint;
}): ManifestFile {
  const count = (s: EntryStatus): number => m.entries.filter((e) => e.status === s).length;
  const rows = (s: EntryStatus): bigint => m.entries.filter((e) => e.status === s).reduce((a, e) => a + e.data_file.record_count, 0n);
  let minSeq = m.sequenceNumber;
  for (const e of m.entries) {
    if (e.status !== EntryStatus.Deleted && e.sequence_number !== null && e.sequence_number < minSeq) minSeq = e.sequence_number;
  }
  return {
    manifest_path: m.path,
    manifest_length: BigInt(m.length),
    partition_spec_id: m.spec["spec-id"],
    content: 0,
    sequence_number: m.sequenceNumber,
    min_sequence_number: minSeq,
    added_snapshot_id: m.snapshotId,
    added_files_count: count(EntryStatus.Added),
    existing_files_count: count(EntryStatus.Existing),
    deleted_files_count: count(EntryStatus.Deleted),
    added_rows_count: rows(EntryStatus.Added),
    existing_rows_count: rows(EntryStatus.Existing),
    deleted_rows_count: rows(EntryStatus.Deleted),
    partitions: summarizePartitions(m.schema, m.spec, m.entries),
    key_metadata: null,
  };
}

/**
 * One summary per partition field over the entries' partition values: null/NaN presence and
 * serialized min/max (NaN excluded).
 *
 * @example
 * summarizePartitions(schema, spec, entries) // → [{ contains_null: false, contains_nan: false, lower_bound: <4 bytes>, upper_bound: <4 bytes> }]
 */
export function summarizePartitions(schema: Schema, spec: PartitionSpec, entries: readonly ManifestEntry[]): FieldSummary[] {
  return spec.fields.map((f) => {
    const type = resultType(schema, f);
    let containsNull = false;
    let containsNan = false;
    let lo: PartitionValue = null;
    let hi: PartitionValue = null;
    for (const e of entries) {
      const v = e.data_file.partition[f.name] ?? null;
      if (v === null) containsNull = true;
      else if (typeof v === "number" && Number.isNaN(v)) containsNan = true;
      else {
        if (lo === null || compareValues(type, v, lo) < 0) lo = v;
        if (hi === null || compareValues(type, v, hi) > 0) hi = v;
      }
    }
    return {
      contains_null: containsNull,
      contains_nan: containsNan,
      lower_bound: lo === null ? null : serializeValue(type, lo),
      upper_bound: hi === null ? null : serializeValue(type, hi),
    };
  });
}

/**
 * Rewrites another writer's manifest for a new snapshot, entry by entry as `verdicts` says: "keep"
 * (written EXISTING), "drop" (written DELETED by `snapshotId`) or "gone" (an entry already DELETED:
 * left out). Records are re-encoded with the manifest's own Avro schema and header, so every field
 * it has (`referenced_data_file`, partition types, …) stays as it was; sequence numbers and the
 * adding snapshot id that ADDED entries inherited are written out, as the spec requires for
 * EXISTING and DELETED entries. Returns the bytes, the manifest-list record (at `path`) and the
 * entries as written.
 *
 * @example
 * const out = rewriteManifest(bytes, mf, ["keep", "drop"], sid, seq, storage.uriOf(key));
 * await storage.write(key, out.bytes);
 */
export function rewriteManifest(
  bytes: Uint8Array,
  mf: ManifestFile,
  verdicts: ReadonlyArray<"keep" | "drop" | "gone">,
  snapshotId: bigint,
  sequenceNumber: bigint,
  path: string,
): { bytes: Uint8Array; manifest: ManifestFile; entries: ManifestEntry[] } {
  const file = decodeAvroFile(bytes);
  const decoded = decodeManifest(bytes);
  const records: unknown[] = [];
  const entries: ManifestEntry[] = [];
  file.records.forEach((raw, i) => {
    const verdict = verdicts[i];
    const e = decoded[i];
    if (verdict === undefined || verdict === "gone" || e === undefined) return;
    const r = raw as Record<string, unknown>;
    const seq = { sequence_number: e.sequence_number ?? mf.sequence_number, file_sequence_number: e.file_sequence_number ?? mf.sequence_number };
    const status = verdict === "keep" ? EntryStatus.Existing : EntryStatus.Deleted;
    const snapshot_id = verdict === "keep" ? (e.snapshot_id ?? mf.added_snapshot_id) : snapshotId;
    records.push({ ...r, status, snapshot_id, ...seq });
    entries.push({ ...e, status, snapshot_id, ...seq });
  });
  const header = Object.fromEntries(Object.entries(file.metadata).filter(([k]) => !k.startsWith("avro.")));
  const out = encodeAvroFile(file.schema, records, header);
  const live = entries.filter((e) => e.status !== EntryStatus.Deleted);
  const count = (s: EntryStatus): number => entries.filter((e) => e.status === s).length;
  const rows = (s: EntryStatus): bigint => entries.filter((e) => e.status === s).reduce((a, e) => a + e.data_file.record_count, 0n);
  let minSeq = sequenceNumber;
  for (const e of live) if (e.sequence_number !== null && e.sequence_number < minSeq) minSeq = e.sequence_number;
  return {
    bytes: out,
    entries,
    manifest: {
      ...mf,
      manifest_path: path,
      manifest_length: BigInt(out.length),
      sequence_number: sequenceNumber,
      min_sequence_number: minSeq,
      added_snapshot_id: snapshotId,
      added_files_count: 0,
      existing_files_count: count(EntryStatus.Existing),
      deleted_files_count: count(EntryStatus.Deleted),
      added_rows_count: 0n,
      existing_rows_count: rows(EntryStatus.Existing),
      deleted_rows_count: rows(EntryStatus.Deleted),
    },
  };
}
