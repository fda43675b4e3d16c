import type { z } from "zod";
import { UserError } from "../errors.js";
import { ident, literal } from "./sql.js";

/** One column of a table contract: its DuckDB type, whether a value is required, allowed values. */
export interface ColumnContract {
  name: string;
  type: string;
  required: boolean;
  accepted?: readonly string[];
}

type ZodAny = z.ZodType;
interface Def {
  type: string;
  innerType?: ZodAny;
  format?: string;
  checks?: Array<{ _zod: { def: { check?: string; format?: string } } }>;
  entries?: Record<string, string | number>;
  values?: unknown[];
}

/**
 * Reads a zod object schema as a table contract: `z.number().int()` → BIGINT, `z.number()` →
 * DOUBLE, `z.string()` → VARCHAR, `z.iso.date()` → DATE, `z.date()` / `z.iso.datetime()` →
 * TIMESTAMPTZ, `z.boolean()`, `z.bigint()` → BIGINT, `z.enum([...])` → VARCHAR with accepted
 * values; `.optional()` / `.nullable()` make a column not required. `.meta({ duckdbType: "DECIMAL(18,2)" })`
 * overrides the type.
 *
 * @example
 * contractFromZod(z.object({ id: z.number().int(), amount: z.number().optional() }));
 * // [{ name: "id", type: "BIGINT", required: true }, { name: "amount", type: "DOUBLE", required: false }]
 */
export function contractFromZod(schema: z.ZodObject, where = "columns"): ColumnContract[] {
  return Object.entries(schema.shape).map(([name, field]) => column(name, field as ZodAny, where));
}

function column(name: string, field: ZodAny, where: string): ColumnContract {
  let required = true;
  let t = field;
  let override: string | undefined = metaType(t);
  for (;;) {
    const def = t._zod.def as unknown as Def;
    if ((def.type === "optional" || def.type === "nullable" || def.type === "default") && def.innerType) {
      required = false;
      t = def.innerType;
      override ??= metaType(t);
      continue;
    }
    const base = { name, required };
    if (override) return { ...base, type: override };
    switch (def.type) {
      case "number":
        return { ...base, type: def.checks?.some((c) => c._zod.def.format === "safeint" || c._zod.def.format === "int32") ? "BIGINT" : "DOUBLE" };
      case "bigint":
        return { ...base, type: "BIGINT" };
      case "boolean":
        return { ...base, type: "BOOLEAN" };
      case "date":
        return { ...base, type: "TIMESTAMPTZ" };
      case "string":
        return { ...base, type: def.format === "date" ? "DATE" : def.format === "datetime" ? "TIMESTAMPTZ" : "VARCHAR" };
      case "enum":
        return { ...base, type: "VARCHAR", accepted: Object.values(def.entries ?? {}).map(String) };
      case "literal":
        return { ...base, type: "VARCHAR", accepted: (def.values ?? []).map(String) };
      default:
        throw new UserError(`${where}.${name}: zod type \`${def.type}\` has no table column type; use number, string, boolean, date, bigint, enum, or .meta({ duckdbType: "…" })`);
    }
  }
}

function metaType(t: ZodAny): string | undefined {
  const meta = (t as unknown as { meta?: () => Record<string, unknown> | undefined }).meta?.();
  const v = meta?.duckdbType;
  return typeof v === "string" ? v : undefined;
}

/**
 * SQL that types `source` by the contract and gives each row its reasons to be invalid:
 * every contract column cast once with TRY_CAST, plus `_floe_reason` (NULL for a valid row), e.g.
 * `amount: cannot cast 'abc' to DOUBLE; id: missing`. Extra columns listed in `keep` pass through.
 * With `raw`, each contract column's value as it came is kept too, as `rawColumn(i)`.
 *
 * @example
 * const q = typedSql("staged", contract, ["_floe_source_file"]);
 * await con.run(`create table typed as ${q}`);
 */
export function typedSql(source: string, columns: readonly ColumnContract[], keep: readonly string[] = [], raw = false): string {
  const inner = [
    ...columns.map((c, i) => `TRY_CAST(${ident(c.name)} AS ${c.type}) AS ${ident(`__floe_t${i}`)}, ${ident(c.name)} AS ${ident(rawColumn(i))}`),
    ...keep.map(ident),
  ];
  const reasons = columns.map((c, i) => {
    const col = ident(rawColumn(i));
    const cast = ident(`__floe_t${i}`);
    const parts = [
      c.required ? `WHEN ${col} IS NULL THEN ${literal(`${c.name}: missing`)}` : "",
      `WHEN ${col} IS NOT NULL AND ${cast} IS NULL THEN ${literal(`${c.name}: cannot cast '`)} || left(${col}::VARCHAR, 60) || ${literal(`' to ${c.type}`)}`,
      c.accepted ? `WHEN ${cast} IS NOT NULL AND ${cast}::VARCHAR NOT IN (${c.accepted.map(literal).join(", ")}) THEN ${literal(`${c.name}: '`)} || left(${col}::VARCHAR, 60) || ${literal(`' is not one of ${c.accepted.join(", ")}`)}` : "",
    ].filter((p) => p !== "");
    return `CASE ${parts.join(" ")} END`;
  });
  const reason = `NULLIF(concat_ws('; ', ${reasons.join(", ")}), '') AS _floe_reason`;
  const outer = [
    ...columns.map((c, i) => `${ident(`__floe_t${i}`)} AS ${ident(c.name)}`),
    ...keep.map(ident),
    ...(raw ? columns.map((_, i) => ident(rawColumn(i))) : []),
    reason,
  ];
  return `SELECT ${outer.join(", ")} FROM (SELECT ${inner.join(", ")} FROM ${source})`;
}

/** The name under which typedSql keeps the raw value of the contract's column `i`. */
export const rawColumn = (i: number): string => `__floe_raw${i}`;
