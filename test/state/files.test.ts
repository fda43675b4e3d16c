import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileLedger, type ClaimedFile } from "../../src/state/files.js";
import { StateStore } from "../../src/state/index.js";
import type { ObjectInfo } from "../../src/storage/types.js";
import { pgAvailable, testDatabase } from "../helpers/pg.js";

const pgUp = await pgAvailable();
const file = (key: string, etag = "e1", size = 10): ObjectInfo => ({ key, etag, size, lastModified: new Date("2025-01-01T00:00:00Z") });
const base = { partition: null, workerId: "w1", runId: "r1", batchId: "b1", limit: 100, claimTimeoutMs: 60_000, maxAttempts: 3 };
const paths = (fs: readonly ClaimedFile[]): string[] => fs.map((f) => f.path);
/** The pid of a process that ran on this host and has exited. */
const deadPid = (): number => {
  const { pid } = spawnSync(process.execPath, ["-e", ""]);
  if (pid === undefined) throw new Error("could not start node");
  return pid;
};

// One suite body, run on both engines: they must behave identically.
for (const engine of ["pglite", "postgres"] as const) {
  describe.skipIf(engine === "postgres" && !pgUp)(`FileLedger on ${engine}`, () => {
    let store: StateStore;
    let ledger: FileLedger;
    let cleanup: () => Promise<void>;
    /** Moves a source's clocks back, as if `ms` had passed. */
    const age = async (source: string, column: "claimed_at" | "next_attempt_at", ms: number): Promise<void> => {
      await sql`update processed_files set ${sql.ref(column)} = ${sql.ref(column)} - make_interval(secs => ${ms / 1000}::float8) where source = ${source}`.execute(store.db);
    };

    beforeAll(async () => {
      if (engine === "pglite") {
        const home = mkdtempSync(join(tmpdir(), "floe-files-"));
        store = await StateStore.open({ home, owner: "files.test" });
        cleanup = async () => rmSync(home, { recursive: true, force: true });
      } else {
        const db = (await testDatabase())!;
        store = await StateStore.open({ url: db.url, home: "/nonexistent" });
        cleanup = () => db.drop();
      }
      ledger = new FileLedger(store);
    });
    afterAll(async () => {
      await store?.close();
      await cleanup?.();
    });

    it("discovers new files, reprocesses changed ones and never touches unchanged ones", async () => {
      const s = "discover";
      expect(await ledger.discover(s, null, [file("b.csv"), file("a.csv"), file("a.csv"), file("d.csv")])).toEqual({ added: 3, changed: 0, unchanged: 0 });
      const first = await ledger.claim({ ...base, source: s });
      expect(paths(first)).toEqual(["a.csv", "b.csv", "d.csv"]);
      await ledger.settle(first.map((f) => ({ id: f.id, status: "SUCCESS" as const, rows: 3, bytes: 10 })));
      await ledger.settle([{ id: first[2]!.id, status: "FAILED", error: "late" }]); // settled already: ignored

      // a unchanged, b new etag, d new size, c new
      const again = [file("a.csv"), file("b.csv", "e2"), file("c.csv"), file("d.csv", "e1", 11)];
      expect(await ledger.discover(s, null, again)).toEqual({ added: 1, changed: 2, unchanged: 1 });
      expect(await ledger.discover(s, null, again)).toEqual({ added: 0, changed: 0, unchanged: 4 });
      const rows = await ledger.list(s);
      expect(rows.map((f) => [f.path, f.status, f.attempts, f.batchId, f.rows, f.etag, f.size])).toEqual([
        ["a.csv", "SUCCESS", 1, "b1", 3, "e1", 10],
        ["b.csv", "DISCOVERED", 0, null, null, "e2", 10],
        ["c.csv", "DISCOVERED", 0, null, null, "e1", 10],
        ["d.csv", "DISCOVERED", 0, null, null, "e1", 11],
      ]);
      expect(rows[0]).toMatchObject({ source: s, partition: null, bytes: 10, error: null, runId: "r1", claimedBy: null, lastModified: new Date("2025-01-01T00:00:00Z") });
      expect(rows[0]!.id).toMatch(/^\d+$/);
      expect(paths(await ledger.claim({ ...base, source: s, batchId: "b2" }))).toEqual(["b.csv", "c.csv", "d.csv"]);
      expect(await ledger.counts(s)).toEqual({ DISCOVERED: 0, PROCESSING: 3, SUCCESS: 1, FAILED: 0, SKIPPED: 0 });
    });

    it("claims in path order, up to the limit, within one partition", async () => {
      const s = "order";
      const day1 = Array.from({ length: 10 }, (_, i) => file(`2025-01-01/f${9 - i}.csv`));
      await ledger.discover(s, "2025-01-01", day1);
      await ledger.discover(s, "2025-01-02", [file("2025-01-02/a.csv")]);
      const opts = { ...base, source: s, partition: "2025-01-01", limit: 4, batchId: "o1" };
      expect(paths(await ledger.claim(opts))).toEqual(["2025-01-01/f0.csv", "2025-01-01/f1.csv", "2025-01-01/f2.csv", "2025-01-01/f3.csv"]);
      expect(paths(await ledger.claim({ ...opts, batchId: "o2" }))).toEqual(["2025-01-01/f4.csv", "2025-01-01/f5.csv", "2025-01-01/f6.csv", "2025-01-01/f7.csv"]);
      expect(await ledger.claim({ ...opts, limit: 0 })).toEqual([]);
      const last = await ledger.claim({ ...opts, batchId: "o3" });
      expect(paths(last)).toEqual(["2025-01-01/f8.csv", "2025-01-01/f9.csv"]);
      expect(last[0]).toMatchObject({ attempts: 1, previousBatchId: null, etag: "e1", size: 10, lastModified: new Date("2025-01-01T00:00:00Z") });
      expect(await ledger.claim({ ...opts, batchId: "o4" })).toEqual([]);
      // a claim of batch o1 again (its answer was lost in an outage, say) takes back its own unrecorded files
      expect(paths(await ledger.claim(opts))).toEqual(["2025-01-01/f0.csv", "2025-01-01/f1.csv", "2025-01-01/f2.csv", "2025-01-01/f3.csv"]);
      expect(await ledger.claim({ ...opts, workerId: "another-worker" })).toEqual([]);
      expect(await ledger.pendingPartitions(s)).toEqual(["2025-01-02"]);
      expect(paths(await ledger.claim({ ...opts, partition: "2025-01-02" }))).toEqual(["2025-01-02/a.csv"]);
      expect((await ledger.filesOfBatch("o2")).map((f) => [f.path, f.status, f.claimedBy, f.partition])).toEqual([
        ["2025-01-01/f4.csv", "PROCESSING", "w1", "2025-01-01"],
        ["2025-01-01/f5.csv", "PROCESSING", "w1", "2025-01-01"],
        ["2025-01-01/f6.csv", "PROCESSING", "w1", "2025-01-01"],
        ["2025-01-01/f7.csv", "PROCESSING", "w1", "2025-01-01"],
      ]);
    });

    it("reclaims a timed-out claim with its previous batch, and a stale worker cannot settle it", async () => {
      const s = "timeout";
      await ledger.discover(s, null, [file("x.csv")]);
      const [x] = await ledger.claim({ ...base, source: s, workerId: "dead", batchId: "t1" });
      expect(await ledger.claim({ ...base, source: s, batchId: "t2" })).toEqual([]); // not timed out yet
      await age(s, "claimed_at", 90_000);
      // with retryBaseMs a lost attempt also waits the backoff: 60 s + 60 s · 2^0 > 90 s
      expect(await ledger.claim({ ...base, source: s, batchId: "t2", retryBaseMs: 60_000 })).toEqual([]);
      const [again] = await ledger.claim({ ...base, source: s, workerId: "w2", batchId: "t2" });
      expect(again).toMatchObject({ id: x!.id, path: "x.csv", attempts: 2, previousBatchId: "t1" });

      await ledger.settle([{ id: x!.id, status: "FAILED", error: "stale" }], { batchId: "t1" }); // the dead worker's: ignored
      expect(await ledger.settleBatch("t1")).toBe(0);
      expect((await ledger.list(s))[0]).toMatchObject({ status: "PROCESSING", claimedBy: "w2", batchId: "t2", error: null });
      // recovery: batch b1 turns out committed, so the file is done without reprocessing
      await ledger.settle([{ id: again!.id, status: "SUCCESS" }], { batchId: "t2" });
      expect((await ledger.list(s))[0]).toMatchObject({ status: "SUCCESS", claimedBy: null, claimedAt: null });
    });

    it("recordBatch stores rows and bytes of ingested files and fails the rest, only within the caller's claim", async () => {
      const s = "record";
      await ledger.discover(s, null, [file("a.csv"), file("b.csv"), file("c.csv")]);
      const [a, b, c] = await ledger.claim({ ...base, source: s, workerId: "slow", batchId: "rec-1" });
      // c's claim times out and another worker takes it over while "slow" still works on it
      await sql`update processed_files set claimed_at = claimed_at - interval '90 seconds' where source = ${s} and path = 'c.csv'`.execute(store.db);
      const [taken] = await ledger.claim({ ...base, source: s, workerId: "fast", batchId: "rec-2" });
      expect(taken).toMatchObject({ path: "c.csv", attempts: 2 });
      const n = await ledger.recordBatch([
        { id: a!.id, status: "SUCCESS", rows: 7, bytes: 70 },
        { id: b!.id, status: "FAILED", error: "line 2: bad" },
        { id: c!.id, status: "FAILED", error: "late: not mine any more" },
      ], { batchId: "rec-1", workerId: "slow", retryBaseMs: 1_000 });
      expect(n.sort()).toEqual([a!.id, b!.id].sort()); // c is no longer this claim's
      const row = async (path: string) => (await ledger.list(s)).find((f) => f.path === path)!;
      expect(await row("a.csv")).toMatchObject({ status: "PROCESSING", rows: 7, bytes: 70, claimedBy: "slow", error: null });
      expect(await row("b.csv")).toMatchObject({ status: "FAILED", rows: null, claimedBy: null, error: "line 2: bad" });
      expect(await row("c.csv")).toMatchObject({ status: "PROCESSING", claimedBy: "fast", batchId: "rec-2", error: null, attempts: 2 });
      // a worker name alone is not enough: the batch must match too
      expect(await ledger.recordBatch([{ id: c!.id, status: "FAILED", error: "x" }], { batchId: "rec-1", workerId: "fast" })).toEqual([]);
      // the commit keeps rows and bytes
      expect(await ledger.settleBatch("rec-1")).toBe(1);
      expect(await row("a.csv")).toMatchObject({ status: "SUCCESS", rows: 7, bytes: 70 });
      await expect(ledger.recordBatch([{ id: a!.id, status: "SKIPPED" }], { batchId: "rec-1", workerId: "slow" })).rejects.toThrow(/status SKIPPED/);
    });

    it("claims and reports pending only files modified since a time, when asked (rawFiles `since`)", async () => {
      const s = "since";
      const at = (key: string, iso: string): ObjectInfo => ({ key, etag: "e", size: 1, lastModified: new Date(iso) });
      await ledger.discover(s, "old", [at("old/a.csv", "2024-01-01T00:00:00Z")]);
      await ledger.discover(s, "new", [at("new/b.csv", "2024-06-01T00:00:00Z"), at("new/c.csv", "2024-05-31T23:59:59Z")]);
      const since = new Date("2024-06-01T00:00:00Z");
      expect(await ledger.pendingPartitions(s)).toEqual(["new", "old"]);
      expect(await ledger.pendingPartitions(s, since)).toEqual(["new"]);
      expect(paths(await ledger.claim({ ...base, source: s, partition: "old", modifiedSince: since }))).toEqual([]);
      expect(paths(await ledger.claim({ ...base, source: s, partition: "new", modifiedSince: since }))).toEqual(["new/b.csv"]);
    });

    it("never stores a resolved secret in a file's error", async () => {
      const { resolveSecret, secret } = await import("../../src/secrets.js");
      process.env.FLOE_TEST_FILES_SECRET = "pa55-w0rd-xyz";
      const value = resolveSecret(secret("FLOE_TEST_FILES_SECRET"));
      const s = "redact";
      await ledger.discover(s, null, [file("a.csv"), file("b.csv")]);
      const [a, b] = await ledger.claim({ ...base, source: s, batchId: "red-1" });
      await ledger.recordBatch([{ id: a!.id, status: "FAILED", error: `GET https://u:${value}@host/a.csv: 403` }], { batchId: "red-1", workerId: "w1" });
      await ledger.settle([{ id: b!.id, status: "FAILED", error: `auth ${value} rejected` }]);
      const errors = (await ledger.list(s)).map((f) => f.error);
      expect(errors).toEqual(["GET https://u:***@host/a.csv: 403", "auth *** rejected"]);
    });

    it("retries a failed file after its exponential backoff, until maxAttempts", async () => {
      const s = "retry";
      await ledger.discover(s, null, [file("bad.csv"), file("skip.csv")]);
      const opts = { ...base, source: s, maxAttempts: 2, batchId: "f1" };
      const [bad, skip] = await ledger.claim(opts);
      await ledger.settle([
        { id: bad!.id, status: "FAILED", error: "line 2: expected 2 columns, found 3" },
        { id: skip!.id, status: "SKIPPED", rows: 0, bytes: 0 },
      ], { retryBaseMs: 60_000 });
      let [row] = await ledger.list(s, { status: "FAILED" });
      expect(row).toMatchObject({ path: "bad.csv", attempts: 1, claimedBy: null, claimedAt: null, error: "line 2: expected 2 columns, found 3" });
      expect(row!.nextAttemptAt!.getTime() - row!.updatedAt.getTime()).toBe(60_000); // base · 2^0
      expect(await ledger.claim(opts)).toEqual([]); // still backing off

      await age(s, "next_attempt_at", 61_000);
      const [retry] = await ledger.claim({ ...opts, batchId: "f2" });
      expect(retry).toMatchObject({ path: "bad.csv", attempts: 2, previousBatchId: null });
      expect((await ledger.list(s, { status: "PROCESSING" }))[0]!.nextAttemptAt).toBeNull();
      await ledger.settle([{ id: retry!.id, status: "FAILED", error: "again" }], { retryBaseMs: 60_000 });
      [row] = await ledger.list(s, { status: "FAILED" });
      expect(row!.nextAttemptAt!.getTime() - row!.updatedAt.getTime()).toBe(120_000); // base · 2^1

      await age(s, "next_attempt_at", 200_000);
      expect(await ledger.claim(opts)).toEqual([]); // attempts 2 = maxAttempts: it stays FAILED
      expect(paths(await ledger.claim({ ...opts, maxAttempts: 3 }))).toEqual(["bad.csv"]);
      expect(await ledger.counts(s)).toEqual({ DISCOVERED: 0, PROCESSING: 1, SUCCESS: 0, FAILED: 0, SKIPPED: 1 });
      expect(await ledger.list(s, { status: "SKIPPED", limit: 5 })).toHaveLength(1);
    });

    it("settles a whole batch after its commit", async () => {
      const s = "batch";
      await ledger.discover(s, null, [file("1.csv"), file("2.csv"), file("3.csv")]);
      const claimed = await ledger.claim({ ...base, source: s, batchId: "batch-1" });
      await ledger.settle([{ id: claimed[1]!.id, status: "FAILED", error: "corrupt" }]);
      expect(await ledger.settleBatch("batch-1", "SUCCESS")).toBe(2);
      expect(await ledger.settleBatch("batch-1")).toBe(0);
      expect((await ledger.filesOfBatch("batch-1")).map((f) => [f.path, f.status])).toEqual([["1.csv", "SUCCESS"], ["2.csv", "FAILED"], ["3.csv", "SUCCESS"]]);
      expect(await ledger.filesOfBatch("no-such-batch")).toEqual([]);
      await expect(ledger.settle([{ id: claimed[0]!.id, status: "DONE" as "SUCCESS" }])).rejects.toThrow(/status DONE/);
    });

    it("a batch still being worked on renews its claims, so nobody takes them over", async () => {
      const s = "touch";
      await ledger.discover(s, null, [file("long.csv")]);
      await ledger.claim({ ...base, source: s, workerId: "busy", batchId: "long-1" });
      await age(s, "claimed_at", 90_000); // older than the 60 s timeout…
      expect(await ledger.touch("long-1")).toBe(1); // …but its worker is alive and renews it
      expect(await ledger.claim({ ...base, source: s, workerId: "thief", batchId: "long-2" })).toEqual([]);
      expect((await ledger.list(s))[0]).toMatchObject({ status: "PROCESSING", claimedBy: "busy", attempts: 1 });
      expect(await ledger.touch("no-such-batch")).toBe(0);
    });

    it("a file whose claim keeps timing out (it kills its worker) ends FAILED after maxAttempts", async () => {
      const s = "poison";
      await ledger.discover(s, null, [file("poison.csv")]);
      const opts = { ...base, source: s, maxAttempts: 2 };
      for (let attempt = 1; attempt <= 2; attempt++) {
        const [p] = await ledger.claim({ ...opts, workerId: `dies-${attempt}`, batchId: `p${attempt}` });
        expect(p).toMatchObject({ path: "poison.csv", attempts: attempt });
        await age(s, "claimed_at", 90_000); // the worker died holding it
      }
      expect(await ledger.claim({ ...opts, batchId: "p3" })).toEqual([]);
      expect((await ledger.list(s))[0]).toMatchObject({
        status: "FAILED", attempts: 2, claimedBy: null,
        error: "its worker stopped (crashed, killed or timed out) on each of 2 attempts while processing it",
      });
    });

    it("after two crashes in a row, every recorded batch is settled, not only the latest", async () => {
      const s = "two-crashes";
      await ledger.discover(s, "2025-01-01", [file("a.csv"), file("b.csv")]);
      const [a] = await ledger.claim({ ...base, source: s, partition: "2025-01-01", batchId: "crash-1", limit: 1 });
      const [b] = await ledger.claim({ ...base, source: s, partition: "2025-01-01", batchId: "crash-2", limit: 1 });
      // both batches were recorded by succeeded steps, and both processes died before settling
      for (const batchId of ["crash-1", "crash-2"]) {
        const run = await store.createRun({ trigger: "manual", steps: [{ asset: s, partition: "2025-01-01" }] });
        await store.writeBatch({ steps: [{ runId: run.id, asset: s, partition: "2025-01-01", status: "success", metadata: { batchId } }] });
      }
      expect(await ledger.settleMaterialized(s, "2025-01-01")).toBe(2);
      // a batch claimed by a step that failed is not settled
      await ledger.discover(s, "2025-01-01", [file("a.csv"), file("b.csv"), file("c.csv")]);
      const [c] = await ledger.claim({ ...base, source: s, partition: "2025-01-01", batchId: "failed-3", limit: 1 });
      const failed = await store.createRun({ trigger: "manual", steps: [{ asset: s, partition: "2025-01-01" }] });
      await store.writeBatch({ steps: [{ runId: failed.id, asset: s, partition: "2025-01-01", status: "failed", metadata: { batchId: "failed-3" } }] });
      expect(await ledger.settleMaterialized(s, "2025-01-01")).toBe(0);
      expect((await ledger.list(s)).map((f) => [f.path, f.status])).toEqual([["a.csv", "SUCCESS"], ["b.csv", "SUCCESS"], ["c.csv", "PROCESSING"]]);
      expect([a!.path, b!.path, c!.path]).toEqual(["a.csv", "b.csv", "c.csv"]);
    });

    it("releases a worker's claims on a graceful stop", async () => {
      const s = "release";
      await ledger.discover(s, null, [file("a.csv"), file("b.csv"), file("c.csv")]);
      await ledger.claim({ ...base, source: s, workerId: "stopping", batchId: "r-1", limit: 2 });
      await ledger.claim({ ...base, source: s, workerId: "other", batchId: "r-2" });
      expect(await ledger.release("stopping")).toBe(2);
      expect(await ledger.release("stopping")).toBe(0);
      expect((await ledger.list(s)).map((f) => [f.path, f.status, f.attempts, f.claimedBy])).toEqual([
        ["a.csv", "DISCOVERED", 0, null],
        ["b.csv", "DISCOVERED", 0, null],
        ["c.csv", "PROCESSING", 1, "other"],
      ]);
      const again = await ledger.claim({ ...base, source: s, batchId: "r-3" });
      expect(again.map((f) => [f.path, f.attempts, f.previousBatchId])).toEqual([["a.csv", 1, "r-1"], ["b.csv", 1, "r-1"]]);
      // a release scoped to one batch leaves the worker's other batches alone
      await ledger.release("other");
      await ledger.release("w1");
      await ledger.claim({ ...base, source: s, workerId: "both", batchId: "mine", limit: 1 });
      await ledger.claim({ ...base, source: s, workerId: "both", batchId: "theirs", limit: 1 });
      expect(await ledger.release("both", "mine")).toBe(1);
      expect((await ledger.list(s, { status: "PROCESSING" })).map((f) => f.batchId)).toEqual(["theirs"]);
    });

    /** Puts a run in `status` with a heartbeat `heartbeatAgoMs` old (null: it never heartbeated). */
    const setRun = async (id: string, status: string, heartbeatAgoMs: number | null): Promise<void> => {
      const beat = heartbeatAgoMs === null ? sql`null` : sql`now() - make_interval(secs => ${heartbeatAgoMs / 1000}::float8)`;
      await sql`update runs set status = ${status}, heartbeat_at = ${beat} where id = ${id}`.execute(store.db);
    };
    /** A new run in `status` (see setRun), with a step of `asset` when given. */
    const runIn = async (status: string, heartbeatAgoMs: number | null, step?: { asset: string; partition: string | null }): Promise<string> => {
      const r = await store.createRun({ trigger: "manual", steps: step ? [step] : [] });
      await setRun(r.id, status, heartbeatAgoMs);
      return r.id;
    };

    it("a claim whose owner is dead is taken at once: its run ended, its heartbeat is stale, or its process on this host is gone", async () => {
      const s = "owners";
      const host = hostname();
      const gone = `${host}:${deadPid()}`;
      await ledger.discover(s, null, ["a", "b", "c", "d", "e", "f", "g"].map((n) => file(`${n}.csv`)));
      const holders: Array<[string, string, number | null]> = [
        ["other-host:1", "failed", 0], // a: its run failed
        ["other-host:2", "success", 0], // b: its run ended without recording the batch
        ["other-host:3", "running", 60_000], // c: missed its heartbeats
        [gone, "running", 0], // d: its process on this host is gone
        [`${host}:${process.ppid}`, "running", 0], // e: alive on this host
        ["other-host:4", "running", 0], // f: alive elsewhere
        ["other-host:5", "running", null], // g: a run that never heartbeated: only the timeout frees it
      ];
      const runs: string[] = [];
      for (const [i, [workerId]] of holders.entries()) {
        runs.push(await runIn("running", 0));
        await ledger.claim({ ...base, source: s, workerId, runId: runs[i]!, batchId: `held-${i}`, limit: 1 });
      }
      for (const [i, [, status, beat]] of holders.entries()) await setRun(runs[i]!, status, beat);
      expect(await ledger.counts(s)).toMatchObject({ PROCESSING: 7 });

      const dead = await ledger.deadClaims(s, null);
      expect(dead).toEqual({ deadOwners: [gone], deadBatches: [] });
      const opts = { ...base, source: s, workerId: "w9", runId: await runIn("running", 0), claimTimeoutMs: 600_000 };
      const ended = await ledger.claim({ ...opts, batchId: "take-1" });
      expect(ended.map((f) => [f.path, f.attempts, f.previousBatchId])).toEqual([["a.csv", 2, "held-0"], ["b.csv", 2, "held-1"]]);
      expect(paths(await ledger.claim({ ...opts, batchId: "take-2", ownerStaleMs: 15_000 }))).toEqual(["c.csv"]);
      expect(paths(await ledger.claim({ ...opts, batchId: "take-3", ownerStaleMs: 15_000, ...dead }))).toEqual(["d.csv"]);
      expect(await ledger.claim({ ...opts, batchId: "take-4", ownerStaleMs: 15_000, ...(await ledger.deadClaims(s, null)) })).toEqual([]);
      expect((await ledger.list(s, { status: "PROCESSING" })).filter((f) => f.batchId?.startsWith("held-")).map((f) => f.path)).toEqual(["e.csv", "f.csv", "g.csv"]);
      // the claim timeout stays, as the last resort
      await age(s, "claimed_at", 700_000);
      await sql`update processed_files set claimed_at = now() where source = ${s} and batch_id like 'take-%'`.execute(store.db);
      expect(paths(await ledger.claim({ ...opts, batchId: "take-5" }))).toEqual(["e.csv", "f.csv", "g.csv"]);
    });

    it("a lost claim on its last attempt ends FAILED at once when its owner is dead", async () => {
      const s = "dead-last";
      await ledger.discover(s, null, [file("x.csv")]);
      await ledger.claim({ ...base, source: s, workerId: "other-host:1", runId: await runIn("running", 0), batchId: "last-1", maxAttempts: 1 });
      await sql`update runs set status = 'failed' where id = (select run_id from processed_files where source = ${s})`.execute(store.db);
      expect(await ledger.claim({ ...base, source: s, batchId: "last-2", maxAttempts: 1 })).toEqual([]);
      expect((await ledger.list(s))[0]).toMatchObject({ status: "FAILED", claimedBy: null, error: "its worker stopped (crashed, killed or timed out) on each of 1 attempts while processing it" });
    });

    it("a batch that a succeeded step recorded is done: never taken again, even once its run failed", async () => {
      const s = "recorded";
      await ledger.discover(s, "p", [file("r.csv")]);
      const runId = await runIn("running", 0, { asset: s, partition: "p" });
      await ledger.claim({ ...base, source: s, partition: "p", workerId: "other-host:1", runId, batchId: "rec-ok" });
      await store.writeBatch({ steps: [{ runId, asset: s, partition: "p", status: "success", metadata: { batchId: "rec-ok" } }] });
      await sql`update runs set status = 'failed' where id = ${runId}`.execute(store.db);
      expect(await ledger.pendingFiles(s, "p", { ownerStaleMs: 15_000 })).toBe(0);
      expect(await ledger.claim({ ...base, source: s, partition: "p", batchId: "rec-again", ownerStaleMs: 15_000 })).toEqual([]);
      expect((await ledger.list(s))[0]).toMatchObject({ status: "SUCCESS", batchId: "rec-ok", attempts: 1 });
    });

    it("pendingFiles counts what still waits: DISCOVERED, FAILED with attempts left, PROCESSING of a dead owner", async () => {
      const s = "pending";
      await ledger.discover(s, "p", ["new", "retry", "spent", "live", "dead", "done"].map((n) => file(`${n}.csv`)));
      await ledger.discover(s, "q", [file("q.csv")]); // another partition
      const opts = { ...base, source: s, partition: "p", limit: 1 };
      const [retry] = await ledger.claim({ ...opts, batchId: "pend-1" }); // dead.csv (path order)
      await ledger.claim({ ...opts, batchId: "pend-2" }); // done.csv
      await ledger.settleBatch("pend-2");
      await ledger.release("w1", "pend-1");
      const spent = await ledger.claim({ ...opts, batchId: "pend-3", limit: 2, workerId: "w2" }); // dead.csv, live.csv
      expect(paths(spent)).toEqual(["dead.csv", "live.csv"]);
      expect(retry!.path).toBe("dead.csv");
      await ledger.release("w2", "pend-3");
      // now: new/retry/spent/live/dead DISCOVERED, done SUCCESS
      const deadRun = await runIn("running", 0);
      await ledger.claim({ ...opts, workerId: "other-host:1", runId: deadRun, batchId: "pend-dead" }); // dead.csv
      await ledger.claim({ ...opts, workerId: "other-host:2", runId: await runIn("running", 0), batchId: "pend-live" }); // live.csv
      const [r, sp] = await ledger.claim({ ...opts, limit: 2, batchId: "pend-fail" }); // new.csv, retry.csv
      await ledger.settle([{ id: r!.id, status: "FAILED", error: "x" }, { id: sp!.id, status: "FAILED", error: "y" }]);
      await sql`update processed_files set attempts = 3 where source = ${s} and path = 'retry.csv'`.execute(store.db);
      await setRun(deadRun, "failed", 0);
      // DISCOVERED: spent.csv; FAILED: new.csv (attempts left), retry.csv (out of 3); PROCESSING: dead.csv (dead), live.csv (live)
      expect(await ledger.pendingFiles(s, "p", { ownerStaleMs: 15_000, maxAttempts: 3 })).toBe(3);
      expect(await ledger.pendingFiles(s, "p", { ownerStaleMs: 15_000 })).toBe(4); // every FAILED file
      expect(await ledger.pendingFiles(s, "p", { modifiedSince: new Date("2026-01-01T00:00:00Z") })).toBe(0);
      expect(await ledger.pendingFiles(s, "q")).toBe(1);
      const failed = await ledger.failedFiles(s, "p", { sample: 1 });
      expect(failed).toEqual({ count: 2, sample: [{ path: "new.csv", error: "x" }] });
      expect(await ledger.failedFiles(s, "q")).toEqual({ count: 0, sample: [] });
    });

    it("heldElsewhere counts files another batch holds and has not ingested yet", async () => {
      const s = "held";
      await ledger.discover(s, null, ["a", "b", "c", "d"].map((n) => file(`${n}.csv`)));
      const theirs = await ledger.claim({ ...base, source: s, workerId: "other-host:1", batchId: "theirs", limit: 3 });
      await ledger.claim({ ...base, source: s, batchId: "mine" });
      expect(await ledger.heldElsewhere(s, null, { batchId: "mine" })).toBe(3);
      expect(await ledger.heldElsewhere(s, null, { batchId: "theirs" })).toBe(1);
      // ingested, waiting for their run's commit: not waited for
      await ledger.recordBatch([{ id: theirs[0]!.id, status: "SUCCESS", rows: 1, bytes: 1 }, { id: theirs[1]!.id, status: "FAILED", error: "bad" }], { batchId: "theirs", workerId: "other-host:1" });
      expect(await ledger.heldElsewhere(s, null, { batchId: "mine" })).toBe(1);
      expect(await ledger.heldElsewhere(s, null, { batchId: "mine", modifiedSince: new Date("2026-01-01T00:00:00Z") })).toBe(0);
    });

    it("deadClaims names this process's batches that a step abandoned", async () => {
      const s = "abandoned";
      const me = `${hostname()}:${process.pid}`;
      await ledger.discover(s, null, [file("a.csv"), file("b.csv")]);
      await ledger.claim({ ...base, source: s, workerId: me, runId: await runIn("running", 0), batchId: "gave-up", limit: 1 });
      await ledger.claim({ ...base, source: s, workerId: me, runId: await runIn("running", 0), batchId: "working", limit: 1 });
      const dead = await ledger.deadClaims(s, null, { workerId: me, abandonedBatches: new Set(["gave-up", "elsewhere"]) });
      expect(dead).toEqual({ deadOwners: [], deadBatches: ["gave-up"] });
      expect(paths(await ledger.claim({ ...base, source: s, batchId: "again", ...dead }))).toEqual(["a.csv"]);
    });

    it("removeUnlisted forgets what a complete listing no longer holds, except live claims and files found since", async () => {
      const s = "vanish";
      await ledger.discover(s, "p", ["kept", "ok", "bad", "new", "live", "dead"].map((n) => file(`p/${n}.csv`)));
      await ledger.discover(s, "other", [file("other/x.csv")]);
      const opts = { ...base, source: s, partition: "p", limit: 1 };
      await ledger.claim({ ...opts, workerId: "other-host:1", runId: await runIn("failed", 0), batchId: "v-dead" }); // bad.csv
      await ledger.release("other-host:1");
      await ledger.claim({ ...opts, workerId: "other-host:1", runId: await runIn("failed", 0), batchId: "v-dead" }); // bad.csv again
      await sql`update processed_files set batch_id = 'v-dead' where source = ${s} and path = 'p/bad.csv'`.execute(store.db);
      const all = await ledger.list(s);
      const id = (path: string): string => all.find((f) => f.path === path)!.id;
      await sql`update processed_files set status = 'PROCESSING', claimed_by = 'other-host:2', claimed_at = now(), run_id = ${await runIn("running", 0)}, batch_id = 'v-live' where id = ${id("p/live.csv")}`.execute(store.db);
      await sql`update processed_files set status = 'PROCESSING', claimed_by = 'other-host:3', claimed_at = now(), run_id = ${await runIn("failed", 0)}, batch_id = 'v-gone' where id = ${id("p/dead.csv")}`.execute(store.db);
      await ledger.settle([{ id: id("p/ok.csv"), status: "SUCCESS" }]);
      await sql`update processed_files set status = 'SUCCESS', batch_id = 'v-ok' where id = ${id("p/ok.csv")}`.execute(store.db);
      const listedSince = await ledger.now();
      await ledger.discover(s, "p", [file("p/late.csv")]); // landed after the listing began
      const listed = new Set(["p/kept.csv"]);
      const o = { listedSince, claimTimeoutMs: 600_000, ownerStaleMs: 15_000 };
      // what derives from them goes first: if that fails, nothing is forgotten
      await expect(ledger.removeUnlisted(s, "p", listed, o, () => Promise.reject(new Error("warehouse down")))).rejects.toThrow("warehouse down");
      expect((await ledger.list(s)).length).toBe(8);
      let told: string[] = [];
      const removed = await ledger.removeUnlisted(s, "p", listed, o, async (files) => void (told = files.map((f) => f.path)));
      expect(removed.map((f) => [f.path, f.batchId])).toEqual([["p/bad.csv", "v-dead"], ["p/dead.csv", "v-gone"], ["p/new.csv", null], ["p/ok.csv", "v-ok"]]);
      expect(told).toEqual(["p/bad.csv", "p/dead.csv", "p/new.csv", "p/ok.csv"]);
      expect((await ledger.list(s)).map((f) => f.path)).toEqual(["other/x.csv", "p/kept.csv", "p/late.csv", "p/live.csv"]);
      expect(await ledger.removeUnlisted(s, "p", listed, o)).toEqual([]);
      // a file that comes back is simply new
      expect(await ledger.discover(s, "p", [file("p/ok.csv")])).toEqual({ added: 1, changed: 0, unchanged: 0 });
    });
  });
}

describe.skipIf(!pgUp)("FileLedger under concurrency, on PostgreSQL", () => {
  let db: { url: string; drop(): Promise<void> };
  let stores: StateStore[] = [];
  beforeAll(async () => {
    db = (await testDatabase())!;
    // separate stores: separate pools, as separate worker processes would have
    stores = await Promise.all([0, 1, 2, 3].map(() => StateStore.open({ url: db.url, home: "/nonexistent" })));
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await db?.drop();
  });

  it("a partition's lock is taken by one process at a time; a waiter may give up; a finished batch is offered to the next", async () => {
    const [a, b] = [new FileLedger(stores[0]!), new FileLedger(stores[1]!)];
    const first = await a.lockPartition("locked", "p");
    expect(first.held).toBe(true);
    let asked = 0;
    const gaveUp = await b.lockPartition("locked", "p", { giveUp: async () => ++asked >= 3 });
    expect([gaveUp.held, asked]).toEqual([false, 3]);
    const waiting = b.lockPartition("locked", "p");
    await new Promise((r) => setTimeout(r, 300));
    let got = false;
    void waiting.then(() => (got = true));
    expect(got).toBe(false); // still held by the first
    expect((await a.lockPartition("locked", "other")).held).toBe(true); // another partition is free
    await first.release();
    const second = await waiting;
    expect(second.held).toBe(true);
    await second.release();
    // finished batches: every PROCESSING file recorded; a batch with a file still being read is not
    await a.discover("fin", "p", [file("1.csv"), file("2.csv"), file("3.csv")]);
    const done = await a.claim({ ...base, source: "fin", partition: "p", batchId: "done", limit: 2 });
    await a.recordBatch(done.map((f) => ({ id: f.id, status: "SUCCESS" as const, rows: 1, bytes: 1 })), { batchId: "done", workerId: "w1" });
    await a.claim({ ...base, source: "fin", partition: "p", batchId: "reading", limit: 1 });
    expect(await a.finishedBatches("fin", "p")).toEqual(["done"]);
  });

  it("4 claimers over 1,000 files claim every file exactly once", async () => {
    const files = Array.from({ length: 1_000 }, (_, i) => file(`f${String(i).padStart(4, "0")}.csv`));
    expect(await new FileLedger(stores[0]!).discover("many", null, files)).toEqual({ added: 1_000, changed: 0, unchanged: 0 });
    const claimed = await Promise.all(stores.map(async (store, w) => {
      const ledger = new FileLedger(store);
      const mine: string[] = [];
      for (let batch = 0; ; batch++) {
        const got = await ledger.claim({ ...base, source: "many", workerId: `w${w}`, batchId: `w${w}-${batch}`, limit: 25 });
        if (got.length === 0) return mine;
        expect(got.length).toBeLessThanOrEqual(25);
        mine.push(...paths(got));
      }
    }));
    const all = claimed.flat();
    expect(new Set(all).size).toBe(all.length); // no file claimed twice
    expect(all).toHaveLength(1_000);
    expect(claimed.filter((mine) => mine.length > 0).length).toBeGreaterThan(1);
    const ledger = new FileLedger(stores[0]!);
    expect(await ledger.counts("many")).toMatchObject({ PROCESSING: 1_000, DISCOVERED: 0 });
    expect((await ledger.list("many")).every((f) => f.attempts === 1)).toBe(true);
  });

  it("two processes discovering the same 20,000 files at once add each file once", async () => {
    const files = Array.from({ length: 20_000 }, (_, i) => file(`d${i % 7}/f${String(i).padStart(5, "0")}.csv`));
    const [a, b] = await Promise.all([new FileLedger(stores[1]!).discover("twice", null, files), new FileLedger(stores[2]!).discover("twice", null, [...files].reverse())]);
    expect(a.added + b.added).toBe(20_000);
    expect(a.changed + b.changed).toBe(0);
    expect((await new FileLedger(stores[3]!).counts("twice")).DISCOVERED).toBe(20_000);
  });
});
