import { describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import { assetStatuses } from "../../src/dag/staleness.js";

const noop = () => ({ metadata: {} });
const t = (n: number) => new Date(Date.UTC(2025, 5, 1, 0, 0, n));
const daily = partitions.daily({ start: "2025-01-01", end: "2025-01-02" });
const graph = (codeVersion?: string) =>
  AssetGraph.build([
    {
      module: "p.ts",
      pipeline: pipeline("p", {
        assets: [
          asset("a", { materialize: noop }),
          asset("b", { deps: ["a"], materialize: noop, ...(codeVersion ? { codeVersion } : {}) }),
          asset("c", { deps: ["b"], materialize: noop }),
          asset("d", { partitions: daily, materialize: noop }),
          asset("e", { deps: ["d"], materialize: noop }),
        ],
      }),
    },
  ]);
const mat = (asset: string, at: number, partition: string | null = null, codeVersion: string | null = null) => ({
  asset, partition, runId: `run-${asset}`, materializedAt: t(at), codeVersion,
});
const status = (rows: ReturnType<typeof assetStatuses>) => Object.fromEntries(rows.map((r) => [`${r.asset}${r.partition ? `[${r.partition}]` : ""}`, r.status]));

describe("assetStatuses", () => {
  it("missing, materialized, and stale when an upstream is newer, transitively", () => {
    const g = graph();
    const rows = assetStatuses(g, g.keys(), [mat("a", 5), mat("b", 3), mat("c", 4), mat("d", 1, "2025-01-01"), mat("e", 2)], []);
    expect(status(rows)).toEqual({ a: "materialized", b: "stale", c: "stale", "d[2025-01-01]": "materialized", "d[2025-01-02]": "missing", e: "materialized" });
    expect(rows.find((r) => r.asset === "b")?.reason).toBe("upstream `a` was materialized after it");
    expect(rows.find((r) => r.asset === "c")?.reason).toBe("upstream `b` is stale");
  });

  it("stale when the code version changed", () => {
    const g = graph("2");
    const rows = assetStatuses(g, ["b"], [mat("a", 1), mat("b", 2, null, "1")], []);
    expect(rows).toMatchObject([{ asset: "b", status: "stale", reason: "code version changed (1 → 2)" }]);
    expect(assetStatuses(g, ["b"], [mat("a", 1), mat("b", 2, null, "2")], [])[0]?.status).toBe("materialized");
  });

  it("an unpartitioned asset is stale when any partition it reads is newer", () => {
    const g = graph();
    const rows = assetStatuses(g, ["e"], [mat("d", 1, "2025-01-01"), mat("e", 2), mat("d", 3, "2025-01-02")], []);
    expect(rows[0]).toMatchObject({ status: "stale", reason: "upstream `d[2025-01-02]` was materialized after it" });
  });

  it("failed and running come from the latest step", () => {
    const g = graph();
    const rows = assetStatuses(g, ["a", "b", "c"], [mat("a", 1), mat("b", 2)], [
      { asset: "a", partition: null, runId: "r1", status: "failed", at: t(3) },
      { asset: "b", partition: null, runId: "r0", status: "failed", at: t(1) },
      { asset: "c", partition: null, runId: "r2", status: "running", at: t(3) },
    ]);
    expect(status(rows)).toEqual({ a: "failed", b: "materialized", c: "running" });
  });
});
