import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { icebergRead } from "icebird";
import { afterAll, describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { duckdbTable } from "../../src/assets/duckdb-table.js";
import { icebergTable } from "../../src/assets/iceberg-table.js";
import { rawFiles } from "../../src/assets/raw-files.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import type { AssetDefinition } from "../../src/dag/types.js";
import { loadTable } from "../../src/iceberg/table-writer.js";
import type { Catalog } from "../../src/iceberg/catalog.js";
import { materialize } from "../../src/runner/launch.js";
import { localStorage } from "../../src/storage/local-storage.js";
import { listFiles } from "../iceberg/helpers.js"; // also lets icebird fetch file:// URLs
import { testEngine } from "../helpers/engine.js";

const engine = await testEngine("ice");
const { store, pool, settings } = engine;
const landing = join(engine.home, "landing");
const warehouse = localStorage({ root: settings.warehouse });
afterAll(() => engine.close());

const put = (path: string, text: string) => {
  mkdirSync(join(landing, path, ".."), { recursive: true });
  writeFileSync(join(landing, path), text);
};
const run = (assets: AssetDefinition[], select: string[], partition?: string) =>
  materialize(
    store,
    AssetGraph.build([{ module: "t.ts", pipeline: pipeline("t", { assets }) }]),
    { assets: new Set(select), selection: "*", ...(partition ? { partitions: { key: partition } } : {}) },
    { resources: pool },
  );
const table = async (name: string, namespace = "lake") => {
  const catalog = await pool.get<Catalog>("iceberg");
  const t = await loadTable({ catalog, storage: warehouse, table: { namespace: [namespace], name } });
  if (!t) throw new Error(`no table ${namespace}.${name}`);
  return t;
};
const read = async (name: string, namespace = "lake") => icebergRead({ tableUrl: warehouse.uriOf(`iceberg/${namespace}/${name}`) });
/** Each data file's Parquet columns carry the table's field ids (DuckDB's parquet_schema). */
const expectFieldIds = async (name: string, files: readonly string[]) => {
  const fields = (await table(name)).metadata.schemas.at(-1)!.fields.map((f) => [f.name, f.id]);
  const { DuckDBInstance } = await import("@duckdb/node-api");
  const duck = await DuckDBInstance.create(":memory:");
  const con = await duck.connect();
  try {
    for (const f of files) {
      const ids = (await con.runAndReadAll(`SELECT name, field_id FROM parquet_schema('${join(settings.warehouse, f)}') WHERE column_id > 0`)).getRowObjectsJS();
      expect(ids.map((r) => [r.name, Number(r.field_id)])).toEqual(fields);
    }
  } finally {
    con.closeSync();
    duck.closeSync();
  }
};

describe("icebergTable", () => {
  const raw = rawFiles("raw_events", { storage: { type: "local", root: "landing" }, glob: "events/*.csv", format: "csv" });
  const events = icebergTable("lake.events", { from: raw });
  const assets = [raw, events];

  it("appends each raw batch exactly once, readable by an independent reader, with version-hint and catalog rows", async () => {
    put("events/a.csv", "id,name\n1,ada\n2,bob\n");
    put("events/b.csv", "id,name\n3,cy\n");
    const first = await run(assets, ["raw_events", "lake.events"]);
    expect(first.status).toBe("success");
    // staged CSV batches carry floe's lineage columns and no field ids: they are rewritten
    expect(first.steps[1]!.metadata).toMatchObject({ table: "lake.events", addedRecords: 3, rows: 3, partitionRows: 3, mode: "append", icebergAdoptedFiles: 0 });

    // Nothing new: no new snapshot.
    const again = await run(assets, ["raw_events", "lake.events"]);
    expect(again.steps[1]!.metadata).toMatchObject({ addedRecords: 0 });
    expect((await table("events")).metadata.snapshots).toHaveLength(1);

    put("events/c.csv", "id,name\n4,dee\n");
    const third = await run(assets, ["raw_events", "lake.events"]);
    expect(third.steps[1]!.metadata).toMatchObject({ addedRecords: 1, rows: 1, partitionRows: 4 });

    const t = await table("events");
    expect(t.metadata.snapshots).toHaveLength(2);
    // ids stay exact for readers that parse metadata with JSON.parse (icebird, iceberg-js)
    for (const snap of t.metadata.snapshots) expect(snap["snapshot-id"] > 0n && snap["snapshot-id"] < 2n ** 53n).toBe(true);
    expect(t.metadata.snapshots[1]!.summary).toMatchObject({ operation: "append", "floe.run-id": third.runId, "floe.asset": "lake.events", "total-records": "4" });
    const rows = (await read("events")).map((r) => [r.id, r.name]).sort();
    expect(rows).toEqual([["1", "ada"], ["2", "bob"], ["3", "cy"], ["4", "dee"]]);
    const meta = listFiles(join(settings.warehouse, "iceberg", "lake", "events", "metadata"));
    expect(meta).toContain("version-hint.text");
    const rowsOfCatalog = await store.db.selectFrom("iceberg_tables" as never).selectAll().execute();
    expect(rowsOfCatalog).toEqual([expect.objectContaining({ catalog_name: "floe", table_namespace: "lake", table_name: "events", iceberg_type: "TABLE" })]);
    // the steps' scratch (staged copies, data files before upload) is gone once they end
    const scratch = join(settings.home, "tmp");
    expect(existsSync(scratch) ? readdirSync(scratch, { recursive: true }) : []).toEqual([]);
  });

  it("overwrite-partition with no upstream rows commits nothing (no table of a placeholder column)", async () => {
    const none = rawFiles("raw_none", { storage: { type: "local", root: "landing" }, glob: "none/*.csv", format: "csv" });
    const lake = icebergTable("lake.none", { from: none, mode: "overwrite-partition" });
    const r = await run([none, lake], ["raw_none", "lake.none"]);
    expect(r.status, JSON.stringify(r.steps.map((x) => x.error))).toBe("success");
    expect(r.steps[1]!.metadata).toMatchObject({ addedRecords: 0 });
    const catalog = await pool.get<Catalog>("iceberg");
    const t = await loadTable({ catalog, storage: warehouse, table: { namespace: ["lake"], name: "none" } });
    expect(t?.metadata.snapshots ?? []).toEqual([]);
  });

  it("a recovered step appends the batches no snapshot holds, all of them, once", async () => {
    // Two ingestions whose Iceberg step never ran (the process died between steps).
    put("events/d.csv", "id,name\n5,eve\n");
    await run(assets, ["raw_events"]);
    put("events/e.csv", "id,name\n6,fay\n");
    await run(assets, ["raw_events"]);
    const recovered = await run(assets, ["lake.events"]);
    expect(recovered.steps[0]!.metadata).toMatchObject({ addedRecords: 2, partitionRows: 6 });
    // A second writer of the same table with the same upstream (a retried step, a rerun) finds
    // every batch committed and writes nothing.
    const twin = icebergTable("twin_events", { from: raw, table: "lake.events" });
    const dup = await run([raw, twin], ["twin_events"]);
    expect(dup.status).toBe("success");
    expect(dup.steps[0]!.metadata).toMatchObject({ addedRecords: 0 });
    expect(await read("events")).toHaveLength(6);
    expect((await table("events")).metadata.snapshots).toHaveLength(3);
  });

  const daily = partitions.daily({ start: "2025-01-01" });
  let version = 1;
  const typed = duckdbTable("typed", {
    partitions: daily,
    sql: ({ partition }) => `
      SELECT * FROM (VALUES
        (1::INTEGER, 10000000000::BIGINT, 1.5::DOUBLE, 12.34::DECIMAL(9,2), 'a', true, DATE '${partition}', TIMESTAMP '${partition} 10:00:00', TIMESTAMPTZ '${partition} 10:00:00+00'),
        (2::INTEGER, NULL::BIGINT, -2.25::DOUBLE, 0.01::DECIMAL(9,2), 'v${version}', false, DATE '${partition}', TIMESTAMP '${partition} 23:59:59', TIMESTAMPTZ '${partition} 23:59:59+00')
      ) t(i, l, d, dec, s, b, dt, ts, tstz)`,
  });
  const lake = icebergTable("lake.typed", { from: typed, partitionBy: [{ column: "dt", transform: "day" }], mode: "overwrite-partition" });

  it("overwrite-partition replaces only the partition it writes; every type reads back row-exact", async () => {
    for (const p of ["2025-01-01", "2025-01-02"]) expect((await run([typed, lake], ["typed", "lake.typed"], p)).status).toBe("success");
    version = 2;
    const redo = await run([typed, lake], ["typed", "lake.typed"], "2025-01-01");
    expect(redo.steps[1]!.metadata).toMatchObject({ addedRecords: 2, partitionRows: 2, icebergAdoptedFiles: 1, files: [expect.stringMatching(/^iceberg\/lake\/typed\/data\/dt_day=2025-01-01\//)] });
    // duckdbTable's output is Iceberg-ready: the table lists that very file, not a rewrite of it
    const upstream = readFileSync(join(settings.warehouse, String(redo.steps[0]!.metadata.location), "part-0.parquet"));
    const listed = readFileSync(join(settings.warehouse, String((redo.steps[1]!.metadata.files as string[])[0])));
    expect(listed.equals(upstream)).toBe(true);
    await expectFieldIds("typed", redo.steps[1]!.metadata.files as string[]);
    const rows = (await read("typed")).map((r: Record<string, unknown>): Record<string, unknown> => ({ ...r, dt: (r.dt as Date).toISOString().slice(0, 10), ts: (r.ts as Date).toISOString(), tstz: (r.tstz as Date).toISOString() }));
    const key = (r: Record<string, unknown>) => `${String(r.dt)}-${String(r.i)}`;
    rows.sort((a, b) => key(a).localeCompare(key(b)));
    expect(rows.map((r) => [r.dt, r.i, r.l, r.d, r.s, r.b, r.ts, r.tstz])).toEqual([
      ["2025-01-01", 1, 10000000000n, 1.5, "a", true, "2025-01-01T10:00:00.000Z", "2025-01-01T10:00:00.000Z"],
      ["2025-01-01", 2, null, -2.25, "v2", false, "2025-01-01T23:59:59.000Z", "2025-01-01T23:59:59.000Z"],
      ["2025-01-02", 1, 10000000000n, 1.5, "a", true, "2025-01-02T10:00:00.000Z", "2025-01-02T10:00:00.000Z"],
      ["2025-01-02", 2, null, -2.25, "v1", false, "2025-01-02T23:59:59.000Z", "2025-01-02T23:59:59.000Z"],
    ]);
    expect(rows.map((r) => Number(r.dec))).toEqual([12.34, 0.01, 12.34, 0.01]);
    const last = (await table("typed")).metadata.snapshots.at(-1)!;
    expect(last.summary).toMatchObject({ operation: "overwrite", "deleted-records": "2", "added-records": "2", "total-records": "4" });
  });

  it("a downstream table reads the Iceberg partition through ref()", async () => {
    const summary = duckdbTable("typed_summary", { deps: [lake], partitions: daily, sql: ({ ref }) => `SELECT count(*) AS n, max(s) AS s FROM ${ref(lake)}` });
    const out = await run([typed, lake, summary], ["typed_summary"], "2025-01-01");
    expect(out.status).toBe("success");
    expect(out.steps[0]!.metadata).toMatchObject({ rows: 1 });
    const { DuckDBInstance } = await import("@duckdb/node-api");
    const duck = await DuckDBInstance.create(":memory:");
    const con = await duck.connect();
    const got = (await con.runAndReadAll(`SELECT * FROM read_parquet('${join(settings.warehouse, String(out.steps[0]!.metadata.location))}/*.parquet')`)).getRowObjectsJS();
    con.closeSync();
    duck.closeSync();
    expect(got).toEqual([{ n: 2n, s: "v2" }]);
  });

  it("a plain asset queries the Iceberg partition with ctx.duckdb and ctx.ref (the DESIGN example)", async () => {
    const revenue = asset("typed_revenue", {
      deps: [lake],
      partitions: daily,
      async materialize(ctx) {
        const rows = await ctx.duckdb.all(`select count(*)::INT as n, sum(d) as total from ${ctx.ref(lake)}`);
        return { metadata: { n: rows[0]?.n, total: rows[0]?.total } };
      },
    });
    const out = await run([typed, lake, revenue], ["typed_revenue"], "2025-01-02");
    expect(out.status, JSON.stringify(out.steps)).toBe("success");
    expect(out.steps[0]!.metadata).toEqual({ n: 2, total: -0.75 });
    // one upstream, one token and one read per step, however often it is named
    const twice = asset("typed_twice", {
      deps: [lake],
      partitions: daily,
      async materialize(ctx) {
        const a = ctx.ref(lake);
        const b = ctx.ref(lake.key);
        const pairs = await ctx.duckdb.all(`select count(*)::INT as n from ${a} x join ${b} y on true`);
        const again = await ctx.duckdb.all(`select count(*)::INT as n from ${ctx.ref(lake)}`);
        return { metadata: { same: a === b, pairs: pairs[0]?.n, n: again[0]?.n } };
      },
    });
    const both = await run([typed, lake, twice], ["typed_twice"], "2025-01-02");
    expect(both.steps[0]!.metadata).toEqual({ same: true, pairs: 4, n: 2 });
    const undeclared = asset("sneaky", { async materialize(ctx) { ctx.ref(lake); } });
    const bad = await run([typed, lake, undeclared], ["sneaky"]);
    expect(bad.steps[0]!.error).toBe("`sneaky` reads `lake.typed` but does not declare it in deps; add it to deps");
  });

  it("a new upstream column is added with a new field id; a changed type fails naming the column and commits nothing", async () => {
    let extra = "";
    let idType = "INTEGER";
    const src = duckdbTable("evolving", { sql: () => `SELECT 1::${idType} AS id${extra}` });
    const t = icebergTable("lake.evolving", { from: src });
    expect((await run([src, t], ["evolving", "lake.evolving"])).status).toBe("success");
    extra = ", 'x' AS note";
    expect((await run([src, t], ["evolving", "lake.evolving"])).status).toBe("success");
    const schema = (await table("evolving")).metadata.schemas.at(-1)!;
    expect(schema.fields.map((f) => [f.name, f.id])).toEqual([["id", 1], ["note", 2]]);
    // the recomputed upstream replaced the asset's earlier rows; they read with the new column
    expect((await read("evolving")).map((r) => [r.id, r.note ?? null])).toEqual([[1, "x"]]);

    idType = "VARCHAR";
    const before = (await table("evolving")).metadata.snapshots.length;
    const bad = await run([src, t], ["evolving", "lake.evolving"]);
    expect(bad.status).toBe("failed");
    expect(bad.steps[1]!.error).toMatch(/^`lake\.evolving` \(Iceberg lake\.evolving\): .*"id"/);
    expect(bad.steps[1]!.error).not.toContain("\n");
    expect((await table("evolving")).metadata.snapshots).toHaveLength(before);
  });

  it("append from a table that recomputes its partition: a rematerialization replaces that partition's rows, once", async () => {
    let n = 2;
    const orders = duckdbTable("orders2", { partitions: daily, sql: ({ partition }) => `SELECT range AS id, '${partition}' AS day FROM range(${n})` });
    const lakeOrders = icebergTable("lake.orders2", { from: orders });
    for (const p of ["2025-01-01", "2025-01-02"]) await run([orders, lakeOrders], ["orders2", "lake.orders2"], p);
    n = 3;
    const again = await run([orders, lakeOrders], ["orders2", "lake.orders2"], "2025-01-01");
    expect(again.steps[1]!.metadata).toMatchObject({ addedRecords: 3, partitionRows: 3, icebergAdoptedFiles: 1 });
    await expectFieldIds("orders2", again.steps[1]!.metadata.files as string[]);
    // The Iceberg step alone, on the same upstream materialization (a retry, a recovered run): no new snapshot.
    const snapshots = (await table("orders2")).metadata.snapshots.length;
    const retry = await run([orders, lakeOrders], ["lake.orders2"], "2025-01-01");
    expect(retry.steps[0]!.metadata).toMatchObject({ addedRecords: 0, partitionRows: 3 });
    expect((await table("orders2")).metadata.snapshots).toHaveLength(snapshots);
    const rows = (await read("orders2")).map((r: Record<string, unknown>) => `${String(r.day)}#${String(r.id)}`).sort();
    expect(rows).toEqual(["2025-01-01#0", "2025-01-01#1", "2025-01-01#2", "2025-01-02#0", "2025-01-02#1"]);
  });

  it("rawFiles CSV into a table partitioned by day(ts): text date-times become timestamptz (UTC unless they say otherwise), read back by icebird and DuckDB", async () => {
    const rawClicks = rawFiles("raw_clicks", { storage: { type: "local", root: "landing" }, glob: "clicks/*.csv", format: "csv" });
    const clicks = icebergTable("lake.clicks", { from: rawClicks, partitionBy: [{ column: "ts", transform: "day" }] });
    // no zone (UTC), an offset, a zone name whose local day is not its UTC day, a date alone, a missing value
    put("clicks/a.csv", "id,ts\n1,2025-01-01 10:00:00\n2,2025-01-01T23:30:00+02:00\n3,2025-01-02 00:30:00 Europe/Paris\n4,2025-01-02\n5,\n");
    const first = await run([rawClicks, clicks], ["raw_clicks", "lake.clicks"]);
    expect(first.status, JSON.stringify(first.steps.map((x) => x.error))).toBe("success");
    expect(first.steps[1]!.metadata).toMatchObject({ addedRecords: 5, partitionRows: 5, icebergBatchesCommitted: 1, icebergBatchesFound: 0 });
    // a later file is cast the same way into the table's timestamptz column
    put("clicks/b.csv", "id,ts\n6,2025-01-02 23:59:59.5\n");
    const second = await run([rawClicks, clicks], ["raw_clicks", "lake.clicks"]);
    expect(second.steps[1]!.metadata).toMatchObject({ addedRecords: 1, partitionRows: 6 });

    const t = await table("clicks");
    expect(t.metadata.schemas.at(-1)!.fields.map((f) => [f.name, f.type])).toEqual([["id", "string"], ["ts", "timestamptz"]]);
    expect(t.metadata["partition-specs"][0]!.fields).toEqual([{ "source-id": 2, "field-id": 1000, name: "ts_day", transform: "day" }]);
    const expected = [
      ["1", "2025-01-01T10:00:00.000Z"],
      ["2", "2025-01-01T21:30:00.000Z"],
      ["3", "2025-01-01T23:30:00.000Z"],
      ["4", "2025-01-02T00:00:00.000Z"],
      ["5", null],
      ["6", "2025-01-02T23:59:59.500Z"],
    ];
    const viaIcebird = (await read("clicks")).map((r) => [r.id, r.ts instanceof Date ? r.ts.toISOString() : (r.ts ?? null)]).sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    expect(viaIcebird).toEqual(expected);

    // DuckDB reads the live data files: typed timestamptz, each file in the UTC day its folder names
    const files = second.steps[1]!.metadata.files as string[];
    const { DuckDBInstance } = await import("@duckdb/node-api");
    const duck = await DuckDBInstance.create(":memory:");
    const con = await duck.connect();
    try {
      await con.run("SET TimeZone = 'America/New_York'"); // the values are instants, whatever the reader's zone
      const list = `[${files.map((f) => `'${join(settings.warehouse, f)}'`).join(", ")}]`;
      const types = (await con.runAndReadAll(`SELECT column_type FROM (DESCRIBE SELECT ts FROM read_parquet(${list}))`)).getRowObjectsJS();
      expect(types).toEqual([{ column_type: "TIMESTAMP WITH TIME ZONE" }]);
      const got = (await con.runAndReadAll(`SELECT id, strftime(timezone('UTC', ts), '%Y-%m-%dT%H:%M:%S.%g') AS utc FROM read_parquet(${list}) ORDER BY id`)).getRowObjectsJS();
      expect(got.map((r) => [r.id, r.utc === null ? null : `${String(r.utc)}Z`])).toEqual(expected.map(([id, ts]) => [id, ts === null ? null : ts!.replace(/\.(\d{3})Z$/, ".$1Z")]));
      const days = (await con.runAndReadAll(`SELECT DISTINCT regexp_extract(filename, 'ts_day=([^/]+)', 1) AS folder, CAST(timezone('UTC', ts) AS DATE)::VARCHAR AS day FROM read_parquet(${list}, filename = true) ORDER BY ALL`)).getRowObjectsJS();
      expect(days).toEqual([{ folder: "2025-01-01", day: "2025-01-01" }, { folder: "2025-01-02", day: "2025-01-02" }, { folder: "null", day: null }]);
    } finally {
      con.closeSync();
      duck.closeSync();
    }

    // a value that is not a date-time fails the step with one line (column, value, fix); nothing is committed
    put("clicks/c.csv", "id,ts\n7,2025-01-03 08:00:00\n8,yesterday at noon\n");
    const snapshots = t.metadata.snapshots.length;
    const bad = await run([rawClicks, clicks], ["raw_clicks", "lake.clicks"]);
    expect(bad.status).toBe("failed");
    expect(bad.steps[1]!.error).toBe(
      "`lake.clicks` (Iceberg lake.clicks): column \"ts\" holds 'yesterday at noon', which is not a date-time (the table is partitioned by day(ts)); put a duckdbTable with a `columns` contract (ts: z.date()) between `raw_clicks` and `lake.clicks`",
    );
    expect((await table("clicks")).metadata.snapshots).toHaveLength(snapshots);
    expect(listFiles(join(settings.warehouse, "iceberg", "lake", "clicks", "data"))).toHaveLength(files.length); // no data file of the failed write stays
    expect(await read("clicks")).toHaveLength(6);
  });

  it("refuses a bad definition with one line", () => {
    expect(() => icebergTable("lake.x", { from: raw, mode: "upsert" as never })).toThrow('icebergTable `lake.x`: mode must be "append" or "overwrite-partition", got `upsert`');
    expect(() => icebergTable("lake.x", { from: raw, partitionBy: [{ column: "ts", transform: "week" as never }] })).toThrow("partitionBy[0].transform must be one of identity, year, month, day, hour, got `week`");
    expect(() => icebergTable("lake..x", { from: raw })).toThrow("table `lake..x` is not a valid Iceberg identifier");
    expect(() => icebergTable("lake.x", { from: undefined as never })).toThrow("`from` must be an asset or an asset key string");
  });
});
