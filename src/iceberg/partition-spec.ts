import { createHash } from "node:crypto";
import { IcebergSchemaError, sanitizeName, type PrimitiveType, type Schema, type SchemaField } from "./schema.js";
import { isoDate, type IcebergValue } from "./values.js";

export type Transform = "identity" | "year" | "month" | "day" | "hour";

/** How the caller asks for a partition field: a column and a transform (default identity). */
export interface PartitionFieldInput {
  column: string;
  transform?: Transform;
  /** Default: the column name for identity, else `<column>_<transform>` (Java's names). */
  name?: string;
}

export interface PartitionField {
  "source-id": number;
  "field-id": number;
  name: string;
  transform: string;
}

export interface PartitionSpec {
  /** Members of a foreign spec this library does not interpret, kept as they were read. */
  [member: string]: unknown;
  "spec-id": number;
  fields: PartitionField[];
}

/** A partition tuple value: null, or the field's result type in internal form. */
export type PartitionValue = IcebergValue | null;

const FIRST_PARTITION_FIELD_ID = 1000;
const IDENTITY_TYPES = new Set(["boolean", "int", "long", "float", "double", "date", "timestamp", "timestamptz", "string"]);
const TEMPORAL_SOURCES: Record<string, readonly string[]> = {
  year: ["date", "timestamp", "timestamptz"],
  month: ["date", "timestamp", "timestamptz"],
  day: ["date", "timestamp", "timestamptz"],
  hour: ["timestamp", "timestamptz"],
};

/**
 * A partition spec over `schema`; field ids start at 1000. Throws naming the column when it is
 * unknown or its type does not support the transform (decimal/uuid/binary identity partitions are
 * refused: Avro `fixed` partition values are unreadable for some readers).
 *
 * @example
 * const spec = buildPartitionSpec(schema, [{ column: "ts", transform: "day" }]);
 * // → { "spec-id": 0, fields: [{ "source-id": 3, "field-id": 1000, name: "ts_day", transform: "day" }] }
 */
export function buildPartitionSpec(schema: Schema, inputs: readonly PartitionFieldInput[], specId = 0): PartitionSpec {
  const names = new Set<string>();
  const avroNames = new Map<string, string>();
  const fields = inputs.map((input, i): PartitionField => {
    const transform = input.transform ?? "identity";
    const source = schema.fields.find((f) => f.name === input.column);
    if (!source) throw new IcebergSchemaError(input.column, `partition column "${input.column}" is not a column of the table`);
    const t = typeof source.type === "string" ? source.type : "nested";
    const ok = transform === "identity" ? IDENTITY_TYPES.has(t) : (TEMPORAL_SOURCES[transform] ?? []).includes(t);
    if (!ok) throw new IcebergSchemaError(input.column, `partition column "${input.column}" of type ${t} does not support the ${transform} transform`);
    const name = input.name ?? (transform === "identity" ? input.column : `${input.column}_${transform}`);
    if (names.has(name)) throw new IcebergSchemaError(input.column, `partition field name "${name}" is used twice`);
    names.add(name);
    // The name stays as given in the metadata; manifests hold it Avro-sanitized, where two names must not meet.
    const other = avroNames.get(sanitizeName(name));
    if (other !== undefined) throw new IcebergSchemaError(input.column, `partition field names "${other}" and "${name}" collide (both are "${sanitizeName(name)}" in Avro manifests)`);
    avroNames.set(sanitizeName(name), name);
    return { "source-id": source.id, "field-id": FIRST_PARTITION_FIELD_ID + i, name, transform };
  });
  return { "spec-id": specId, fields };
}

/**
 * The highest partition field id of a spec (999 for an unpartitioned one, as PyIceberg).
 *
 * @example
 * lastPartitionId({ "spec-id": 0, fields: [] }) // → 999
 */
export function lastPartitionId(spec: PartitionSpec): number {
  return Math.max(FIRST_PARTITION_FIELD_ID - 1, ...spec.fields.map((f) => f["field-id"]));
}

/**
 * Whether two specs partition the same way (same sources, transforms and names in order).
 *
 * @example
 * samePartitioning(tableSpec, buildPartitionSpec(schema, [{ column: "ts", transform: "day" }]))
 */
export function samePartitioning(a: PartitionSpec, b: PartitionSpec): boolean {
  const key = (s: PartitionSpec): string => JSON.stringify(s.fields.map((f) => [f["source-id"], f.transform, f.name]));
  return key(a) === key(b);
}

/**
 * The source field of a partition field.
 *
 * @example
 * sourceField(schema, spec.fields[0]).name // → "ts"
 */
export function sourceField(schema: Schema, field: PartitionField): SchemaField {
  const f = schema.fields.find((s) => s.id === field["source-id"]);
  if (!f) throw new Error(`partition field "${field.name}" refers to column id ${field["source-id"]}, which is not in the schema`);
  return f;
}

/**
 * The Iceberg result type of a partition field: the source type for identity, `date` for day,
 * `int` for year/month/hour.
 *
 * @example
 * resultType(schema, { "source-id": 3, "field-id": 1000, name: "ts_day", transform: "day" }) // → "date"
 */
export function resultType(schema: Schema, field: PartitionField): PrimitiveType {
  if (field.transform === "identity") {
    const t = sourceField(schema, field).type;
    if (typeof t !== "string") throw new Error(`partition field "${field.name}" has a nested source`);
    return t;
  }
  if (field.transform === "day") return "date";
  if (["year", "month", "hour"].includes(field.transform)) return "int";
  throw new Error(`partition transform "${field.transform}" is not supported`);
}

/**
 * DuckDB SQL computing a partition field's value in internal form (days, µs, months since 1970…)
 * from a column expression, set-based and independent of the session time zone: timestamptz
 * values are converted to UTC and all divisions floor (pre-1970 values land in the right hour).
 *
 * @example
 * partitionSql("timestamptz", "day", '"ts"') // → `(CAST(timezone('UTC', "ts") AS DATE) - DATE '1970-01-01')::INTEGER`
 */
export function partitionSql(sourceType: PrimitiveType | string, transform: string, column: string): string {
  const ts = sourceType === "timestamptz" ? `timezone('UTC', ${column})` : column;
  switch (transform) {
    case "identity":
      if (sourceType === "date") return `(${column} - DATE '1970-01-01')::INTEGER`;
      if (sourceType === "timestamp" || sourceType === "timestamptz") return `epoch_us(${column})`;
      return column;
    case "year":
      return `(year(${ts}) - 1970)::INTEGER`;
    case "month":
      return `((year(${ts}) - 1970) * 12 + month(${ts}) - 1)::INTEGER`;
    case "day":
      return `(CAST(${ts} AS DATE) - DATE '1970-01-01')::INTEGER`;
    case "hour":
      return `(epoch_us(date_trunc('hour', ${ts})) // 3600000000)::INTEGER`;
    default:
      throw new Error(`partition transform "${transform}" is not supported`);
  }
}

/**
 * A human-readable, path-safe rendering of a partition tuple (`ts_day=2024-01-02/kind=a`), used only
 * to name data folders. Values that are not safe in a path (and never percent-encoded) are hashed.
 *
 * @example
 * partitionPath(spec, ["date"], [19724]) // → "ts_day=2024-01-02"
 */
export function partitionPath(spec: PartitionSpec, types: readonly PrimitiveType[], tuple: readonly PartitionValue[]): string {
  return spec.fields
    .map((f, i) => {
      const v = tuple[i] ?? null;
      const t = types[i];
      let text: string;
      if (v === null) text = "null";
      else if (f.transform === "day" || (f.transform === "identity" && t === "date")) text = isoDate(Number(v));
      else if (f.transform === "month") text = `${1970 + Math.floor(Number(v) / 12)}-${String((((Number(v) % 12) + 12) % 12) + 1).padStart(2, "0")}`;
      else if (f.transform === "year") text = String(1970 + Number(v));
      else if (f.transform === "hour") text = `${isoDate(Math.floor(Number(v) / 24))}-${String(((Number(v) % 24) + 24) % 24).padStart(2, "0")}`;
      else text = v instanceof Uint8Array ? Buffer.from(v).toString("hex") : String(v);
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(text)) text = `h${createHash("sha256").update(text).digest("hex").slice(0, 12)}`;
      const name = /^[A-Za-z0-9_.-]{1,64}$/.test(f.name) ? f.name : `f${f["field-id"]}`;
      return `${name}=${text}`;
    })
    .join("/");
}

/**
 * A stable string key of a partition tuple, for comparing tuples.
 *
 * @example
 * partitionKey([19724, null]) // → '[["n","19724"],null]'
 */
export function partitionKey(tuple: readonly PartitionValue[]): string {
  return JSON.stringify(
    tuple.map((v) =>
      v === null ? null : v instanceof Uint8Array ? ["b", Buffer.from(v).toString("hex")] : [typeof v === "string" ? "s" : typeof v === "boolean" ? "t" : "n", String(v)],
    ),
  );
}

/**
 * A value (from DuckDB or an older manifest) in the internal form of a partition result type:
 * int/date/float/double → number, long/timestamp(tz) → bigint.
 *
 * @example
 * coercePartitionValue("long", 5) // → 5n
 */
export function coercePartitionValue(t: PrimitiveType, v: unknown): PartitionValue {
  if (v === null || v === undefined) return null;
  if (v instanceof Uint8Array) return v;
  if (t === "long" || t === "timestamp" || t === "timestamptz") return BigInt(v as number | bigint);
  if (t === "int" || t === "date" || t === "float" || t === "double") return Number(v);
  if (t === "boolean") return Boolean(v);
  return String(v);
}
