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
  // One token per upstream asset, and its read resolved once per step: two refs of one asset, or
  // two queries over it, do not copy its files twice from a remote warehouse.
  const refs: string[] = [];
  const reads = new Map<number, Promise<string>>();
  const read = (i: number): Promise<string> => {
    let r = reads.get(i);
    if (r === undefined) {
      r = (async () => upstreamReadSql(ctx, await ctx.resource<ObjectStorage>("warehouse"), await scratchDir(ctx), refs[i]!))();
      r.catch(() => reads.delete(i)); // a failed read is tried again by the next query
      reads.set(i, r);
    }
    return r;
  };
  const expand = async (sql: string): Promise<string> => {
    const used = [...new Set([...sql.matchAll(TOKEN)].map((m) => Number(m[1])))];
    if (used.length === 0) return sql;
    const resolved = new Map<number, string>();
    for (const i of used) resolved.set(i, await read(i));
    return sql.replace(TOKEN, (_, i: string) => resolved.get(Number(i))!);
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
      const known = refs.indexOf(key);
      return `__floe_ref_${known >= 0 ? known : refs.push(key) - 1}__`;
    },
  }) as AssetContext;
}
