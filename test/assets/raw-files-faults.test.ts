import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join, relative } from "node:path";
import { sql } from "kysely";
import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { pipeline } from "../../src/assets/asset.js";
import { duckdbTable } from "../../src/assets/duckdb-table.js";
import { rawFiles, type RawFilesOptions } from "../../src/assets/raw-files.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import type { AssetDefinition } from "../../src/dag/types.js";
import { checks } from "../../src/duckdb/checks.js";
import { materialize, type MaterializeOutcome } from "../../src/runner/launch.js";
import { FileLedger } from "../../src/state/files.js";
import { localStorage } from "../../src/storage/local-storage.js";
import { testEngine } from "../helpers/engine.js";

// Each fault of issue 20 that made a raw step report success with rows missing, replayed against
// a real state store (PostgreSQL when reachable), real DuckDB and real files.
const engine = await testEngine("raw-faults");
const { store, pool, settings } = engine;
const landing = join(engine.home, "landing");
const ledger = new FileLedger(store);
afterAll(() => engine.close());

const put = (path: string, text: string, mtime?: Date): void => {
  mkdirSync(join(landing, path, ".."), { recursive: true });
  writeFileSync(join(landing, path), text);
  if (mtime) utimesSync(join(landing, path), mtime, mtime);
};
/** `n` CSV files under `folder`, one row each (id = its number). */
const putMany = (folder: string, n: number): void => {
  for (let i = 0; i < n; i++) put(`${folder}/f${String(i).padStart(3, "0")}.csv`, `id\n${i}\n`);
};
const raw = (key: string, glob: string, extra: Partial<RawFilesOptions> = {}) =>
  rawFiles(key, { storage: { type: "local", root: "landing" }, glob, format: "csv", ...extra });
const countOf = (key: string, from: AssetDefinition, extra: { partitions?: ReturnType<typeof partitions.daily> } = {}) =>
  duckdbTable(key, { deps: [from], ...extra, sql: ({ ref }) => `select count(*)::int as n, coalesce(sum(id::int), 0)::int as total from ${ref(from)}` });
const run = (assets: AssetDefinition[], opts: { partition?: string; signal?: AbortSignal } = {}): Promise<MaterializeOutcome> =>
  materialize(
    store,
    AssetGraph.build([{ module: "t.ts", pipeline: pipeline("t", { assets }) }]),
    { assets: new Set(assets.map((a) => a.key)), selection: "*", ...(opts.partition ? { partitions: { key: opts.partition } } : {}) },
    { resources: pool, ...(opts.signal ? { signal: opts.signal } : {}) },
  );
/** Records in the ledger what a listing of `prefix` finds, with the files' real etags (as a sensor or an earlier run would). */
const discover = async (source: string, partition: string | null, prefix: string): Promise<void> => {
  for await (const page of localStorage({ root: landing }).list(prefix)) await ledger.discover(source, partition, page);
};
/** A run in `status`, heartbeating `heartbeatAgoMs` ago. */
const runIn = async (status: string, heartbeatAgoMs = 0): Promise<string> => {
  const r = await store.createRun({ trigger: "manual", steps: [] });
  await sql`update runs set status = ${status}, heartbeat_at = now() - make_interval(secs => ${heartbeatAgoMs / 1000}::float8) where id = ${r.id}`.execute(store.db);
  return r.id;
};
/** The pid of a process that ran on this host and has exited. */
const deadPid = (): number => spawnSync(process.execPath, ["-e", ""]).pid!;
const statuses = async (source: string): Promise<Record<string, number>> => Object.fromEntries(Object.entries(await ledger.counts(source)).filter(([, n]) => n > 0));
/** Staged Parquet copies of a raw asset in the warehouse, relative to it. */
const staged = (asset: string): string[] => {
  const dir = join(settings.warehouse, "raw", asset);
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith(".parquet")).map((f) => relative(settings.warehouse, join(dir, f)));
};
/** Waits (bounded) until `probe` holds, or until `running` ends first (then fails, showing how it ended). */
const until = async (probe: () => Promise<boolean>, running: Promise<unknown>, what: string): Promise<void> => {
  let ended: unknown;
  void running.then((o) => (ended = o ?? "ended"), (e: unknown) => (ended = String(e)));
  for (let i = 0; i < 3_000; i++) {
    if (await probe()) return;
    if (ended !== undefined) throw new Error(`the run ended before ${what}: ${JSON.stringify(ended)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never saw ${what}`);
};
const logged = (asset: string, like: string) => async (): Promise<boolean> =>
  (await sql<{ n: number }>`select count(*)::int as n from events where asset = ${asset} and message like ${like}`.execute(store.db)).rows[0]!.n > 0;

describe("claims outlive their owner no more", () => {
  it("files claimed by a process killed on this host, or by a run that failed, are ingested by the next run at once", async () => {
    putMany("killed", 10);
    await discover("raw_killed", null, "killed/");
    const base = { source: "raw_killed", partition: null, limit: 3, claimTimeoutMs: 600_000, maxAttempts: 3 };
    // kill -9 during ingestion: the process is gone, its run still looks alive (fresh heartbeat)
    await ledger.claim({ ...base, workerId: `${hostname()}:${deadPid()}`, runId: await runIn("running"), batchId: "killed-1" });
    // another host's worker whose run was failed
    await ledger.claim({ ...base, workerId: "elsewhere:1", runId: await runIn("failed"), batchId: "killed-2" });
    expect(await statuses("raw_killed")).toEqual({ DISCOVERED: 4, PROCESSING: 6 });

    const out = await run([raw("raw_killed", "killed/*.csv")]);
    expect(out.status, JSON.stringify(out.steps)).toBe("success");
    expect(out.steps[0]!.metadata).toMatchObject({ files: 10, rows: 10 });
    expect(await statuses("raw_killed")).toEqual({ SUCCESS: 10 });
  });
});

describe("a raw step never reports success while files of its partition are held by a dead owner", () => {
  it("waits for files another live run is ingesting, and takes them once that run stops heartbeating", async () => {
    putMany("wait", 5);
    await discover("raw_wait", null, "wait/");
    const holder = await runIn("running");
    await ledger.claim({ source: "raw_wait", partition: null, workerId: "elsewhere:2", runId: holder, batchId: "held", limit: 2, claimTimeoutMs: 600_000, maxAttempts: 3 });
    const a = raw("raw_wait", "wait/*.csv");
    const c = countOf("wait_count", a);
    const running = run([a, c]);
    await until(logged("raw_wait", "waiting for 2 files%"), running, "the step waiting for the 2 held files");
    // the holder dies: its heartbeat goes stale (3 × FLOE_HEARTBEAT_MS)
    await sql`update runs set heartbeat_at = now() - make_interval(secs => ${(settings.heartbeatMs * 3) / 1000 + 1}::float8) where id = ${holder}`.execute(store.db);
    const out = await running;
    expect(out.status, JSON.stringify(out.steps)).toBe("success");
    expect(out.steps[0]!.metadata).toMatchObject({ files: 5, rows: 5 });
    expect(out.steps[1]!.metadata).toMatchObject({ rows: 1 });
    expect(await statuses("raw_wait")).toEqual({ SUCCESS: 5 });
  });

  it("does not wait for files a live concurrent run already ingested (they wait for that run's commit)", async () => {
    putMany("ingested", 3);
    await discover("raw_ingested", null, "ingested/");
    const [f] = await ledger.claim({ source: "raw_ingested", partition: null, workerId: "elsewhere:3", runId: await runIn("running"), batchId: "theirs", limit: 1, claimTimeoutMs: 600_000, maxAttempts: 3 });
    await ledger.recordBatch([{ id: f!.id, status: "SUCCESS", rows: 1, bytes: 5 }], { batchId: "theirs", workerId: "elsewhere:3" });
    const out = await run([raw("raw_ingested", "ingested/*.csv")]);
    expect(out.status).toBe("success");
    // their batch is ingested whole (every file recorded) and waits for their commit: this step,
    // which took its turn after them, reports it too and settles it with its own
    expect(out.steps[0]!.metadata).toMatchObject({ files: 2, adoptedBatches: ["theirs"] });
    expect((await ledger.filesOfBatch("theirs")).map((x) => x.status)).toEqual(["SUCCESS"]);
  });
});

describe("a failed raw step gives back the good files it claimed", () => {
  it("a corrupt CSV with maxFailedFiles 0: the step fails naming it, the good files stay DISCOVERED, and once it is fixed every row lands", async () => {
    for (let f = 0; f < 4; f++) put(`corrupt/good${f}.csv`, `id\n${Array.from({ length: 8 }, (_, i) => f * 8 + i + 1).join("\n")}\n`);
    put("corrupt/zz-bad.csv", 'id\n"33\n');
    const a = raw("raw_corrupt", "corrupt/*.csv", { maxFailedFiles: 0 });
    const c = countOf("corrupt_count", a);
    const first = await run([a, c]);
    expect(first.steps.map((s) => s.status)).toEqual(["failed", "upstream_failed"]);
    expect(first.steps[0]!.error).toMatch(/^1 file failed \(maxFailedFiles: 0\), e\.g\. corrupt\/zz-bad\.csv: line 2: .*; fix or remove the file, then run again$/);
    expect((await ledger.list("raw_corrupt")).map((f) => [f.path, f.status, f.attempts])).toEqual([
      ["corrupt/good0.csv", "DISCOVERED", 0],
      ["corrupt/good1.csv", "DISCOVERED", 0],
      ["corrupt/good2.csv", "DISCOVERED", 0],
      ["corrupt/good3.csv", "DISCOVERED", 0],
      ["corrupt/zz-bad.csv", "FAILED", 1],
    ]);
    expect(staged("raw_corrupt"), "the failed batch's staged copies are removed").toEqual([]);

    // while the bad file is there (in its retry backoff), every run fails on it
    const second = await run([a, c]);
    expect(second.steps[0]!.error).toMatch(/^1 file failed \(maxFailedFiles: 0\), e\.g\. corrupt\/zz-bad\.csv: line 2: .* \(1 of them in an earlier run\); fix or remove the file, then run again$/);
    expect(await statuses("raw_corrupt")).toEqual({ DISCOVERED: 4, FAILED: 1 });

    put("corrupt/zz-bad.csv", "id\n33\n", new Date(Date.now() + 10_000)); // fixed: a new etag
    const third = await run([a, c]);
    expect(third.status, JSON.stringify(third.steps)).toBe("success");
    expect(third.steps[0]!.metadata).toMatchObject({ files: 5, rows: 33, failedFiles: 0 });
    expect(third.steps[1]!.metadata).toMatchObject({ rows: 1 });
    expect(await statuses("raw_corrupt")).toEqual({ SUCCESS: 5 });
  });

  it("a file out of attempts keeps failing the step until it is removed; then the step succeeds with every good row", async () => {
    put("spent/a.csv", "id\n1\n2\n");
    put("spent/b.csv", "id\n3\n");
    put("spent/bad.csv", "id,x\n4\n5,6,7\n");
    const a = raw("raw_spent", "spent/*.csv", { maxFailedFiles: 0, maxAttempts: 1 });
    const c = countOf("spent_count", a);
    expect((await run([a, c])).steps[0]!.status).toBe("failed");
    const again = await run([a, c]);
    expect(again.steps[0]!.error).toMatch(/^1 file failed \(maxFailedFiles: 0\), e\.g\. spent\/bad\.csv: .* \(1 of them in an earlier run\)/);
    expect(await statuses("raw_spent")).toEqual({ DISCOVERED: 2, FAILED: 1 });
    rmSync(join(landing, "spent", "bad.csv"));
    const fixed = await run([a, c]);
    expect(fixed.status, JSON.stringify(fixed.steps)).toBe("success");
    expect(fixed.steps[0]!.metadata).toMatchObject({ files: 2, rows: 3, removedFiles: 1 });
    expect(fixed.steps[1]!.metadata).toMatchObject({ rows: 1 });
    expect((await ledger.list("raw_spent")).map((f) => [f.path, f.status])).toEqual([["spent/a.csv", "SUCCESS"], ["spent/b.csv", "SUCCESS"]]);
  });

  it("a database error mid-ingestion fails the step and gives back every file it claimed; the next run ingests them all", async () => {
    putMany("outage", 6);
    // a real error from the database, on the statement that records the first batch
    await sql`create function floe_test_outage() returns trigger language plpgsql as $$
      begin
        if new.source = 'raw_outage' and new.rows is not null and old.rows is null then raise exception 'simulated outage'; end if;
        return new;
      end $$`.execute(store.db);
    await sql`create trigger floe_test_outage before update on processed_files for each row execute function floe_test_outage()`.execute(store.db);
    const a = raw("raw_outage", "outage/*.csv", { batchSize: 2, parallelism: 1 });
    try {
      const out = await run([a]);
      expect(out.steps[0]!.status).toBe("failed");
      expect(out.steps[0]!.error).toContain("simulated outage");
      expect((await ledger.list("raw_outage")).map((f) => [f.status, f.attempts])).toEqual(Array.from({ length: 6 }, () => ["DISCOVERED", 0]));
    } finally {
      await sql`drop trigger floe_test_outage on processed_files`.execute(store.db);
      await sql`drop function floe_test_outage()`.execute(store.db);
    }
    const next = await run([a, countOf("outage_count", a)]);
    expect(next.status, JSON.stringify(next.steps)).toBe("success");
    expect(next.steps[0]!.metadata).toMatchObject({ files: 6, rows: 6 });
    expect(next.steps[1]!.metadata).toMatchObject({ rows: 1 });
  });
});

describe.skipIf(store.engine !== "postgres")("SIGTERM: an interrupted raw step gives its files back and fails", () => {
  it("aborted mid-ingestion, it claims nothing more, gives back what it ingested, fails naming the count; the next run ingests every file", async () => {
    putMany("abort", 8);
    // The first batch's record waits on an advisory lock this test holds: the abort comes while
    // the step is mid-ingestion, with files already read.
    await sql`create function floe_test_gate() returns trigger language plpgsql as $$
      begin
        if new.source = 'raw_abort' and new.rows is not null and old.rows is null then perform pg_advisory_xact_lock(424242); end if;
        return new;
      end $$`.execute(store.db);
    await sql`create trigger floe_test_gate before update on processed_files for each row execute function floe_test_gate()`.execute(store.db);
    const a = raw("raw_abort", "abort/*.csv", { batchSize: 2, parallelism: 1 });
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const gate = store.db.connection().execute(async (conn) => {
      await sql`select pg_advisory_lock(424242)`.execute(conn);
      locked();
      await opened;
      await sql`select pg_advisory_unlock(424242)`.execute(conn);
    });
    try {
      await isLocked;
      const stop = new AbortController();
      const running = run([a], { signal: stop.signal });
      const waiting = async (): Promise<boolean> =>
        (await sql<{ n: number }>`select count(*)::int as n from pg_locks where locktype = 'advisory' and objid = 424242 and not granted`.execute(store.db)).rows[0]!.n > 0;
      await until(waiting, running, "the first batch being recorded");
      stop.abort(); // SIGTERM
      open();
      const out = await running;
      expect(out.status).toBe("canceled");
      expect(out.steps[0]!.status).toBe("failed");
      expect(out.steps[0]!.error).toBe("interrupted (the run is stopping): 2 claimed files given back to the ledger; rerun with --from-failure");
      expect((await ledger.list("raw_abort")).map((f) => [f.status, f.attempts])).toEqual(Array.from({ length: 8 }, () => ["DISCOVERED", 0]));
    } finally {
      open();
      await gate;
      await sql`drop trigger floe_test_gate on processed_files`.execute(store.db);
      await sql`drop function floe_test_gate()`.execute(store.db);
    }
    const next = await run([a, countOf("abort_count", a)]);
    expect(next.status, JSON.stringify(next.steps)).toBe("success");
    expect(next.steps[0]!.metadata).toMatchObject({ files: 8, rows: 8 });
    expect(await statuses("raw_abort")).toEqual({ SUCCESS: 8 });
  });
});

describe.skipIf(store.engine !== "postgres")("a worker judged dead while it ingests", () => {
  it("drops its staged copies of the files another worker took over, and does not count them", async () => {
    putMany("takeover", 2);
    // The statement that records the batch waits on a lock this test holds, before it locks any
    // row (a statement-level trigger), so the takeover below lands first.
    await sql`create function floe_test_gate2() returns trigger language plpgsql as $$
      begin
        if current_query() like '%failed boolean%' then perform pg_advisory_xact_lock(424243); end if;
        return null;
      end $$`.execute(store.db);
    await sql`create trigger floe_test_gate2 before update on processed_files for each statement execute function floe_test_gate2()`.execute(store.db);
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const gate = store.db.connection().execute(async (conn) => {
      await sql`select pg_advisory_lock(424243)`.execute(conn);
      locked();
      await opened;
      await sql`select pg_advisory_unlock(424243)`.execute(conn);
    });
    try {
      await isLocked;
      const running = run([raw("raw_takeover", "takeover/*.csv", { batchSize: 2, parallelism: 1 })]);
      const waiting = async (): Promise<boolean> =>
        (await sql<{ n: number }>`select count(*)::int as n from pg_locks where locktype = 'advisory' and objid = 424243 and not granted`.execute(store.db)).rows[0]!.n > 0;
      await until(waiting, running, "the batch being recorded");
      // meanwhile another worker judged this one dead, took both files over and ingested them
      await sql`update processed_files set claimed_by = 'elsewhere:9', batch_id = 'thief', run_id = ${await runIn("running")}, rows = 1, bytes = 5
        where source = 'raw_takeover'`.execute(store.db);
      open();
      const out = await running;
      expect(out.status, JSON.stringify(out.steps)).toBe("success");
      expect(out.steps[0]!.metadata).toMatchObject({ files: 0, rows: 0 });
      expect(staged("raw_takeover"), "no copy of theirs in this step's batch").toEqual([]);
      // the thief's batch is recorded whole: reported (and settled) by this step, once
      expect(out.steps[0]!.metadata).toMatchObject({ adoptedBatches: ["thief"] });
      expect((await ledger.filesOfBatch("thief")).map((f) => f.status)).toEqual(["SUCCESS", "SUCCESS"]);
    } finally {
      open();
      await gate;
      await sql`drop trigger floe_test_gate2 on processed_files`.execute(store.db);
      await sql`drop function floe_test_gate2()`.execute(store.db);
    }
  });
});

describe("pendingWork", () => {
  it("is true while the partition has files waiting: DISCOVERED, FAILED with attempts left, or held by a dead owner", async () => {
    const daily = partitions.daily({ start: "2025-01-01" });
    const a = raw("raw_pending", "pending/{partition}/*.csv", { partitions: daily, maxFailedFiles: 5 });
    const ctx = { assetKey: "raw_pending", resource: <T>(name: string) => pool.get<T>(name) };
    const pending = async (): Promise<boolean> => (await a.pendingWork!(ctx, ["2025-01-01", "2025-01-02"])).includes("2025-01-01");
    put("pending/2025-01-01/a.csv", "id\n1\n");
    expect(await pending()).toBe(false); // not listed yet: nothing known waits
    await discover("raw_pending", "2025-01-01", "pending/2025-01-01/");
    expect(await pending()).toBe(true);
    expect((await run([a], { partition: "2025-01-01" })).status).toBe("success");
    expect(await pending()).toBe(false);

    put("pending/2025-01-01/b.csv", "id\n2\n");
    await discover("raw_pending", "2025-01-01", "pending/2025-01-01/");
    const claim = { source: "raw_pending", partition: "2025-01-01", limit: 1, claimTimeoutMs: 600_000, maxAttempts: 3 };
    await ledger.claim({ ...claim, workerId: "elsewhere:4", runId: await runIn("running"), batchId: "pend-live" });
    expect(await pending(), "held by a live run").toBe(false);
    await sql`update processed_files set claimed_by = ${`${hostname()}:${deadPid()}`} where batch_id = 'pend-live'`.execute(store.db);
    expect(await pending(), "held by a process of this host that is gone").toBe(true);

    put("pending/2025-01-01/b.csv", "id,x\n2\n3,4,5\n", new Date(Date.now() + 10_000)); // now corrupt
    const out = await run([a], { partition: "2025-01-01" });
    expect(out.steps[0]!.metadata).toMatchObject({ files: 0, failedFiles: 1 });
    expect(await pending(), "a failed file with attempts left").toBe(true);
    await sql`update processed_files set attempts = 3 where source = 'raw_pending' and status = 'FAILED'`.execute(store.db);
    expect(await pending(), "out of attempts: nothing waits").toBe(false);
  });
});

describe("a file that vanishes from the landing leaves the ledger and the tables computed from it", () => {
  it("deleting a duplicate file that fails a downstream unique check lets the next run pass; a file put back is new", async () => {
    const daily = partitions.daily({ start: "2025-01-01" });
    const a = raw("raw_people", "people/{partition}/*.csv", { partitions: daily, sensor: true });
    const people = duckdbTable("people", {
      deps: [a], partitions: daily,
      sql: ({ ref }) => `select id from ${ref(a)}`,
      columns: z.object({ id: z.number().int() }),
      checks: [checks.unique("id")],
    });
    put("people/2025-01-01/a.csv", "id\n1\n2\n");
    put("people/2025-01-01/dup.csv", "id\n2\n");
    const first = await run([a, people], { partition: "2025-01-01" });
    expect(first.steps.map((s) => s.status)).toEqual(["success", "failed"]);
    const dupId = (await ledger.list("raw_people")).find((f) => f.path.endsWith("dup.csv"))!.id;
    expect(staged("raw_people").filter((f) => f.endsWith(`/${dupId}.parquet`))).toHaveLength(1);
    // every run fails while the duplicate is there
    expect((await run([a, people], { partition: "2025-01-01" })).steps[1]!.status).toBe("failed");

    rmSync(join(landing, "people", "2025-01-01", "dup.csv"));
    // a sensor pass lists, but never forgets
    await a.sensor!.poll({ assetKey: "raw_people", resource: <T>(name: string) => pool.get<T>(name) });
    expect((await ledger.list("raw_people")).map((f) => f.path)).toEqual(["people/2025-01-01/a.csv", "people/2025-01-01/dup.csv"]);

    const after = await run([a, people], { partition: "2025-01-01" });
    expect(after.status, JSON.stringify(after.steps)).toBe("success");
    expect(after.steps[0]!.metadata).toMatchObject({ files: 0, removedFiles: 1 });
    expect(after.steps[1]!.metadata).toMatchObject({ rows: 2 });
    expect((await ledger.list("raw_people")).map((f) => f.path)).toEqual(["people/2025-01-01/a.csv"]);
    expect(staged("raw_people").filter((f) => f.endsWith(`/${dupId}.parquet`)), "its staged copy is gone").toEqual([]);
    expect(await logged("raw_people", "1 file no longer in the landing, forgotten with its staged rows: people/2025-01-01/dup.csv.%overwrite-partition%")(), "one warning names it").toBe(true);

    put("people/2025-01-01/dup.csv", "id\n3\n");
    const back = await run([a, people], { partition: "2025-01-01" });
    expect(back.status, JSON.stringify(back.steps)).toBe("success");
    expect(back.steps[0]!.metadata).toMatchObject({ files: 1, rows: 1 });
    expect(back.steps[1]!.metadata).toMatchObject({ rows: 3 });
  });
});
