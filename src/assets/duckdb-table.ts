import { join } from "node:path";
import type { DuckDBInstance } from "@duckdb/node-api";
import type { z } from "zod";
import type { StepContext } from "../dag/types.js";
import { runChecks, type CheckDefinition, type CheckResult } from "../duckdb/checks.js";
import { contractFromZod, typedSql, type ColumnContract } from "../duckdb/contract.js";
import { ident, literal } from "../duckdb/sql.js";
import { describeDuckDbError } from "../duckdb/stage.js";
import type { ObjectStorage } from "../storage/types.js";
import { defineAsset, type AssetDep, type AssetOptions } from "./asset.js";
import { localParquetFiles, newLocation, scratchDir, upstreamLocations } from "./data.js";

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
    materialize: (ctx) => materializeTable(ctx, options, contract),
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
    for (const dep of ctx.asset.deps) {
      const files: string[] = [];
      for (const group of upstreamLocations(ctx, dep)) files.push(...(await localParquetFiles(warehouse, group, scratch)));
      if (files.length === 0) {
        throw new Error(`\`${dep}\`${ctx.partitionKey ? ` partition ${ctx.partitionKey}` : ""} has no data yet (its materialization holds no file)`);
      }
      reads.set(dep, `read_parquet([${files.map(literal).join(", ")}], union_by_name = true)`);
    }
    const ref = (dep: AssetDep): string => {
      const k = typeof dep === "string" ? dep : dep.key;
      const r = reads.get(k);
      if (r === undefined) throw new Error(`\`${ctx.assetKey}\` reads \`${k}\` but does not declare it in deps; add it to deps`);
      return r;
    };
    const userSql = options.sql({ ref, partition: ctx.partitionKey }).trim().replace(/;\s*$/, "");
    // _floe_n numbers the rows so invalid ones can be joined back to their raw values.
    await sqlStep(ctx, () => con.run(`CREATE TEMP TABLE _floe_src AS SELECT *, row_number() OVER () AS _floe_n FROM (${userSql})`));
    await con.run("CREATE TEMP VIEW _floe_out AS SELECT * EXCLUDE (_floe_n) FROM _floe_src");

    let valid = "_floe_out";
    let invalidRows = 0;
    let quarantine: string | undefined;
    if (contract) {
      const columns = (await con.runAndReadAll("DESCRIBE _floe_src")).getRowObjectsJS().map((r) => String(r.column_name));
      const missing = contract.filter((c) => !columns.includes(c.name)).map((c) => c.name);
      if (missing.length > 0) throw new Error(`SQL of \`${ctx.assetKey}\` returns no column ${missing.map((m) => `\`${m}\``).join(", ")}, which \`columns\` requires`);
      const keep = columns.filter((c) => c === "_floe_source_file" || c === "_floe_row" || c === "_floe_n");
      await con.run(`CREATE TEMP TABLE _floe_typed AS ${typedSql("_floe_src", contract, keep)}`);
      invalidRows = Number((await con.runAndReadAll("SELECT count(*) AS n FROM _floe_typed WHERE _floe_reason IS NOT NULL")).getRowObjectsJS()[0]?.n ?? 0);
      if (invalidRows > 0) {
        if ((options.onInvalidRows ?? "fail") === "fail") {
          const examples = (await con.runAndReadAll(`SELECT ${keep.includes("_floe_source_file") ? "_floe_source_file, " : ""}${keep.includes("_floe_row") ? "_floe_row, " : ""}_floe_reason FROM _floe_typed WHERE _floe_reason IS NOT NULL LIMIT 3`)).getRowObjectsJS();
          const shown = examples.map((e) => `${e._floe_source_file ? `${String(e._floe_source_file)}${e._floe_row ? ` row ${String(e._floe_row)}` : ""}: ` : ""}${String(e._floe_reason)}`);
          throw new Error(`${invalidRows} invalid row${invalidRows === 1 ? "" : "s"} in \`${ctx.assetKey}\` (onInvalidRows: "fail"), e.g. ${shown.join("; ")}`);
        }
        quarantine = newLocation("quarantine", ctx);
        const qFile = join(scratch, "quarantine.parquet");
        // the raw values, as they came, with the reason
        await con.run(`COPY (SELECT s.* EXCLUDE (_floe_n), t._floe_reason FROM _floe_src s JOIN _floe_typed t USING (_floe_n) WHERE t._floe_reason IS NOT NULL ORDER BY _floe_n) TO ${literal(qFile)} (FORMAT parquet)`);
        await warehouse.upload(qFile, `${quarantine}/part-0.parquet`);
        ctx.log.warn(`${invalidRows} invalid rows quarantined`, { location: quarantine });
      }
      await con.run(`CREATE TEMP VIEW _floe_valid AS SELECT ${contract.map((c) => ident(c.name)).join(", ")} FROM _floe_typed WHERE _floe_reason IS NULL`);
      valid = "_floe_valid";
    }

    const results: CheckResult[] = await runChecks(con, valid, options.checks ?? []);
    const location = newLocation("tables", ctx);
    const out = join(scratch, "part-0.parquet");
    const copied = await con.runAndReadAll(`COPY (SELECT * FROM ${valid}) TO ${literal(out)} (FORMAT parquet, COMPRESSION zstd, RETURN_STATS)`);
    const rows = Number(copied.getRowObjectsJS()[0]?.count ?? 0);
    const failed = results.filter((r) => !r.passed);
    for (const r of failed) ctx.log[r.severity === "error" ? "error" : "warn"](`check ${r.name} failed: ${r.message}`, { check: r.name, severity: r.severity, value: r.value });
    const blocking = failed.filter((r) => r.severity === "error");
    if (blocking.length > 0) {
      throw new Error(`check${blocking.length === 1 ? "" : "s"} failed: ${blocking.map((r) => `${r.name}: ${r.message}`).join("; ")}`);
    }
    await warehouse.upload(out, `${location}/part-0.parquet`);
    return {
      metadata: {
        location,
        rows,
        invalidRows,
        ...(quarantine ? { quarantine } : {}),
        checks: results.map((r) => ({ name: r.name, severity: r.severity, passed: r.passed, message: r.message })),
      },
    };
  } finally {
    con.closeSync();
  }
}

async function sqlStep(ctx: StepContext, run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (e) {
    throw new Error(`SQL of \`${ctx.assetKey}\`: ${describeDuckDbError(e)}`);
  }
}

