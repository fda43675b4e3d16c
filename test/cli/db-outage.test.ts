import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { runScheduler } from "../../src/scheduler/scheduler.js";
import { StateStore } from "../../src/state/store.js";
import { isTransient, type OutageEvent } from "../../src/state/transient.js";
import { baseUrl, queryRows, testDatabase } from "../helpers/pg.js";
import { floe, pipelineModule, repoRoot, tempProject } from "../helpers/project.js";

const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const dbName = db ? new URL(db.url).pathname.slice(1) : "";
const project = tempProject({
  "pipelines/q.ts": pipelineModule("q", { quick: [] }),
  // `slow` says it started, then waits for the test to let it finish (while the database is closed)
  "pipelines/s.ts": `import { appendFileSync, existsSync } from "node:fs";
import { asset, pipeline } from "floe";
const slow = asset("slow", { materialize: async () => {
  appendFileSync(process.env.SLOW_STARTED!, "started\\n");
  for (let i = 0; i < 1200 && !existsSync(process.env.SLOW_RELEASE!); i++) await new Promise((r) => setTimeout(r, 50));
  return { metadata: { key: "slow" } };
} });
export default pipeline("s", { assets: [slow, asset("after", { deps: [slow], materialize: () => ({ metadata: { key: "after" } }) })] });
`,
});
const started = join(project.dir, "slow-started");
const release = join(project.dir, "slow-release");

/** One statement on the `test` database as the administrator (the closed database takes no connection). */
async function admin(text: string): Promise<void> {
  const c = new pg.Client({ connectionString: baseUrl });
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}
/** What a real outage does: no new connections, and the open ones dropped. */
async function closeDatabase(): Promise<void> {
  await admin(`alter database ${dbName} allow_connections false`);
  await admin(`select pg_terminate_backend(pid) from pg_stat_activity where datname = '${dbName}' and pid <> pg_backend_pid()`);
}
async function openDatabase(): Promise<void> {
  await admin(`alter database ${dbName} allow_connections true`);
}
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Waits for `cond`, up to `ms` (then the assertion after it fails, naming what was missing). */
async function until(cond: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end && !(await cond()); ) await pause(50);
}

function startWorker() {
  // two slots: one runs, the other goes on looking at the queue (and at heartbeats) during the outage;
  // 1 s heartbeats make a run look dead after 3 s of silence, far shorter than the outage
  const child = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "worker", "--runs", "2"], {
    cwd: project.dir,
    env: { ...process.env, FLOE_DATABASE_URL: db!.url, FLOE_HEARTBEAT_MS: "1000", SLOW_STARTED: started, SLOW_RELEASE: release },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}
let worker: ReturnType<typeof startWorker> | undefined;

afterAll(async () => {
  if (worker && worker.child.exitCode === null) {
    worker.child.kill("SIGKILL");
    await worker.exited;
  }
  if (db) await openDatabase().catch(() => undefined);
  project.remove();
  await db?.drop();
});

async function queue(select: string): Promise<string> {
  const r = await floe(["materialize", "--select", select, "--queue", "--json"], { cwd: project.dir, env: { FLOE_DATABASE_URL: db!.url } });
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { runId: string }).runId;
}
const lines = (text: string, re: RegExp): string[] => text.split("\n").filter((l) => re.test(l));

describe.skipIf(!db)("a PostgreSQL outage (ALLOW_CONNECTIONS false, connections dropped)", () => {
  it("an idle worker waits it out, says so once each way, and runs what is queued after", async () => {
    worker = startWorker();
    await until(() => worker!.stderr().includes("waiting for queued runs"));
    expect(worker.stderr()).toContain("waiting for queued runs");
    const w = worker;
    try {
      await closeDatabase();
      // the idle worker looks at the queue within its poll; then it holds on through the rest of the outage
      await until(() => w.stderr().includes("unreachable") || w.child.exitCode !== null);
      expect(w.stderr()).toContain("floe worker: the state store is unreachable (");
      await pause(8_000);
    } finally {
      await openDatabase();
    }
    await until(() => w.stderr().includes("the state store is back") || w.child.exitCode !== null);
    expect(w.child.exitCode, w.stderr()).toBeNull();
    expect(lines(w.stderr(), /unreachable/), w.stderr()).toHaveLength(1);
    expect(lines(w.stderr(), /floe worker: the state store is back after \d+\.\d s$/), w.stderr()).toHaveLength(1);

    const runId = await queue("quick");
    await until(() => w.stdout().includes(`run ${runId.slice(0, 8)} `) || w.child.exitCode !== null);
    expect(w.stdout()).toContain(`run ${runId.slice(0, 8)} success: 1/1 steps succeeded`);
    const [run] = await queryRows<{ status: string; worker: string }>(db!.url, `select status, worker from runs where id = '${runId}'`);
    expect(run?.status).toBe("success");
    expect(run?.worker).toMatch(new RegExp(`:${w.child.pid}$`)); // the same worker, still alive
    expect(w.child.exitCode).toBeNull();
  }, 60_000);

  it("a run in flight keeps running through it: its writes wait for the store, it is not taken for dead, each step runs once, the run succeeds", async () => {
    const w = worker!;
    expect(w.child.exitCode, w.stderr()).toBeNull();
    const runId = await queue("+after");
    await until(() => existsSync(started) || w.child.exitCode !== null);
    expect(existsSync(started), w.stderr()).toBe(true);
    try {
      await closeDatabase();
      // `slow` ends while the database is closed: its success, its materialization and the next
      // step's start have nowhere to go until it opens again
      writeFileSync(release, "go");
      await pause(8_000);
      expect(w.child.exitCode, w.stderr()).toBeNull();
    } finally {
      await openDatabase();
    }
    await until(() => w.stdout().includes(`run ${runId.slice(0, 8)} `) || w.child.exitCode !== null);
    expect(w.stdout(), w.stderr()).toContain(`run ${runId.slice(0, 8)} success: 2/2 steps succeeded`);
    const [run] = await queryRows<{ status: string }>(db!.url, `select status from runs where id = '${runId}'`);
    expect(run?.status).toBe("success");
    const steps = await queryRows<{ asset: string; status: string; attempts: number }>(db!.url, `select asset, status, attempts from run_steps where run_id = '${runId}' order by asset`);
    expect(steps).toEqual([{ asset: "after", status: "success", attempts: 1 }, { asset: "slow", status: "success", attempts: 1 }]);
    const events = await queryRows<{ type: string; asset: string | null; n: number }>(db!.url,
      `select type, asset, count(*)::int as n from events where run_id = '${runId}' and type in ('run_started', 'step_started', 'step_succeeded', 'run_succeeded') group by type, asset order by type, asset`);
    expect(events).toEqual([
      { type: "run_started", asset: null, n: 1 },
      { type: "run_succeeded", asset: null, n: 1 },
      { type: "step_started", asset: "after", n: 1 },
      { type: "step_started", asset: "slow", n: 1 },
      { type: "step_succeeded", asset: "after", n: 1 },
      { type: "step_succeeded", asset: "slow", n: 1 },
    ]);
    const mats = await queryRows<{ asset: string; last_run_id: string }>(db!.url, `select asset, last_run_id from asset_partitions where asset in ('slow', 'after') order by asset`);
    expect(mats).toEqual([{ asset: "after", last_run_id: runId }, { asset: "slow", last_run_id: runId }]);
    // its silent heartbeats during the outage did not get it failed and requeued: `slow` ran once, in one run
    expect(readFileSync(started, "utf8")).toBe("started\n");
    expect(await queryRows(db!.url, `select id, status, error from runs where id <> '${runId}' and (tags ? 'floe/recovery' or status = 'failed')`)).toEqual([]);
    // still a worker: it stops cleanly when told to
    expect(w.child.exitCode, w.stderr()).toBeNull();
    w.child.kill("SIGTERM");
    expect(await w.exited, w.stderr()).toBe(0);
    expect(w.stderr()).not.toContain("internal error");
  }, 60_000);

  it("a watcher's LISTEN connection comes back after being dropped and fires once; connection failures are transient, SQL errors are not", async () => {
    const store = await StateStore.open({ url: db!.url, home: join(project.dir, ".floe") });
    let heard = 0;
    const stop = await store.watchQueue(() => heard++);
    const listeners = async (): Promise<number> => (await queryRows<{ n: number }>(baseUrl, `select count(*)::int as n from pg_stat_activity where datname = '${dbName}' and application_name = 'floe listen'`))[0]!.n;
    try {
      expect(await listeners()).toBe(1);
      let refused: unknown;
      try {
        await closeDatabase();
        const c = new pg.Client({ connectionString: db!.url });
        refused = await c.connect().then(() => c.end(), (e: unknown) => e);
        await until(async () => (await listeners()) === 0);
      } finally {
        await openDatabase();
      }
      expect(refused).toBeInstanceOf(Error);
      expect(isTransient(refused), String(refused)).toBe(true);
      await until(async () => heard > 0 && (await listeners()) === 1);
      expect(heard).toBe(1); // once on reconnecting: something may have been queued meanwhile
      expect(await listeners()).toBe(1);
      await queue("quick"); // another process queues a run: NOTIFY reaches the new connection
      await until(() => heard > 1);
      expect(heard).toBe(2);
      const sqlError = await store.ping().then(() => queryRows(db!.url, "select * from no_such_table")).catch((e: unknown) => e);
      expect(sqlError).toBeInstanceOf(Error);
      expect(isTransient(sqlError)).toBe(false);
    } finally {
      await stop();
      await store.close();
    }
  }, 60_000);

  it("a scheduler records the ticks that fell in it once the store is back, each once, none skipped", async () => {
    const graph = AssetGraph.build([{ module: "p.ts", pipeline: pipeline("every_second", { assets: [asset("beat", { materialize: () => ({}) })], schedule: { cron: "* * * * * *" } }) }]);
    const store = await StateStore.open({ url: db!.url, home: join(project.dir, ".floe") });
    const controller = new AbortController();
    const outages: Array<OutageEvent["state"]> = [];
    const errors: unknown[] = [];
    const created: string[] = [];
    const ticks = async (): Promise<Array<{ tick: string; runs: number }>> => queryRows(db!.url, `select tags->>'floe/tick' as tick, count(*)::int as runs from runs where trigger = 'schedule' group by 1 order by 1`);
    let closedAt = Infinity;
    let openedAt = 0;
    const running = runScheduler(store, graph, { signal: controller.signal, onRun: (_n, t) => created.push(t.toISOString()), onError: (_n, _t, e) => errors.push(e), onOutage: (e) => outages.push(e.state) });
    try {
      await until(() => created.length >= 2);
      try {
        await closeDatabase();
        closedAt = Date.now();
        await until(() => outages.length > 0, 10_000); // a tick a second finds the store gone at once
        expect(outages).toEqual(["unreachable"]);
        await pause(3_000);
      } finally {
        openedAt = Date.now();
        await openDatabase();
      }
      await until(() => outages.length > 1);
      const after = created.length;
      await until(() => created.length > after + 1);
    } finally {
      controller.abort();
      await running;
      await store.close();
    }
    expect(errors).toEqual([]);
    expect(outages).toEqual(["unreachable", "back"]);
    const recorded = await ticks();
    expect(recorded.every((t) => t.runs === 1)).toBe(true);
    expect([...created].sort()).toEqual(recorded.map((t) => t.tick));
    const secs = recorded.map((t) => Date.parse(t.tick) / 1000);
    expect(secs.every((x, i) => i === 0 || x === secs[i - 1]! + 1), JSON.stringify(recorded)).toBe(true);
    expect(secs.filter((x) => x * 1000 >= closedAt && x * 1000 < openedAt).length).toBeGreaterThanOrEqual(2); // ticks of the outage, recorded after it
  }, 60_000);

  it("a batch written again after a lost answer stores its events once; a batch that never landed is stored whole", async () => {
    const store = await StateStore.open({ url: db!.url, home: join(project.dir, ".floe") });
    try {
      const run = await store.createRun({ trigger: "manual", steps: [{ asset: "quick", partition: null }] });
      const at = new Date();
      const batch = {
        runs: [{ id: run.id, status: "running" as const, startedAt: at }],
        events: [
          { runId: run.id, type: "run_started", message: "run started: 1 steps", at },
          { runId: run.id, asset: "quick", type: "log", message: "same line", at },
          { runId: run.id, asset: "quick", type: "log", message: "same line", at, data: { n: 1 } },
        ],
      };
      const count = async (): Promise<number> => (await queryRows<{ n: number }>(db!.url, `select count(*)::int as n from events where run_id = '${run.id}' and type <> 'run_created'`))[0]!.n;
      await store.writeBatch(batch);
      expect(await count()).toBe(3);
      await store.writeBatch(batch, { retry: true }); // the first try committed, its answer was lost
      expect(await count()).toBe(3);
      const later = new Date(at.getTime() + 1);
      await store.writeBatch({ events: [{ runId: run.id, asset: "quick", type: "log", message: "same line", at: later }, { runId: run.id, asset: "quick", type: "log", message: "same line", at: later }] }, { retry: true });
      expect(await count()).toBe(5); // nothing of it had landed: all of it is stored
    } finally {
      await store.close();
    }
  });
});
