import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { floe, repoRoot, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";
import { listeningUrl, parsePrometheus } from "../helpers/observe.js";

// After real runs, a backfill and scheduled ticks, `/metrics` of `floe dev --metrics-port` is
// scraped and parsed: every metric is read from the store, notification deliveries included.
const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
let delivered = 0;
const receiver = createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    delivered++;
    res.writeHead(204).end();
  });
});
let hook = "";
beforeAll(async () => {
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", () => r()));
  hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
});
const project = tempProject({
  "landing/m/good.csv": "id,amount\n1,10\n2,20\n3,30\n",
  "landing/m/bad.csv": "id,amount\n4,40,oops\n",
  "pipelines/m.ts": `import { z } from "zod";
import { asset, duckdbTable, partitions, pipeline, rawFiles } from "floe";
const raw = rawFiles("raw_m", { storage: { type: "local", root: "landing" }, glob: "m/*.csv", format: "csv", maxFailedFiles: 1, maxAttempts: 1 });
const table = duckdbTable("m_table", { deps: [raw], sql: ({ ref }) => \`select id, amount from \${ref(raw)}\`, columns: z.object({ id: z.number().int(), amount: z.number() }) });
// stands in for an Iceberg table that had to retry its commit twice
const lake = asset("lake_m", { deps: [table], materialize: () => ({ metadata: { rows: 3, icebergCommitRetries: 2 } }) });
const broken = asset("broken", { materialize: () => { throw new Error("no"); } });
const daily = asset("daily", { partitions: partitions.daily({ start: "2025-01-01" }), materialize: () => ({ metadata: { rows: 1 } }) });
export default pipeline("m", { assets: [raw, table, lake, broken, daily] });
`,
  "pipelines/ticker.ts": `import { asset, pipeline } from "floe";
export default pipeline("ticker", { assets: [asset("tick", { materialize: () => ({}) })], schedule: { cron: "* * * * * *" } });
`,
  "floe.config.ts": `import { defineConfig, webhook } from "floe";
export default defineConfig({ notifications: [
  { notifier: webhook({ url: process.env.HOOK_URL!, name: "hook" }), events: ["run_succeeded"], select: "tick" },
  { notifier: webhook({ url: "http://127.0.0.1:1/down", name: "down" }), events: ["run_succeeded"], select: "tick" },
] });
`,
});
let dev: ChildProcess | undefined;
afterAll(async () => {
  dev?.kill("SIGKILL");
  receiver.close();
  project.remove();
  await db?.drop();
});

describe.skipIf(!db)("metrics", () => {
  it("are read from the store after real runs, deliveries too, and outlive the process", async () => {
    const env = { FLOE_DATABASE_URL: db!.url, HOOK_URL: hook };
    const run = await floe(["materialize", "--select", "raw_m m_table lake_m broken"], { cwd: project.dir, env });
    expect(run.code, run.stderr).toBe(1);
    const bf = await floe(["backfill", "--select", "daily", "--from", "2025-01-01", "--to", "2025-01-03", "--concurrency", "1"], { cwd: project.dir, env });
    expect(bf.code, bf.stderr).toBe(0);

    dev = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "dev", "--metrics-port", "0"], { cwd: project.dir, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    dev.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    dev.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    let m = new Map<string, number>();
    const failedDown = 'floe_notification_deliveries_total{notifier="down",event="run_succeeded",outcome="failed"}';
    for (let i = 0; i < 150 && !((m.get(failedDown) ?? 0) >= 1 && delivered >= 1); i++) {
      await new Promise((r) => setTimeout(r, 200));
      const url = /metrics on (http:\/\/\S+\/metrics)/.exec(err)?.[1];
      if (url) m = parsePrometheus(await (await fetch(url)).text());
    }
    expect(err).toMatch(/metrics on /);
    expect(out).toMatch(/^run [0-9a-f]{8} success$/m);

    // rows written, from materialization metadata `rows`, per asset
    expect(m.get('floe_rows_written_total{asset="raw_m"}')).toBe(3);
    expect(m.get('floe_rows_written_total{asset="m_table"}')).toBe(3);
    expect(m.get('floe_rows_written_total{asset="lake_m"}')).toBe(3);
    expect(m.get('floe_rows_written_total{asset="daily"}')).toBe(3);
    expect(m.has('floe_rows_written_total{asset="broken"}')).toBe(false);
    expect(m.get('floe_iceberg_commit_retries_total{asset="lake_m"}')).toBe(2);
    // files by status, from the ledger
    expect(m.get('floe_files{asset="raw_m",status="SUCCESS"}')).toBe(1);
    expect(m.get('floe_files{asset="raw_m",status="FAILED"}')).toBe(1);
    // step durations: a histogram by asset and status
    expect(m.get('floe_step_duration_seconds_count{asset="broken",status="failed"}')).toBe(1);
    expect(m.get('floe_step_duration_seconds_bucket{asset="broken",status="failed",le="+Inf"}')).toBe(1);
    expect(m.get('floe_step_duration_seconds_count{asset="daily",status="success"}')).toBe(3);
    expect(m.get('floe_step_duration_seconds_bucket{asset="daily",status="success",le="3600"}')).toBe(3);
    const le01 = m.get('floe_step_duration_seconds_bucket{asset="daily",status="success",le="0.1"}')!;
    expect(le01).toBeLessThanOrEqual(m.get('floe_step_duration_seconds_bucket{asset="daily",status="success",le="0.5"}')!);
    expect(m.get('floe_step_duration_seconds_sum{asset="daily",status="success"}')).toBeGreaterThanOrEqual(0);
    // backfill partitions by state; runs by status and trigger
    expect(m.get('floe_backfill_partitions{state="success"}')).toBe(3);
    expect(m.get('floe_runs{status="success",trigger="backfill"}')).toBe(3);
    expect(m.get('floe_runs{status="failed",trigger="manual"}')).toBe(1);
    // schedule ticks: the delay of the latest tick of `ticker`
    const delay = m.get('floe_schedule_tick_delay_seconds{schedule="ticker"}');
    expect(delay).toBeGreaterThanOrEqual(0);
    expect(delay).toBeLessThan(60);
    expect(m.get("floe_queue_depth")).toBeGreaterThanOrEqual(0);
    // notification deliveries, written to the store by the process that made them
    expect(m.get('floe_notification_deliveries_total{notifier="hook",event="run_succeeded",outcome="delivered"}')).toBeGreaterThanOrEqual(1);
    expect(m.get(failedDown)).toBeGreaterThanOrEqual(1);
    expect(m.get('floe_notification_deliveries_total{notifier="down",event="run_succeeded",outcome="retried"}')).toBeGreaterThanOrEqual(2);
    // bounded labels only: no run ids, no file paths
    expect([...m.keys()].filter((k) => /[0-9a-f]{8}-[0-9a-f]{4}|\.csv|sensor:/.test(k))).toEqual([]);

    dev.kill("SIGINT");
    expect(await new Promise<number | null>((r) => dev!.once("exit", r))).toBe(0);

    // the deliveries outlive floe dev: `floe serve`, which delivers nothing itself, reports them
    // (at least what dev had counted at the last scrape; what it counted later is in too)
    const serve = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "serve", "--port", "0"], { cwd: project.dir, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    try {
      const base = await listeningUrl(serve);
      const after = parsePrometheus(await (await fetch(`${base}/metrics`)).text());
      for (const key of [failedDown, 'floe_notification_deliveries_total{notifier="hook",event="run_succeeded",outcome="delivered"}']) {
        expect(after.get(key), key).toBeGreaterThanOrEqual(m.get(key)!);
      }
    } finally {
      serve.kill("SIGTERM");
      await new Promise((r) => serve.once("exit", r));
    }
  });
});
