import type { DuckDBConnection } from "@duckdb/node-api";
import { UserError } from "../errors.js";
import { ident, literal, value } from "./sql.js";

export type CheckSeverity = "error" | "warn";

/**
 * A data-quality check: one aggregate SQL expression over the table (counted failures, or the
 * row count) and the test its value must pass. `error` blocks downstream assets; `warn` does not.
 */
export interface CheckDefinition {
  name: string;
  severity: CheckSeverity;
  /** An aggregate expression over the checked relation. */
  expr: string;
  pass(value: number): boolean;
  describe(value: number): string;
}

export interface CheckResult {
  name: string;
  severity: CheckSeverity;
  passed: boolean;
  value: number;
  message: string;
}

interface CheckOptions {
  severity?: CheckSeverity;
}

const failures = (name: string, opts: CheckOptions | undefined, expr: string, what: string): CheckDefinition => ({
  name,
  severity: opts?.severity ?? "error",
  expr,
  pass: (v) => v === 0,
  describe: (v) => (v === 0 ? "passed" : `${v} ${what}`),
});

/**
 * Checks for `duckdbTable({ checks: [...] })`, evaluated together in one set-based query.
 *
 * @example
 * checks: [checks.notNull("id"), checks.unique("id"), checks.range("amount", { min: 0 }), checks.rowCount({ min: 1 }),
 *          checks.acceptedValues("status", ["open", "paid"], { severity: "warn" }), checks.sql("paid_has_amount", "status <> 'paid' OR amount > 0")]
 */
export const checks = {
  notNull: (column: string, opts?: CheckOptions) =>
    failures(`not_null(${column})`, opts, `count(*) FILTER (WHERE ${ident(column)} IS NULL)`, `null values in ${column}`),
  unique: (column: string, opts?: CheckOptions) =>
    failures(`unique(${column})`, opts, `count(${ident(column)}) - count(DISTINCT ${ident(column)})`, `duplicate values in ${column}`),
  acceptedValues: (column: string, values: readonly (string | number | boolean)[], opts?: CheckOptions) =>
    failures(
      `accepted_values(${column})`,
      opts,
      `count(*) FILTER (WHERE ${ident(column)} IS NOT NULL AND ${ident(column)}::VARCHAR NOT IN (${values.map((v) => literal(String(v))).join(", ")}))`,
      `values of ${column} not in ${values.join(", ")}`,
    ),
  range: (column: string, bounds: { min?: number | bigint | Date | string; max?: number | bigint | Date | string }, opts?: CheckOptions) => {
    if (bounds.min === undefined && bounds.max === undefined) throw new UserError(`checks.range(${column}): give min, max or both`);
    const conds = [bounds.min !== undefined ? `${ident(column)} < ${value(bounds.min)}` : "", bounds.max !== undefined ? `${ident(column)} > ${value(bounds.max)}` : ""].filter(Boolean);
    const span = `${bounds.min ?? "-∞"}…${bounds.max ?? "∞"}`;
    return failures(`range(${column})`, opts, `count(*) FILTER (WHERE ${conds.join(" OR ")})`, `values of ${column} outside ${span}`);
  },
  rowCount: (bounds: { min?: number; max?: number }, opts?: CheckOptions): CheckDefinition => ({
    name: "row_count",
    severity: opts?.severity ?? "error",
    expr: "count(*)",
    pass: (v) => (bounds.min === undefined || v >= bounds.min) && (bounds.max === undefined || v <= bounds.max),
    describe: (v) => `${v} rows${bounds.min !== undefined && v < bounds.min ? `, expected at least ${bounds.min}` : ""}${bounds.max !== undefined && v > bounds.max ? `, expected at most ${bounds.max}` : ""}`,
  }),
  /** Rows must satisfy `predicate` (a SQL boolean expression); NULL counts as a failure. */
  sql: (name: string, predicate: string, opts?: CheckOptions) =>
    failures(name, opts, `count(*) FILTER (WHERE NOT coalesce((${predicate}), FALSE))`, `rows fail ${name}`),
};

/**
 * Evaluates checks over `relation` in one query.
 *
 * @example
 * const results = await runChecks(con, "typed_orders", [checks.notNull("id")]);
 * results[0]?.passed; // true
 */
export async function runChecks(con: DuckDBConnection, relation: string, list: readonly CheckDefinition[]): Promise<CheckResult[]> {
  if (list.length === 0) return [];
  const reader = await con.runAndReadAll(`SELECT ${list.map((c, i) => `(${c.expr})::BIGINT AS c${i}`).join(", ")} FROM ${relation}`);
  const row = reader.getRowObjectsJS()[0] ?? {};
  return list.map((c, i) => {
    const v = Number(row[`c${i}`] ?? 0);
    const passed = c.pass(v);
    return { name: c.name, severity: c.severity, passed, value: v, message: passed ? "passed" : c.describe(v) };
  });
}
