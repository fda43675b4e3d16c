// Table metadata JSON (format v2): create, add a schema, add a snapshot, logs and refs. Ids that
// are 64-bit in Iceberg (snapshot ids, sequence numbers) are bigints and stay exact through JSON.

import { randomBytes, randomUUID } from "node:crypto";
import { parseJson, stringifyJson, type JsonObject, type JsonValue } from "./json.js";
import { lastPartitionId, type PartitionField, type PartitionSpec } from "./partition-spec.js";
import { parsePrimitiveType, sameFields, type Schema, type SchemaField } from "./schema.js";

export interface Snapshot {
  /** Members this library does not model (e.g. `first-row-id`), kept as they were read. */
  [member: string]: unknown;
  "snapshot-id": bigint;
  "parent-snapshot-id"?: bigint;
  "sequence-number": bigint;
  "timestamp-ms": number;
  "manifest-list": string;
  /** `operation` plus string properties (totals, and the caller's, e.g. `floe.run-id`). */
  summary: Record<string, string>;
  "schema-id"?: number;
}

export interface SnapshotRef {
  "snapshot-id": bigint;
  type: "branch" | "tag";
  [key: string]: JsonValue | undefined;
}

export interface TableMetadata {
  "format-version": 2;
  "table-uuid": string;
  location: string;
  "last-sequence-number": bigint;
  "last-updated-ms": number;
  "last-column-id": number;
  schemas: Schema[];
  "current-schema-id": number;
  "partition-specs": PartitionSpec[];
  "default-spec-id": number;
  "last-partition-id": number;
  properties: Record<string, string>;
  /** -1 when the table has no snapshot (what Java writes). */
  "current-snapshot-id": bigint;
  snapshots: Snapshot[];
  "snapshot-log": { "timestamp-ms": number; "snapshot-id": bigint; [member: string]: unknown }[];
  "metadata-log": { "timestamp-ms": number; "metadata-file": string; [member: string]: unknown }[];
  /** Sort orders as read (their fields are not interpreted), with every member kept. */
  "sort-orders": { "order-id": number; fields: JsonValue[]; [member: string]: unknown }[];
  "default-sort-order-id": number;
  refs: Record<string, SnapshotRef>;
  /** Members of a foreign metadata file this library does not model, written back unchanged. */
  extra?: JsonObject;
}

/**
 * Metadata of a new, empty v2 table (no snapshot, unsorted).
 *
 * @example
 * const m = newTableMetadata({ location: "s3://wh/iceberg/db/events", schema, spec });
 */
export function newTableMetadata(init: {
  location: string;
  schema: Schema;
  spec: PartitionSpec;
  properties?: Record<string, string>;
  now?: number;
}): TableMetadata {
  return {
    "format-version": 2,
    "table-uuid": randomUUID(),
    location: init.location.replace(/\/+$/, ""),
    "last-sequence-number": 0n,
    "last-updated-ms": init.now ?? Date.now(),
    "last-column-id": Math.max(0, ...init.schema.fields.map((f) => f.id)),
    schemas: [{ ...init.schema, "schema-id": 0 }],
    "current-schema-id": 0,
    "partition-specs": [{ ...init.spec, "spec-id": 0 }],
    "default-spec-id": 0,
    "last-partition-id": lastPartitionId(init.spec),
    properties: { ...(init.properties ?? {}) },
    "current-snapshot-id": -1n,
    snapshots: [],
    "snapshot-log": [],
    "metadata-log": [],
    "sort-orders": [{ "order-id": 0, fields: [] }],
    "default-sort-order-id": 0,
    refs: {},
  };
}

const KNOWN = new Set([
  "format-version",
  "table-uuid",
  "location",
  "last-sequence-number",
  "last-updated-ms",
  "last-column-id",
  "schemas",
  "current-schema-id",
  "partition-specs",
  "default-spec-id",
  "last-partition-id",
  "properties",
  "current-snapshot-id",
  "snapshots",
  "snapshot-log",
  "metadata-log",
  "sort-orders",
  "default-sort-order-id",
  "refs",
]);

const big = (v: JsonValue | undefined, fallback?: bigint): bigint => {
  if (typeof v === "bigint") return v;
  if (typeof v === "number") return BigInt(v);
  if (typeof v === "string" && /^-?\d+$/.test(v)) return BigInt(v);
  if (fallback !== undefined) return fallback;
  throw new Error(`expected an integer in table metadata, got ${String(v)}`);
};
const obj = (v: JsonValue | undefined): JsonObject => (v !== null && typeof v === "object" && !Array.isArray(v) ? v : {});
const arr = (v: JsonValue | undefined): JsonValue[] => (Array.isArray(v) ? v : []);
const num = (v: JsonValue | undefined, fallback = 0): number => (typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : fallback);
const strings = (v: JsonValue | undefined): Record<string, string> =>
  Object.fromEntries(Object.entries(obj(v)).map(([k, x]) => [k, typeof x === "string" ? x : stringifyJson(x)]));

// Every object below is read as `{ ...raw, <modelled members> }`: members this library does not
// model (a field's `initial-default`/`write-default`, a spec's or sort order's or snapshot's own
// additions) are written back exactly as they were read.

function parseSchema(v: JsonValue): Schema {
  const s = obj(v);
  const fields = arr(s.fields).map((fv): SchemaField => {
    const f = obj(fv);
    const t = f.type;
    const type = typeof t === "string" ? parsePrimitiveType(t) : obj(t);
    if (type === undefined) throw new Error(`unsupported Iceberg type ${String(t)} for column ${String(f.name)}`);
    const { doc, ...rest } = f;
    return { ...rest, id: num(f.id), name: String(f.name), required: f.required === true, type, ...(typeof doc === "string" ? { doc } : {}) };
  });
  const { "identifier-field-ids": identifiers, ...rest } = s;
  const schema: Schema = { ...rest, type: "struct", "schema-id": num(s["schema-id"]), fields };
  if (Array.isArray(identifiers)) schema["identifier-field-ids"] = identifiers.map((x) => num(x));
  return schema;
}

function parseSnapshot(v: JsonValue): Snapshot {
  const { "parent-snapshot-id": parent, "schema-id": schemaId, ...s } = obj(v);
  const snap: Snapshot = {
    ...s,
    "snapshot-id": big(s["snapshot-id"]),
    "sequence-number": big(s["sequence-number"], 0n),
    "timestamp-ms": num(s["timestamp-ms"]),
    "manifest-list": String(s["manifest-list"]),
    summary: strings(s.summary),
  };
  if (parent !== undefined && parent !== null) snap["parent-snapshot-id"] = big(parent);
  if (schemaId !== undefined && schemaId !== null) snap["schema-id"] = num(schemaId);
  return snap;
}

/**
 * Parses a v2 metadata.json losslessly (64-bit ids exact). Throws for other format versions.
 *
 * @example
 * const m = parseTableMetadata(new TextDecoder().decode(await storage.read(key)));
 */
export function parseTableMetadata(text: string): TableMetadata {
  const j = obj(parseJson(text));
  if (num(j["format-version"]) !== 2) throw new Error(`only Iceberg format version 2 is supported, this table has ${String(j["format-version"])}`);
  const extra = Object.fromEntries(Object.entries(j).filter(([k]) => !KNOWN.has(k)));
  const m: TableMetadata = {
    "format-version": 2,
    "table-uuid": String(j["table-uuid"]),
    location: String(j.location),
    "last-sequence-number": big(j["last-sequence-number"], 0n),
    "last-updated-ms": num(j["last-updated-ms"]),
    "last-column-id": num(j["last-column-id"]),
    schemas: arr(j.schemas).map(parseSchema),
    "current-schema-id": num(j["current-schema-id"]),
    "partition-specs": arr(j["partition-specs"]).map((sv) => {
      const s = obj(sv);
      return { ...s, "spec-id": num(s["spec-id"]), fields: arr(s.fields).map((f) => obj(f) as unknown as PartitionField) };
    }),
    "default-spec-id": num(j["default-spec-id"]),
    "last-partition-id": num(j["last-partition-id"], 999),
    properties: strings(j.properties),
    "current-snapshot-id": big(j["current-snapshot-id"] ?? null, -1n),
    snapshots: arr(j.snapshots).map(parseSnapshot),
    "snapshot-log": arr(j["snapshot-log"]).map((e) => ({ ...obj(e), "timestamp-ms": num(obj(e)["timestamp-ms"]), "snapshot-id": big(obj(e)["snapshot-id"]) })),
    "metadata-log": arr(j["metadata-log"]).map((e) => ({ ...obj(e), "timestamp-ms": num(obj(e)["timestamp-ms"]), "metadata-file": String(obj(e)["metadata-file"]) })),
    "sort-orders": arr(j["sort-orders"]).map((o) => ({ ...obj(o), "order-id": num(obj(o)["order-id"]), fields: arr(obj(o).fields) })),
    "default-sort-order-id": num(j["default-sort-order-id"]),
    refs: Object.fromEntries(
      Object.entries(obj(j.refs)).map(([name, rv]) => {
        const r = obj(rv);
        return [name, { ...r, "snapshot-id": big(r["snapshot-id"]), type: r.type === "tag" ? "tag" : "branch" } as SnapshotRef];
      }),
    ),
  };
  if (Object.keys(extra).length > 0) m.extra = extra;
  return m;
}

/**
 * Serializes metadata as JSON (bigints as bare integers, foreign members kept).
 *
 * @example
 * await storage.write(key, serializeTableMetadata(m));
 */
export function serializeTableMetadata(m: TableMetadata): string {
  const { extra, ...known } = m;
  return stringifyJson({ ...(extra ?? {}), ...known }, 2);
}

/**
 * The current schema.
 *
 * @example
 * currentSchema(m).fields.map((f) => f.name)
 */
export function currentSchema(m: TableMetadata): Schema {
  const s = m.schemas.find((x) => x["schema-id"] === m["current-schema-id"]);
  if (!s) throw new Error(`table ${m.location}: current schema ${m["current-schema-id"]} is missing`);
  return s;
}

/**
 * The default partition spec.
 *
 * @example
 * defaultSpec(m).fields.length === 0 // unpartitioned
 */
export function defaultSpec(m: TableMetadata): PartitionSpec {
  const s = m["partition-specs"].find((x) => x["spec-id"] === m["default-spec-id"]);
  if (!s) throw new Error(`table ${m.location}: default partition spec ${m["default-spec-id"]} is missing`);
  return s;
}

/**
 * The snapshot `main` points to, or undefined for an empty table.
 *
 * @example
 * currentSnapshot(m)?.summary["total-records"]
 */
export function currentSnapshot(m: TableMetadata): Snapshot | undefined {
  const id = m.refs.main?.["snapshot-id"] ?? m["current-snapshot-id"];
  return id < 0n ? undefined : m.snapshots.find((s) => s["snapshot-id"] === id);
}

/**
 * The newest snapshot whose summary has `key` = `value` — the exactly-once check: a retried step
 * looks for its own run id before writing again.
 *
 * @example
 * if (findSnapshotBySummary(m, "floe.run-id", runId)) return; // already committed
 */
export function findSnapshotBySummary(m: TableMetadata, key: string, value: string): Snapshot | undefined {
  for (let i = m.snapshots.length - 1; i >= 0; i--) {
    const s = m.snapshots[i];
    if (s && s.summary[key] === value) return s;
  }
  return undefined;
}

/**
 * A fresh snapshot id: positive, random below 2^53 (exact for JSON.parse-based readers), unused in `m`.
 *
 * @example
 * newSnapshotId(m) // → 1991844139719094n
 */
export function newSnapshotId(m?: TableMetadata): bigint {
  for (;;) {
    // positive and below 2^53, so readers that parse metadata with JSON.parse keep it exact
    const id = randomBytes(8).readBigUInt64BE() & 0x1f_ffff_ffff_ffffn;
    if (id > 0n && !m?.snapshots.some((s) => s["snapshot-id"] === id)) return id;
  }
}

/**
 * Metadata with `schema` as current: an existing schema with the same fields is reused, else it
 * is added with the next schema id. Returns the metadata and the schema with its id.
 *
 * @example
 * const { metadata, schema } = withSchema(m, evolved, lastColumnId);
 */
export function withSchema(m: TableMetadata, schema: Schema, lastColumnId: number): { metadata: TableMetadata; schema: Schema } {
  const existing = m.schemas.find((s) => sameFields(s, schema));
  const added: Schema = existing ?? { ...schema, "schema-id": Math.max(-1, ...m.schemas.map((s) => s["schema-id"])) + 1 };
  return {
    metadata: {
      ...m,
      schemas: existing ? m.schemas : [...m.schemas, added],
      "current-schema-id": added["schema-id"],
      "last-column-id": Math.max(m["last-column-id"], lastColumnId),
    },
    schema: added,
  };
}

/**
 * Metadata after committing `snapshot` on `main`: snapshot added, `main` and
 * `current-snapshot-id` moved, sequence number and logs advanced, `baseLocation` (the file this
 * metadata replaces) appended to the metadata log, trimmed to
 * `write.metadata.previous-versions-max` (default 100).
 *
 * @example
 * const next = withSnapshot(base, snapshot, baseLocation);
 */
export function withSnapshot(m: TableMetadata, snapshot: Snapshot, baseLocation: string): TableMetadata {
  const keep = Number(m.properties["write.metadata.previous-versions-max"] ?? 100);
  const log = [...m["metadata-log"], { "timestamp-ms": m["last-updated-ms"], "metadata-file": baseLocation }].slice(-Math.max(1, keep));
  return {
    ...m,
    "last-sequence-number": snapshot["sequence-number"],
    "last-updated-ms": snapshot["timestamp-ms"],
    "current-snapshot-id": snapshot["snapshot-id"],
    snapshots: [...m.snapshots, snapshot],
    "snapshot-log": [...m["snapshot-log"], { "timestamp-ms": snapshot["timestamp-ms"], "snapshot-id": snapshot["snapshot-id"] }],
    "metadata-log": log,
    refs: { ...m.refs, main: { ...(m.refs.main ?? {}), "snapshot-id": snapshot["snapshot-id"], type: "branch" } },
  };
}

/**
 * The version number of a metadata file name (`00003-<uuid>.metadata.json` or `v3.metadata.json`),
 * or -1.
 *
 * @example
 * metadataVersion("s3://b/t/metadata/00003-1b2c….metadata.json") // → 3
 */
export function metadataVersion(location: string): number {
  const name = location.slice(location.lastIndexOf("/") + 1);
  const m = /^(?:v)?(\d+)(?:-[^.]*)?\.(?:gz\.)?metadata\.json$/.exec(name);
  return m ? Number(m[1]) : -1;
}

/**
 * The metastore-style file name of a metadata version: `%05d-<uuid>.metadata.json`.
 *
 * @example
 * metadataFileName(1) // → "00001-6f1c…-….metadata.json"
 */
export function metadataFileName(version: number): string {
  return `${String(version).padStart(5, "0")}-${randomUUID()}.metadata.json`;
}

/** The `total-*` keys of a snapshot summary. */
export const TOTAL_KEYS = ["total-records", "total-files-size", "total-data-files", "total-delete-files", "total-position-deletes", "total-equality-deletes"] as const;

/** What a snapshot removes: data files (with their records) and delete files (with their deletes); `size` counts both. */
export interface Removed {
  files: number;
  records: bigint;
  size: bigint;
  deleteFiles?: number;
  positionDeleteFiles?: number;
  equalityDeleteFiles?: number;
  positionDeletes?: bigint;
  equalityDeletes?: bigint;
}

/**
 * Summary totals after a change, from the parent's totals (0 without a parent), as strings. A
 * total the parent's summary does not give (or gives as something other than an integer) cannot
 * be carried forward and is left out: the caller counts it from manifests, or omits it — never
 * the change alone posing as the total.
 *
 * @example
 * totals(parent?.summary, { files: 2, records: 10n, size: 4096n }, { files: 1, records: 4n, size: 900n })
 */
export function totals(parent: Record<string, string> | undefined, added: { files: number; records: bigint; size: bigint }, removed: Removed): Partial<Record<(typeof TOTAL_KEYS)[number], string>> {
  const change: Record<(typeof TOTAL_KEYS)[number], bigint> = {
    "total-records": added.records - removed.records,
    "total-files-size": added.size - removed.size,
    "total-data-files": BigInt(added.files - removed.files),
    "total-delete-files": -BigInt(removed.deleteFiles ?? 0),
    "total-position-deletes": -(removed.positionDeletes ?? 0n),
    "total-equality-deletes": -(removed.equalityDeletes ?? 0n),
  };
  const out: Partial<Record<(typeof TOTAL_KEYS)[number], string>> = {};
  for (const k of TOTAL_KEYS) {
    const prev = parent === undefined ? 0n : big(parent[k]?.trim(), -1n);
    if (prev >= 0n) out[k] = String(prev + change[k]);
  }
  return out;
}
