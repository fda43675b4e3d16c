import { afterAll, describe, expect, it } from "vitest";
import { pipeline } from "../../src/assets/asset.js";
import { duckdbTable } from "../../src/assets/duckdb-table.js";
import { icebergTable } from "../../src/assets/iceberg-table.js";
import { icebergRead } from "icebird";
import { AssetGraph } from "../../src/dag/graph.js";
import { builtinResources } from "../../src/project/plugins.js";
import { resourcePool } from "../../src/project/resources.js";
import { materialize } from "../../src/runner/launch.js";
import { s3Storage } from "../../src/storage/s3-storage.js";
import { testEngine } from "../helpers/engine.js";
import { s3Credentials, s3Server } from "../helpers/s3.js";

const engine = await testEngine("s3wh");
const server = await s3Server("warehouse-bucket");
afterAll(async () => {
  await engine.close();
  await server.close();
});

describe("an S3 warehouse", () => {
  it("tables are written to and read back from S3", async () => {
    const settings = { ...engine.settings, warehouse: `s3://${server.bucket}/wh`, warehouseS3: { endpoint: server.endpoint, forcePathStyle: true, credentials: s3Credentials } };
    const pool = resourcePool({ settings, store: engine.store }, builtinResources);
    try {
      const numbers = duckdbTable("numbers", { sql: () => "select range as n from range(10)" });
      const evens = duckdbTable("evens", { deps: [numbers], sql: ({ ref }) => `select n from ${ref(numbers)} where n % 2 = 0` });
      const graph = AssetGraph.build([{ module: "w.ts", pipeline: pipeline("w", { assets: [numbers, evens] }) }]);
      const out = await materialize(engine.store, graph, { assets: new Set(graph.keys()), selection: "*" }, { resources: pool });
      expect(out.status, JSON.stringify(out.steps)).toBe("success");
      expect(out.steps.map((s) => s.metadata.rows)).toEqual([10, 5]);
      const s3 = await s3Storage({ bucket: server.bucket, endpoint: server.endpoint, forcePathStyle: true, credentials: s3Credentials });
      const keys: string[] = [];
      for await (const page of s3.list("wh/tables/")) keys.push(...page.map((o) => o.key));
      expect(keys.filter((k) => k.endsWith("part-0.parquet")).map((k) => k.split("/")[2])).toEqual(["evens", "numbers"]);
    } finally {
      await pool.close();
    }
  });

  it("Iceberg tables on an S3 warehouse: committed, read back by an independent reader over the S3 protocol", async () => {
    const settings = { ...engine.settings, warehouse: `s3://${server.bucket}/wh`, warehouseS3: { endpoint: server.endpoint, forcePathStyle: true, credentials: s3Credentials } };
    const pool = resourcePool({ settings, store: engine.store }, builtinResources);
    // icebird reads s3:// paths as https://<bucket>.s3.amazonaws.com/<key>: send those to s3rver
    const realFetch = globalThis.fetch;
    const aws = `https://${server.bucket}.s3.amazonaws.com/`;
    globalThis.fetch = (input: string | URL | Request, init?: RequestInit) => {
      const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
      return realFetch(url.startsWith(aws) ? `${server.endpoint}/${server.bucket}/${url.slice(aws.length)}` : input, init);
    };
    try {
      let n = 5;
      const numbers = duckdbTable("s3_numbers", { sql: () => `select range::BIGINT as n, 'x' || range as label from range(${n})` });
      const lake = icebergTable("lake.s3_numbers", { from: numbers });
      const graph = AssetGraph.build([{ module: "w.ts", pipeline: pipeline("w", { assets: [numbers, lake] }) }]);
      const first = await materialize(engine.store, graph, { assets: new Set(graph.keys()), selection: "*" }, { resources: pool });
      expect(first.status, JSON.stringify(first.steps)).toBe("success");
      n = 7;
      const second = await materialize(engine.store, graph, { assets: new Set(graph.keys()), selection: "*" }, { resources: pool });
      expect(second.steps[1]!.metadata).toMatchObject({ addedRecords: 7, partitionRows: 7, icebergAdoptedFiles: 1 }); // the duckdbTable file, taken as written
      expect(String(second.steps[1]!.metadata.metadataLocation)).toMatch(new RegExp(`^s3://${server.bucket}/wh/iceberg/lake/s3_numbers/metadata/`));
      const rows = await icebergRead({ tableUrl: `s3://${server.bucket}/wh/iceberg/lake/s3_numbers` });
      expect(rows.map((r) => Number(r.n)).sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
      expect(rows.map((r) => String(r.label)).sort()).toEqual(["x0", "x1", "x2", "x3", "x4", "x5", "x6"]);
    } finally {
      globalThis.fetch = realFetch;
      await pool.close();
    }
  });

  it("a malformed s3 warehouse URL is a clear error", async () => {
    const pool = resourcePool({ settings: { ...engine.settings, warehouse: "s3://" }, store: engine.store }, builtinResources);
    await expect(pool.get("warehouse")).rejects.toThrow("warehouse `s3://` is not an s3://bucket/prefix URL");
  });
});
