import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { floe, pipelineModule, repoRoot, tempProject } from "../helpers/project.js";

// The embedded default: no FLOE_DATABASE_URL, PGlite under <project>/.floe owned by one process.
const modules = {
  "pipelines/orders.ts": `import { asset, partitions, pipeline } from "floe";
export const daily = partitions.daily({ start: "2025-01-01" });
export const raw = asset("raw_orders", { partitions: daily, materialize: (ctx) => ({ metadata: { rows: 10, day: ctx.partitionKey } }) });
export const orders = asset("orders", {
  deps: [raw], partitions: daily, retry: { maxAttempts: 2, delayMs: 5 },
  materialize: (ctx) => {
    if (process.env.FAIL_DAY === ctx.partitionKey) throw new Error("bad rows on " + ctx.partitionKey);
    return { metadata: { rows: ctx.upstream.raw_orders?.metadata.rows } };
  },
});
export default pipeline("orders", { assets: [raw, orders] });
`,
  "pipelines/analytics.ts": `import { asset, pipeline } from "floe";
export const summary = asset("summary", { deps: ["orders"], tags: ["finance"], materialize: (ctx) => ({ metadata: { days: ctx.upstreamPartitions("orders").length } }) });
export default pipeline("analytics", { assets: [summary] });
`,
};

const project = tempProject(modules);
afterAll(() => project.remove());
const run = (args: string[], env: Record<string, string | undefined> = {}) => floe(args, { cwd: project.dir, env });

describe("floe CLI on the embedded store", () => {
  it("materializes, fails a partition, reruns from failure, and reports status", async () => {
    const first = await run(["materialize", "--select", "*", "--from", "2025-01-01", "--to", "2025-01-03", "--json"], { FAIL_DAY: "2025-01-02" });
    expect(first.code, first.stderr).toBe(1);
    const out = JSON.parse(first.stdout) as { runId: string; status: string; steps: Array<{ asset: string; partition: string | null; status: string; metadata: Record<string, unknown>; error?: string }> };
    expect(out.status).toBe("failed");
    const st = Object.fromEntries(out.steps.map((s) => [`${s.asset}${s.partition ? `[${s.partition}]` : ""}`, s.status]));
    expect(st).toEqual({
      "raw_orders[2025-01-01]": "success", "raw_orders[2025-01-02]": "success", "raw_orders[2025-01-03]": "success",
      "orders[2025-01-01]": "success", "orders[2025-01-02]": "failed", "orders[2025-01-03]": "success", summary: "upstream_failed",
    });
    expect(out.steps.find((s) => s.status === "failed")?.error).toBe("bad rows on 2025-01-02");
    expect(out.steps.find((s) => s.partition === "2025-01-03" && s.asset === "orders")?.metadata).toEqual({ rows: 10 });

    const status = await run(["status", "--json", "--select", "orders"]);
    expect(status.code).toBe(0);
    const rows = (JSON.parse(status.stdout) as Array<{ asset: string; partition: string; status: string; lastRunId: string | null; lastMaterializedAt: string | null }>)
      .filter((r) => r.partition <= "2025-01-04");
    expect(rows.map((r) => [r.partition, r.status])).toEqual([["2025-01-01", "materialized"], ["2025-01-02", "failed"], ["2025-01-03", "materialized"], ["2025-01-04", "missing"]]);
    expect(rows[0]!.lastRunId).toBe(out.runId);
    expect(rows[0]!.lastMaterializedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    const text = await run(["status"]);
    expect(text.stdout).toMatch(/orders\s+2025-01-01 materialized, 2025-01-02 failed, 2025-01-03 materialized, 2025-01-04…\d{4}-\d\d-\d\d missing \(\d+\)/);

    const detail = await run(["run", out.runId.slice(0, 8)]);
    expect(detail.code).toBe(0);
    expect(detail.stdout).toContain("orders[2025-01-02]");
    expect(detail.stdout).toMatch(/✗ failed\s+2 .*bad rows on 2025-01-02/);

    const again = await run(["rerun", out.runId.slice(0, 8), "--from-failure", "--json"]);
    expect(again.code, again.stderr).toBe(0);
    const rerun = JSON.parse(again.stdout) as typeof out;
    expect(rerun.status).toBe("success");
    expect(rerun.steps.filter((s) => s.status === "success").map((s) => `${s.asset}[${s.partition ?? ""}]`)).toEqual(["orders[2025-01-02]", "summary[]"]);
    expect(rerun.steps.filter((s) => s.status === "reused")).toHaveLength(5); // carried over from the parent run, not executed
    const shown = await run(["run", rerun.runId.slice(0, 8), "--json"]);
    const steps = (JSON.parse(shown.stdout) as { steps: Array<{ status: string; reusedFrom?: string }> }).steps;
    expect(steps.filter((s) => s.status === "reused").map((s) => s.reusedFrom)).toEqual(Array(5).fill(out.runId));
    expect(rerun.steps.find((s) => s.asset === "summary")?.metadata).toEqual({ days: 3 });

    const nothing = await run(["rerun", rerun.runId, "--from-failure"]);
    expect(nothing.code).toBe(0);
    expect(nothing.stdout.trim()).toBe(`run ${rerun.runId.slice(0, 8)} has no failed steps; nothing to rerun`);

    const runs = JSON.parse((await run(["runs", "--json"])).stdout) as Array<{ runId: string; status: string; trigger: string; parentRunId: string | null }>;
    expect(runs.map((r) => [r.status, r.trigger])).toEqual([["success", "rerun"], ["failed", "manual"]]);
    expect(runs[0]!.parentRunId).toBe(out.runId);
  });

  it("refuses a store owned by a live process, naming its pid; takes over a stale lock", async () => {
    const holder = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
    try {
      mkdirSync(join(project.dir, ".floe"), { recursive: true });
      writeFileSync(join(project.dir, ".floe", "state.lock"), JSON.stringify({ pid: holder.pid, hostname: (await import("node:os")).hostname(), startedAt: new Date().toISOString(), owner: "floe dev" }));
      const r = await run(["runs"]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toContain(`in use by process ${holder.pid}`);
    } finally {
      holder.kill("SIGKILL");
    }
    await new Promise((r) => holder.once("exit", r));
    const r = await run(["runs", "--json"]); // the lock now names a dead pid
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toHaveLength(2);
  });

  it("--dry-run prints the plan and touches no state", async () => {
    const r = await run(["materialize", "--select", "+summary", "--from", "2025-01-01", "--to", "2025-01-02", "--dry-run", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const planned = JSON.parse(r.stdout) as { steps: Array<{ asset: string; partition: string | null; deps: string[] }>; generations: number };
    expect(planned.generations).toBe(3);
    expect(planned.steps.at(-1)).toEqual({ asset: "summary", partition: null, deps: ["orders[2025-01-01]", "orders[2025-01-02]"] });
    const bad = await run(["materialize", "--select", "summary", "--dry-run", "--stale"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe("floe: --dry-run cannot be combined with --stale (staleness needs the state store)");
  });

  it("lineage and list follow the contract", async () => {
    const lineage = JSON.parse((await run(["lineage", "--json"])).stdout) as { nodes: unknown[]; edges: unknown[] };
    expect(lineage.nodes).toEqual([
      { key: "raw_orders", kind: "asset", pipeline: "orders" },
      { key: "orders", kind: "asset", pipeline: "orders" },
      { key: "summary", kind: "asset", pipeline: "analytics" },
    ]);
    expect(lineage.edges).toEqual([{ from: "raw_orders", to: "orders" }, { from: "orders", to: "summary" }]);
    const narrow = JSON.parse((await run(["lineage", "--select", "+summary,tag:finance", "--json"])).stdout) as { nodes: Array<{ key: string }> };
    expect(narrow.nodes.map((n) => n.key)).toEqual(["summary"]);
    const list = await run(["list"]);
    expect(list.stdout).toMatch(/orders\s+asset\s+orders\s+daily from 2025-01-01 \(UTC\)\s+raw_orders/);
  });
});

describe("a separate project that installs floe", () => {
  const dir = mkdtempSync(join(tmpdir(), "floe-user-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is driven entirely through the CLI", async () => {
    mkdirSync(join(dir, "node_modules"), { recursive: true });
    symlinkSync(repoRoot, join(dir, "node_modules", "floe"), "dir");
    mkdirSync(join(dir, "pipelines"));
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "my-data", type: "module", private: true }));
    writeFileSync(join(dir, "pipelines", "shop.ts"), pipelineModule("shop", { customers: [], orders: ["customers"], revenue: ["orders"] }));
    const cli = (args: string[]) => floe(args, { cwd: join(dir, "pipelines") /* --project wins over cwd */, env: {} }).then((r) => r);
    const m = await cli(["materialize", "--select", "+revenue", "--json", "--project", dir]);
    expect(m.code, m.stderr).toBe(0);
    expect(JSON.parse(m.stdout)).toMatchObject({ status: "success", steps: [{ asset: "customers", status: "success", metadata: { key: "customers" } }, { asset: "orders" }, { asset: "revenue" }] });
    const s = JSON.parse((await cli(["status", "--json", "--project", dir])).stdout) as Array<{ status: string }>;
    expect(s.map((r) => r.status)).toEqual(["materialized", "materialized", "materialized"]);
  });
});

