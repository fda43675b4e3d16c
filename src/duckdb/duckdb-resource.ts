import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { DuckDBInstance } from "@duckdb/node-api";
import type { ResourceFactory } from "../project/resources.js";

/** DuckDB's buffer limit unless `duckdbMemoryLimit` / FLOE_DUCKDB_MEMORY_LIMIT says otherwise; beyond it DuckDB spills to disk. */
export const DEFAULT_MEMORY_LIMIT = "512MB";

/**
 * One in-memory DuckDB per process, spilling to `<home>/duckdb-tmp` beyond its memory limit. Extension auto-install is
 * off: parquet, json and icu are built in, and nothing may be downloaded at run time.
 *
 * @example
 * const db = await ctx.resource<DuckDBInstance>("duckdb");
 * const con = await db.connect();
 */
export const duckdbResource: ResourceFactory<DuckDBInstance> = {
  create: async ({ settings }) => {
    const { DuckDBInstance } = await import("@duckdb/node-api"); // ~0.3 s: only when a step needs it
    const db = await DuckDBInstance.create(":memory:", {
      threads: String(availableParallelism()),
      autoinstall_known_extensions: "false",
      autoload_known_extensions: "false",
      temp_directory: join(settings.home, "duckdb-tmp"),
      memory_limit: settings.duckdbMemoryLimit ?? DEFAULT_MEMORY_LIMIT,
    });
    // Timestamps without zone are read as UTC, whatever the machine's zone.
    const con = await db.connect();
    await con.run("SET GLOBAL TimeZone = 'UTC'");
    con.closeSync();
    return db;
  },
  dispose: async (db) => db.closeSync(),
};
