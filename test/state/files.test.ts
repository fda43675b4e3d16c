import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileLedger } from "../../src/state/files.js";
import { StateStore } from "../../src/state/index.js";
import type { ObjectInfo } from "../../src/storage/types.js";
import { testDatabase } from "../helpers/pg.js";

const db = await testDatabase();
const file = (key: string, etag = "e1", size = 10): ObjectInfo => ({ key, etag, size, lastModified: new Date("2025-01-01T00:00:00Z") });
const claimOpts = { partition: null, workerId: "w", runId: "r", batchId: "b1", limit: 100, claimTimeoutMs: 60_000, maxAttempts: 2 };

for (const engine of ["pglite", "postgres"] as const) {
  describe.skipIf(engine === "postgres" && !db)(`file ledger on ${engine}`, () => {
    let store: StateStore;
    let ledger: FileLedger;
    const home = mkdtempSync(join(tmpdir(), "floe-files-"));
    beforeAll(async () => {
      store = await StateStore.open(engine === "postgres" ? { url: db!.url, home } : { home });
      ledger = new FileLedger(store);
    });
    afterAll(async () => {
      await store.close();
      rmSync(home, { recursive: true, force: true });
    });

    it("discovers new and changed files; an unchanged file is never reprocessed", async () => {
      const src = `s_${engine}_1`;
      expect(await ledger.discover(src, null, [file("a.csv"), file("b.csv")])).toEqual({ added: 2, changed: 0, unchanged: 0 });
      const claimed = await ledger.claim({ ...claimOpts, source: src });
      expect(claimed.map((f) => f.path)).toEqual(["a.csv", "b.csv"]);
      await ledger.settle(claimed.map((f) => ({ id: f.id, status: "SUCCESS" as const, rows: 3, bytes: 10 })));
      expect(await ledger.discover(src, null, [file("a.csv"), file("b.csv", "e2"), file("c.csv")])).toEqual({ added: 1, changed: 1, unchanged: 1 });
      expect((await ledger.claim({ ...claimOpts, source: src, batchId: "b2" })).map((f) => f.path)).toEqual(["b.csv", "c.csv"]);
      expect(await ledger.counts(src)).toMatchObject({ SUCCESS: 1, PROCESSING: 2 });
      expect(await ledger.settleBatch("b2")).toBe(2);
      expect(await ledger.claim({ ...claimOpts, source: src })).toEqual([]);
    });

    it("retries a failed file after its backoff, up to maxAttempts; reclaims a timed-out claim with its previous batch", async () => {
      const src = `s_${engine}_2`;
      await ledger.discover(src, "2025-01-01", [file("x.csv"), file("y.csv")]);
      const first = await ledger.claim({ ...claimOpts, source: src, partition: "2025-01-01" });
      const x = first.find((f) => f.path === "x.csv")!;
      await ledger.settle([{ id: x.id, status: "FAILED", error: "line 2: expected 2 columns, found 3" }], { retryBaseMs: 60_000 });
      expect(await ledger.claim({ ...claimOpts, source: src, partition: "2025-01-01" })).toEqual([]); // backoff, and y is still claimed
      await sql`update processed_files set next_attempt_at = now() - interval '1 second', claimed_at = now() - interval '2 minutes' where source = ${src}`.execute(store.db);
      const second = await ledger.claim({ ...claimOpts, source: src, partition: "2025-01-01", batchId: "b9" });
      expect(second.map((f) => [f.path, f.attempts, f.previousBatchId])).toEqual([["x.csv", 2, null], ["y.csv", 2, "b1"]]);
      await ledger.settle([{ id: second[0]!.id, status: "FAILED", error: "again" }], { retryBaseMs: 0 });
      expect((await ledger.claim({ ...claimOpts, source: src, partition: "2025-01-01" })).map((f) => f.path)).toEqual([]); // maxAttempts reached
      expect((await ledger.list(src, { status: "FAILED" })).map((f) => [f.path, f.error])).toEqual([["x.csv", "again"]]);
      expect(await ledger.release("w")).toBe(1);
      expect((await ledger.list(src, { status: "DISCOVERED" })).map((f) => f.path)).toEqual(["y.csv"]);
    });
  });
}

describe.skipIf(!db)("file ledger under concurrency", () => {
  it("4 claimers with their own pools over 1,000 files claim each file exactly once", async () => {
    const stores = await Promise.all([0, 1, 2, 3].map(() => StateStore.open({ url: db!.url, home: "/nonexistent" })));
    try {
      await new FileLedger(stores[0]!).discover("many", null, Array.from({ length: 1_000 }, (_, i) => file(`f${String(i).padStart(4, "0")}.csv`)));
      const seen = await Promise.all(stores.map(async (s, w) => {
        const ledger = new FileLedger(s);
        const mine: string[] = [];
        for (let batch = 0; ; batch++) {
          const got = await ledger.claim({ ...claimOpts, source: "many", workerId: `w${w}`, batchId: `w${w}-${batch}`, limit: 25 });
          if (got.length === 0) return mine;
          mine.push(...got.map((f) => f.path));
        }
      }));
      const all = seen.flat();
      expect(all).toHaveLength(1_000);
      expect(new Set(all).size).toBe(1_000);
      expect(seen.filter((m) => m.length > 0).length).toBeGreaterThan(1);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });
});

afterAll(async () => {
  await db?.drop();
});
