import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { expect } from "vitest";
import { STALE_WAKE_SLACK_MS } from "../../src/runner/worker.js";
import { StateStore } from "../../src/state/index.js";
import { testDatabase } from "../helpers/pg.js";
import { floe, repoRoot, tempProject } from "../helpers/project.js";

// Real-process trials of the proofs, shared by `npm test` (small) and test/soak (full).
// Each takes a fresh database URL and a project folder; assertions read the state store.

/** A long-lived `floe` process (scheduler, worker, backfill). */
export interface FloeProcess {
  child: ChildProcess;
  out(): string;
  err(): string;
  exited: Promise<number | null>;
  alive(): boolean;
}

/** Spawns the built `floe` bin with FLOE_DATABASE_URL set. */
export function startFloe(args: readonly string[], cwd: string, env: Record<string, string>): FloeProcess {
  const child = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), ...args], { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  let gone = false;
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => ((gone = true), r(code))));
  return { child, out: () => out, err: () => err, exited, alive: () => !gone };
}

/**
 * A fresh database and project for each trial; `cleanup` (in afterAll) drops and removes them all.
 *
 * @example
 * const { setup, cleanup } = trials(); afterAll(cleanup);
 * const { project, url } = await setup(workerProject);
 */
export function trials(): { setup<P extends { dir: string; remove(): void }>(make: () => P): Promise<{ project: P; url: string }>; cleanup(): Promise<void> } {
  const made: Array<{ remove(): void }> = [];
  const dbs: Array<{ drop(): Promise<void> }> = [];
  return {
    async setup(make) {
      const db = await testDatabase();
      if (!db) throw new Error("the scale trials need PostgreSQL (FLOE_TEST_DATABASE_URL or 127.0.0.1:5432)");
      dbs.push(db);
      const project = make();
      made.push(project);
      return { project, url: db.url };
    },
    async cleanup() {
      for (const p of made) p.remove();
      for (const d of dbs) await d.drop();
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every `everyMs` until it is true; fails naming `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000, everyMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Runs `fn` with a plain pg client on `url`. */
export async function withPg<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function stop(procs: readonly FloeProcess[], signal: NodeJS.Signals = "SIGINT"): Promise<void> {
  for (const p of procs) if (p.alive()) p.child.kill(signal);
  await Promise.all(procs.map((p) => p.exited));
}

/** A step that sleeps `STEP_MS` (or forever, see HOLD_AFTER) and appends `start|end <asset> <partition> <run> <ms>` lines to `steps.log`. */
const loggedStep = `import { appendFileSync } from "node:fs";
const log = (what, ctx) => appendFileSync("steps.log", \`\${what} \${ctx.assetKey} \${ctx.partitionKey ?? "-"} \${ctx.runId} \${performance.timeOrigin + performance.now()}\\n\`);
export const step = async (ctx) => {
  log("start", ctx);
  if (process.env.SLOW === "1") await new Promise((r) => setTimeout(r, 600_000));
  // Partitions after HOLD_AFTER never finish: a kill then always finds them mid-step.
  if (process.env.HOLD_AFTER && ctx.partitionKey > process.env.HOLD_AFTER) await new Promise(() => {});
  await new Promise((r) => setTimeout(r, Number(process.env.STEP_MS ?? 50)));
  log("end", ctx);
  return {};
};
`;

interface StepLine { what: "start" | "end"; asset: string; partition: string; run: string; at: number }

/** The lines written by the logged step of a project. */
export function stepLog(dir: string): StepLine[] {
  const file = join(dir, "steps.log");
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map((l) => {
    const [what, asset, partition, run, at] = l.split(" ");
    return { what: what as StepLine["what"], asset: asset!, partition: partition!, run: run!, at: Number(at) };
  });
}

/** The most steps of `assets` ever inside their materialize function at once, from the step log. */
export function maxOverlap(lines: readonly StepLine[], assets: ReadonlySet<string>): number {
  const points = lines.filter((l) => assets.has(l.asset)).map((l) => ({ at: l.at, d: l.what === "start" ? 1 : -1 }));
  points.sort((a, b) => a.at - b.at || a.d - b.d); // an end before a start at the same instant
  let now = 0;
  let max = 0;
  for (const p of points) max = Math.max(max, (now += p.d));
  return max;
}

// ─── a. two schedulers, a per-second cron ─────────────────────────────────────────────────────

export function schedulerProject() {
  return tempProject({
    "pipelines/beat.ts": `import { asset, pipeline } from "floe";
export default pipeline("beat", { assets: [asset("pulse", { materialize: () => ({}) })], schedule: { cron: "* * * * * *" } });
`,
  });
}

/** Two `floe scheduler` processes for `seconds`: every tick has exactly one run, and every second has its tick. */
export async function twoSchedulers(dir: string, url: string, seconds: number): Promise<{ ticks: number; perScheduler: number[] }> {
  const env = { FLOE_DATABASE_URL: url };
  // migrate once first, so the two processes do not race to create the schema
  expect((await floe(["runs", "--json"], { cwd: dir, env })).code).toBe(0);
  const procs = [startFloe(["scheduler"], dir, env), startFloe(["scheduler"], dir, env)];
  try {
    await waitFor("both schedulers to start", () => procs.every((p) => p.err().includes("schedule(s)")));
    const from = Date.now();
    await sleep(seconds * 1000);
    const to = Date.now();
    await stop(procs);
    expect(await Promise.all(procs.map((p) => p.exited))).toEqual([0, 0]);
    const { rows } = await withPg(url, (c) =>
      c.query<{ tick: string; runs: number; ids: string[] }>(`select tags->>'floe/tick' as tick, count(*)::int as runs, array_agg(id) as ids from runs where trigger = 'schedule' group by 1 order by 1`),
    );
    const ticks = await withPg(url, (c) => c.query<{ n: number }>(`select count(*)::int as n from schedule_ticks`));
    expect(rows.filter((r) => r.runs !== 1), "ticks with more than one run").toEqual([]);
    expect(ticks.rows[0]!.n).toBe(rows.length);
    // every whole second while both ran has its tick
    const seen = new Set(rows.map((r) => r.tick));
    const missing: string[] = [];
    for (let t = Math.ceil(from / 1000) * 1000 + 1000; t < to - 1000; t += 1000) if (!seen.has(new Date(t).toISOString())) missing.push(new Date(t).toISOString());
    expect(missing).toEqual([]);
    // each run was reported by exactly one of the two processes
    const reported = procs.map((p) => [...p.out().matchAll(/: run ([0-9a-f]{8}) queued$/gm)].map((m) => m[1]!));
    const all = reported.flat();
    expect(new Set(all).size).toBe(all.length);
    expect(all.sort()).toEqual(rows.flatMap((r) => r.ids.map((id) => id.slice(0, 8))).sort());
    return { ticks: rows.length, perScheduler: reported.map((r) => r.length) };
  } finally {
    await stop(procs, "SIGKILL");
  }
}

// ─── b. three workers drain a queue under a pool limit ───────────────────────────────────────

export const POOL_LIMIT = 2;

export function workerProject() {
  return tempProject({
    "step.js": loggedStep,
    "floe.config.ts": `import { defineConfig } from "floe";\nexport default defineConfig({ pools: { p: ${POOL_LIMIT} } });\n`,
    "pipelines/q.ts": `import { asset, pipeline } from "floe";
import { step } from "../step.js";
export default pipeline("q", { assets: [
  asset("a", { materialize: step }),
  asset("b", { deps: ["a"], pool: "p", materialize: step }),
  asset("c", { deps: ["a"], pool: "p", materialize: step }),
] });
`,
  });
}

/**
 * Queues `runs` runs of a → (b, c), with b and c in pool `p` (limit 2), and lets three
 * `floe worker --runs 2` processes drain them; samples `pool_slots` and running steps meanwhile.
 */
export async function threeWorkers(dir: string, url: string, runs: number, stepMs: number): Promise<{ perWorker: number[]; maxInPool: number; maxSlotsHeld: number }> {
  const store = await StateStore.open({ url, home: "/nonexistent" });
  const ids: string[] = [];
  try {
    for (let i = 0; i < runs; i++) ids.push((await store.createRun({ trigger: "manual", selection: "q", steps: ["a", "b", "c"].map((asset) => ({ asset, partition: null })) })).id);
  } finally {
    await store.close();
  }
  const env = { FLOE_DATABASE_URL: url, STEP_MS: String(stepMs) };
  const procs = [0, 1, 2].map(() => startFloe(["worker", "--runs", "2", "--until-empty"], dir, env));
  let maxSlotsHeld = 0;
  try {
    await withPg(url, async (c) => {
      while (procs.some((p) => p.alive())) {
        const { rows } = await c.query<{ held: number }>(`select count(run_id)::int as held from pool_slots where pool = 'p'`);
        maxSlotsHeld = Math.max(maxSlotsHeld, rows[0]?.held ?? 0);
        await sleep(20);
      }
    });
    expect(await Promise.all(procs.map((p) => p.exited)), procs.map((p) => p.err()).join("\n")).toEqual([0, 0, 0]);
  } finally {
    await stop(procs, "SIGKILL");
  }
  // each run ran once, on one worker, and every step ran once
  const { rows } = await withPg(url, (c) => c.query<{ id: string; status: string; worker: string }>(`select id, status, worker from runs`));
  expect(rows.map((r) => r.status)).toEqual(ids.map(() => "success"));
  const printed = procs.map((p) => p.out().trim().split("\n").filter(Boolean));
  expect(printed.flat().sort()).toEqual(ids.map((id) => `run ${id.slice(0, 8)} success: 3/3 steps succeeded`).sort());
  const lines = stepLog(dir);
  const starts = lines.filter((l) => l.what === "start").map((l) => `${l.run} ${l.asset}`);
  expect(starts.sort()).toEqual(ids.flatMap((id) => ["a", "b", "c"].map((a) => `${id} ${a}`)).sort());
  const maxInPool = maxOverlap(lines, new Set(["b", "c"]));
  expect(maxInPool).toBeLessThanOrEqual(POOL_LIMIT);
  expect(maxSlotsHeld).toBeLessThanOrEqual(POOL_LIMIT);
  const perWorker = printed.map((p) => p.length);
  expect(perWorker.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2);
  return { perWorker, maxInPool, maxSlotsHeld };
}

// ─── c. kill -9 a worker mid-run ──────────────────────────────────────────────────────────────

/** Allowed beyond the wake-up slack for the detecting worker's queries and timers on a busy machine. */
export const DETECTION_LATENCY_MS = 200;

export function killProject() {
  return tempProject({
    "step.js": loggedStep,
    "pipelines/k.ts": `import { asset, pipeline } from "floe";
import { step } from "../step.js";
export default pipeline("k", { assets: [asset("slow", { materialize: step })] });
`,
  });
}

/**
 * Worker A runs a step that sleeps; worker B waits for work. A is killed with SIGKILL: B fails
 * A's run once it missed three heartbeats (within three heartbeat intervals of the kill, plus a
 * small wake-up slack) and runs it again from failure.
 */
export async function killWorker(dir: string, url: string, heartbeatMs: number): Promise<{ detectedAfterKillMs: number; staleForMs: number }> {
  const store = await StateStore.open({ url, home: "/nonexistent" });
  let runId: string;
  try {
    runId = (await store.createRun({ trigger: "manual", selection: "slow", steps: [{ asset: "slow", partition: null }] })).id;
  } finally {
    await store.close();
  }
  const env = { FLOE_DATABASE_URL: url, FLOE_HEARTBEAT_MS: String(heartbeatMs) };
  const a = startFloe(["worker"], dir, { ...env, SLOW: "1" });
  const procs = [a];
  try {
    await waitFor("worker A to start the step", () => stepLog(dir).some((l) => l.what === "start"));
    const b = startFloe(["worker"], dir, env);
    procs.push(b);
    await waitFor("worker B to wait for runs", () => b.err().includes("waiting for queued runs"));
    await sleep(heartbeatMs * 2); // A is heartbeating while its step sleeps
    const killedAt = (await withPg(url, (c) => c.query<{ now: Date }>(`select clock_timestamp() as now`))).rows[0]!.now;
    a.child.kill("SIGKILL");
    await a.exited;
    await waitFor("the rerun to succeed", async () => (await withPg(url, (c) => c.query(`select 1 from runs where parent_run_id = $1 and status = 'success'`, [runId]))).rowCount === 1, 30_000).catch(async (e: unknown) => {
      const runs = await withPg(url, (c) => c.query(`select id, status, error, worker, parent_run_id from runs`));
      throw new Error(`${String(e)}: ${JSON.stringify(runs.rows)}; worker B: ${b.err()}${b.out()}`);
    });
    const { rows } = await withPg(url, (c) =>
      c.query<{ id: string; status: string; error: string | null; worker: string; heartbeat_at: Date; ended_at: Date; tags: Record<string, string>; parent_run_id: string | null }>(
        `select id, status, error, worker, heartbeat_at, ended_at, tags, parent_run_id from runs order by created_at`,
      ),
    );
    const [first, again] = rows;
    expect(rows).toHaveLength(2);
    // A and B share this host: B sees A's pid is gone and fails its run without waiting for three
    // missed heartbeats (that path, for workers on other hosts, is test/runner/worker.test.ts's)
    expect(first).toMatchObject({ id: runId, status: "failed", error: `worker ${first!.worker} is gone (its process exited)` });
    expect(first!.worker).toMatch(new RegExp(`:${a.child.pid}$`));
    expect(again).toMatchObject({ status: "success", parent_run_id: runId, tags: { "floe/recovery": "1", "floe/from_failure": "true" } });
    expect(again!.worker).toMatch(new RegExp(`:${b.child.pid}$`));
    const staleForMs = first!.ended_at.getTime() - first!.heartbeat_at.getTime();
    const detectedAfterKillMs = first!.ended_at.getTime() - killedAt.getTime();
    // Detection: an idle worker looks for dead runs on every poll and sleeps at most a heartbeat
    // between polls; a worker of this host whose pid is gone is dead at once, so B fails A's run
    // within one poll of the kill, well before its heartbeat goes stale (3 heartbeats):
    //   detectedAfterKill ≤ heartbeat + latency  <  3 × heartbeat.
    expect(staleForMs).toBeLessThan(3 * heartbeatMs);
    expect(detectedAfterKillMs).toBeLessThanOrEqual(heartbeatMs + STALE_WAKE_SLACK_MS + DETECTION_LATENCY_MS);
    const mat = await withPg(url, (c) => c.query<{ last_run_id: string }>(`select last_run_id from asset_partitions where asset = 'slow'`));
    expect(mat.rows).toEqual([{ last_run_id: again!.id }]);
    return { detectedAfterKillMs, staleForMs };
  } finally {
    await stop(procs, "SIGKILL");
  }
}

// ─── d. a backfill over chained pipelines, every process killed halfway ─────────────────────

export function backfillProject() {
  return tempProject({
    "step.js": loggedStep,
    "pipelines/a.ts": `import { asset, partitions, pipeline } from "floe";
import { step } from "../step.js";
export const daily = partitions.daily({ start: "2025-01-01" });
const raw = asset("raw", { partitions: daily, materialize: step });
const orders = asset("orders", { deps: [raw], partitions: daily, materialize: step });
export default pipeline("a", { assets: [raw, orders] });
`,
    "pipelines/b.ts": `import { asset, pipeline } from "floe";
import { daily } from "./a.ts";
import { step } from "../step.js";
export default pipeline("b", { assets: [asset("report", { deps: ["orders"], partitions: daily, materialize: step })] });
`,
  });
}

const UPSTREAM: Record<string, string> = { orders: "raw", report: "orders" };

/**
 * `floe backfill --select pipeline:a+` over `days` days with a helping `floe worker`; both are
 * killed with SIGKILL once the first half of the days succeeded and later days are mid-step (their
 * steps are held until the kill, so the kill cannot come too late); `floe backfill retry` then
 * completes it.
 */
export async function backfillKilledHalfway(dir: string, url: string, days: number, stepMs: number): Promise<{ atKill: Record<string, number> }> {
  const to = new Date(Date.UTC(2025, 0, days)).toISOString().slice(0, 10);
  const env = { FLOE_DATABASE_URL: url, FLOE_HEARTBEAT_MS: "300", STEP_MS: String(stepMs) };
  const half = Math.floor(days / 2);
  const held = { ...env, HOLD_AFTER: new Date(Date.UTC(2025, 0, half)).toISOString().slice(0, 10) };
  expect((await floe(["runs", "--json"], { cwd: dir, env })).code).toBe(0); // migrate once
  const procs = [startFloe(["backfill", "--select", "pipeline:a+", "--from", "2025-01-01", "--to", to, "--concurrency", "2"], dir, held)];
  let atKill: Record<string, number> = {};
  try {
    await waitFor("the backfill to start", () => /backfill [0-9a-f]{8}:/.test(procs[0]!.err()));
    procs.push(startFloe(["worker", "--runs", "2"], dir, held));
    const counts = async (): Promise<Record<string, number>> =>
      Object.fromEntries((await withPg(url, (c) => c.query<{ status: string; n: number }>(`select status, count(*)::int as n from runs group by 1`))).rows.map((r) => [r.status, r.n]));
    await waitFor("the first half to succeed and later days to start", async () => {
      const c = await counts();
      return (c.success ?? 0) >= half && (c.running ?? 0) > 0;
    }, 120_000, 20);
    for (const p of procs) p.child.kill("SIGKILL");
    await Promise.all(procs.map((p) => p.exited));
    atKill = await counts();
  } finally {
    await stop(procs, "SIGKILL");
  }
  expect(atKill.success).toBe(half);
  expect(atKill.running ?? 0, "runs caught mid-step by the kill").toBeGreaterThan(0);
  const id = /backfill ([0-9a-f]{8}):/.exec(procs[0]!.err())![1]!;
  await sleep(1_000); // past three heartbeats of the killed runs
  const retry = await floe(["backfill", "retry", id, "--concurrency", "3", "--json"], { cwd: dir, env });
  expect(retry.code, `${retry.stderr}${retry.stdout}`).toBe(0);
  const out = JSON.parse(retry.stdout) as { status: string; runs: Array<{ status: string; partitions: string }> };
  expect(out.status).toBe("success");
  expect(out.runs).toHaveLength(days);
  expect(out.runs.every((r) => r.status === "success")).toBe(true);

  await withPg(url, async (c) => {
    // from the event log: no downstream step started before its upstream partition succeeded
    const early = await c.query(
      `select e.asset, e.partition from events e where e.type = 'step_started' and e.asset in ('orders', 'report')
       and not exists (select 1 from events u where u.type = 'step_succeeded' and u.partition = e.partition
         and u.asset = case e.asset when 'orders' then 'raw' else 'orders' end and u.id < e.id)`,
    );
    expect(early.rows).toEqual([]);
    // each partition materialized exactly once: one success event and one materialization
    const { rows } = await c.query<{ asset: string; partition: string; n: number }>(`select asset, partition, count(*)::int as n from events where type = 'step_succeeded' group by 1, 2`);
    expect(rows.filter((r) => r.n !== 1)).toEqual([]);
    expect(rows).toHaveLength(3 * days);
    const mats = await c.query<{ n: number }>(`select count(*)::int as n from asset_partitions`);
    expect(mats.rows[0]!.n).toBe(3 * days);
    // chained: the first day's report started before the last day's raw succeeded
    const firstReport = await c.query<{ id: string }>(`select min(id) as id from events where type = 'step_started' and asset = 'report' and partition = '2025-01-01'`);
    const lastRaw = await c.query<{ id: string }>(`select min(id) as id from events where type = 'step_succeeded' and asset = 'raw' and partition = $1`, [to]);
    expect(BigInt(firstReport.rows[0]!.id)).toBeLessThan(BigInt(lastRaw.rows[0]!.id));
  });
  // the step log agrees: every downstream start follows an upstream end of its partition
  const lines = stepLog(dir);
  for (const s of lines.filter((l) => l.what === "start" && UPSTREAM[l.asset])) {
    expect(lines.some((u) => u.what === "end" && u.asset === UPSTREAM[s.asset] && u.partition === s.partition && u.at <= s.at), `${s.asset} ${s.partition}`).toBe(true);
  }
  return { atKill };
}
