import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import type { AssetBackfillPolicy } from "../../src/dag/ranges.js";
import type { MaterializeResult, StepContext } from "../../src/dag/types.js";
import { driveBackfill, parsePolicy, planBackfill } from "../../src/runner/backfill.js";
import { materialize, rerun } from "../../src/runner/launch.js";
import type { StateStore } from "../../src/state/index.js";
import { testStore } from "../helpers/store.js";

// Ranged steps: an asset with a backfillPolicy gets a run's partitions in one materialize call,
// and each partition is still recorded as its own step.
let store: StateStore;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  const t = await testStore("ranges");
  store = t.store;
  cleanup = t.close;
});
afterAll(() => cleanup());

const daily = partitions.daily({ start: "2025-01-01" });
const days = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `2025-01-${String(from + i).padStart(2, "0")}`);

/** raw (per partition) → lake (ranged) → report (per partition), recording every call. */
function chain(policy: AssetBackfillPolicy, lake: (ctx: StepContext) => MaterializeResult | void = () => ({ metadata: { rows: 1 } })) {
  const calls: Array<{ asset: string; keys: readonly string[]; upstream: string[] }> = [];
  const graph = AssetGraph.build([{
    module: "pipelines/r.ts",
    pipeline: pipeline("r", {
      assets: [
        asset("raw", { partitions: daily, materialize: (ctx) => void calls.push({ asset: "raw", keys: ctx.partitionKeys, upstream: [] }) }),
        asset("lake", {
          deps: ["raw"], partitions: daily, backfillPolicy: policy,
          materialize: (ctx) => {
            calls.push({ asset: "lake", keys: ctx.partitionKeys, upstream: ctx.upstreamPartitions("raw").map((m) => m.partition!) });
            return lake(ctx);
          },
        }),
        asset("report", { deps: ["lake"], partitions: daily, materialize: (ctx) => void calls.push({ asset: "report", keys: ctx.partitionKeys, upstream: [] }) }),
      ],
    }),
  }]);
  return { graph, calls };
}
const statusByStep = (steps: Array<{ asset: string; partition: string | null; status: string }>) =>
  Object.fromEntries(steps.map((s) => [`${s.asset}[${s.partition}]`, s.status]));

describe("an asset with backfillPolicy single-run", () => {
  it("gets every partition of the run in one call, after all their upstreams, and records each partition", async () => {
    const { graph, calls } = chain("single-run");
    const outcome = await materialize(store, graph, { assets: new Set(graph.keys()), selection: "*", partitions: { from: "2025-01-01", to: "2025-01-05" } });
    expect(outcome.status).toBe("success");
    const lakeCalls = calls.filter((c) => c.asset === "lake");
    expect(lakeCalls).toEqual([{ asset: "lake", keys: days(1, 5), upstream: days(1, 5) }]);
    // the range started after every raw partition, and every report partition after the range
    const at = (a: string) => calls.map((c, i) => (c.asset === a ? i : -1)).filter((i) => i >= 0);
    expect(Math.max(...at("raw"))).toBeLessThan(at("lake")[0]!);
    expect(Math.min(...at("report"))).toBeGreaterThan(at("lake")[0]!);
    expect(calls.filter((c) => c.asset === "report").map((c) => c.keys)).toEqual(days(1, 5).map((d) => [d]));
    // five step rows and five materializations for lake, each with the range in its metadata
    const steps = (await store.getSteps(outcome.runId!)).filter((s) => s.asset === "lake");
    expect(steps.map((s) => [s.partition, s.status, s.metadata.partitionRange])).toEqual(days(1, 5).map((d) => [d, "success", "[2025-01-01…2025-01-05]"]));
    const mats = (await store.latestMaterializations(["lake"])).filter((m) => m.runId === outcome.runId);
    expect(mats.map((m) => m.partition).sort()).toEqual(days(1, 5));
  });

  it("fails one partition of the range alone when the call reports it, and its downstream only", async () => {
    const { graph } = chain("single-run", () => ({ metadata: { rows: 2 }, partitions: { "2025-01-03": { error: "late file for 2025-01-03" }, "2025-01-04": { metadata: { rows: 7 } } } }));
    const outcome = await materialize(store, graph, { assets: new Set(graph.keys()), selection: "*", partitions: { from: "2025-01-01", to: "2025-01-05" } });
    expect(outcome.status).toBe("failed");
    const s = statusByStep(outcome.steps);
    expect(s["lake[2025-01-03]"]).toBe("failed");
    expect(s["report[2025-01-03]"]).toBe("upstream_failed");
    for (const d of ["2025-01-01", "2025-01-02", "2025-01-04", "2025-01-05"]) {
      expect(s[`lake[${d}]`]).toBe("success");
      expect(s[`report[${d}]`]).toBe("success");
    }
    expect(outcome.steps.find((x) => x.asset === "lake" && x.partition === "2025-01-03")?.error).toBe("late file for 2025-01-03");
    expect(outcome.steps.find((x) => x.asset === "lake" && x.partition === "2025-01-04")?.metadata.rows).toBe(7);
    expect(outcome.steps.find((x) => x.asset === "lake" && x.partition === "2025-01-05")?.metadata.rows).toBe(2);
  });

  it("a thrown error fails the whole range; a rerun from failure hands over only the failed partitions", async () => {
    let fail = true;
    const { graph, calls } = chain("single-run", () => {
      if (fail) throw new Error("warehouse unavailable");
      return { metadata: {} };
    });
    const first = await materialize(store, graph, { assets: new Set(graph.keys()), selection: "*", partitions: { from: "2025-01-01", to: "2025-01-03" } });
    expect(Object.entries(statusByStep(first.steps)).filter(([k]) => k.startsWith("lake")).map(([, v]) => v)).toEqual(["failed", "failed", "failed"]);
    expect(statusByStep(first.steps)["report[2025-01-02]"]).toBe("upstream_failed");
    fail = false;
    calls.length = 0;
    const second = await rerun(store, graph, first.runId!, { fromFailure: true });
    expect(second?.status).toBe("success");
    expect(calls.filter((c) => c.asset === "raw")).toEqual([]); // reused
    expect(calls.filter((c) => c.asset === "lake").map((c) => c.keys)).toEqual([days(1, 3)]);
  });
});

describe("maxPartitionsPerRun and backfill policies", () => {
  it("a chunks:4 backfill over 10 days hands a maxPartitionsPerRun: 2 asset two days per call", async () => {
    const { graph, calls } = chain({ maxPartitionsPerRun: 2 });
    const runs = planBackfill(graph, new Set(graph.keys()), "2025-01-01", "2025-01-10", parsePolicy("chunks:4"), "*");
    expect(runs.map((r) => r.partitionRange)).toEqual(["2025-01-01…2025-01-04", "2025-01-05…2025-01-08", "2025-01-09…2025-01-10"]);
    const b = await store.createBackfill({ selection: "*", from: "2025-01-01", to: "2025-01-10", policy: "chunks:4", runs });
    const { backfill } = await driveBackfill(store, graph, b.id, { runs: 1, heartbeatMs: 200 });
    expect(backfill.status).toBe("success");
    expect(calls.filter((c) => c.asset === "lake").map((c) => c.keys).sort()).toEqual([
      days(1, 2), days(3, 4), days(5, 6), days(7, 8), days(9, 10),
    ]);
    expect(calls.filter((c) => c.asset === "raw")).toHaveLength(10);
  });

  it("a bad policy, or one on an unpartitioned asset, is an error naming the asset", () => {
    expect(() => asset("x", { partitions: daily, backfillPolicy: { maxPartitionsPerRun: 0 }, materialize: () => undefined })).toThrow(
      "asset `x`: backfillPolicy.maxPartitionsPerRun must be a whole number ≥ 1, got 0",
    );
    expect(() => asset("y", { backfillPolicy: "single-run", materialize: () => undefined })).toThrow("asset `y`: backfillPolicy needs partitions; the asset has none");
  });
});
