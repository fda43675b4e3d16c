import { describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import { plan } from "../../src/dag/plan.js";
import { invalidBackfillPolicy, stepUnits, type AssetBackfillPolicy } from "../../src/dag/ranges.js";

const noop = () => ({ metadata: {} });
const daily = partitions.daily({ start: "2025-01-01" });
const graph = AssetGraph.build([
  {
    module: "pipelines/p.ts",
    pipeline: pipeline("p", {
      assets: [
        asset("raw", { partitions: daily, materialize: noop }),
        asset("lake", { deps: ["raw"], partitions: daily, materialize: noop }),
        asset("report", { deps: ["lake"], partitions: daily, materialize: noop }),
        asset("summary", { deps: ["lake"], materialize: noop }),
      ],
    }),
  },
]);
const steps = plan(graph, new Set(["raw", "lake", "report", "summary"]), { from: "2025-01-01", to: "2025-01-05" }).steps;
const policies = (p: Record<string, AssetBackfillPolicy>) => (a: string) => p[a];

describe("stepUnits", () => {
  it("keeps one unit per step when no asset takes ranges", () => {
    const units = stepUnits(steps, policies({}));
    expect(units.map((u) => u.id)).toEqual(steps.map((s) => s.id));
    expect(units.every((u) => u.members.length === 1)).toBe(true);
  });

  it("hands every partition of a single-run asset to one unit that waits on all their upstreams", () => {
    const units = stepUnits(steps, policies({ lake: "single-run" }));
    const lake = units.filter((u) => u.asset === "lake");
    expect(lake.map((u) => u.id)).toEqual(["lake[2025-01-01…2025-01-05]"]);
    expect(lake[0]!.members.map((m) => m.partition)).toEqual(["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04", "2025-01-05"]);
    expect(lake[0]!.deps.sort()).toEqual(steps.filter((s) => s.asset === "raw").map((s) => s.id).sort());
    // downstream steps now wait on the range
    expect(units.find((u) => u.id === "report[2025-01-03]")!.deps).toEqual(["lake[2025-01-01…2025-01-05]"]);
    expect(units.find((u) => u.id === "summary")!.deps).toEqual(["lake[2025-01-01…2025-01-05]"]);
    // every step is in exactly one unit
    expect(units.flatMap((u) => u.members.map((m) => m.id)).sort()).toEqual(steps.map((s) => s.id).sort());
  });

  it("chunks by maxPartitionsPerRun, a lone last partition keeping its own id", () => {
    const units = stepUnits(steps, policies({ lake: { maxPartitionsPerRun: 2 }, raw: "single-run" }));
    expect(units.filter((u) => u.asset === "lake").map((u) => u.id)).toEqual(["lake[2025-01-01…2025-01-02]", "lake[2025-01-03…2025-01-04]", "lake[2025-01-05]"]);
    expect(units.find((u) => u.id === "lake[2025-01-05]")!.deps).toEqual(["raw[2025-01-01…2025-01-05]"]);
    expect(units.find((u) => u.id === "report[2025-01-04]")!.deps).toEqual(["lake[2025-01-03…2025-01-04]"]);
  });

  it("names what is wrong with a policy", () => {
    expect(invalidBackfillPolicy("single-run")).toBeUndefined();
    expect(invalidBackfillPolicy({ maxPartitionsPerRun: 3 })).toBeUndefined();
    expect(invalidBackfillPolicy({ maxPartitionsPerRun: 0 })).toMatch(/maxPartitionsPerRun must be a whole number ≥ 1, got 0/);
    expect(invalidBackfillPolicy("batch")).toMatch(/backfillPolicy must be "per-partition", "single-run" or \{ maxPartitionsPerRun: N \}, got "batch"/);
  });
});
