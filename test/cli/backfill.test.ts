import { afterAll, describe, expect, it } from "vitest";
import { StateStore } from "../../src/state/index.js";
import { floe, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";

const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const project = tempProject({
  "pipelines/a.ts": `import { asset, partitions, pipeline } from "floe";
export const daily = partitions.daily({ start: "2025-01-01" });
const raw = asset("raw", { partitions: daily, materialize: () => ({ metadata: { rows: 1 } }) });
const orders = asset("orders", { deps: [raw], partitions: daily, materialize: (ctx) => {
  if (process.env.FAIL_DAY === ctx.partitionKey) throw new Error("broken day");
  return {};
} });
export default pipeline("a", { assets: [raw, orders] });
`,
  "pipelines/b.ts": `import { asset, pipeline } from "floe";
import { daily } from "./a.ts";
export default pipeline("b", { assets: [asset("report", { deps: ["orders"], partitions: daily, materialize: () => ({}) }), asset("lookup", { materialize: () => ({}) })] });
`,
});
afterAll(async () => {
  project.remove();
  await db?.drop();
});

interface Out { backfillId: string; status: string; runs: Array<{ runId: string; status: string; partitions: string; steps: Array<{ asset: string; partition: string; status: string }> }> }

describe.skipIf(!db)("floe backfill", () => {
  it("backfills chained pipelines per partition, retries only the failed partition", async () => {
    const env = { FLOE_DATABASE_URL: db!.url };
    const first = await floe(["backfill", "--select", "pipeline:a+,not lookup", "--from", "2025-01-01", "--to", "2025-01-10", "--concurrency", "3", "--json"], { cwd: project.dir, env: { ...env, FAIL_DAY: "2025-01-04" } });
    expect(first.code, first.stderr).toBe(1);
    const out = JSON.parse(first.stdout) as Out;
    expect(out.status).toBe("failed");
    expect(out.runs).toHaveLength(10);
    const bad = out.runs.find((r) => r.status === "failed")!;
    expect(bad.partitions).toBe("2025-01-04");
    expect(bad.steps.map((s) => [s.asset, s.status])).toEqual([["raw", "success"], ["orders", "failed"], ["report", "upstream_failed"]]);

    // from the event log: every step starts after its own upstream partition succeeded, and
    // downstream partitions start before the whole upstream range is done
    const store = await StateStore.open({ url: db!.url, home: "/nonexistent" });
    try {
      const events = (await Promise.all(out.runs.map((r) => store.getEvents(r.runId)))).flat();
      const at = (type: string, asset: string, partition: string) => events.find((e) => e.type === type && e.asset === asset && e.partition === partition)?.id;
      for (const r of out.runs.filter((x) => x.status === "success")) {
        const p = r.partitions;
        expect(at("step_started", "orders", p)!).toBeGreaterThan(at("step_succeeded", "raw", p)!);
        expect(at("step_started", "report", p)!).toBeGreaterThan(at("step_succeeded", "orders", p)!);
      }
      expect(at("step_started", "report", "2025-01-01")!).toBeLessThan(at("step_succeeded", "raw", "2025-01-10")!);
    } finally {
      await store.close();
    }

    const retry = await floe(["backfill", "retry", out.backfillId.slice(0, 8), "--json"], { cwd: project.dir, env });
    expect(retry.code, retry.stderr).toBe(0);
    const again = JSON.parse(retry.stdout) as Out;
    expect(again.status).toBe("success");
    expect(again.runs).toHaveLength(10);
    const redo = again.runs.find((r) => r.partitions === "2025-01-04")!;
    expect(redo.runId).not.toBe(bad.runId);
    expect(redo.steps.map((s) => [s.asset, s.status])).toEqual([["raw", "success"], ["orders", "success"], ["report", "success"]]);

    const status = JSON.parse((await floe(["status", "--select", "report", "--json"], { cwd: project.dir, env })).stdout) as Array<{ partition: string; status: string }>;
    expect(status.filter((r) => r.partition <= "2025-01-10").every((r) => r.status === "materialized")).toBe(true);
  });

  it("chunks:N groups partitions into runs; cancel stops queued runs", async () => {
    const env = { FLOE_DATABASE_URL: db!.url };
    const r = await floe(["backfill", "--select", "raw", "--from", "2025-02-01", "--to", "2025-02-07", "--policy", "chunks:3", "--json"], { cwd: project.dir, env });
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as Out).runs.map((x) => x.partitions)).toEqual(["2025-02-01…2025-02-03", "2025-02-04…2025-02-06", "2025-02-07"]);
    const store = await StateStore.open({ url: db!.url, home: "/nonexistent" });
    try {
      const b = await store.createBackfill({ selection: "raw", from: "2025-03-01", to: "2025-03-02", policy: "per-partition", runs: [1, 2].map((d) => ({ trigger: "backfill", steps: [{ asset: "raw", partition: `2025-03-0${d}` }] })) });
      const c = await floe(["backfill", "cancel", b.id.slice(0, 8)], { cwd: project.dir, env });
      expect(c.stdout.trim()).toBe(`backfill ${b.id.slice(0, 8)} canceled: 2 run(s) will not run`);
      expect(await store.claimRun("w")).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it("live progress counts from the store; retry shows the total", async () => {
    const env = { FLOE_DATABASE_URL: db!.url };
    const first = await floe(["backfill", "--select", "raw orders", "--from", "2025-04-01", "--to", "2025-04-05", "--concurrency", "2"], { cwd: project.dir, env: { ...env, FAIL_DAY: "2025-04-03" } });
    expect(first.code, first.stderr).toBe(1);
    const progress = (err: string) => err.split("\n").filter((l) => l.startsWith("  progress: "));
    const lines = progress(first.stderr);
    expect(lines[0]).toMatch(/^ {2}progress: 0\/5 succeeded, \d+ (running|queued)/);
    expect(lines.at(-1)).toBe("  progress: 4/5 succeeded, 1 failed");
    expect(new Set(lines).size).toBe(lines.length); // a line per change, never the same twice in a row
    const id = /backfill ([0-9a-f]{8}):/.exec(first.stderr)![1]!;
    // the four partitions another process executed count from the start
    const retry = await floe(["backfill", "retry", id], { cwd: project.dir, env });
    expect(retry.code, retry.stderr).toBe(0);
    expect(retry.stderr).toContain(`backfill ${id}: 1 failed run(s) requeued; 4 of 5 run(s) already succeeded`);
    const again = progress(retry.stderr);
    expect(again[0]).toMatch(/^ {2}progress: 4\/5 succeeded, 1 (queued|running)$/);
    expect(again.at(-1)).toBe("  progress: 5/5 succeeded");
  });

  it("--priority orders the queue: materialize --queue and backfill", async () => {
    const env = { FLOE_DATABASE_URL: db!.url };
    const queued = await floe(["materialize", "--select", "lookup", "--queue", "--priority", "7", "--json"], { cwd: project.dir, env });
    expect(queued.code, queued.stderr).toBe(0);
    const { runId } = JSON.parse(queued.stdout) as { runId: string };
    const low = await floe(["backfill", "--select", "raw", "--from", "2025-05-01", "--to", "2025-05-01", "--priority", "-5", "--json"], { cwd: project.dir, env });
    expect(low.code, low.stderr).toBe(0);
    const { backfillId } = JSON.parse(low.stdout) as { backfillId: string };
    const store = await StateStore.open({ url: db!.url, home: "/nonexistent" });
    try {
      expect((await store.getRun(runId)).priority).toBe(7);
      expect((await store.backfillRuns(backfillId)).map((r) => r.priority)).toEqual([-5]);
      const normal = await floe(["backfill", "--select", "raw", "--from", "2025-05-02", "--to", "2025-05-02", "--json"], { cwd: project.dir, env });
      expect((await store.backfillRuns((JSON.parse(normal.stdout) as { backfillId: string }).backfillId)).map((r) => r.priority)).toEqual([-1]);
      expect((await store.claimRun("w"))?.id).toBe(runId);
    } finally {
      await store.close();
    }
  });

  it("bad input is a one-line error with exit 2", async () => {
    const env = { FLOE_DATABASE_URL: db!.url };
    const cases: Array<[string[], string]> = [
      [["backfill", "--select", "raw", "--from", "2025-01-05", "--to", "2025-01-01"], "floe: --from `2025-01-05` is after --to `2025-01-01`"],
      [["backfill", "--select", "lookup", "--from", "2025-01-01", "--to", "2025-01-02"], "floe: --from/--to given, but no selected asset is partitioned"],
      [["backfill", "--select", "raw", "--from", "2025-01-01", "--to", "2025-01-02", "--policy", "weekly"], "floe: unknown backfill policy `weekly`; use per-partition, single-run or chunks:N"],
      [["backfill", "--select", "raw", "--from", "2024-12-01", "--to", "2025-01-02"], "floe: partition `2024-12-01` is before the first partition `2025-01-01`"],
      [["backfill", "retry", "feedbeef"], "floe: unknown backfill `feedbeef`"],
      [["backfill", "--select", "raw", "--from", "2025-01-01", "--to", "2025-01-02", "--concurrency", "0"], "floe: --concurrency must be a positive whole number, got `0`"],
      [["worker", "--until-empty", "--metrics-port", "http"], "floe: --metrics-port must be a port number (0-65535), got `http`"],
      [["backfill", "--select", "raw"], "floe: floe backfill needs --select SEL --from KEY --to KEY (or `floe backfill retry <id>` / `floe backfill cancel <id>`)"],
      [["backfill", "--select", "raw", "--from", "2025-01-01", "--to", "2025-01-02", "--priority", "high"], "floe: --priority must be a whole number from -1000000 to 1000000, got `high`"],
      [["materialize", "--select", "lookup", "--queue", "--priority", "1.5"], "floe: --priority must be a whole number from -1000000 to 1000000, got `1.5`"],
      [["materialize", "--select", "lookup", "--priority", "3"], "floe: --priority orders the queue; use it with --queue (or with floe backfill)"],
      [["backfill", "cancel", "feedbeef"], "floe: unknown backfill `feedbeef`"],
    ];
    for (const [args, message] of cases) {
      const r = await floe(args, { cwd: project.dir, env });
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr.trim()).toBe(message);
    }
  });
});
