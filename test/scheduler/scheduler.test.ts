import { afterAll, describe, expect, it } from "vitest";
import { sql } from "kysely";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import type { ScheduleDefinition } from "../../src/dag/types.js";
import { runScheduler } from "../../src/scheduler/scheduler.js";
import { schedulesOf, tickPlan } from "../../src/scheduler/schedules.js";
import { StateStore } from "../../src/state/index.js";
import { storesOnOneDatabase } from "../helpers/store.js";

const noop = () => ({});
const daily = partitions.daily({ start: "2025-01-01" });
const graphWith = (schedule: ScheduleDefinition) =>
  AssetGraph.build([{
    module: "pipelines/orders.ts",
    pipeline: pipeline("orders", { assets: [asset("raw", { partitions: daily, materialize: noop }), asset("orders", { deps: ["raw"], partitions: daily, materialize: noop })], schedule }),
  }]);

describe("schedules", () => {
  it("a daily schedule targets the partition that just closed", () => {
    const g = graphWith({ cron: "0 2 * * *" });
    const [s] = schedulesOf(g);
    const planned = tickPlan(g, s!, new Date("2025-01-05T02:00:00Z"))!;
    expect(planned.partition).toBe("2025-01-04");
    expect(planned.plan.steps.map((x) => x.id)).toEqual(["raw[2025-01-04]", "orders[2025-01-04]"]);
    expect(tickPlan(g, s!, new Date("2025-01-01T02:00:00Z"))).toBeUndefined(); // nothing closed yet
  });

  it("bad schedules are one-line errors naming the schedule", () => {
    expect(() => schedulesOf(graphWith({ cron: "61 * * * *" }))).toThrow("pipelines/orders.ts: schedule of pipeline `orders`: invalid cron `61 * * * *` (Invalid value for minute: 61)");
    expect(() => schedulesOf(graphWith({ cron: "0 2 * * *", timezone: "Mars/Base" }))).toThrow("pipelines/orders.ts: schedule of pipeline `orders`: unknown timezone `Mars/Base`");
    expect(() => schedulesOf(graphWith({ cron: "0 2 * * *", selection: "ordrs" }))).toThrow("pipelines/orders.ts: schedule of pipeline `orders`: unknown asset `ordrs`; did you mean `orders`?");
  });
});

const shared = await storesOnOneDatabase();
const { db, stores, open } = shared; // db is undefined only outside CI with no server: the suite is skipped
afterAll(() => shared.close());
const ticksOf = async (s: StateStore) =>
  (await sql<{ tick: string; runs: number }>`select tags->>'floe/tick' as tick, count(*)::int as runs from runs where trigger = 'schedule' group by 1 order by 1`.execute(s.db)).rows;

describe.skipIf(!db)("schedulers on one PostgreSQL", () => {
  it("two schedulers on a per-second cron run each tick exactly once", async () => {
    const g = AssetGraph.build([{ module: "p.ts", pipeline: pipeline("every_second", { assets: [asset("beat", { materialize: noop })], schedule: { cron: "* * * * * *" } }) }]);
    const [a, b] = [await open(), await open()];
    const controller = new AbortController();
    const created: string[] = [];
    const both = Promise.all([a, b].map((s) => runScheduler(s, g, { signal: controller.signal, onRun: (_n, t) => created.push(t.toISOString()) })));
    await new Promise((r) => setTimeout(r, 3_500));
    controller.abort();
    await both;
    const ticks = await ticksOf(a);
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    expect(ticks.every((t) => t.runs === 1)).toBe(true);
    expect(created.sort()).toEqual(ticks.map((t) => t.tick));
    // consecutive seconds, none skipped
    const secs = ticks.map((t) => Date.parse(t.tick) / 1000);
    expect(secs.every((s, i) => i === 0 || s === secs[i - 1]! + 1)).toBe(true);
  });

  it("catches up ticks missed while no scheduler ran", async () => {
    const s = await open();
    const mk = (name: string, catchUp: "all" | "latest" | "none") =>
      AssetGraph.build([{ module: "p.ts", pipeline: pipeline(name, { assets: [asset(`${name}_a`, { materialize: noop })], schedule: { cron: "*/10 * * * *", catchUp } }) }]);
    const hourAgo = new Date(Math.floor(Date.now() / 600_000) * 600_000 - 3_600_000);
    for (const name of ["all_missed", "latest_missed", "none_missed"]) {
      await s.createScheduledRun({ trigger: "schedule", status: "success", steps: [] }, { schedule: name, tickTime: hourAgo });
    }
    for (const [name, mode] of [["all_missed", "all"], ["latest_missed", "latest"], ["none_missed", "none"]] as const) {
      const controller = new AbortController();
      const runs: Date[] = [];
      const started = Date.now();
      const p = runScheduler(s, mk(name, mode), { signal: controller.signal, onRun: (_n, t) => runs.push(t) });
      await new Promise((r) => setTimeout(r, 200));
      controller.abort();
      await p;
      // A live tick can fire when the test straddles a ten-minute boundary; it is not a catch-up.
      const caughtUp = runs.filter((t) => t.getTime() <= started);
      const lastMissed = Math.floor(started / 600_000) * 600_000;
      const missed = (lastMissed - hourAgo.getTime()) / 600_000; // 6, or 7 past a boundary
      const expected = mode === "all" ? missed : mode === "latest" ? 1 : 0;
      expect(caughtUp.length, name).toBe(expected);
      if (mode !== "none") expect(caughtUp.at(-1)!.getTime()).toBe(lastMissed);
    }
  });
});

describe.skipIf(!db)("event retention", () => {
  it("the scheduler deletes events older than the retention and keeps recent ones", async () => {
    const s = await open();
    const run = await s.createRun({ trigger: "manual", steps: [] });
    await sql`insert into events (run_id, type, level, message, created_at) values
      (${run.id}, 'log', 'info', 'ancient', now() - interval '40 days'),
      (${run.id}, 'log', 'info', 'recent', now() - interval '5 days')`.execute(s.db);
    const g = AssetGraph.build([{ module: "p.ts", pipeline: pipeline("quiet", { assets: [asset("q", { materialize: noop })] }) }]);
    const controller = new AbortController();
    const p = runScheduler(s, g, { signal: controller.signal, eventRetentionDays: 30 });
    await new Promise((r) => setTimeout(r, 300));
    controller.abort();
    await p;
    const messages = (await s.getEvents(run.id)).map((e) => e.message);
    expect(messages).toContain("recent");
    expect(messages).not.toContain("ancient");
    expect(messages).toContain("run created: 0 steps");
  });
});
