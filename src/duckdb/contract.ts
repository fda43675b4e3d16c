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

/** The contract applied to a relation: typed columns, raw values, and what makes a row valid. */
export interface ContractQuery {
  /**
   * A parenthesized SELECT over the source: each contract column cast once (`typedColumn(i)`),
   * its value as it came (`rawColumn(i)`), and the `keep` columns.
   */
  from: string;
  /** A boolean expression over `from`'s columns, true when the row fits the contract. */
  valid: string;
  /** An expression over `from`'s columns naming every reason a row does not fit (NULL when it fits). */
  reason: string;
  /** The contract columns, typed, under their own names: a select list over `from`. */
  typed: string;
  /** The rows that fit, typed: each cast evaluated once. */
  validRows: string;
  /** The rows that do not fit, every column of `from` and `_floe_reason`. */
  invalidRows: string;
}

/**
 * The contract as set-based SQL over `source`: every contract column cast once with TRY_CAST
 * (a date-time without a zone through a faster path than ICU's), a validity predicate that is
 * cheap for valid rows, and the reasons (`amount: cannot cast 'abc' to DOUBLE; id: missing`),
 * meant for the few invalid rows only. `sourceTypes` (DuckDB types of the source's columns, by
 * name) picks the cast; without it every column is cast from whatever it is.
 *
 * @example
 * const q = contractQuery("staged", contract, { keep: ["_floe_source_file"], sourceTypes: { ts: "VARCHAR" } });
 * await con.run(`COPY (${q.validRows}) TO 'valid.parquet'`);
 */
export function contractQuery(
  source: string,
  columns: readonly ColumnContract[],
  options: { keep?: readonly string[]; sourceTypes?: Readonly<Record<string, string>> } = {},
): ContractQuery {
  const keep = options.keep ?? [];
  const inner = [
    ...columns.map((c, i) => `${castSql(ident(c.name), c.type, options.sourceTypes?.[c.name])} AS ${ident(typedColumn(i))}, ${ident(c.name)} AS ${ident(rawColumn(i))}`),
    ...keep.map(ident),
  ];
  const fits = columns.flatMap((c, i) => {
    const raw = ident(rawColumn(i));
    const cast = ident(typedColumn(i));
    return [
      c.required ? `${raw} IS NOT NULL` : "",
      `(${raw} IS NULL OR ${cast} IS NOT NULL)`,
      c.accepted ? `(${cast} IS NULL OR ${cast}::VARCHAR IN (${c.accepted.map(literal).join(", ")}))` : "",
    ].filter((p) => p !== "");
  });
  const reasons = columns.map((c, i) => {
    const col = ident(rawColumn(i));
    const cast = ident(typedColumn(i));
    const parts = [
      c.required ? `WHEN ${col} IS NULL THEN ${literal(`${c.name}: missing`)}` : "",
      `WHEN ${col} IS NOT NULL AND ${cast} IS NULL THEN ${literal(`${c.name}: cannot cast '`)} || left(${col}::VARCHAR, 60) || ${literal(`' to ${c.type}`)}`,
      c.accepted ? `WHEN ${cast} IS NOT NULL AND ${cast}::VARCHAR NOT IN (${c.accepted.map(literal).join(", ")}) THEN ${literal(`${c.name}: '`)} || left(${col}::VARCHAR, 60) || ${literal(`' is not one of ${c.accepted.join(", ")}`)}` : "",
    ].filter((p) => p !== "");
    return `CASE ${parts.join(" ")} END`;
  });
  const from = `(SELECT ${inner.join(", ")} FROM ${source})`;
  const valid = fits.length === 0 ? "TRUE" : fits.join(" AND ");
  const reason = `NULLIF(concat_ws('; ', ${reasons.join(", ")}), '')`;
  const typed = columns.map((c, i) => `${ident(typedColumn(i))} AS ${ident(c.name)}`).join(", ");
  return {
    from,
    valid,
    reason,
    typed,
    // The volatile term is always true; it keeps DuckDB from pushing the filter below the casts,
    // where every cast would be evaluated twice (once to filter, once to project).
    validRows: `SELECT ${typed} FROM (SELECT *, (${valid}) AND random() < 2 AS __floe_fits FROM ${from}) WHERE __floe_fits`,
    invalidRows: `SELECT *, ${reason} AS _floe_reason FROM ${from} WHERE NOT (${valid})`,
  };
}

/**
 * TRY_CAST of `expr` to `type`. Text to TIMESTAMPTZ without a zone in the text (the common
 * `2025-01-01 10:00:00`) is read as a TIMESTAMP and taken as UTC, which is what ICU's cast does
 * with the session zone UTC that floe sets, at a quarter of the cost; text with an offset or a
 * zone name takes ICU's cast.
 *
 * @example
 * castSql('"ts"', "TIMESTAMPTZ", "VARCHAR") // → CASE WHEN <no zone in "ts"> THEN … ELSE TRY_CAST("ts" AS TIMESTAMPTZ) END
 */
export function castSql(expr: string, type: string, sourceType: string | undefined): string {
  const to = type.trim().toUpperCase();
  const from = sourceType?.trim().toUpperCase();
  if ((to === "TIMESTAMPTZ" || to === "TIMESTAMP WITH TIME ZONE") && from === "VARCHAR") {
    const slow = `TRY_CAST(${expr} AS TIMESTAMPTZ)`;
    // no numeric offset (TIMESTAMP's cast would ignore it); a zone name makes TIMESTAMP's cast fail
    const zoneless = `NOT contains(${expr}, '+') AND NOT contains(substr(${expr}, 11), '-')`;
    // what the fast path cannot read (infinities included) takes ICU's cast
    return `CASE WHEN ${zoneless} THEN coalesce(make_timestamptz(epoch_us(TRY_CAST(${expr} AS TIMESTAMP))), ${slow}) ELSE ${slow} END`;
  }
  return `TRY_CAST(${expr} AS ${type})`;
}

/** The name under which contractQuery keeps the raw value of the contract's column `i`. */
export const rawColumn = (i: number): string => `__floe_raw${i}`;

/** The name under which contractQuery keeps the typed value of the contract's column `i`. */
export const typedColumn = (i: number): string => `__floe_t${i}`;
