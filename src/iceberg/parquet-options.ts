// Parquet that an Iceberg table can take as it is: field ids and the `iceberg.schema` key of the
// schema a new table would get from the same columns (ids 1..n in column order).

import { stringifyJson } from "./json.js";
import { sanitizeName, schemaFromColumns, type SourceColumn } from "./schema.js";

const quote = (name: string): string => `"${name.replaceAll('"', '""')}"`;
const text = (s: string): string => `'${s.replaceAll("'", "''")}'`;

/**
 * DuckDB `COPY … (FORMAT parquet, …)` options that make a file "Iceberg-ready": each column gets
 * the field id a new table would give it, and the footer carries that schema as `iceberg.schema`.
 * An Iceberg table whose schema has the same ids, names and types can then list the file as a data
 * file without rewriting it. Undefined when a column has no Iceberg type, or a name Parquet would
 * have to spell otherwise (Avro-sanitized): such files are always rewritten.
 *
 * @example
 * const opts = icebergParquetOptions([{ name: "id", duckdbType: "BIGINT" }]);
 * await con.run(`COPY (SELECT id FROM t) TO 'part-0.parquet' (FORMAT parquet${opts ? `, ${opts}` : ""})`);
 */
export function icebergParquetOptions(columns: readonly SourceColumn[]): string | undefined {
  if (columns.length === 0 || columns.some((c) => sanitizeName(c.name) !== c.name)) return undefined;
  let schema;
  try {
    schema = schemaFromColumns(columns);
  } catch {
    return undefined; // a type without an Iceberg mapping
  }
  const ids = schema.fields.map((f) => `${quote(f.name)}: ${f.id}`).join(", ");
  return `FIELD_IDS {${ids}}, KV_METADATA {'iceberg.schema': ${text(stringifyJson(schema))}}`;
}
