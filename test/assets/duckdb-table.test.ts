import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { pipeline } from "../../src/assets/asset.js";
import { duckdbTable } from "../../src/assets/duckdb-table.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import type { AssetDefinition } from "../../src/dag/types.js";
import { checks } from "../../src/duckdb/checks.js";
import { materialize } from "../../src/runner/launch.js";
import { testEngine } from "../helpers/engine.js";

const engine = await testEngine("duck");
const { store, pool, settings } = engine;
let reader: DuckDBInstance;
beforeAll(async () => {
  reader = await DuckDBInstance.create(":memory:");
});
afterAll(async () => {
  reader.closeSync();
  await engine.close();
});

const run = (assets: AssetDefinition[], select?: string[], parts?: { from: string; to: string }) => {
  const graph = AssetGraph.build([{ module: "t.ts", pipeline: pipeline("t", { assets }) }]);
  return materialize(store, graph, { assets: new Set(select ?? graph.keys()), selection: "*", ...(parts ? { partitions: parts } : {}) }, { resources: pool });
};
const rows = async (location: unknown, order = "1") =>
  (await (await reader.connect()).runAndReadAll(`SELECT * FROM read_parquet('${join(settings.warehouse, String(location))}/*.parquet') ORDER BY ${order}`)).getRowObjectsJson();

const source = duckdbTable("source", {
  sql: () => `SELECT * FROM (VALUES ('1', '10.5', 'paid'), ('2', 'oops', 'paid'), ('3', '7', 'lost'), (NULL, '1', 'open'), ('5', '2', 'open')) t(id, amount, status)`,
  columns: z.object({ id: z.number().int(), amount: z.number(), status: z.enum(["open", "paid"]) }),
  onInvalidRows: "quarantine",
  checks: [checks.unique("id"), checks.rowCount({ min: 1 })],
});

describe("duckdbTable", () => {
  it("types rows by the contract, quarantines invalid ones with their reason, and feeds downstream tables", async () => {
    const big = duckdbTable("big_orders", { deps: [source], sql: ({ ref }) => `SELECT id, amount FROM ${ref(source)} WHERE amount > 5` });
    const outcome = await run([source, big]);
    expect(outcome.status).toBe("success");
    const meta = outcome.steps[0]!.metadata;
    expect(meta).toMatchObject({ rows: 2, invalidRows: 3, checks: [{ name: "unique(id)", passed: true }, { name: "row_count", passed: true }] });
    expect(await rows(meta.location, "id")).toEqual([{ id: "1", amount: 10.5, status: "paid" }, { id: "5", amount: 2, status: "open" }]);
    expect((await rows(meta.quarantine, "id NULLS LAST")).map((r) => [r.id, r.amount, r._floe_reason])).toEqual([
      ["2", "oops", "amount: cannot cast 'oops' to DOUBLE"],
      ["3", "7", "status: 'lost' is not one of open, paid"],
      [null, "1", "id: missing"],
    ]);
    expect(await rows(outcome.steps[1]!.metadata.location)).toEqual([{ id: "1", amount: 10.5 }]);
    // Iceberg-ready output: field ids 1..n in column order, and the schema a new table would get
    const file = `${join(settings.warehouse, String(meta.location))}/part-0.parquet`;
    const con = await reader.connect();
    const ids = (await con.runAndReadAll(`SELECT name, field_id::INTEGER AS field_id FROM parquet_schema('${file}') WHERE num_children IS NULL ORDER BY field_id`)).getRowObjectsJson();
    expect(ids).toEqual([{ name: "id", field_id: 1 }, { name: "amount", field_id: 2 }, { name: "status", field_id: 3 }]);
    const kv = (await con.runAndReadAll(`SELECT decode(value) AS v FROM parquet_kv_metadata('${file}') WHERE decode(key) = 'iceberg.schema'`)).getRowObjectsJson();
    expect(JSON.parse(String(kv[0]?.v))).toEqual({ type: "struct", "schema-id": 0, fields: [
      { id: 1, name: "id", required: false, type: "long" }, { id: 2, name: "amount", required: false, type: "double" }, { id: 3, name: "status", required: false, type: "string" },
    ] });
  });

  it("a contract over an aggregate: the SQL's rows are kept once, then typed, counted and quarantined", async () => {
    const totals = duckdbTable("totals", {
      sql: () => `SELECT k, CASE WHEN k = 2 THEN 'n/a' ELSE sum(v)::VARCHAR END AS total FROM (VALUES (1, 10), (1, 5), (2, 7), (3, 1)) t(k, v) GROUP BY k`,
      columns: z.object({ k: z.number().int(), total: z.number() }),
      onInvalidRows: "quarantine",
    });
    const outcome = await run([totals]);
    expect(outcome.steps[0]).toMatchObject({ status: "success", metadata: { rows: 2, invalidRows: 1, quarantinedRows: 1 } });
    expect(await rows(outcome.steps[0]!.metadata.location, "k")).toEqual([{ k: "1", total: 15 }, { k: "3", total: 1 }]);
    expect((await rows(outcome.steps[0]!.metadata.quarantine)).map((r) => [r.k, r.total, r._floe_reason])).toEqual([[2, "n/a", "total: cannot cast 'n/a' to DOUBLE"]]);
  });

  it("onInvalidRows fail names the count and shows examples; nothing is recorded", async () => {
    const strict = duckdbTable("strict", { sql: () => "SELECT 'x' AS id UNION ALL SELECT '2'", columns: z.object({ id: z.number().int() }) });
    const outcome = await run([strict]);
    expect(outcome.steps[0]).toMatchObject({ status: "failed", error: "1 invalid row in `strict` (onInvalidRows: \"fail\"), e.g. id: cannot cast 'x' to BIGINT" });
    expect(await store.latestMaterializations(["strict"])).toEqual([]);
  });

  it("an error check blocks downstream; a warn check only warns", async () => {
    const dupes = duckdbTable("dupes", {
      sql: () => "SELECT * FROM (VALUES (1, 'a'), (1, 'b'), (2, NULL)) t(id, name)",
      checks: [checks.notNull("name", { severity: "warn" }), checks.unique("id")],
    });
    const after = duckdbTable("after_dupes", { deps: [dupes], sql: ({ ref }) => `SELECT * FROM ${ref(dupes)}` });
    const outcome = await run([dupes, after]);
    expect(outcome.steps.map((s) => [s.asset, s.status])).toEqual([["dupes", "failed"], ["after_dupes", "upstream_failed"]]);
    expect(outcome.steps[0]!.error).toBe("check failed: unique(id): 1 duplicate values in id");
    const logs = (await store.getEvents(outcome.runId!)).filter((e) => e.type === "log").map((e) => [e.level, e.message]);
    expect(logs).toEqual([["warn", "check not_null(name) failed: 1 null values in name"], ["error", "check unique(id) failed: 1 duplicate values in id"]]);
  });

  it("SQL errors name the asset", async () => {
    const typo = duckdbTable("typo", { sql: () => "SELEC 1" });
    const missing = duckdbTable("missing_col", { sql: () => "SELECT 1 AS a", columns: z.object({ a: z.number(), b: z.string() }) });
    const unknown = duckdbTable("unknown_col", { deps: [source], sql: ({ ref }) => `SELECT nope FROM ${ref(source)}` });
    const outcome = await run([source, typo, missing, unknown]);
    const err = Object.fromEntries(outcome.steps.map((s) => [s.asset, s.error]));
    expect(err.typo).toMatch(/^SQL of `typo`: syntax error at or near /);
    expect(err.missing_col).toBe("SQL of `missing_col` returns no column `b`, which `columns` requires");
    expect(err.unknown_col).toMatch(/^SQL of `unknown_col`: Referenced column "nope" not found/);
  });

  it("a partitioned table reads the same partition of its upstream", async () => {
    const daily = partitions.daily({ start: "2025-01-01" });
    const events = duckdbTable("events", { partitions: daily, sql: ({ partition }) => `SELECT '${partition}' AS day, range AS n FROM range(3)` });
    const perDay = duckdbTable("per_day", { deps: [events], partitions: daily, sql: ({ ref }) => `SELECT day, count(*) AS n FROM ${ref(events)} GROUP BY day` });
    const all = duckdbTable("all_days", { deps: [events], sql: ({ ref }) => `SELECT count(*) AS n, count(DISTINCT day) AS days FROM ${ref(events)}` });
    const outcome = await run([events, perDay, all], undefined, { from: "2025-01-01", to: "2025-01-03" });
    expect(outcome.status).toBe("success");
    const day2 = outcome.steps.find((s) => s.asset === "per_day" && s.partition === "2025-01-02")!;
    expect(await rows(day2.metadata.location)).toEqual([{ day: "2025-01-02", n: "3" }]);
    expect(await rows(outcome.steps.find((s) => s.asset === "all_days")!.metadata.location)).toEqual([{ n: "9", days: "3" }]);
  });

  it("ref() of an unmaterialized upstream says to materialize it first", async () => {
    const lonely = duckdbTable("lonely", { sql: () => "SELECT 1 AS a" });
    const reader2 = duckdbTable("reads_lonely", { deps: [lonely], sql: ({ ref }) => `SELECT * FROM ${ref(lonely)}` });
    const outcome = await run([lonely, reader2], ["reads_lonely"]);
    expect(outcome.steps[0]!.error).toBe("`lonely` has not been materialized yet; materialize it first (select +reads_lonely)");
  });
});
