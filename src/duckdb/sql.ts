/** SQL text helpers for DuckDB. */

/** A quoted identifier: `"my col"`. */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A string literal: `'it''s'`. */
export function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** A SQL literal for a JS value (string, number, bigint, boolean, Date, null). */
export function value(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  if (typeof v === "boolean") return v ? "TRUE" : "FALSE";
  if (v instanceof Date) return `TIMESTAMPTZ ${literal(v.toISOString())}`;
  return literal(String(v));
}
