import { mkdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { pipeline } from "../../src/assets/asset.js";
import { duckdbTable } from "../../src/assets/duckdb-table.js";
import { rawFiles } from "../../src/assets/raw-files.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import type { AssetDefinition } from "../../src/dag/types.js";
import { materialize } from "../../src/runner/launch.js";
import { FileLedger } from "../../src/state/files.js";
import { testEngine } from "../helpers/engine.js";

const engine = await testEngine("raw");
const { store, pool } = engine;
const landing = join(engine.home, "landing");
afterAll(() => engine.close());

const put = (path: string, text: string, mtime?: Date) => {
  mkdirSync(join(landing, path, ".."), { recursive: true });
  writeFileSync(join(landing, path), text);
  if (mtime) utimesSync(join(landing, path), mtime, mtime);
};
const daily = partitions.daily({ start: "2025-01-01" });
const raw = (maxFailedFiles: number) =>
  rawFiles("raw_orders", { storage: { type: "local", root: "landing" }, glob: "orders/{partition}/*.csv", format: "csv", partitions: daily, maxFailedFiles, maxAttempts: 1 });
const orders = duckdbTable("orders", {
  deps: ["raw_orders"],
  partitions: daily,
  sql: ({ ref }) => `select id, amount from ${ref("raw_orders")}`,
  columns: z.object({ id: z.number().int(), amount: z.number() }),
});
const run = (assets: AssetDefinition[]) =>
  materialize(store, AssetGraph.build([{ module: "t.ts", pipeline: pipeline("t", { assets }) }]), { assets: new Set(assets.map((a) => a.key)), selection: "*", partitions: { key: "2025-01-01" } }, { resources: pool });

describe("rawFiles → duckdbTable", () => {
  it("ingests each file on its own; a corrupt file fails alone; nothing is ingested twice; a changed file replaces its old version", async () => {
    put("orders/2025-01-01/a.csv", "id,amount\n1,10\n2,20\n");
    put("orders/2025-01-01/b.csv", "id,amount\n3,30\n");
    put("orders/2025-01-01/bad.csv", "id,amount\n4,40,oops\n");
    put("orders/2025-01-02/c.csv", "id,amount\n9,90\n"); // another partition: not read
    const first = await run([raw(1), orders]);
    expect(first.status).toBe("success");
    expect(first.steps[0]!.metadata).toMatchObject({ files: 2, failedFiles: 1, rows: 3, listed: 3 });
    expect(first.steps[1]!.metadata).toMatchObject({ rows: 3 });
    const ledger = new FileLedger(store);
    expect((await ledger.list("raw_orders")).map((f) => [f.path, f.status, f.error])).toEqual([
      ["orders/2025-01-01/a.csv", "SUCCESS", null],
      ["orders/2025-01-01/b.csv", "SUCCESS", null],
      ["orders/2025-01-01/bad.csv", "FAILED", "line 2: expected 2 columns, found 3"],
    ]);
    // each ingested file keeps its own rows and bytes; a failed one has none
    expect((await ledger.list("raw_orders")).map((f) => [f.path, f.rows, f.bytes])).toEqual([
      ["orders/2025-01-01/a.csv", 2, 20],
      ["orders/2025-01-01/b.csv", 1, 15],
      ["orders/2025-01-01/bad.csv", null, null],
    ]);

    const again = await run([raw(1), orders]);
    expect(again.steps[0]!.metadata).toMatchObject({ files: 0, rows: 0 });
    expect(again.steps[1]!.metadata).toMatchObject({ rows: 3 }); // the partition's data, not duplicated

    put("orders/2025-01-01/a.csv", "id,amount\n1,11\n2,22\n5,55\n", new Date(Date.now() + 5_000));
    const changed = await run([raw(1), orders]);
    expect(changed.steps[0]!.metadata).toMatchObject({ files: 1, rows: 3 });
    expect(changed.steps[1]!.metadata).toMatchObject({ rows: 4 }); // a.csv's new version (3 rows) + b.csv
    expect((await ledger.list("raw_orders", { status: "SUCCESS" })).map((f) => [f.path, f.rows, f.bytes])).toEqual([
      ["orders/2025-01-01/a.csv", 3, 25],
      ["orders/2025-01-01/b.csv", 1, 15],
    ]);
  });

  it("more failed files than maxFailedFiles fails the step naming a file; the good files are not lost", async () => {
    put("orders/2025-01-01/worse.csv", "id,amount\n\"7,70\n");
    const out = await run([raw(0)]);
    expect(out.steps[0]!.status).toBe("failed");
    // bad.csv, failed (out of attempts) in the first test, counts too: the partition still holds it
    expect(out.steps[0]!.error).toMatch(/^2 files failed \(maxFailedFiles: 0\), e\.g\. orders\/2025-01-01\/worse\.csv: line 2: .* \(1 of them in an earlier run\); fix or remove the files, then run again$/);
  });

  it("a file listed (by a sensor) and deleted before the run lists the landing is forgotten, not failed; the others are ingested", async () => {
    const gone = rawFiles("raw_gone", { storage: { type: "local", root: "landing" }, glob: "gone/*.csv", format: "csv", maxFailedFiles: 1, maxAttempts: 1 });
    put("gone/keep.csv", "id\n1\n");
    put("gone/vanish.csv", "id\n2\n");
    const ledger = new FileLedger(store);
    await ledger.discover("raw_gone", null, [
      { key: "gone/keep.csv", etag: "x", size: 5, lastModified: new Date() },
      { key: "gone/vanish.csv", etag: "x", size: 5, lastModified: new Date() },
    ]); // listed (by a sensor, say), then deleted before the run reads it
    rmSync(join(landing, "gone", "vanish.csv"));
    const out = await materialize(store, AssetGraph.build([{ module: "t.ts", pipeline: pipeline("t", { assets: [gone] }) }]), { assets: new Set(["raw_gone"]), selection: "*" }, { resources: pool });
    expect(out.status).toBe("success");
    expect(out.steps[0]!.metadata).toMatchObject({ files: 1, failedFiles: 0, rows: 1, removedFiles: 1 });
    const files = await ledger.list("raw_gone");
    expect(files.map((f) => [f.path, f.status])).toEqual([["gone/keep.csv", "SUCCESS"]]);
  });
});

describe("rawFiles options", () => {
  it("a file error that quotes a resolved secret is stored redacted", async () => {
    const { resolveSecret, secret } = await import("../../src/secrets.js");
    process.env.FLOE_TEST_LEAKY_TOKEN = "tok-9f8e7d6c5b";
    const token = resolveSecret(secret("FLOE_TEST_LEAKY_TOKEN"));
    const leaky = rawFiles("raw_leaky", { storage: { type: "local", root: "landing" }, glob: "leaky/*.parquet", format: "parquet", maxFailedFiles: 1, maxAttempts: 1 });
    const ledger = new FileLedger(store);
    // the token in its name (say, a presigned key), and not Parquet: DuckDB's error names the path
    put(`leaky/${token}.parquet`, "not parquet at all");
    const out = await materialize(store, AssetGraph.build([{ module: "t.ts", pipeline: pipeline("t", { assets: [leaky] }) }]), { assets: new Set(["raw_leaky"]), selection: "*" }, { resources: pool });
    expect(out.steps[0]!.metadata).toMatchObject({ files: 0, failedFiles: 1 });
    const [f] = await ledger.list("raw_leaky");
    expect(f!.status).toBe("FAILED");
    expect(f!.error).toContain("leaky/***.parquet");
    expect(f!.error).not.toContain(token);
  });

  it("since: files modified before it are not listed, not recorded and not claimed", async () => {
    const old = new Date("2024-03-01T00:00:00Z");
    put("since/old.csv", "id\n1\n", old);
    put("since/new.csv", "id\n2\n3\n", new Date("2024-06-02T00:00:00Z"));
    const ledger = new FileLedger(store);
    // discovered before `since` was set: still not claimed (and, still in the landing, not forgotten)
    put("since/older.csv", "id\n7\n", old);
    await ledger.discover("raw_since", null, [{ key: "since/older.csv", etag: "x", size: 5, lastModified: old }]);
    const recent = rawFiles("raw_since", { storage: { type: "local", root: "landing" }, glob: "since/*.csv", format: "csv", since: "2024-06-01" });
    const out = await materialize(store, AssetGraph.build([{ module: "t.ts", pipeline: pipeline("t", { assets: [recent] }) }]), { assets: new Set(["raw_since"]), selection: "*" }, { resources: pool });
    expect(out.status).toBe("success");
    expect(out.steps[0]!.metadata).toMatchObject({ files: 1, rows: 2, listed: 1, ignoredBeforeSince: 2 }); // old.csv, older.csv
    expect((await ledger.list("raw_since")).map((f) => [f.path, f.status])).toEqual([["since/new.csv", "SUCCESS"], ["since/older.csv", "DISCOVERED"]]);
    // a Date works the same; moving `since` earlier picks the old files up
    const all = rawFiles("raw_since", { storage: { type: "local", root: "landing" }, glob: "since/*.csv", format: "csv", since: new Date("2024-01-01T00:00:00Z"), maxFailedFiles: 1 });
    const again = await materialize(store, AssetGraph.build([{ module: "t.ts", pipeline: pipeline("t", { assets: [all] }) }]), { assets: new Set(["raw_since"]), selection: "*" }, { resources: pool });
    expect(again.steps[0]!.metadata).toMatchObject({ files: 2, rows: 2, failedFiles: 0, ignoredBeforeSince: 0 }); // old.csv and older.csv
  });

  it("a bad since is a one-line error at definition", () => {
    const def = (since: unknown) => () => rawFiles("r", { storage: { type: "local", root: "x" }, glob: "*.csv", format: "csv", since: since as string });
    expect(def("yesterday")).toThrow('rawFiles `r`: since `yesterday` is not a date; expected a Date or an ISO 8601 string such as "2025-06-01" or "2025-06-01T00:00:00Z"');
    expect(def("2025-02-30")).toThrow("rawFiles `r`: since `2025-02-30` is not a date");
    expect(def(new Date("nope"))).toThrow("rawFiles `r`: since an invalid Date is not a date");
    expect(def(20250101)).toThrow("rawFiles `r`: since `20250101` is not a date");
    expect(def("2025-06-01T12:30:00+02:00")).not.toThrow();
  });
});

describe("rawFiles from S3", () => {
  it("ingests from an S3 prefix with the source's own credentials, resolved from secret()", async () => {
    const { s3Server, s3Credentials } = await import("../helpers/s3.js");
    const { s3Storage } = await import("../../src/storage/s3-storage.js");
    const { secret } = await import("../../src/secrets.js");
    const server = await s3Server("landing-bucket");
    try {
      const s3 = await s3Storage({ bucket: server.bucket, prefix: "drop", endpoint: server.endpoint, forcePathStyle: true, credentials: s3Credentials });
      await s3.write("events/2025-01-01/e1.ndjson", '{"id":1}\n{"id":2}\n');
      await s3.write("events/2025-01-01/e2.ndjson", '{"id":3}\n');
      process.env.FLOE_TEST_S3_KEY = s3Credentials.accessKeyId;
      process.env.FLOE_TEST_S3_SECRET = s3Credentials.secretAccessKey;
      const events = rawFiles("raw_events", {
        storage: { type: "s3", bucket: server.bucket, prefix: "drop", endpoint: server.endpoint, forcePathStyle: true, credentials: { accessKeyId: secret("FLOE_TEST_S3_KEY"), secretAccessKey: secret("FLOE_TEST_S3_SECRET") } },
        glob: "events/{partition}/*.ndjson",
        format: "ndjson",
        partitions: daily,
      });
      const counted = duckdbTable("event_count", { deps: [events], partitions: daily, sql: ({ ref }) => `select count(*) as n, sum(id) as total from ${ref(events)}` });
      const out = await run([events, counted]);
      expect(out.status, JSON.stringify(out.steps)).toBe("success");
      expect(out.steps[0]!.metadata).toMatchObject({ files: 2, rows: 3 });
      expect(out.steps[1]!.metadata).toMatchObject({ rows: 1 });
    } finally {
      await server.close();
    }
  });

  it("an unreachable source fails the step in one line and marks no file failed", async () => {
    const { FileLedger } = await import("../../src/state/files.js");
    const away = rawFiles("raw_away", {
      storage: { type: "s3", bucket: "away-bucket", endpoint: "http://127.0.0.1:1", forcePathStyle: true, credentials: { accessKeyId: "k", secretAccessKey: "s" } },
      glob: "*.csv", format: "csv",
    });
    const graph = AssetGraph.build([{ module: "t.ts", pipeline: pipeline("t", { assets: [away] }) }]);
    const out = await materialize(store, graph, { assets: new Set(["raw_away"]), selection: "raw_away" }, { resources: pool });
    expect(out.steps[0]!.error).toMatch(/^cannot reach S3 endpoint http:\/\/127\.0\.0\.1:1 \(/);
    expect(await new FileLedger(store).list("raw_away")).toEqual([]);
  });

  it("a bad storage config names the field", () => {
    expect(() => rawFiles("r", { storage: { type: "s3", bucket: "B!" }, glob: "*.csv", format: "csv" })).toThrow("rawFiles `r` storage.bucket: expected an S3 bucket name (3-63 of a-z 0-9 . -), got `B!`");
    expect(() => rawFiles("r", { storage: { type: "ftp" } as never, glob: "*.csv", format: "csv" })).toThrow('rawFiles `r` storage.type: expected "local" or "s3", got `ftp`');
    expect(() => rawFiles("r", { storage: { type: "s3", bucket: "ok-bucket", endpont: "http://x" } as never, glob: "*.csv", format: "csv" })).toThrow("rawFiles `r` storage.endpont: unknown field for s3 storage; did you mean `endpoint`?");
    expect(() => rawFiles("r", { storage: { type: "local", root: "x" }, glob: "*.csv", format: "xml" as never })).toThrow("rawFiles `r`: format `xml` is not one of csv, json, ndjson, parquet");
  });
});

describe("rows of raw files keep their place", () => {
  it("_floe_row is each row's number in its source file: an invalid row is named by file and row", async () => {
    put("orders/2025-01-05/x.csv", "id,amount\n1,10\n2,20\n3,abc\n4,40\n");
    put("orders/2025-01-05/y.csv", "id,amount\n5,oops\n");
    const strict = duckdbTable("strict_orders", {
      deps: ["raw_orders"],
      partitions: daily,
      sql: ({ ref }) => `select * from ${ref("raw_orders")}`,
      columns: z.object({ id: z.number().int(), amount: z.number() }),
    });
    const graph = AssetGraph.build([{ module: "t.ts", pipeline: pipeline("t", { assets: [raw(0), strict] }) }]);
    const out = await materialize(store, graph, { assets: new Set(["raw_orders", "strict_orders"]), selection: "*", partitions: { key: "2025-01-05" } }, { resources: pool });
    expect(out.steps.map((s) => [s.asset, s.status])).toEqual([["raw_orders", "success"], ["strict_orders", "failed"]]);
    expect(out.steps[1]!.error).toBe(
      "2 invalid rows in `strict_orders` (onInvalidRows: \"fail\"), e.g. orders/2025-01-05/x.csv row 3: amount: cannot cast 'abc' to DOUBLE; orders/2025-01-05/y.csv row 1: amount: cannot cast 'oops' to DOUBLE",
    );
  });
});
