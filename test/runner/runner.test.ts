import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { asset, pipeline, type AssetOptions } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import { materialize, rerun, statusOf } from "../../src/runner/launch.js";
import type { StateStore } from "../../src/state/index.js";
import { testStore } from "../helpers/store.js";

// The runner is engine-agnostic: run it on real PostgreSQL when reachable, else embedded PGlite.
let store: StateStore;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  const t = await testStore("runner");
  store = t.store;
  cleanup = t.close;
});
afterAll(() => cleanup());

type Spec = Omit<AssetOptions, "materialize"> & { materialize?: AssetOptions["materialize"] };
function graphOf(spec: Record<string, Spec>) {
  const assets = Object.entries(spec).map(([key, s]) => asset(key, { materialize: () => ({ metadata: { key } }), ...s }));
  return AssetGraph.build([{ module: "pipelines/t.ts", pipeline: pipeline("t", { assets }) }]);
}
const all = (g: AssetGraph) => ({ assets: new Set(g.keys()), selection: "*" });
const byKey = (steps: Array<{ asset: string; partition: string | null; status: string }>) =>
  Object.fromEntries(steps.map((s) => [s.partition ? `${s.asset}[${s.partition}]` : s.asset, s.status]));

describe("executeRun", () => {
  it("a failed step fails its downstream while an independent branch goes on", async () => {
    const g = graphOf({
      a: {},
      bad: { deps: ["a"], materialize: () => { throw new Error("boom: bad input"); } },
      after_bad: { deps: ["bad"] },
      after_after: { deps: ["after_bad"] },
      ok: { deps: ["a"] },
    });
    const outcome = await materialize(store, g, all(g));
    expect(outcome.status).toBe("failed");
    expect(byKey(outcome.steps)).toEqual({ a: "success", bad: "failed", after_bad: "upstream_failed", after_after: "upstream_failed", ok: "success" });
    expect(outcome.steps.find((s) => s.asset === "bad")?.error).toBe("boom: bad input");
    const run = await store.getRun(outcome.runId!);
    expect(run.status).toBe("failed");
    const steps = await store.getSteps(run.id);
    expect(byKey(steps)).toEqual(byKey(outcome.steps));
    const types = (await store.getEvents(run.id)).map((e) => `${e.type}${e.asset ? ` ${e.asset}` : ""}`);
    expect(types[0]).toBe("run_created");
    expect(types).toContain("step_failed bad");
    expect(types).toContain("step_upstream_failed after_after");
    expect(types.at(-1)).toBe("run_failed");
    expect(types.filter((t) => t.startsWith("step_succeeded"))).toHaveLength(2);
  });

  it("retries with exponential backoff and records each attempt", async () => {
    let calls = 0;
    const g = graphOf({
      flaky: {
        retry: { maxAttempts: 3, delayMs: 10, backoff: 2 },
        materialize: () => {
          calls++;
          if (calls < 3) throw new Error(`transient ${calls}`);
          return { metadata: { calls } };
        },
      },
    });
    const outcome = await materialize(store, g, all(g));
    expect(outcome.status).toBe("success");
    expect(outcome.steps[0]).toMatchObject({ status: "success", attempts: 3, metadata: { calls: 3 } });
    const events = await store.getEvents(outcome.runId!);
    expect(events.filter((e) => e.type === "step_retry").map((e) => e.message)).toEqual(["flaky: retrying in 10 ms", "flaky: retrying in 20 ms"]);
    expect((await store.getSteps(outcome.runId!))[0]?.attempts).toBe(3);
  });

  it("never runs more steps at once than the concurrency", async () => {
    let active = 0;
    let peak = 0;
    const slow = async () => {
      active++;
      peak = Math.max(peak, active);
      await new Promise((r) => setTimeout(r, 15));
      active--;
      return {};
    };
    const g = graphOf(Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`s${i}`, { materialize: slow }])));
    const outcome = await materialize(store, g, all(g), { concurrency: 3 });
    expect(outcome.status).toBe("success");
    expect(peak).toBe(3);
  });

  it("gives ctx the run id, partition, logger and upstream metadata", async () => {
    const daily = partitions.daily({ start: "2025-01-01" });
    const seen: unknown[] = [];
    const g = graphOf({
      raw: { partitions: daily, materialize: (ctx) => ({ metadata: { rows: Number(ctx.partitionKey!.slice(-2)) } }) },
      orders: {
        deps: ["raw"],
        partitions: daily,
        materialize: (ctx) => {
          ctx.log.info("reading", { rows: ctx.upstream.raw?.metadata.rows });
          seen.push({ runId: ctx.runId, p: ctx.partitionKey, rows: ctx.upstream.raw?.metadata.rows });
          return { metadata: {} };
        },
      },
      total: {
        deps: ["orders", "raw"],
        materialize: (ctx) => ({ metadata: { days: ctx.upstreamPartitions("raw").map((m) => m.partition).sort() } }),
      },
    });
    const outcome = await materialize(store, g, { ...all(g), partitions: { from: "2025-01-02", to: "2025-01-03" } });
    expect(outcome.status).toBe("success");
    expect(seen).toEqual(
      expect.arrayContaining([
        { runId: outcome.runId, p: "2025-01-02", rows: 2 },
        { runId: outcome.runId, p: "2025-01-03", rows: 3 },
      ]),
    );
    expect(outcome.steps.find((s) => s.asset === "total")?.metadata).toEqual({ days: ["2025-01-02", "2025-01-03"] });
    const logs = (await store.getEvents(outcome.runId!)).filter((e) => e.type === "log");
    expect(logs.map((l) => [l.partition, l.data])).toEqual(
      expect.arrayContaining([["2025-01-02", { rows: 2 }], ["2025-01-03", { rows: 3 }]]),
    );
  });

  it("rerun --from-failure runs only failed and upstream-failed steps", async () => {
    const calls: string[] = [];
    let fail = true;
    const track = (key: string) => () => {
      calls.push(key);
      if (key === "mid" && fail) throw new Error("mid broke");
      return { metadata: { key } };
    };
    const g = graphOf({ root: { materialize: track("root") }, mid: { deps: ["root"], materialize: track("mid") }, leaf: { deps: ["mid"], materialize: track("leaf") }, side: { materialize: track("side") } });
    const first = await materialize(store, g, all(g));
    expect(first.status).toBe("failed");
    calls.length = 0;
    fail = false;
    const second = await rerun(store, g, first.runId!.slice(0, 8), { fromFailure: true });
    expect(second?.status).toBe("success");
    expect(calls.sort()).toEqual(["leaf", "mid"]);
    expect(byKey(second!.steps)).toEqual({ root: "reused", mid: "success", leaf: "success", side: "reused" }); // the contract's `reused`: carried over, not executed
    expect((await store.getRun(second!.runId)).parentRunId).toBe(first.runId);
    // nothing failed any more
    expect(await rerun(store, g, second!.runId, { fromFailure: true })).toBeNull();
  });

  it("--stale runs only stale or missing steps and what they feed", async () => {
    const calls: string[] = [];
    const track = (key: string) => () => {
      calls.push(key);
      return {};
    };
    const spec = (v: string) => ({ x: { materialize: track("x") }, y: { deps: ["x"], codeVersion: v, materialize: track("y") }, z: { deps: ["y"], materialize: track("z") }, w: { materialize: track("w") } });
    const g1 = graphOf(spec("1"));
    await materialize(store, g1, all(g1));
    expect((await statusOf(store, g1, ["x", "y", "z", "w"])).map((r) => r.status)).toEqual(["materialized", "materialized", "materialized", "materialized"]);
    calls.length = 0;
    const g2 = graphOf(spec("2"));
    expect((await statusOf(store, g2, ["y", "z"])).map((r) => r.status)).toEqual(["stale", "stale"]);
    const outcome = await materialize(store, g2, { ...all(g2), staleOnly: true });
    expect(calls.sort()).toEqual(["y", "z"]);
    expect(outcome.steps.map((s) => s.asset).sort()).toEqual(["y", "z"]);
    calls.length = 0;
    const again = await materialize(store, g2, { ...all(g2), staleOnly: true });
    expect(again).toEqual({ runId: null, status: "success", steps: [] });
    expect(calls).toEqual([]);
  });

  it("a canceled run skips what has not started", async () => {
    const controller = new AbortController();
    const g = graphOf({
      first: { materialize: async () => { controller.abort(); return {}; } },
      second: { deps: ["first"] },
    });
    const outcome = await materialize(store, g, all(g), { signal: controller.signal, concurrency: 1 });
    expect(outcome.status).toBe("canceled");
    expect(byKey(outcome.steps)).toEqual({ first: "success", second: "skipped" });
    expect((await store.getRun(outcome.runId!)).status).toBe("canceled");
  });
});
