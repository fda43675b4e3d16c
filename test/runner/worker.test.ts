import { afterAll, describe, expect, it } from "vitest";
import { sql } from "kysely";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { runWorker } from "../../src/runner/worker.js";
import { StateStore } from "../../src/state/index.js";
import { testDatabase } from "../helpers/pg.js";

// The runs table is the queue: several workers (each its own connection pool, as separate
// processes would have) drain it, and a run whose worker died is failed.
const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const stores: StateStore[] = [];
afterAll(async () => {
  for (const s of stores) await s.close();
  await db?.drop();
});
/** A 25 ms step that records how many of its kind ran at once. */
function concurrency(): { step: () => Promise<Record<string, never>>; peak: () => number } {
  let active = 0;
  let peak = 0;
  return {
    step: async () => {
      active++;
      peak = Math.max(peak, active);
      await new Promise((r) => setTimeout(r, 25));
      active--;
      return {};
    },
    peak: () => peak,
  };
}

const open = async (): Promise<StateStore> => {
  const s = await StateStore.open({ url: db!.url, home: "/nonexistent" });
  stores.push(s);
  return s;
};

describe.skipIf(!db)("workers on PostgreSQL", () => {
  it("three workers drain 60 queued runs, each run executed exactly once", async () => {
    const calls = new Map<string, number>();
    const graph = AssetGraph.build([{
      module: "q.ts",
      pipeline: pipeline("q", {
        assets: [asset("job", { materialize: async (ctx) => {
          calls.set(ctx.runId, (calls.get(ctx.runId) ?? 0) + 1);
          await new Promise((r) => setTimeout(r, 2));
          return {};
        } })],
      }),
    }]);
    const producer = await open();
    const ids: string[] = [];
    for (let i = 0; i < 60; i++) ids.push((await producer.createRun({ trigger: "manual", status: "queued", steps: [{ asset: "job", partition: null }] })).id);
    const workers = await Promise.all([open(), open(), open()]);
    const counts = await Promise.all(workers.map((s, i) => runWorker(s, graph, { workerId: `w${i}`, untilEmpty: true, runs: 2, heartbeatMs: 200 })));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(60);
    expect(counts.filter((c) => c > 0).length).toBeGreaterThan(1); // the work was shared
    expect([...calls.keys()].sort()).toEqual([...ids].sort());
    expect([...calls.values()].every((n) => n === 1)).toBe(true);
    const runs = await producer.listRuns({});
    expect(runs.filter((r) => ids.includes(r.id)).every((r) => r.status === "success")).toBe(true);
  });

  it("a run whose worker stopped heartbeating is failed; its steps say why", async () => {
    const s = await open();
    const run = await s.createRun({ trigger: "manual", status: "queued", steps: [{ asset: "a", partition: null }, { asset: "b", partition: null }] });
    const claimed = await s.claimRun("ghost");
    expect(claimed?.id).toBe(run.id);
    await s.writeBatch({ steps: [{ runId: run.id, asset: "a", partition: null, status: "running" }] });
    expect(await s.failStaleRuns(60_000)).toEqual([]); // still fresh
    await sql`update runs set heartbeat_at = now() - interval '1 minute' where id = ${run.id}`.execute(s.db);
    const dead = await s.failStaleRuns(30_000);
    expect(dead.map((r) => [r.id, r.status, r.error])).toEqual([[run.id, "failed", "worker ghost stopped heartbeating"]]);
    const steps = await s.getSteps(run.id);
    expect(steps.map((x) => [x.asset, x.status, x.error])).toEqual([["a", "failed", "its worker stopped heartbeating"], ["b", "skipped", null]]);
    expect((await s.getEvents(run.id)).map((e) => e.type)).toContain("run_failed");
    expect(await s.claimRun("other")).toBeUndefined();
  });
});

describe.skipIf(!db)("queue wake-up and recovery", () => {
  it("a worker in another process wakes on NOTIFY, long before its next poll", async () => {
    const graph = AssetGraph.build([{ module: "q.ts", pipeline: pipeline("w", { assets: [asset("wake_me", { materialize: () => ({}) })] }) }]);
    const [workerStore, producer] = [await open(), await open()];
    const controller = new AbortController();
    const done: string[] = [];
    const worker = runWorker(workerStore, graph, { workerId: "sleepy", pollMs: 60_000, signal: controller.signal, onRun: (r) => done.push(r.runId) });
    await new Promise((r) => setTimeout(r, 300)); // the worker found nothing and sleeps for a minute
    const t0 = Date.now();
    const run = await producer.createRun({ trigger: "manual", status: "queued", steps: [{ asset: "wake_me", partition: null }] });
    for (let i = 0; i < 500 && !done.includes(run.id); i++) await new Promise((r) => setTimeout(r, 20));
    const latency = Date.now() - t0;
    controller.abort();
    await worker;
    expect(done).toContain(run.id);
    expect(latency).toBeLessThan(10_000); // not a speed check: without the wake-up the run waits for the 60 s poll
  });

  it("a run whose worker died is failed, then requeued from failure once and completed", async () => {
    const calls: string[] = [];
    const graph = AssetGraph.build([{ module: "q.ts", pipeline: pipeline("r", { assets: [
      asset("first", { materialize: () => (calls.push("first"), {}) }),
      asset("second", { deps: ["first"], materialize: () => (calls.push("second"), {}) }),
    ] }) }]);
    const s = await open();
    const run = await s.createRun({ trigger: "manual", status: "queued", steps: [{ asset: "first", partition: null }, { asset: "second", partition: null }] });
    await s.claimRun("crashed-worker");
    await s.writeBatch({ steps: [
      { runId: run.id, asset: "first", partition: null, status: "success", metadata: {} },
      { runId: run.id, asset: "second", partition: null, status: "running" },
    ] });
    await sql`update runs set heartbeat_at = now() - interval '1 hour' where id = ${run.id}`.execute(s.db);
    const outcomes: string[] = [];
    await runWorker(s, graph, { workerId: "rescuer", untilEmpty: true, heartbeatMs: 1_000, onRun: (r) => outcomes.push(`${r.status}`) });
    expect((await s.getRun(run.id)).status).toBe("failed");
    const recovered = (await s.listRuns({})).find((r) => r.parentRunId === run.id)!;
    expect(recovered).toMatchObject({ status: "success", tags: { "floe/recovery": "1", "floe/from_failure": "true" } });
    expect(calls).toEqual(["second"]); // the step that had succeeded is reused
    expect(outcomes).toEqual(["success"]);
  });
});

describe.skipIf(!db)("pools", () => {
  it("three workers never run more steps of a pool at once than its limit", async () => {
    const load = concurrency();
    const graph = AssetGraph.build([{ module: "q.ts", pipeline: pipeline("p", { assets: [asset("heavy", { pool: "warehouse", materialize: load.step })] }) }]);
    const producer = await open();
    for (let i = 0; i < 24; i++) await producer.createRun({ trigger: "manual", status: "queued", steps: [{ asset: "heavy", partition: null }] });
    const workers = await Promise.all([open(), open(), open()]);
    const done = await Promise.all(workers.map((s, i) => runWorker(s, graph, { workerId: `p${i}`, untilEmpty: true, runs: 2, poolLimits: { warehouse: 2 } })));
    expect(done.reduce((a, b) => a + b, 0)).toBe(24);
    expect(load.peak()).toBe(2); // six runs at once were possible; the pool held them to two
    const { rows } = await sql<{ held: number }>`select count(*)::int as held from pool_slots where run_id is not null`.execute(producer.db);
    expect(rows[0]!.held).toBe(0);
  });
});

describe.skipIf(!db)("global cap", () => {
  it("maxConcurrentRuns holds across workers", async () => {
    const load = concurrency();
    const graph = AssetGraph.build([{ module: "q.ts", pipeline: pipeline("cap", { assets: [asset("capped", { materialize: load.step })] }) }]);
    const producer = await open();
    for (let i = 0; i < 18; i++) await producer.createRun({ trigger: "manual", status: "queued", steps: [{ asset: "capped", partition: null }] });
    const workers = await Promise.all([open(), open(), open()]);
    const done = await Promise.all(workers.map((s, i) => runWorker(s, graph, { workerId: `c${i}`, untilEmpty: true, runs: 2, maxRunning: 3, pollMs: 20 })));
    expect(done.reduce((a, b) => a + b, 0)).toBe(18);
    expect(load.peak()).toBeLessThanOrEqual(3);
    expect(load.peak()).toBeGreaterThan(1);
  });
});
