import { join } from "node:path";
import type { DuckDBInstance } from "@duckdb/node-api";
import type { z } from "zod";
import type { StepContext } from "../dag/types.js";
import { runChecks, type CheckDefinition, type CheckResult } from "../duckdb/checks.js";
import { contractFromZod, rawColumn, typedSql, type ColumnContract } from "../duckdb/contract.js";
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
    const userSql = options.sql({ ref, partition: ctx.partitionKey }).trim().replace(/;\s*$/, "");
    // The user's SQL runs once, into one table or file that every later pass reads (checks, copy).
    let valid = "_floe_out";
    let invalidRows = 0;
    let quarantine: string | undefined;
    if (!contract) {
      await sqlStep(ctx, () => con.run(`CREATE TEMP TABLE _floe_out AS ${userSql}`));
    } else {
      const described = await sqlStep(ctx, () => con.runAndReadAll(`DESCRIBE ${userSql}`));
      const columns = described.getRowObjectsJS().map((r) => String(r.column_name));
      const missing = contract.filter((c) => !columns.includes(c.name)).map((c) => c.name);
      if (missing.length > 0) throw new Error(`SQL of \`${ctx.assetKey}\` returns no column ${missing.map((m) => `\`${m}\``).join(", ")}, which \`columns\` requires`);
      const quarantining = (options.onInvalidRows ?? "fail") === "quarantine";
      const named = new Set(contract.map((c) => c.name));
      // lineage columns always; every other column too when invalid rows are kept as they came
      const keep = columns.filter((c) => !named.has(c) && (quarantining || c === "_floe_source_file" || c === "_floe_row"));
      // Typed once, into a scratch Parquet file that the later passes scan (counts, checks, the
      // copy out): cheaper than a temp table, which spills beyond DuckDB's memory limit.
      const typedFile = join(scratch, "typed.parquet");
      await sqlStep(ctx, () => con.run(`COPY (${typedSql(`(${userSql})`, contract, keep, quarantining)}) TO ${literal(typedFile)} (FORMAT parquet, COMPRESSION zstd)`));
      await con.run(`CREATE TEMP VIEW _floe_typed AS SELECT * FROM read_parquet(${literal(typedFile)})`);
      invalidRows = Number((await con.runAndReadAll("SELECT count(*) AS n FROM _floe_typed WHERE _floe_reason IS NOT NULL")).getRowObjectsJS()[0]?.n ?? 0);
      if (invalidRows > 0) {
        if (!quarantining) {
          const examples = (await con.runAndReadAll(`SELECT ${keep.includes("_floe_source_file") ? "_floe_source_file, " : ""}${keep.includes("_floe_row") ? "_floe_row, " : ""}_floe_reason FROM _floe_typed WHERE _floe_reason IS NOT NULL LIMIT 3`)).getRowObjectsJS();
          const shown = examples.map((e) => `${e._floe_source_file ? `${String(e._floe_source_file)}${e._floe_row ? ` row ${String(e._floe_row)}` : ""}: ` : ""}${String(e._floe_reason)}`);
          throw new Error(`${invalidRows} invalid row${invalidRows === 1 ? "" : "s"} in \`${ctx.assetKey}\` (onInvalidRows: "fail"), e.g. ${shown.join("; ")}`);
        }
        quarantine = newLocation("quarantine", ctx);
        const qFile = join(scratch, "quarantine.parquet");
        // the raw values, as they came, in the SQL's column order, with the reason
        const rawValues = columns.map((c) => (named.has(c) ? `${ident(rawColumn(contract.findIndex((x) => x.name === c)))} AS ${ident(c)}` : ident(c)));
        await con.run(`COPY (SELECT ${rawValues.join(", ")}, _floe_reason FROM _floe_typed WHERE _floe_reason IS NOT NULL) TO ${literal(qFile)} (FORMAT parquet)`);
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

async function sqlStep<T>(ctx: StepContext, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    throw new Error(`SQL of \`${ctx.assetKey}\`: ${describeDuckDbError(e)}`);
  }
}

