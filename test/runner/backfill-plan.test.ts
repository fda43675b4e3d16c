import { describe, expect, it } from "vitest";
import { asset, pipeline, type AssetOptions } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitionMappings } from "../../src/dag/mappings.js";
import { partitions } from "../../src/dag/partitions.js";
import { windowIn } from "../../src/dag/plan.js";
import { parsePolicy, planBackfill } from "../../src/runner/backfill.js";

const noop = () => ({});
const daily = partitions.daily({ start: "2025-01-01", end: "2025-12-31" });
const monthly = partitions.monthly({ start: "2025-01", end: "2025-12" });
const hourly = partitions.hourly({ start: "2025-01-01T00", end: "2025-12-31T23" });
const build = (...assets: Array<[string, Partial<AssetOptions>]>) =>
  AssetGraph.build([{ module: "pipelines/b.ts", pipeline: pipeline("b", { assets: assets.map(([k, o]) => asset(k, { materialize: noop, ...o })) }) }]);

describe("a backfill over mixed partition definitions", () => {
  it("windowIn turns a range of one grain into the keys of another", () => {
    expect(windowIn(monthly, "2025-01-05", "2025-02-03")).toEqual(["2025-01", "2025-02"]);
    expect(windowIn(daily, "2025-01", "2025-02")).toEqual(["2025-01-01", "2025-02-28"]);
    expect(windowIn(hourly, "2025-03-01", "2025-03-02")).toEqual(["2025-03-01T00", "2025-03-02T23"]);
    expect(windowIn(daily, "2025-03-01T05", "2025-03-02T01")).toEqual(["2025-03-01", "2025-03-02"]);
    expect(windowIn(daily, "2025-03-01", "2025-03-02")).toEqual(["2025-03-01", "2025-03-02"]);
    expect(windowIn(partitions.static(["a", "b"]), "a", "b")).toEqual(["a", "b"]);
  });

  it("a month joins the run of the days it reads; no run depends on another", () => {
    const g = build(
      ["days", { partitions: daily }],
      ["months", { deps: ["days"], partitions: monthly, mappings: { days: partitionMappings.timeWindow() } }],
    );
    const runs = planBackfill(g, new Set(["days", "months"]), "2025-01-30", "2025-02-02", parsePolicy());
    expect(runs.map((r) => [r.partitionRange, r.steps.map((s) => `${s.asset}[${s.partition}]`)])).toEqual([
      ["2025-01-30…2025-01-31", ["days[2025-01-30]", "days[2025-01-31]", "months[2025-01]"]],
      ["2025-02-01…2025-02-02", ["days[2025-02-01]", "days[2025-02-02]", "months[2025-02]"]],
    ]);
    expect(planBackfill(g, new Set(["days", "months"]), "2025-01-30", "2025-02-02", parsePolicy("single-run"))).toHaveLength(1);
    // an identity chain stays one run per partition
    const chain = build(["a", { partitions: daily }], ["b", { deps: ["a"], partitions: daily }]);
    expect(planBackfill(chain, new Set(["a", "b"]), "2025-01-01", "2025-01-03", parsePolicy()).map((r) => r.partitionRange)).toEqual(["2025-01-01", "2025-01-02", "2025-01-03"]);
  });
});
