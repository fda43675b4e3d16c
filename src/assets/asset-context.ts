import type { DuckDBInstance } from "@duckdb/node-api";
import type { StepContext } from "../dag/types.js";
import { isAssetDefinition } from "../dag/types.js";
import type { ObjectStorage } from "../storage/types.js";
import { scratchDir, upstreamReadSql } from "./data.js";
import type { AssetDep } from "./asset.js";

/** DuckDB for a plain asset's SQL over its upstream tables. */
export interface StepDuckdb {
  /** Runs a query (with `ctx.ref(...)` inside) and returns its rows as plain objects. */
  all(sql: string): Promise<Array<Record<string, unknown>>>;
  /** Runs statements (with `ctx.ref(...)` inside) for their effect. */
  run(sql: string): Promise<void>;
}

/** What a plain `asset`'s `materialize(ctx)` receives: the step context, DuckDB and `ref`. */
export interface AssetContext extends StepContext {
  readonly duckdb: StepDuckdb;
  /** A table expression over an upstream table's data for this step (its partition, unless mapped), for `ctx.duckdb` SQL. */
  ref(dep: AssetDep): string;
}

const TOKEN = /__floe_ref_(\d+)__/g;

/**
 * Adds `duckdb` and `ref` to a step context. `ref` is synchronous, so it hands out a token that
 * `duckdb.all` / `duckdb.run` replace with a `read_parquet` over the upstream's files.
 *
 * @example
 * const rows = await withDuckdb(ctx).duckdb.all(`select count(*) as n from ${ctx.ref(orders)}`);
 */
export function withDuckdb(ctx: StepContext): AssetContext {
  const refs: string[] = [];
  const expand = async (sql: string): Promise<string> => {
    const used = [...new Set([...sql.matchAll(TOKEN)].map((m) => Number(m[1])))];
    if (used.length === 0) return sql;
    const warehouse = await ctx.resource<ObjectStorage>("warehouse");
    const scratch = await scratchDir(ctx);
    const reads = new Map<number, string>();
    for (const i of used) reads.set(i, await upstreamReadSql(ctx, warehouse, scratch, refs[i]!));
    return sql.replace(TOKEN, (_, i: string) => reads.get(Number(i))!);
  };
  const withConnection = async <T>(fn: (con: Awaited<ReturnType<DuckDBInstance["connect"]>>) => Promise<T>): Promise<T> => {
    const db = await ctx.resource<DuckDBInstance>("duckdb");
    const con = await db.connect();
    try {
      return await fn(con);
    } finally {
      con.closeSync();
    }
  };
  return Object.assign(Object.create(ctx) as StepContext, {
    duckdb: {
      all: async (sql: string) => {
        const q = await expand(sql);
        return withConnection(async (con) => (await con.runAndReadAll(q)).getRowObjectsJS() as Array<Record<string, unknown>>);
      },
      run: async (sql: string) => {
        const q = await expand(sql);
        await withConnection(async (con) => void (await con.run(q)));
      },
    },
    ref(dep: AssetDep): string {
      const key = typeof dep === "string" ? dep : isAssetDefinition(dep) ? dep.key : String(dep);
      if (!ctx.asset.deps.includes(key)) throw new Error(`\`${ctx.assetKey}\` reads \`${key}\` but does not declare it in deps; add it to deps`);
      refs.push(key);
      return `__floe_ref_${refs.length - 1}__`;
    },
  }) as AssetContext;
}
