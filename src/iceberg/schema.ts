import { stringifyJson, type JsonObject } from "./json.js";

/** The Iceberg v2 primitive types this library reads in metadata; `fixed[L]` cannot be written. */
export type PrimitiveType =
  | "boolean"
  | "int"
  | "long"
  | "float"
  | "double"
  | "date"
  | "time"
  | "timestamp"
  | "timestamptz"
  | "string"
  | "uuid"
  | "binary"
  | `decimal(${number}, ${number})`
  | `fixed[${number}]`;

/**
 * A top-level field. Nested types (struct/list/map) of foreign tables are kept as raw JSON, and so
 * are members this library does not interpret (`initial-default`, `write-default`, …).
 */
export interface SchemaField {
  [member: string]: unknown;
  id: number;
  name: string;
  required: boolean;
  type: PrimitiveType | JsonObject;
  doc?: string;
}

export interface Schema {
  /** Members of a foreign schema this library does not interpret, kept as they were read. */
  [member: string]: unknown;
  type: "struct";
  "schema-id": number;
  fields: SchemaField[];
  "identifier-field-ids"?: number[];
}

/** A column of the rows to write, as DuckDB describes it. */
export interface SourceColumn {
  name: string;
  duckdbType: string;
}

/** A schema problem that names the column at fault. */
export class IcebergSchemaError extends Error {
  constructor(
    readonly column: string,
    message: string,
  ) {
    super(message);
    this.name = "IcebergSchemaError";
  }
}

const SIMPLE = new Set(["boolean", "int", "long", "float", "double", "date", "time", "timestamp", "timestamptz", "string", "uuid", "binary"]);

/**
 * Validates and normalizes a primitive type string from metadata (`decimal(10,2)` → `decimal(10, 2)`,
 * the spelling Java writes). Returns undefined for anything else.
 *
 * @example
 * parsePrimitiveType("Decimal(10,2)") // → "decimal(10, 2)"
 */
export function parsePrimitiveType(s: string): PrimitiveType | undefined {
  const t = s.trim().toLowerCase();
  if (SIMPLE.has(t)) return t as PrimitiveType;
  const d = /^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$/.exec(t);
  if (d) return decimalType(Number(d[1]), Number(d[2]));
  const f = /^fixed\[\s*(\d+)\s*\]$/.exec(t);
  return f ? `fixed[${Number(f[1])}]` : undefined;
}

/**
 * Precision and scale of a decimal type, else undefined.
 *
 * @example
 * decimalOf("decimal(10, 2)") // → { precision: 10, scale: 2 }
 */
export function decimalOf(t: PrimitiveType | JsonObject): { precision: number; scale: number } | undefined {
  const m = typeof t === "string" ? /^decimal\((\d+), (\d+)\)$/.exec(t) : null;
  return m ? { precision: Number(m[1]), scale: Number(m[2]) } : undefined;
}

const decimalType = (precision: number, scale: number): PrimitiveType => `decimal(${precision}, ${scale})`;

/**
 * The Iceberg type for a DuckDB column type, or undefined when there is none. Small and unsigned
 * integers widen to int/long; UBIGINT/HUGEINT and DECIMAL with precision 19–37 become
 * decimal(38, s), because DuckDB stores all of them in 16 bytes, which is the minimal size only
 * for precision 38 (the spec requires minimal fixed sizes). All timestamp precisions map to
 * timestamp (µs); ENUM and JSON to string. Nested types are not supported.
 *
 * @example
 * icebergTypeOf("DECIMAL(12,3)")            // → "decimal(12, 3)"
 * icebergTypeOf("TIMESTAMP WITH TIME ZONE") // → "timestamptz"
 */
export function icebergTypeOf(duckdbType: string): PrimitiveType | undefined {
  const t = duckdbType.trim().toUpperCase();
  const dec = /^DECIMAL\((\d+),\s*(\d+)\)$/.exec(t);
  if (dec) {
    const p = Number(dec[1]);
    return decimalType(p <= 18 ? p : 38, Number(dec[2]));
  }
  if (t.startsWith("ENUM(")) return "string";
  const map: Record<string, PrimitiveType> = {
    BOOLEAN: "boolean",
    TINYINT: "int",
    SMALLINT: "int",
    INTEGER: "int",
    UTINYINT: "int",
    USMALLINT: "int",
    BIGINT: "long",
    UINTEGER: "long",
    UBIGINT: "decimal(38, 0)",
    HUGEINT: "decimal(38, 0)",
    UHUGEINT: "decimal(38, 0)",
    FLOAT: "float",
    DOUBLE: "double",
    VARCHAR: "string",
    JSON: "string",
    DATE: "date",
    TIME: "time",
    TIMESTAMP: "timestamp",
    TIMESTAMP_S: "timestamp",
    TIMESTAMP_MS: "timestamp",
    TIMESTAMP_NS: "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    TIMESTAMPTZ: "timestamptz",
    BLOB: "binary",
    UUID: "uuid",
  };
  return map[t];
}

/**
 * The DuckDB type that holds an Iceberg type exactly as Parquet needs it (the cast target when
 * writing). Throws for types DuckDB cannot write (fixed, nested).
 *
 * @example
 * duckdbTypeOf("long") // → "BIGINT"
 */
export function duckdbTypeOf(t: PrimitiveType | JsonObject): string {
  const dec = decimalOf(t);
  if (dec) return `DECIMAL(${dec.precision},${dec.scale})`;
  const map: Partial<Record<string, string>> = {
    boolean: "BOOLEAN",
    int: "INTEGER",
    long: "BIGINT",
    float: "FLOAT",
    double: "DOUBLE",
    date: "DATE",
    time: "TIME",
    timestamp: "TIMESTAMP",
    timestamptz: "TIMESTAMPTZ",
    string: "VARCHAR",
    uuid: "UUID",
    binary: "BLOB",
  };
  const d = typeof t === "string" ? map[t] : undefined;
  if (!d) throw new Error(`Iceberg type ${typeof t === "string" ? t : stringifyJson(t)} cannot be written by this library`);
  return d;
}

/**
 * Whether Iceberg v2 allows promoting a column from `from` to `to` (int→long, float→double,
 * decimal(P,S)→decimal(P',S) with P' > P), or the types are equal.
 *
 * @example
 * canPromote("int", "long") // → true
 */
export function canPromote(from: PrimitiveType | JsonObject, to: PrimitiveType | JsonObject): boolean {
  if (typeof from !== "string" || typeof to !== "string") return false;
  if (from === to) return true;
  if ((from === "int" && to === "long") || (from === "float" && to === "double")) return true;
  const a = decimalOf(from);
  const b = decimalOf(to);
  return a !== undefined && b !== undefined && a.scale === b.scale && b.precision > a.precision;
}

/**
 * The Avro-compatible name Java writers and icebird use for a Parquet column: `[A-Za-z0-9_]`
 * kept, a leading digit prefixed with `_`, any other character as `_x<HEX>`.
 *
 * @example
 * sanitizeName("Breed Name") // → "Breed_x20Name"
 */
export function sanitizeName(name: string): string {
  let out = "";
  for (let i = 0; i < name.length; i++) {
    const ch = name.charAt(i);
    if (/[A-Za-z_]/.test(ch) || (i > 0 && /[0-9]/.test(ch))) out += ch;
    else if (/[0-9]/.test(ch)) out += `_${ch}`;
    else out += `_x${ch.charCodeAt(0).toString(16).toUpperCase()}`;
  }
  return out;
}

export interface SchemaChangeOptions {
  /** Allow int→long, float→double and decimal precision widening when the rows are wider. */
  allowTypeWidening?: boolean;
  /** Drop table columns the rows no longer have (else that is an error). */
  allowDropColumns?: boolean;
}

/** The schema to write with, and whether it differs from the table's current one. */
export interface ReconciledSchema {
  /** The fields to write, in order; `schema-id` is the current one, or -1 when changed. */
  schema: Schema;
  lastColumnId: number;
  changed: boolean;
}

/**
 * A new table's schema from the rows' columns: ids 1..n in column order, all optional.
 * Throws naming a column of an unsupported type.
 *
 * @example
 * schemaFromColumns([{ name: "id", duckdbType: "BIGINT" }]) // → { type: "struct", "schema-id": 0, fields: [{ id: 1, name: "id", required: false, type: "long" }] }
 */
export function schemaFromColumns(columns: readonly SourceColumn[]): Schema {
  checkNames(columns);
  return {
    type: "struct",
    "schema-id": 0,
    fields: columns.map((c, i) => ({ id: i + 1, name: c.name, required: false, type: typeFor(c) })),
  };
}

/**
 * Compares the rows' columns with the table schema. New columns get ids after `lastColumnId`;
 * columns whose rows are narrower (int rows into a long column) are cast on write; a wider or
 * different type, or a missing column, is an error naming the column unless allowed by options.
 *
 * @example
 * const r = reconcileSchema(current, 3, [{ name: "id", duckdbType: "BIGINT" }, { name: "note", duckdbType: "VARCHAR" }], {});
 * // r.changed === true; "note" got id 4 (when the table had no "note")
 */
export function reconcileSchema(
  current: Schema,
  lastColumnId: number,
  columns: readonly SourceColumn[],
  options: SchemaChangeOptions,
): ReconciledSchema {
  checkNames(columns);
  const incoming = new Map(columns.map((c) => [c.name, c]));
  let next = lastColumnId;
  let changed = false;
  const fields: SchemaField[] = [];
  for (const f of current.fields) {
    const c = incoming.get(f.name);
    if (!c) {
      if (!options.allowDropColumns) {
        throw new IcebergSchemaError(f.name, `column "${f.name}" of the table is missing from the rows (set allowDropColumns to drop it)`);
      }
      changed = true;
      continue;
    }
    const t = typeFor(c);
    if (canPromote(t, f.type)) fields.push(f);
    else if (canPromote(f.type, t) && options.allowTypeWidening) {
      fields.push({ ...f, type: t });
      changed = true;
    } else {
      const was = typeof f.type === "string" ? f.type : stringifyJson(f.type);
      const hint = canPromote(f.type, t) ? " (set allowTypeWidening to widen it)" : "";
      throw new IcebergSchemaError(f.name, `column "${f.name}" changes type from ${was} to ${t}${hint}`);
    }
  }
  const known = new Set(current.fields.map((f) => f.name));
  for (const c of columns) {
    if (known.has(c.name)) continue;
    fields.push({ id: ++next, name: c.name, required: false, type: typeFor(c) });
    changed = true;
  }
  // the table's own schema members stay (identifier fields only while their columns do)
  const { "identifier-field-ids": identifiers, ...members } = current;
  const schema: Schema = { ...members, type: "struct", "schema-id": changed ? -1 : current["schema-id"], fields };
  const kept = identifiers?.filter((id) => fields.some((f) => f.id === id));
  if (kept && kept.length > 0) schema["identifier-field-ids"] = kept;
  return { schema, lastColumnId: next, changed };
}

/**
 * Whether two schemas have the same fields (ids, names, types, requiredness, in order).
 *
 * @example
 * sameFields(a, { ...a, "schema-id": 7 }) // → true
 */
export function sameFields(a: Schema, b: Schema): boolean {
  const key = (s: Schema): string => stringifyJson(s.fields.map((f) => [f.id, f.name, f.required, f.type]));
  return key(a) === key(b);
}

function typeFor(c: SourceColumn): PrimitiveType {
  const t = icebergTypeOf(c.duckdbType);
  if (!t) throw new IcebergSchemaError(c.name, `column "${c.name}" has type ${c.duckdbType}, which has no Iceberg mapping here`);
  return t;
}

function checkNames(columns: readonly SourceColumn[]): void {
  const seen = new Map<string, string>();
  for (const c of columns) {
    const s = sanitizeName(c.name);
    const other = seen.get(s);
    if (other !== undefined) throw new IcebergSchemaError(c.name, `columns "${other}" and "${c.name}" collide (both are "${s}" in Parquet)`);
    seen.set(s, c.name);
  }
}
