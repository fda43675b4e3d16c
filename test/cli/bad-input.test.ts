import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { floe, pipelineModule, tempProject } from "../helpers/project.js";
import { queryRows, testDatabase } from "../helpers/pg.js";

// Every bad input: one line naming the problem, exit code 2, no stack trace, nothing recorded.
let db: { url: string; drop(): Promise<void> } | undefined;
beforeAll(async () => {
  db = await testDatabase();
});
afterAll(async () => {
  await db?.drop();
});

const good = pipelineModule("orders", { raw_orders: [], orders: ["raw_orders"], report: ["orders"] });

function expectUserError(r: { code: number; stdout: string; stderr: string }, message: string | RegExp): void {
  expect(r.code, r.stderr + r.stdout).toBe(2);
  const lines = r.stderr.trim().split("\n");
  expect(lines, r.stderr).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  if (typeof message === "string") expect(lines[0]).toBe(`floe: ${message}`);
  else expect(lines[0]).toMatch(message);
}

async function inProject(files: Record<string, string>, args: string[], env: Record<string, string | undefined> = {}) {
  const p = tempProject(files);
  try {
    return await floe(args, { cwd: p.dir, env: { FLOE_DATABASE_URL: db?.url, ...env } });
  } finally {
    p.remove();
  }
}

describe("bad input", () => {
  it("syntax error in a pipeline module names file and line", async () => {
    const r = await inProject({ "pipelines/orders.ts": good, "pipelines/broken.ts": 'import { asset } from "floe";\n\nconst x = asset("x", {\n  materialize: () => ({ metadata: {} }) +\n});\n' }, ["list"]);
    expectUserError(r, /^floe: pipelines\/broken\.ts:5:\d+: syntax error: /);
  });

  it("a module that throws while loading names file and line", async () => {
    const r = await inProject({ "pipelines/orders.ts": good, "pipelines/boom.ts": 'import { pipeline } from "floe";\nconst config = undefined as unknown as { x: number };\nexport default pipeline("boom", { assets: [config.x as never] });\n' }, ["list"]);
    expectUserError(r, /^floe: pipelines\/boom\.ts:3: failed to load: .*(undefined|reading 'x')/);
  });

  it("a module with no pipeline export", async () => {
    const r = await inProject({ "pipelines/orders.ts": good, "pipelines/helpers.ts": "export const x = 1;\n" }, ["list"]);
    expectUserError(r, 'pipelines/helpers.ts exports no pipeline; add `export default pipeline("name", { assets: [...] })`');
  });

  it("a duplicate asset key names both modules", async () => {
    const r = await inProject({ "pipelines/a.ts": pipelineModule("a", { orders: [] }), "pipelines/b.ts": pipelineModule("b", { orders: [] }) }, ["list"]);
    expectUserError(r, "duplicate asset key `orders` in pipelines/a.ts and pipelines/b.ts (pipelines `a` and `b`)");
  });

  it("a cycle is spelled out", async () => {
    const r = await inProject({ "pipelines/a.ts": pipelineModule("a", { x: ["z"], y: ["x"], z: ["y"] }) }, ["lineage"]);
    expectUserError(r, /^floe: dependency cycle: ([xyz]) → [xyz] → [xyz] → \1$/);
  });

  it("a dep on an undeclared asset", async () => {
    const r = await inProject({ "pipelines/a.ts": pipelineModule("a", { orders: [], report: ["ordres"] }) }, ["list"]);
    expectUserError(r, "pipelines/a.ts: asset `report` depends on `ordres`, which no loaded pipeline declares; did you mean `orders`?");
  });

  it("an invalid key", async () => {
    const r = await inProject({ "pipelines/a.ts": pipelineModule("a", { "Raw-Orders": [] }) }, ["list"]);
    expectUserError(r, /^floe: pipelines\/a\.ts: invalid asset key `Raw-Orders`; keys are lowercase/);
  });

  it("an unknown asset in --select gets a suggestion and creates no run", async () => {
    const p = tempProject({ "pipelines/orders.ts": good });
    try {
      const env = { FLOE_DATABASE_URL: db?.url };
      expectUserError(await floe(["materialize", "--select", "ordrs"], { cwd: p.dir, env }), "unknown asset `ordrs`; did you mean `orders`?");
      expectUserError(await floe(["materialize", "--select", "orders ("], { cwd: p.dir, env }), /^floe: malformed selection `orders \(`/);
      expectUserError(await floe(["materialize", "--select", "raw_orders,report"], { cwd: p.dir, env }), /selects no asset/);
      expectUserError(await floe(["materialize", "--select", "zz_*"], { cwd: p.dir, env }), /matches no asset/);
      expectUserError(await floe(["materialize", "--select", "orders", "--partition", "2025-01-01"], { cwd: p.dir, env }), "--partition given, but no selected asset is partitioned");
      expectUserError(await floe(["materialize"], { cwd: p.dir, env }), /--select/);
      expectUserError(await floe(["materialize", "--select", "orders", "--bogus"], { cwd: p.dir, env }), /unknown option '--bogus'/);
      const runs = await floe(["runs", "--json"], { cwd: p.dir, env });
      expect(runs.code).toBe(0);
      expect(JSON.parse(runs.stdout)).toEqual([]);
    } finally {
      p.remove();
    }
  });

  it("an unknown run id", async () => {
    const r = await inProject({ "pipelines/orders.ts": good }, ["run", "deadbeef"]);
    expectUserError(r, "unknown run `deadbeef`");
    const r2 = await inProject({ "pipelines/orders.ts": good }, ["rerun", "deadbeef", "--from-failure"]);
    expectUserError(r2, "unknown run `deadbeef`");
  });

  it("a malformed or unreachable FLOE_DATABASE_URL, without leaking the password", async () => {
    const bad = await inProject({ "pipelines/orders.ts": good }, ["runs"], { FLOE_DATABASE_URL: "mysql://u:hunter2@host/db" });
    expectUserError(bad, /^floe: FLOE_DATABASE_URL is not a postgres:\/\/ URL/);
    expect(bad.stderr).not.toContain("hunter2");
    const down = await inProject({ "pipelines/orders.ts": good }, ["runs"], { FLOE_DATABASE_URL: "postgres://u:hunter2@127.0.0.1:1/db" });
    expectUserError(down, /^floe: cannot reach PostgreSQL at 127\.0\.0\.1:1/);
    expect(down.stderr).not.toContain("hunter2");
  });

  it("an invalid floe.config.ts names the path and the expectation", async () => {
    const r = await inProject({ "pipelines/orders.ts": good, "floe.config.ts": 'import { defineConfig } from "floe";\nexport default defineConfig({ concurrency: "four" as unknown as number });\n' }, ["list"]);
    expectUserError(r, /^floe: floe\.config\.ts: concurrency: .*expected number, received string/i);
    const unknown = await inProject({ "pipelines/orders.ts": good, "floe.config.ts": "export default { concurency: 2 };\n" }, ["list"]);
    expectUserError(unknown, /^floe: floe\.config\.ts: .*concurency/);
    const memory = await inProject({ "pipelines/orders.ts": good, "floe.config.ts": 'export default { duckdbMemoryLimit: "lots" };\n' }, ["list"]);
    expectUserError(memory, /^floe: floe\.config\.ts: duckdbMemoryLimit: expected a size like "512MB" or "2GB"$/);
    const env = await inProject({ "pipelines/orders.ts": good }, ["list"], { FLOE_DUCKDB_MEMORY_LIMIT: "half" });
    expectUserError(env, "FLOE_DUCKDB_MEMORY_LIMIT must be a size like 512MB or 2GB, got `half`");
  });

  it("a bad FLOE_HEARTBEAT_MS or FLOE_SHUTDOWN_GRACE_MS stops materialize and worker before they start", async () => {
    const message = "FLOE_HEARTBEAT_MS must be a positive whole number of milliseconds, got `5s`";
    expectUserError(await inProject({ "pipelines/orders.ts": good }, ["materialize", "--select", "orders"], { FLOE_HEARTBEAT_MS: "5s" }), message);
    expectUserError(await inProject({ "pipelines/orders.ts": good }, ["worker"], { FLOE_HEARTBEAT_MS: "5s" }), message);
    expectUserError(await inProject({ "pipelines/orders.ts": good }, ["materialize", "--select", "orders"], { FLOE_SHUTDOWN_GRACE_MS: "-1" }), "FLOE_SHUTDOWN_GRACE_MS must be a non-negative whole number of milliseconds, got `-1`");
    expectUserError(await inProject({ "pipelines/orders.ts": good }, ["worker"], { FLOE_RUN_RETRIES: "lots" }), "FLOE_RUN_RETRIES must be a whole number from 0 to 100, got `lots`");
    expectUserError(await inProject({ "pipelines/orders.ts": good }, ["dev", "--no-tui"], { FLOE_RUN_RETRIES: "-1" }), "FLOE_RUN_RETRIES must be a whole number from 0 to 100, got `-1`");
  });

  it("a bad FLOE_RUN_RETRIES stops floe backfill before the backfill is recorded", async () => {
    if (!db) return; // set in beforeAll; only outside CI can there be no PostgreSQL
    const daily = `import { asset, partitions, pipeline } from "floe";\nexport default pipeline("d", { assets: [asset("day", { partitions: partitions.daily({ start: "2025-01-01" }), materialize: () => ({}) })] });\n`;
    // (no table yet counts as none: no command has opened the store on this database)
    const count = async () => Number((await queryRows<{ n: string }>(db!.url, "select count(*)::text as n from backfills").catch(() => [{ n: "0" }]))[0]!.n);
    const before = await count();
    const r = await inProject({ "pipelines/d.ts": daily }, ["backfill", "--select", "day", "--from", "2025-01-01", "--to", "2025-01-03"], { FLOE_RUN_RETRIES: "lots" });
    expectUserError(r, "FLOE_RUN_RETRIES must be a whole number from 0 to 100, got `lots`");
    expect(await count()).toBe(before);
  });

  it("a bad --limit and a half range", async () => {
    expectUserError(await inProject({ "pipelines/orders.ts": good }, ["runs", "--limit", "0"]), "--limit must be a positive whole number, got `0`");
    expectUserError(await inProject({ "pipelines/orders.ts": good }, ["materialize", "--select", "orders", "--from", "2025-01-01"]), "--from needs --to too");
  });

  it("partitions that do not line up, without a mapping, name both assets", async () => {
    const mod = `import { asset, partitions, pipeline } from "floe";
const monthly = partitions.monthly({ start: "2025-01" });
const daily = partitions.daily({ start: "2025-01-01" });
const totals = asset("monthly_totals", { partitions: monthly, materialize: () => ({}) });
export default pipeline("mixed", { assets: [totals, asset("daily_report", { deps: [totals], partitions: daily, materialize: () => ({}) })] });
`;
    for (const args of [["list"], ["backfill", "--select", "daily_report", "--from", "2025-01-01", "--to", "2025-01-02"]]) {
      const r = await inProject({ "pipelines/mixed.ts": mod }, args);
      expectUserError(r, /^floe: pipelines\/mixed\.ts: asset `daily_report` \(daily from 2025-01-01.*\) depends on `monthly_totals` \(monthly from 2025-01.*\) with different partitions; give it a partition mapping/);
    }
  });

  it("a partition key after the last key of a definition with `end`", async () => {
    const mod = `import { asset, partitions, pipeline } from "floe";
const january = partitions.daily({ start: "2025-01-01", end: "2025-01-31" });
export default pipeline("jan", { assets: [asset("jan_orders", { partitions: january, materialize: () => ({}) })] });
`;
    const message = "partition `2025-02-01` is after the last partition `2025-01-31`";
    expectUserError(await inProject({ "pipelines/jan.ts": mod }, ["materialize", "--select", "jan_orders", "--partition", "2025-02-01"]), message);
    expectUserError(await inProject({ "pipelines/jan.ts": mod }, ["backfill", "--select", "jan_orders", "--from", "2025-01-30", "--to", "2025-02-01"]), message);
    const last = await inProject({ "pipelines/jan.ts": mod }, ["materialize", "--select", "jan_orders", "--partition", "2025-01-31", "--dry-run"]);
    expect(last.code, last.stderr).toBe(0); // the last key itself is fine
  });

  it("an unknown backfill id, for cancel and retry", async () => {
    expectUserError(await inProject({ "pipelines/orders.ts": good }, ["backfill", "cancel", "feedbeef"]), "unknown backfill `feedbeef`");
    expectUserError(await inProject({ "pipelines/orders.ts": good }, ["backfill", "retry", "feedbeef"]), "unknown backfill `feedbeef`");
  });

  it("no pipelines folder", async () => {
    // --project: without it, this folder (under the repository) finds the repository's project upward
    const r = await inProject({ "README.md": "x" }, ["list", "--project", "."]);
    expectUserError(r, /^floe: no pipelines\/ folder in .*; create pipelines\/<name>\.ts exporting a pipeline/);
  });
});

describe("bad schedules", () => {
  it("an invalid cron or timezone names the schedule, for every command", async () => {
    const mod = (schedule: string) => `import { asset, pipeline } from "floe";\nexport default pipeline("nightly", { assets: [asset("a", { materialize: () => ({}) })], schedule: ${schedule} });\n`;
    const cron = await inProject({ "pipelines/n.ts": mod('{ cron: "0 25 * * *" }') }, ["list"]);
    expectUserError(cron, "pipelines/n.ts: schedule of pipeline `nightly`: invalid cron `0 25 * * *` (Invalid value for hour: 25)");
    const tz = await inProject({ "pipelines/n.ts": mod('{ cron: "0 2 * * *", timezone: "Europe/Atlantis" }') }, ["materialize", "--select", "a"]);
    expectUserError(tz, "pipelines/n.ts: schedule of pipeline `nightly`: unknown timezone `Europe/Atlantis` (use an IANA name such as `UTC` or `Europe/Paris`)");
    const priority = await inProject({ "pipelines/n.ts": mod('{ cron: "0 2 * * *", priority: 1.5 }') }, ["list"]);
    expectUserError(priority, "pipelines/n.ts: schedule of pipeline `nightly`: priority must be a whole number from -1000000 to 1000000, got `1.5`");
  });
});
