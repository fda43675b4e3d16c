import { join } from "node:path";
import type { DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import type { z } from "zod";
import type { StepContext } from "../dag/types.js";
import { runChecks, type CheckDefinition, type CheckResult } from "../duckdb/checks.js";
import { contractFromZod, contractQuery, rawColumn, type ColumnContract } from "../duckdb/contract.js";
import { countIsScan } from "../duckdb/plan.js";
import { ident, literal } from "../duckdb/sql.js";
import { describeDuckDbError } from "../duckdb/stage.js";
import type { ObjectStorage } from "../storage/types.js";
import { defineAsset, type AssetDep, type AssetOptions } from "./asset.js";
import { newLocation, scratchDir, upstreamReadSql, withScratch } from "./data.js";

export interface DuckdbTableOptions extends Omit<AssetOptions, "materialize"> {
  /** The table's SQL; `ref(asset)` reads an upstream table (the same partition, unless mapped). */
  sql: (helpers: { ref: (dep: AssetDep) => string; partition: string | null }) => string;
  /** The table contract: types every column; values that do not fit are invalid rows. */
  columns?: z.ZodObject;
  checks?: readonly CheckDefinition[];
  /** `fail` (default): the step fails naming the count and a few examples. `quarantine`: invalid rows go to `<warehouse>/quarantine/<asset>/…` with `_floe_reason`. */
  onInvalidRows?: "fail" | "quarantine";
}

/**
 * A table computed by DuckDB SQL over upstream tables, typed by a zod contract and checked.
 *
 * @example
 * export const orders = duckdbTable("orders", {
 *   deps: [rawOrders],
 *   sql: ({ ref }) => `select id, amount from ${ref(rawOrders)}`,
 *   columns: z.object({ id: z.number().int(), amount: z.number() }),
 *   checks: [checks.unique("id")],
 *   onInvalidRows: "quarantine",
 * });
 */
export function duckdbTable(key: string, options: DuckdbTableOptions) {
  const contract = options.columns ? contractFromZod(options.columns, `duckdbTable \`${key}\` columns`) : undefined;
  return defineAsset(key, {
    ...options,
    kind: "duckdb",
    materialize: (ctx) => withScratch(ctx, () => materializeTable(ctx, options, contract)),
  });
}

async function materializeTable(ctx: StepContext, options: DuckdbTableOptions, contract: ColumnContract[] | undefined) {
  const db = await ctx.resource<DuckDBInstance>("duckdb");
  const warehouse = await ctx.resource<ObjectStorage>("warehouse");
  const scratch = await scratchDir(ctx);
  const con = await db.connect();
  try {
    // Resolve ref()s first: each becomes a read_parquet over the upstream's current files.
    const reads = new Map<string, string>();
    for (const dep of ctx.asset.deps) reads.set(dep, await upstreamReadSql(ctx, warehouse, scratch, dep));
    const ref = (dep: AssetDep): string => {
      const k = typeof dep === "string" ? dep : dep.key;
      const r = reads.get(k);
      if (r === undefined) throw new Error(`\`${ctx.assetKey}\` reads \`${k}\` but does not declare it in deps; add it to deps`);
      return r;
    };
    let userSql = options.sql({ ref, partition: ctx.partitionKey }).trim().replace(/;\s*$/, "");
    // With a contract the SQL's rows are counted once more (below): when that means running a join,
    // an aggregate or a window again, its rows go to a scratch file first and are read from there.
    if (contract && !(await sqlStep(ctx, () => countIsScan(con, userSql)))) {
      const rowsFile = join(scratch, "rows.parquet");
      await sqlStep(ctx, () => con.run(`COPY (${userSql}) TO ${literal(rowsFile)} (FORMAT parquet, COMPRESSION snappy)`));
      userSql = `SELECT * FROM read_parquet(${literal(rowsFile)})`;
    }
    const described = await sqlStep(ctx, () => con.runAndReadAll(`DESCRIBE ${userSql}`));
    const sourceTypes = Object.fromEntries(described.getRowObjectsJS().map((r) => [String(r.column_name), String(r.column_type)]));
    const columns = Object.keys(sourceTypes);
    // The valid rows are written once, straight to the output file; the checks read that file.
    let outSql = userSql;
    let invalid: { rows: string; contract: ColumnContract[]; columns: string[] } | undefined;
    if (contract) {
      const missing = contract.filter((c) => !columns.includes(c.name)).map((c) => c.name);
      if (missing.length > 0) throw new Error(`SQL of \`${ctx.assetKey}\` returns no column ${missing.map((m) => `\`${m}\``).join(", ")}, which \`columns\` requires`);
      const named = new Set(contract.map((c) => c.name));
      const q = contractQuery(`(${userSql})`, contract, { keep: columns.filter((c) => !named.has(c)), sourceTypes });
      outSql = q.validRows;
      invalid = { rows: q.invalidRows, contract, columns };
    }
    const out = join(scratch, "part-0.parquet");
    const outColumns = (await sqlStep(ctx, () => con.runAndReadAll(`DESCRIBE ${outSql}`))).getRowObjectsJS().map((r) => ({ name: String(r.column_name), duckdbType: String(r.column_type) }));
    // Iceberg-ready (field ids, iceberg.schema): an icebergTable can list this file without rewriting it.
    const { icebergParquetOptions } = await import("../iceberg/parquet-options.js");
    const ids = icebergParquetOptions(outColumns);
    const copied = await sqlStep(ctx, () => con.runAndReadAll(`COPY (${outSql}) TO ${literal(out)} (FORMAT parquet, COMPRESSION snappy${ids ? `, ${ids}` : ""}, RETURN_STATS)`));
    const rows = Number(copied.getRowObjectsJS()[0]?.count ?? 0);
    let quarantine: string | undefined;
    let invalidRows = 0;
    if (invalid) {
      // Rows the contract refused = rows of the SQL - rows written; only then are they read again.
      const total = Number((await con.runAndReadAll(`SELECT count(*) AS n FROM (${userSql})`)).getRowObjectsJS()[0]?.n ?? 0);
      const refused = total > rows ? await refuseRows(ctx, con, invalid, options.onInvalidRows ?? "fail", scratch) : undefined;
      if (refused) {
        invalidRows = refused.count;
        quarantine = newLocation("quarantine", ctx);
        await warehouse.upload(refused.file, `${quarantine}/part-0.parquet`);
        ctx.log.warn(`${invalidRows} invalid rows quarantined`, { location: quarantine });
      }
    }
    const results: CheckResult[] = await runChecks(con, `read_parquet(${literal(out)})`, options.checks ?? []);
    const location = newLocation("tables", ctx);
    const failed = results.filter((r) => !r.passed);
    for (const r of failed) ctx.log[r.severity === "error" ? "error" : "warn"](`check ${r.name} failed: ${r.message}`, { check: r.name, severity: r.severity, value: r.value });
    const metadata = {
      location,
      rows,
      invalidRows,
      ...(quarantine ? { quarantine, quarantinedRows: invalidRows } : {}),
      checks: results.map((r) => ({ name: r.name, severity: r.severity, passed: r.passed, message: r.message })),
    };
    const blocking = failed.filter((r) => r.severity === "error");
    if (blocking.length > 0) {
      // the failed step still records its check results and what was quarantined; nothing was written
      const { checks, invalidRows: invalid } = metadata;
      throw Object.assign(new Error(`check${blocking.length === 1 ? "" : "s"} failed: ${blocking.map((r) => `${r.name}: ${r.message}`).join("; ")}`), {
        metadata: { invalidRows: invalid, ...(quarantine ? { quarantine, quarantinedRows: invalidRows } : {}), checks },
      });
    }
    await warehouse.upload(out, `${location}/part-0.parquet`);
    return { metadata };
  } finally {
    con.closeSync();
  }
}

/**
 * The rows the contract refused: with `fail`, an error naming their count and a few examples;
 * with `quarantine`, their count and a scratch file of their values as they came, with their
 * reasons (undefined when there are none).
 */
async function refuseRows(
  ctx: StepContext,
  con: DuckDBConnection,
  invalid: { rows: string; contract: ColumnContract[]; columns: string[] },
  mode: "fail" | "quarantine",
  scratch: string,
): Promise<{ count: number; file: string } | undefined> {
  const count = Number((await con.runAndReadAll(`SELECT count(*) AS n FROM (${invalid.rows})`)).getRowObjectsJS()[0]?.n ?? 0);
  if (count === 0) return undefined;
  if (mode === "fail") {
    const order = ["_floe_source_file", "_floe_row"].filter((c) => invalid.columns.includes(c));
    const examples = (await con.runAndReadAll(`SELECT * FROM (${invalid.rows})${order.length > 0 ? ` ORDER BY ${order.join(", ")}` : ""} LIMIT 3`)).getRowObjectsJS();
    const shown = examples.map((e) => `${e._floe_source_file ? `${String(e._floe_source_file)}${e._floe_row ? ` row ${String(e._floe_row)}` : ""}: ` : ""}${String(e._floe_reason)}`);
    throw new Error(`${count} invalid row${count === 1 ? "" : "s"} in \`${ctx.assetKey}\` (onInvalidRows: "fail"), e.g. ${shown.join("; ")}`);
  }
  // the values as they came, in the SQL's column order, with the reason
  const rawOf = new Map(invalid.contract.map((c, i) => [c.name, rawColumn(i)]));
  const values = invalid.columns.map((c) => `${ident(rawOf.get(c) ?? c)} AS ${ident(c)}`);
  const file = join(scratch, "quarantine.parquet");
  await con.run(`COPY (SELECT ${values.join(", ")}, _floe_reason FROM (${invalid.rows})) TO ${literal(file)} (FORMAT parquet)`);
  return { count, file };
}

async function sqlStep<T>(ctx: StepContext, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    throw new Error(`SQL of \`${ctx.assetKey}\`: ${describeDuckDbError(e)}`);
  }
}

