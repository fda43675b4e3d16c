import { describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import { linkSteps, plan } from "../../src/dag/plan.js";

const noop = () => ({ metadata: {} });
const daily = partitions.daily({ start: "2025-01-01" });
const graph = AssetGraph.build([
  {
    module: "pipelines/p.ts",
    pipeline: pipeline("p", {
      assets: [
        asset("ref", { materialize: noop }),
        asset("raw", { partitions: daily, materialize: noop }),
        asset("orders", { deps: ["raw", "ref"], partitions: daily, materialize: noop }),
        asset("report", { deps: ["orders"], materialize: noop }),
      ],
    }),
  },
]);

describe("plan", () => {
  it("plans asset × partition steps in topological generations with partition-aware deps", () => {
    const p = plan(graph, new Set(["ref", "raw", "orders", "report"]), { from: "2025-01-01", to: "2025-01-02" });
    expect(p.generations).toEqual([
      ["ref", "raw[2025-01-01]", "raw[2025-01-02]"],
      ["orders[2025-01-01]", "orders[2025-01-02]"],
      ["report"],
    ]);
    const deps = Object.fromEntries(p.steps.map((s) => [s.id, s.deps]));
    expect(deps["orders[2025-01-02]"]).toEqual(["raw[2025-01-02]", "ref"]);
    expect(deps["report"]).toEqual(["orders[2025-01-01]", "orders[2025-01-02]"]);
  });

  it("only links steps that are in the plan", () => {
    const p = plan(graph, new Set(["orders"]), { key: "2025-01-01" });
    expect(p.steps).toEqual([{ id: "orders[2025-01-01]", asset: "orders", partition: "2025-01-01", deps: [] }]);
  });

  it("asks for a partition when a partitioned asset is selected without one", () => {
    expect(() => plan(graph, new Set(["orders"]), undefined, new Date("2025-03-01T00:00:00Z"))).toThrow(
      "asset `orders` is partitioned (daily from 2025-01-01 (UTC)); pass --partition 2025-02-28 or --from KEY --to KEY",
    );
  });

  it("rejects a partition on unpartitioned selections and keys outside the range", () => {
    expect(() => plan(graph, new Set(["ref"]), { key: "2025-01-01" })).toThrow("--partition given, but no selected asset is partitioned");
    expect(() => plan(graph, new Set(["raw"]), { key: "2024-01-01" })).toThrow("partition `2024-01-01` is before the first partition `2025-01-01`");
    expect(() => plan(graph, new Set(["raw"]), { from: "2025-01-03", to: "2025-01-01" })).toThrow("--from `2025-01-03` is after --to `2025-01-01`");
  });

  it("linkSteps links a given subset (reruns)", () => {
    const p = linkSteps(graph, [
      { asset: "orders", partition: "2025-01-01" },
      { asset: "raw", partition: "2025-01-01" },
      { asset: "report", partition: null },
    ]);
    expect(p.steps.map((s) => [s.id, s.deps])).toEqual([
      ["raw[2025-01-01]", []],
      ["orders[2025-01-01]", ["raw[2025-01-01]"]],
      ["report", ["orders[2025-01-01]"]],
    ]);
  });
});
