import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { sql } from "kysely";
import { asset, defineAsset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import { driveBackfill } from "../../src/runner/backfill.js";
import { queueEager } from "../../src/runner/automation.js";
import { rerunOf } from "../../src/runner/launch.js";
import type { RunOutcome } from "../../src/runner/runner.js";
import { RUN_RETRIES_TAG, runWorker } from "../../src/runner/worker.js";
import { runScheduler } from "../../src/scheduler/scheduler.js";
import { StateStore } from "../../src/state/index.js";
import { storesOnOneDatabase } from "../helpers/store.js";

// The run queue on a real PostgreSQL: the backfill lane, cancels, priorities, dead-run recovery
// and set-based inserts. Each test starts from an empty runs table.
const shared = await storesOnOneDatabase();
const { db, stores, open } = shared; // db is undefined only outside CI with no server: the suite is skipped
afterAll(() => shared.close());
beforeEach(async () => {
  if (!db) return;
  const s = stores[0] ?? (await open());
  await sql`truncate runs, run_steps, events, backfills, schedule_ticks`.execute(s.db);
});

const daily = partitions.daily({ start: "2025-01-01" });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A backfill asset whose steps hold until `release()`, and a manual asset; both log their starts and ends. */
function heldGraph() {
  const log: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let active = 0;
  let peak = 0;
  const graph = AssetGraph.build([{
    module: "q.ts",
    pipeline: pipeline("q", {
      assets: [
        asset("held", {
          partitions: daily,
          materialize: async (ctx) => {
            log.push(`start ${ctx.partitionKey}`);
            peak = Math.max(peak, ++active);
            await gate;
            active--;
            log.push(`end ${ctx.partitionKey}`);
            return {};
          },
        }),
        asset("urgent", { materialize: () => (log.push("urgent"), {}) }),
      ],
    }),
  }]);
  return { graph, log, release, peak: () => peak };
}
const days = (n: number) => Array.from({ length: n }, (_, i) => `2025-01-0${i + 1}`);
const backfillOf = (store: StateStore, keys: readonly string[], priority?: number) =>
  store.createBackfill({
    selection: "held", from: keys[0]!, to: keys.at(-1)!, policy: "per-partition", ...(priority === undefined ? {} : { priority }),
    runs: keys.map((k) => ({ trigger: "backfill", partitionRange: k, steps: [{ asset: "held", partition: k }] })),
  });
const statuses = async (store: StateStore, backfillId: string): Promise<string[]> => (await store.backfillRuns(backfillId)).map((r) => r.status);

describe.skipIf(!db)("the backfill lane", () => {
  it("a worker busy with long backfill runs keeps its last slot: a manual run starts while they hold", async () => {
    const { graph, log, release, peak } = heldGraph();
    const store = await open();
    const b = await backfillOf(store, days(3));
    const controller = new AbortController();
    const worker = runWorker(store, graph, { workerId: "w", runs: 2, signal: controller.signal, pollMs: 50, heartbeatMs: 1_000 });
    try {
      await waitFor("the first backfill step to start", () => log.includes("start 2025-01-01"));
      const manual = await store.createRun({ trigger: "manual", selection: "urgent", steps: [{ asset: "urgent", partition: null }] });
      // the manual run completes while the backfill runs are still held: one running, two queued
      await waitFor("the manual run to succeed", async () => (await store.getRun(manual.id)).status === "success");
      expect(await statuses(store, b.id)).toEqual(["running", "queued", "queued"]);
      expect(log).toEqual(["start 2025-01-01", "urgent"]);
    } finally {
      release();
      await waitFor("the backfill to finish", async () => (await statuses(store, b.id)).every((s) => s === "success"));
      controller.abort();
      await worker;
    }
    expect(peak()).toBe(1); // a 2-slot worker gives backfills at most 2 - 1 slots
  });

  it("under maxConcurrentRuns backfill runs take at most cap - 1: another worker starts a manual run", async () => {
    const { graph, log, release } = heldGraph();
    const [a, b2, producer] = [await open(), await open(), await open()];
    const b = await backfillOf(producer, days(3));
    const controller = new AbortController();
    const workers = [a, b2].map((s, i) => runWorker(s, graph, { workerId: `cap${i}`, runs: 1, maxRunning: 2, signal: controller.signal, pollMs: 50, heartbeatMs: 1_000 }));
    try {
      await waitFor("a backfill step to start", () => log.some((l) => l.startsWith("start")));
      const manual = await producer.createRun({ trigger: "manual", selection: "urgent", steps: [{ asset: "urgent", partition: null }] });
      await waitFor("the manual run to succeed", async () => (await producer.getRun(manual.id)).status === "success");
      expect(await statuses(producer, b.id)).toEqual(["running", "queued", "queued"]);
    } finally {
      release();
      await waitFor("the backfill to finish", async () => (await statuses(producer, b.id)).every((s) => s === "success"));
      controller.abort();
      await Promise.all(workers);
    }
  });

  it("the backfill driver respects maxConcurrentRuns (its runs take at most cap - 1)", async () => {
    let active = 0;
    let peak = 0;
    const graph = AssetGraph.build([{ module: "q.ts", pipeline: pipeline("q", { assets: [asset("held", { partitions: daily, materialize: async () => {
      peak = Math.max(peak, ++active);
      await sleep(30);
      active--;
      return {};
    } })] }) }]);
    const store = await open();
    const b = await backfillOf(store, days(6));
    const out = await driveBackfill(store, graph, b.id, { runs: 4, maxRunning: 3, heartbeatMs: 1_000 });
    expect(out.backfill.status).toBe("success");
    expect(out.runs.map((r) => r.status)).toEqual(days(6).map(() => "success"));
    expect(peak).toBe(2);
  });
});

describe.skipIf(!db)("canceling a backfill", () => {
  it("a cancel while the driver runs stays canceled, and its queued runs are canceled", async () => {
    const canceler = await open();
    let id = "";
    const graph = AssetGraph.build([{ module: "q.ts", pipeline: pipeline("q", { assets: [asset("held", { partitions: daily, materialize: async () => {
      await canceler.setBackfillStatus(id, "canceled"); // what `floe backfill cancel` does, from another connection
      return {};
    } })] }) }]);
    const store = await open();
    id = (await backfillOf(store, days(3))).id;
    const out = await driveBackfill(store, graph, id, { runs: 1, heartbeatMs: 1_000 });
    expect(out.backfill.status).toBe("canceled");
    expect(out.runs.map((r) => r.status)).toEqual(["success", "canceled", "canceled"]);
    expect((await store.getBackfill(id)).status).toBe("canceled");
  });

  it("a driver settling the status never overwrites a cancel", async () => {
    const store = await open();
    const b = await backfillOf(store, days(2));
    expect(await store.setBackfillStatus(b.id, "canceled")).toBe("canceled");
    expect(await store.setBackfillStatus(b.id, "failed", { unlessCanceled: true })).toBe("canceled");
    expect((await store.getBackfill(b.id)).status).toBe("canceled");
    expect(await statuses(store, b.id)).toEqual(["canceled", "canceled"]);
    expect(await store.claimRun("w")).toBeUndefined();
  });
});

describe.skipIf(!db)("priorities", () => {
  it("workers claim by priority, then age; backfills default below normal; reruns keep theirs", async () => {
    const store = await open();
    const mk = (name: string, priority?: number) =>
      store.createRun({ trigger: "manual", selection: name, ...(priority === undefined ? {} : { priority }), steps: [{ asset: name, partition: null }] });
    const old = await mk("old_normal");
    const bf = await backfillOf(store, days(1));
    const low = await mk("low", -3);
    const high = await mk("high", 5);
    const young = await mk("young_normal", 0);
    const urgentBackfill = await backfillOf(store, ["2025-01-09"], 7);
    const [bfRun] = await store.backfillRuns(bf.id);
    const [urgentRun] = await store.backfillRuns(urgentBackfill.id);
    const order: string[] = [];
    for (let r = await store.claimRun("w"); r; r = await store.claimRun("w")) order.push(r.id);
    expect(order).toEqual([urgentRun!.id, high.id, old.id, young.id, bfRun!.id, low.id]);
    expect([high.priority, bfRun!.priority, urgentRun!.priority]).toEqual([5, -1, 7]);
    await store.writeBatch({ runs: [{ id: high.id, status: "failed" }] });
    const again = rerunOf(AssetGraph.build([{ module: "q.ts", pipeline: pipeline("q", { assets: [asset("high", { materialize: () => ({}) })] }) }]), await store.getRun(high.id), [], { fromFailure: false });
    expect(again?.priority).toBe(5);
  });

  it("a schedule's priority is on its tick runs", async () => {
    const store = await open();
    const graph = AssetGraph.build([{ module: "p.ts", pipeline: pipeline("pri", { assets: [asset("pri_a", { materialize: () => ({}) })], schedule: { cron: "*/10 * * * *", catchUp: "latest", priority: 3 } }) }]);
    await store.createScheduledRun({ trigger: "schedule", status: "success", steps: [] }, { schedule: "pri", tickTime: new Date(Date.now() - 3_600_000) });
    const controller = new AbortController();
    const p = runScheduler(store, graph, { signal: controller.signal });
    await waitFor("the catch-up tick", async () => (await store.listRuns({ status: ["queued"] })).length > 0);
    controller.abort();
    await p;
    expect((await store.listRuns({ status: ["queued"] })).map((r) => r.priority)).toEqual([3]);
  });
});

/** How many transactions created these runs: their `run_created` events (never updated) keep the xmin of the statement that wrote them. */
const transactions = async (store: StateStore, ids: readonly string[]): Promise<number> =>
  (await sql<{ n: number }>`select count(distinct xmin::text)::int as n from events where type = 'run_created' and run_id = any(${[...ids]}::text[])`.execute(store.db)).rows[0]!.n;

describe.skipIf(!db)("dead-run recovery", () => {
  it("requeues every dead run in one statement, each up to its retry policy", async () => {
    const graph = AssetGraph.build([{ module: "q.ts", pipeline: pipeline("q", { assets: [asset("job", { materialize: () => ({}) })] }) }]);
    const store = await open();
    const mk = (tags: Record<string, string>) => store.createRun({ trigger: "manual", tags, steps: [{ asset: "job", partition: null }] });
    const plain = await mk({});
    const second = await mk({ "floe/recovery": "1" }); // recovered once already
    const never = await mk({ [RUN_RETRIES_TAG]: "0" });
    const generous = await mk({ "floe/recovery": "2", [RUN_RETRIES_TAG]: "5" });
    const spent = await mk({ "floe/recovery": "2" });
    while (await store.claimRun("ghost"));
    await sql`update runs set heartbeat_at = now() - interval '1 hour'`.execute(store.db);
    await runWorker(store, graph, { workerId: "rescuer", untilEmpty: true, heartbeatMs: 1_000, recoveries: 2 });
    const runs = await store.listRuns({});
    const childOf = (id: string) => runs.find((r) => r.parentRunId === id);
    expect(childOf(plain.id)).toMatchObject({ status: "success", tags: { "floe/recovery": "1" } });
    expect(childOf(second.id)).toMatchObject({ status: "success", tags: { "floe/recovery": "2" } });
    expect(childOf(generous.id)).toMatchObject({ status: "success", tags: { "floe/recovery": "3", [RUN_RETRIES_TAG]: "5" } });
    expect(childOf(never.id)).toBeUndefined();
    expect(childOf(spent.id)).toBeUndefined(); // the worker's policy: at most 2
    const reruns = runs.filter((r) => r.parentRunId !== null).map((r) => r.id);
    expect(reruns).toHaveLength(3);
    expect(await transactions(store, reruns)).toBe(1);
  });

  it("a dead run of a canceled backfill is not requeued", async () => {
    const graph = AssetGraph.build([{ module: "q.ts", pipeline: pipeline("q", { assets: [asset("held", { partitions: daily, materialize: () => ({}) })] }) }]);
    const store = await open();
    const b = await backfillOf(store, days(2));
    await store.claimRun("ghost");
    await store.setBackfillStatus(b.id, "canceled");
    await sql`update runs set heartbeat_at = now() - interval '1 hour' where status = 'running'`.execute(store.db);
    await runWorker(store, graph, { workerId: "rescuer", untilEmpty: true, heartbeatMs: 1_000 });
    expect(await statuses(store, b.id)).toEqual(["failed", "canceled"]);
  });
});

describe.skipIf(!db)("set-based scheduling and automation", () => {
  it("catch-up `all` records every missed tick in one statement", async () => {
    const store = await open();
    const graph = AssetGraph.build([{ module: "p.ts", pipeline: pipeline("many", { assets: [asset("many_a", { materialize: () => ({}) })], schedule: { cron: "*/10 * * * *", catchUp: "all" } }) }]);
    const hourAgo = new Date(Math.floor(Date.now() / 600_000) * 600_000 - 3_600_000);
    await store.createScheduledRun({ trigger: "schedule", status: "success", steps: [] }, { schedule: "many", tickTime: hourAgo });
    const controller = new AbortController();
    const created: string[] = [];
    const started = Date.now();
    const p = runScheduler(store, graph, { signal: controller.signal, onRun: (_s, t, run) => t.getTime() <= started && created.push(run.id) });
    await waitFor("the catch-up", () => created.length >= 6);
    controller.abort();
    await p;
    expect(await transactions(store, created)).toBe(1);
    const ticks = (await store.listRuns({ status: ["queued"] })).map((r) => r.tags["floe/tick"]).filter((t) => Date.parse(t!) <= started);
    expect(new Set(ticks).size).toBe(created.length);
  });

  it("a sensor poll that finds three partitions queues their runs in one statement, skipping a busy one", async () => {
    const store = await open();
    await store.createRun({ trigger: "manual", steps: [{ asset: "watched", partition: "2025-01-02" }] }); // pending already
    const graph = AssetGraph.build([{ module: "s.ts", pipeline: pipeline("s", { assets: [defineAsset("watched", {
      kind: "watched",
      partitions: daily,
      sensor: { intervalMs: 100, poll: () => Promise.resolve(["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-03"]) },
      materialize: () => ({}),
    })] }) }]);
    const controller = new AbortController();
    const created: string[] = [];
    const p = runScheduler(store, graph, { signal: controller.signal, onRun: (_s, _t, run) => created.push(run.id) });
    await waitFor("a sensor tick", () => created.length > 0);
    controller.abort();
    await p;
    const runs = (await store.listRuns({})).filter((r) => r.trigger === "sensor");
    const firstTick = runs.filter((r) => created.slice(0, 2).includes(r.id));
    expect(firstTick.map((r) => r.partitionRange).sort()).toEqual(["2025-01-01", "2025-01-03"]);
    expect(await transactions(store, created.slice(0, 2))).toBe(1);
  });

  it("createScheduledRuns skips ticks already recorded or given twice", async () => {
    const store = await open();
    const t = (m: number) => new Date(Date.UTC(2025, 0, 1, 0, m));
    const run = (k: string) => ({ trigger: "sensor", partitionRange: k, steps: [{ asset: "held", partition: k }] });
    expect(await store.createScheduledRun(run("a"), { schedule: "sensor:held:a", tickTime: t(0) })).toBeDefined();
    const created = await store.createScheduledRuns([
      { run: run("a"), tick: { schedule: "sensor:held:a", tickTime: t(0) } }, // recorded before
      { run: run("b"), tick: { schedule: "sensor:held:b", tickTime: t(0) } },
      { run: run("b"), tick: { schedule: "sensor:held:b", tickTime: t(0) } }, // twice in one batch
      { run: run("c"), tick: { schedule: "sensor:held:c", tickTime: t(0) } },
    ]);
    expect(created.map((r) => r.partitionRange)).toEqual(["b", "c"]);
    expect(await transactions(store, created.map((r) => r.id))).toBe(1);
    expect((await store.getSteps(created[1]!.id)).map((s) => [s.asset, s.partition, s.status])).toEqual([["held", "c", "pending"]]);
  });

  it("latestStepStates reads only the asked asset partitions; queueEager skips only busy ones", async () => {
    const store = await open();
    const graph = AssetGraph.build([{ module: "e.ts", pipeline: pipeline("e", { assets: [
      asset("up", { partitions: daily, materialize: () => ({}) }),
      asset("down", { deps: ["up"], partitions: daily, automation: "eager", materialize: () => ({}) }),
    ] }) }]);
    // an older pending step of down[2025-01-01] and down[2025-01-03]
    await store.createRun({ trigger: "manual", steps: [{ asset: "down", partition: "2025-01-01" }, { asset: "down", partition: "2025-01-03" }] });
    const states = await store.latestStepStates(undefined, [{ asset: "down", partition: "2025-01-01" }, { asset: "down", partition: "2025-01-02" }]);
    expect(states.map((s) => [s.asset, s.partition, s.status])).toEqual([["down", "2025-01-01", "pending"]]);
    const outcome: RunOutcome = {
      runId: "r", status: "success",
      steps: ["2025-01-01", "2025-01-02"].map((p) => ({ asset: "up", partition: p, status: "success", metadata: {}, attempts: 1, durationMs: 1 })),
    };
    const queued = await queueEager(store, graph, outcome);
    expect((await store.getSteps(queued!.id)).map((s) => s.partition)).toEqual(["2025-01-02"]);
  });
});
