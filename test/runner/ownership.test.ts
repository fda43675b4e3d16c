import { spawnSync } from "node:child_process";
import { hostname } from "node:os";
import { afterAll, describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import type { AssetDefinition } from "../../src/dag/types.js";
import { materialize, partitionRangeOf, rerun, rerunOf } from "../../src/runner/launch.js";
import { failDeadRuns, goneLocalOwners, processOwner } from "../../src/runner/liveness.js";
import { executeRun, type Resources } from "../../src/runner/runner.js";
import { resumeLater, runWorker } from "../../src/runner/worker.js";
import { storesOnOneDatabase } from "../helpers/store.js";

// A run is executed by exactly one process: created claimed when it runs where it was made,
// claimed from the queue otherwise; a run whose process is gone is failed without waiting.
const shared = await storesOnOneDatabase();
afterAll(() => shared.close());

const graphOf = (assets: AssetDefinition[]): AssetGraph => AssetGraph.build([{ module: "t.ts", pipeline: pipeline("t", { assets }) }]);
/** The pid of a process that has exited. */
const deadPid = (): number => {
  const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  return Number(r.stdout);
};
const noResources: Resources = { get: (name) => Promise.reject(new Error(`no resource ${name}`)) };

describe.skipIf(!shared.db)("run ownership on PostgreSQL", () => {
  it("a run materialized in-process is running and claimed from the moment it exists: an idle worker beside it never starts it", async () => {
    const [here, there] = [await shared.open(), await shared.open()];
    const starts = new Map<string, number>();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const graph = graphOf([asset("slow", { materialize: async (ctx) => {
      starts.set(ctx.runId, (starts.get(ctx.runId) ?? 0) + 1);
      await gate;
      return {};
    } })]);
    const stop = new AbortController();
    // the worker listens for NOTIFY on another connection pool, as another process would
    const worker = runWorker(there, graph, { workerId: "other-host:1", signal: stop.signal, pollMs: 20, heartbeatMs: 1_000 });
    const running = materialize(here, graph, { assets: new Set(["slow"]), selection: "slow" });
    for (let i = 0; i < 200 && starts.size === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const [run] = await here.listRuns({ limit: 1 });
    expect(run?.status).toBe("running");
    expect(await there.claimRun("other-host:1")).toBeUndefined();
    await new Promise((r) => setTimeout(r, 200)); // the worker had its NOTIFY and a few polls
    release();
    const outcome = await running;
    stop.abort();
    expect(await worker).toBe(0);
    expect(outcome.status).toBe("success");
    expect([...starts.values()]).toEqual([1]);
    const events = await here.getEvents(outcome.runId!);
    expect(events.filter((e) => e.type === "run_started")).toHaveLength(1);
  });

  it("executing a run another live process holds is refused, naming the holder", async () => {
    const store = await shared.open();
    const graph = graphOf([asset("a", { materialize: () => ({}) })]);
    const run = await store.createRun({ trigger: "manual", worker: "elsewhere:7", steps: [{ asset: "a", partition: null }] });
    await expect(executeRun(store, graph, run.id)).rejects.toThrow(`run ${run.id} is already being executed by elsewhere:7`);
    expect((await store.getRun(run.id)).status).toBe("running");
  });

  it("a run whose process on this host is gone is failed at once, not after three heartbeats", async () => {
    const store = await shared.open();
    const gone = `${hostname()}:${deadPid()}`;
    expect(goneLocalOwners([gone, processOwner(), "another-host:1"])).toEqual([gone]);
    const dead = await store.createRun({ trigger: "manual", worker: gone, steps: [{ asset: "a", partition: null }] });
    const alive = await store.createRun({ trigger: "manual", worker: processOwner(), steps: [{ asset: "a", partition: null }] });
    const failed = await failDeadRuns(store, 60_000);
    expect(failed.map((r) => r.id)).toContain(dead.id);
    expect(failed.map((r) => r.id)).not.toContain(alive.id);
    const after = await store.getRun(dead.id);
    expect(after.status).toBe("failed");
    expect(after.error).toBe(`worker ${gone} is gone (its process exited)`);
    expect((await store.getSteps(dead.id))[0]?.status).toBe("skipped");
  });

  it("a run failed as dead keeps its outcome: its former executor's late writes are not applied", async () => {
    const store = await shared.open();
    const gone = `${hostname()}:${deadPid()}`;
    const run = await store.createRun({ trigger: "manual", worker: gone, steps: [{ asset: "late", partition: null }] });
    await failDeadRuns(store, 60_000);
    const at = new Date();
    await store.writeBatch({
      runs: [{ id: run.id, status: "success", endedAt: at }],
      steps: [{ runId: run.id, asset: "late", partition: null, status: "success", endedAt: at }],
      materializations: [{ asset: "late", partition: null, runId: run.id, materializedAt: at, codeVersion: null, dataVersion: null, metadata: { rows: 1 } }],
    });
    expect((await store.getRun(run.id)).status).toBe("failed");
    expect((await store.getSteps(run.id))[0]?.status).toBe("skipped");
    expect(await store.latestMaterializations(["late"])).toEqual([]);
  });

  it("a worker's shutdown queues its interrupted run again from failure; a restarted worker finishes it", async () => {
    const store = await shared.open();
    const calls: string[] = [];
    const graph = graphOf([
      asset("first", { materialize: () => void calls.push("first") }),
      asset("second", { deps: ["first"], materialize: async (ctx) => {
        calls.push("second");
        if (calls.filter((c) => c === "second").length > 1) return; // resumed: done at once
        if (!ctx.signal.aborted) await new Promise((r) => ctx.signal.addEventListener("abort", r, { once: true }));
        throw new Error("stopped by shutdown");
      } }),
    ]);
    const run = await store.createRun({ trigger: "manual", steps: [{ asset: "first", partition: null }, { asset: "second", partition: null }] });
    const stop = new AbortController();
    const worker = runWorker(store, graph, { workerId: "w:1", signal: stop.signal, pollMs: 20, graceMs: 5_000 });
    for (let i = 0; i < 300 && !calls.includes("second"); i++) await new Promise((r) => setTimeout(r, 10));
    stop.abort();
    await worker;
    expect((await store.getRun(run.id)).status).toBe("canceled");
    const queued = (await store.listRuns({ status: ["queued"] })).filter((r) => r.parentRunId === run.id);
    expect(queued).toHaveLength(1);
    expect(queued[0]?.tags["floe/resumed_from"]).toBe(run.id);
    const steps = await store.getSteps(queued[0]!.id);
    expect(steps.map((s) => [s.asset, s.status])).toEqual([["first", "success"], ["second", "pending"]]);
    await runWorker(store, graph, { workerId: "w:2", untilEmpty: true });
    expect((await store.getRun(queued[0]!.id)).status).toBe("success");
    expect(calls).toEqual(["first", "second", "second"]);
    // nothing is resumed twice
    expect(await resumeLater(store, graph, await store.getRun(queued[0]!.id))).toBeUndefined();
  });

  it("a rerun from failure runs again a succeeded step whose partition has work waiting, and what reads it", async () => {
    const store = await shared.open();
    let waiting = true;
    const calls: string[] = [];
    const graph = graphOf([
      asset("raw", { materialize: () => void calls.push("raw") }),
      asset("lake", { deps: ["raw"], materialize: () => void calls.push("lake") }),
      asset("other", { materialize: () => void calls.push("other") }),
      asset("broken", { deps: ["other"], materialize: () => { throw new Error("boom"); } }),
    ].map((a) => (a.key === "raw" ? { ...a, pendingWork: (_ctx: unknown, partitions: ReadonlyArray<string | null>) => Promise.resolve(waiting ? partitions : []) } : a)));
    const first = await materialize(store, graph, { assets: new Set(["raw", "lake", "other", "broken"]), selection: "*" });
    expect(first.status).toBe("failed");
    calls.length = 0;
    const again = await rerun(store, graph, first.runId!, { fromFailure: true }, { resources: noResources });
    expect(again?.steps.map((s) => [s.asset, s.status])).toEqual([["raw", "success"], ["other", "reused"], ["lake", "success"], ["broken", "failed"]]);
    expect(calls.sort()).toEqual(["lake", "raw"]); // `other` reused; raw had files left, so it and lake ran
    waiting = false;
    calls.length = 0;
    await rerun(store, graph, again!.runId, { fromFailure: true }, { resources: noResources });
    expect(calls).toEqual([]); // only `broken` was left
  });
});

describe("rerunOf and partition ranges (pure)", () => {
  it("a queued run records the partitions it was asked for", () => {
    expect(partitionRangeOf({ key: "2025-01-03" })).toBe("2025-01-03");
    expect(partitionRangeOf({ from: "2025-01-01", to: "2025-01-07" })).toBe("2025-01-01…2025-01-07");
    expect(partitionRangeOf(undefined)).toBeNull();
  });

  it("with nothing failed and no work waiting, there is nothing to rerun", () => {
    const graph = graphOf([asset("a", { materialize: () => ({}) })]);
    const run = { id: "r1", status: "success" as const, trigger: "manual", selection: "a", partitionRange: null, parentRunId: null, backfillId: null, priority: 0, tags: {}, error: null, createdAt: new Date(), startedAt: null, endedAt: null };
    const steps = [{ runId: "r1", asset: "a", partition: null, status: "success" as const, attempts: 1, startedAt: null, endedAt: null, error: null, metadata: {} }];
    expect(rerunOf(graph, run, steps, { fromFailure: true })).toBeNull();
    expect(rerunOf(graph, run, steps, { fromFailure: true }, {}, new Set(["a"]))?.steps).toEqual([{ asset: "a", partition: null }]);
  });
});
