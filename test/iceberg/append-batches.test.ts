import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { icebergRead } from "icebird";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Catalog, TableIdentifier, TablePointer } from "../../src/iceberg/catalog.js";
import { icebergCatalogMigration, SqlCatalog, type IcebergCatalogTables } from "../../src/iceberg/sql-catalog.js";
import { liveDataFiles } from "../../src/iceberg/table-reader.js";
import { appendBatches, appendRows, loadTable, type BatchAppendOptions, type LoadedTable } from "../../src/iceberg/table-writer.js";
import { localStorage } from "../../src/storage/local-storage.js";
import type { ObjectStorage } from "../../src/storage/types.js";
import { testDatabase } from "../helpers/pg.js";
import { repoRoot } from "../helpers/project.js";
import { listFiles, openEnv, pgliteCatalog, type Env } from "./helpers.js";

/** A real catalog that runs `before` once, just ahead of the first compare-and-swap: another writer's commit lands in between. */
class InterleavingCatalog implements Catalog {
  #pending: (() => Promise<void>) | undefined;
  constructor(
    private readonly inner: Catalog,
    before: () => Promise<void>,
  ) {
    this.#pending = before;
  }
  loadTable = (id: TableIdentifier): Promise<TablePointer | undefined> => this.inner.loadTable(id);
  createTable = (id: TableIdentifier, loc: string): Promise<boolean> => this.inner.createTable(id, loc);
  listTables = (ns: readonly string[]): Promise<TableIdentifier[]> => this.inner.listTables(ns);
  async commitTable(id: TableIdentifier, expected: string, next: string): Promise<boolean> {
    const before = this.#pending;
    this.#pending = undefined;
    if (before) await before();
    return this.inner.commitTable(id, expected, next);
  }
}

/** A real catalog whose first commit lands but whose answer is lost (a connection dropped after the UPDATE). */
class LostAnswerCatalog implements Catalog {
  lost = 0;
  constructor(private readonly inner: Catalog) {}
  loadTable = (id: TableIdentifier): Promise<TablePointer | undefined> => this.inner.loadTable(id);
  createTable = (id: TableIdentifier, loc: string): Promise<boolean> => this.inner.createTable(id, loc);
  listTables = (ns: readonly string[]): Promise<TableIdentifier[]> => this.inner.listTables(ns);
  async commitTable(id: TableIdentifier, expected: string, next: string): Promise<boolean> {
    const ok = await this.inner.commitTable(id, expected, next);
    if (this.lost++ === 0) throw new Error("Connection terminated unexpectedly");
    return ok;
  }
}

/** `count` rows per batch with ids `batch * 1000 + i`, over two days, as a Parquet file. */
async function writeBatches(con: Env["con"], dir: string, ids: readonly number[], count = 50): Promise<void> {
  mkdirSync(dir, { recursive: true });
  for (const b of ids) {
    await con.run(`COPY (SELECT (${b} * 1000 + i)::BIGINT AS id, 'b${b}' AS batch, TIMESTAMP '2025-01-01 00:00:00' + i * INTERVAL 1 HOUR AS ts FROM range(${count}) r(i))
      TO '${join(dir, `b${b}.parquet`)}' (FORMAT parquet)`);
  }
}

/** Which snapshots list each batch under `floe.batches`. */
function snapshotsByBatch(t: LoadedTable): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of t.metadata.snapshots) {
    for (const b of JSON.parse(s.summary["floe.batches"] ?? "[]") as string[]) out.set(b, (out.get(b) ?? 0) + 1);
  }
  return out;
}

/** Files under the table folder that no snapshot references (metadata versions and the hint aside). */
async function strayFiles(storage: ObjectStorage, t: LoadedTable, folder: string): Promise<string[]> {
  const live = new Set((await liveDataFiles(storage, t)).map((f) => fileURLToPath(storage.uriOf(f.key))));
  return listFiles(join(folder, "data"))
    .map((f) => join(folder, "data", f))
    .filter((f) => !live.has(f));
}

describe("appendBatches: each upstream batch once, in one writer call", () => {
  let env: Env;
  let catalog: SqlCatalog;
  let db: Kysely<IcebergCatalogTables>;
  const dir = (): string => join(env.dir, "batches");
  const batch = (b: number) => ({ id: `b${b}`, files: [join(dir(), `b${b}.parquet`)] });
  const target = (name: string, over: Partial<BatchAppendOptions> = {}): Omit<BatchAppendOptions, "batches"> => ({
    connection: env.con,
    table: { namespace: ["b"], name },
    catalog,
    storage: env.storage,
    partitionBy: [{ column: "ts", transform: "day" }],
    summary: { "floe.run-id": "run-1" },
    retryWaitMs: 5,
    ...over,
  });
  const load = async (name: string): Promise<LoadedTable> => {
    const t = await loadTable({ catalog, storage: env.storage, table: { namespace: ["b"], name } });
    if (!t) throw new Error(`no table b.${name}`);
    return t;
  };
  const ids = async (name: string): Promise<number[]> => (await icebergRead({ tableUrl: env.storage.uriOf(`b/${name}`) })).map((r) => Number(r.id)).sort((a, b) => a - b);
  const idsOf = (...batches: number[]): number[] => batches.flatMap((b) => Array.from({ length: 50 }, (_, i) => b * 1000 + i)).sort((a, b) => a - b);

  beforeAll(async () => {
    env = await openEnv();
    ({ catalog, db } = await pgliteCatalog());
    await writeBatches(env.con, dir(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
  afterAll(async () => {
    await db.destroy();
    await env.close();
  });

  it("appends the batches no snapshot holds in one snapshot; a repeat (a rerun after the commit) reads and appends nothing", async () => {
    const first = await appendBatches({ ...target("once"), batches: [batch(0), batch(1), batch(0)] });
    expect(first).toMatchObject({ committed: ["b0", "b1"], found: [], empty: [], addedRecords: 100, commitRetries: 0 });
    expect(first.snapshotId).toMatch(/^\d+$/);
    const t = await load("once");
    expect(t.metadata.snapshots).toHaveLength(1);
    expect(t.metadata.snapshots[0]!.summary).toMatchObject({ operation: "append", "floe.batches": '["b0","b1"]', "floe.run-id": "run-1", "added-records": "100" });

    let read = 0;
    const lazy = (b: number) => ({ id: `b${b}`, files: async () => (read++, [join(dir(), `b${b}.parquet`)]) });
    const again = await appendBatches({ ...target("once"), batches: [lazy(1), lazy(0)] });
    expect(again).toMatchObject({ snapshotId: null, committed: [], found: ["b1", "b0"], addedRecords: 0, metadataLocation: t.metadataLocation });
    expect(read).toBe(0); // a batch the table holds is never read
    expect((await load("once")).metadata.snapshots).toHaveLength(1);

    // a new batch beside held ones and one without any file: only the new one is appended
    const more = await appendBatches({ ...target("once"), batches: [lazy(0), lazy(1), lazy(2), { id: "gone", files: [] }] });
    expect(more).toMatchObject({ committed: ["b2"], found: ["b0", "b1"], empty: ["gone"], addedRecords: 50 });
    expect(read).toBe(1);
    expect(await ids("once")).toEqual(idsOf(0, 1, 2));
    expect(snapshotsByBatch(await load("once"))).toEqual(new Map([["b0", 1], ["b1", 1], ["b2", 1]]));
  });

  it("reads the batches of snapshots written before it (a floe.batches JSON array in the summary)", async () => {
    // what the icebergTable kind committed before appendBatches existed: appendRows with the summary key
    await appendRows({ connection: env.con, source: { parquet: [join(dir(), "b3.parquet"), join(dir(), "b4.parquet")] }, table: { namespace: ["b"], name: "older" }, catalog, storage: env.storage, partitionBy: [{ column: "ts", transform: "day" }], summary: { "floe.batches": '["b3","b4"]' } });
    const r = await appendBatches({ ...target("older"), batches: [batch(3), batch(4), batch(5)] });
    expect(r).toMatchObject({ committed: ["b5"], found: ["b3", "b4"] });
    expect(await ids("older")).toEqual(idsOf(3, 4, 5));
  });

  it("a batch another writer commits during the commit is dropped, and the rest is written again alone", async () => {
    let other: Awaited<ReturnType<typeof appendBatches>> | undefined;
    const interleaving = new InterleavingCatalog(catalog, async () => {
      other = await appendBatches({ ...target("overlap"), batches: [batch(7), batch(8)] });
    });
    // the table exists, so the first compare-and-swap is the append's
    await appendBatches({ ...target("overlap"), batches: [batch(9)] });
    const mine = await appendBatches({ ...target("overlap", { catalog: interleaving }), batches: [batch(6), batch(7)] });
    expect(other).toMatchObject({ committed: ["b7", "b8"], found: [] });
    expect(mine).toMatchObject({ committed: ["b6"], found: ["b7"], addedRecords: 50, commitRetries: 1 });
    const t = await load("overlap");
    expect(snapshotsByBatch(t)).toEqual(new Map([["b9", 1], ["b7", 1], ["b8", 1], ["b6", 1]]));
    expect(t.metadata.snapshots.at(-1)!.summary).toMatchObject({ "floe.batches": '["b6"]', "added-records": "50", "total-records": "200" });
    expect(await ids("overlap")).toEqual(idsOf(6, 7, 8, 9));
    // the data files first written for b6 + b7 are gone
    expect(await strayFiles(env.storage, t, join(env.dir, "warehouse/b/overlap"))).toEqual([]);

    // every batch taken by the other writer meanwhile: nothing is committed, nothing left behind
    const all = new InterleavingCatalog(catalog, async () => void (await appendBatches({ ...target("overlap"), batches: [batch(0), batch(1)] })));
    const none = await appendBatches({ ...target("overlap", { catalog: all }), batches: [batch(1), batch(0)] });
    expect(none).toMatchObject({ snapshotId: null, committed: [], found: ["b1", "b0"], addedRecords: 0, commitRetries: 1 });
    const after = await load("overlap");
    expect(after.metadata.snapshots).toHaveLength(t.metadata.snapshots.length + 1);
    expect(none.metadataLocation).toBe(after.metadataLocation);
    expect(await ids("overlap")).toEqual(idsOf(0, 1, 6, 7, 8, 9));
    expect(await strayFiles(env.storage, after, join(env.dir, "warehouse/b/overlap"))).toEqual([]);
  });

  it("a commit whose answer was lost is recognized as landed: nothing is appended twice, then or on a rerun", async () => {
    await appendBatches({ ...target("lost"), batches: [batch(0)] });
    const lossy = new LostAnswerCatalog(catalog);
    const r = await appendBatches({ ...target("lost", { catalog: lossy }), batches: [batch(0), batch(1), batch(2)] });
    expect(lossy.lost).toBe(1);
    expect(r).toMatchObject({ committed: ["b1", "b2"], found: ["b0"], addedRecords: 100 });
    const t = await load("lost");
    expect(t.metadata.snapshots.map((s) => s["snapshot-id"].toString()).at(-1)).toBe(r.snapshotId);
    expect(t.metadata.snapshots).toHaveLength(2);
    const rerun = await appendBatches({ ...target("lost"), batches: [batch(0), batch(1), batch(2)] });
    expect(rerun).toMatchObject({ snapshotId: null, committed: [], found: ["b0", "b1", "b2"] });
    expect(await ids("lost")).toEqual(idsOf(0, 1, 2));
  });
});

const pgDb = await testDatabase();

describe.skipIf(!pgDb)("two processes appending overlapping batch sets to one table on PostgreSQL", () => {
  let env: Env;
  beforeAll(async () => {
    env = await openEnv();
  });
  afterAll(async () => {
    await env.close();
    await pgDb?.drop();
  });

  it("every batch is committed by exactly one of them, in one snapshot, and every row read back once", async () => {
    const count = 24;
    const all = Array.from({ length: count }, (_, b) => `b${b}`);
    const batchDir = join(env.dir, "batches");
    await writeBatches(env.con, batchDir, Array.from({ length: count }, (_, b) => b), 20);
    const chunks = (list: string[], size: number): string[][] => Array.from({ length: Math.ceil(list.length / size) }, (_, i) => list.slice(i * size, (i + 1) * size));
    // the same batches, grouped differently and in opposite orders: the groups overlap partly
    const plans = [chunks(all, 3), chunks([...all].reverse(), 4)];
    const warehouse = join(env.dir, "warehouse");
    const db = new Kysely<IcebergCatalogTables>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: pgDb!.url, max: 2 }) }) });
    try {
      await icebergCatalogMigration.up(db as unknown as Kysely<unknown>);
      const script = join(repoRoot, "test", "iceberg", "batch-append-process.ts");
      const outputs = await Promise.all(
        plans.map(
          (groups, w) =>
            new Promise<string>((resolve, reject) => {
              const child = spawn(process.execPath, ["--import", "tsx", script, pgDb!.url, warehouse, batchDir, JSON.stringify(groups)], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
              let out = "";
              let err = "";
              child.stdout.on("data", (d: Buffer) => (out += d.toString()));
              child.stderr.on("data", (d: Buffer) => (err += d.toString()));
              child.on("error", reject);
              child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`writer ${w} exited ${code}: ${err}`))));
            }),
        ),
      );
      const calls = outputs.map((o) => JSON.parse(o) as Array<{ committed: string[]; found: string[]; retries: number }>);
      // each writer accounted for every batch once: committed it, or found it committed
      for (const mine of calls) expect(mine.flatMap((c) => [...c.committed, ...c.found]).sort()).toEqual([...all].sort());
      // across both, each batch was committed exactly once
      expect(calls.flat().flatMap((c) => c.committed).sort()).toEqual([...all].sort());

      const storage = localStorage({ root: warehouse });
      const t = await loadTable({ catalog: new SqlCatalog(db, "floe"), storage, table: { namespace: ["race"], name: "batches" } });
      expect(snapshotsByBatch(t!)).toEqual(new Map(all.map((b) => [b, 1])));
      expect(t!.metadata.snapshots).toHaveLength(calls.flat().filter((c) => c.committed.length > 0).length);
      expect(t!.metadata.snapshots.at(-1)!.summary["total-records"]).toBe(String(count * 20));
      const rows = await icebergRead({ tableUrl: storage.uriOf("race/batches") });
      const ids = rows.map((r) => Number(r.id));
      expect(ids).toHaveLength(count * 20);
      expect(new Set(ids).size).toBe(ids.length);
      expect(await strayFiles(storage, t!, join(warehouse, "race/batches"))).toEqual([]);
      const partial = calls.flat().filter((c) => c.committed.length > 0 && c.found.length > 0).length;
      console.log(`commit retries: ${calls.flat().reduce((a, c) => a + c.retries, 0)}, calls that committed part of their batches: ${partial}`);
    } finally {
      await db.destroy();
    }
  }, 120_000);
});
