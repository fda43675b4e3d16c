import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { icebergRead } from "icebird";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Catalog, TableIdentifier, TablePointer } from "../../src/iceberg/catalog.js";
import { icebergCatalogMigration, SqlCatalog, type IcebergCatalogTables } from "../../src/iceberg/sql-catalog.js";
import { appendRows, CommitConflictError, loadTable, type WriteResult } from "../../src/iceberg/table-writer.js";
import { testDatabase } from "../helpers/pg.js";
import { listFiles, openEnv, pgliteCatalog, readAvro, type Env } from "./helpers.js";

/** A real catalog whose first `parties` commits wait for each other, so that they race on one table version. */
class RacingCatalog implements Catalog {
  #arrived = 0;
  #release: () => void = () => undefined;
  readonly #gate = new Promise<void>((r) => (this.#release = r));
  constructor(
    private readonly inner: Catalog,
    private readonly parties: number,
  ) {}
  loadTable = (id: TableIdentifier): Promise<TablePointer | undefined> => this.inner.loadTable(id);
  createTable = (id: TableIdentifier, loc: string): Promise<boolean> => this.inner.createTable(id, loc);
  listTables = (ns: readonly string[]): Promise<TableIdentifier[]> => this.inner.listTables(ns);
  async commitTable(id: TableIdentifier, expected: string, next: string): Promise<boolean> {
    if (this.#arrived < this.parties) {
      if (++this.#arrived === this.parties) this.#release();
      await this.#gate;
    }
    return this.inner.commitTable(id, expected, next);
  }
}

const pgDb = await testDatabase();

for (const engine of ["pglite", "postgres"] as const) {
  describe.skipIf(engine === "postgres" && !pgDb)(`SQL catalog on ${engine}`, () => {
    let env: Env;
    let db: Kysely<IcebergCatalogTables>;
    let catalog: SqlCatalog;
    beforeAll(async () => {
      env = await openEnv();
      if (engine === "pglite") ({ db, catalog } = await pgliteCatalog());
      else {
        db = new Kysely<IcebergCatalogTables>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: pgDb!.url, max: 4 }) }) });
        await icebergCatalogMigration.up(db as unknown as Kysely<unknown>);
        catalog = new SqlCatalog(db, "floe");
      }
    });
    afterAll(async () => {
      await db.destroy();
      await env.close();
      if (engine === "postgres") await pgDb?.drop();
    });

    it("creates, loads, lists and swaps table pointers by compare-and-swap", async () => {
      await icebergCatalogMigration.up(db as unknown as Kysely<unknown>); // adopting existing tables is fine
      const id = { namespace: ["a", "b"], name: "t1" };
      expect(await catalog.loadTable(id)).toBeUndefined();
      expect(await catalog.createTable(id, "file:///w/m0.json")).toBe(true);
      expect(await catalog.createTable(id, "file:///w/other.json")).toBe(false);
      expect(await catalog.loadTable(id)).toEqual({ metadataLocation: "file:///w/m0.json", previousMetadataLocation: null });
      expect(await catalog.commitTable(id, "file:///w/m0.json", "file:///w/m1.json")).toBe(true);
      expect(await catalog.commitTable(id, "file:///w/m0.json", "file:///w/m2.json")).toBe(false);
      expect(await catalog.loadTable(id)).toEqual({ metadataLocation: "file:///w/m1.json", previousMetadataLocation: "file:///w/m0.json" });
      await catalog.createTable({ namespace: ["a", "b"], name: "t0" }, "file:///w/x.json");
      expect(await catalog.listTables(["a", "b"])).toEqual([{ namespace: ["a", "b"], name: "t0" }, id]);
      expect(await new SqlCatalog(db, "other").loadTable(id)).toBeUndefined();
      const rows = await db.selectFrom("iceberg_tables").selectAll().where("table_name", "=", "t1").execute();
      expect(rows).toEqual([{ catalog_name: "floe", table_namespace: "a.b", table_name: "t1", metadata_location: "file:///w/m1.json", previous_metadata_location: "file:///w/m0.json", iceberg_type: "TABLE" }]);
      const ns = await db.selectFrom("iceberg_namespace_properties").selectAll().execute();
      expect(ns).toEqual([{ catalog_name: "floe", namespace: "a.b", property_key: "exists", property_value: "true" }]);
    });

    it("two writers committing at once: one retries, no snapshot is lost", async () => {
      const table = { namespace: ["race"], name: "events" };
      const sql = (from: number, to: number): string => `SELECT i::BIGINT AS id, 'w' || i AS v FROM range(${from}, ${to}) r(i)`;
      await appendRows({ connection: env.con, source: { sql: sql(0, 5) }, table, catalog, storage: env.storage });
      const racing = new RacingCatalog(catalog, 2);
      const cons = [await env.duck.connect(), await env.duck.connect()];
      const results = await Promise.all(
        cons.map((connection, w) =>
          appendRows({ connection, source: { sql: sql(100 * (w + 1), 100 * (w + 1) + 10) }, table, catalog: racing, storage: env.storage, summary: { "floe.run-id": `w${w}` }, retryWaitMs: 5 }),
        ),
      );
      for (const c of cons) c.closeSync();
      expect(results.map((r) => r.commitRetries).sort()).toEqual([0, 1]);
      const t = await loadTable({ catalog, storage: env.storage, table });
      const ids = t!.metadata.snapshots.map((s) => s["snapshot-id"].toString());
      expect(ids).toEqual(expect.arrayContaining(results.map((r) => r.snapshotId)));
      expect(ids).toHaveLength(3);
      // the retried snapshot is a child of the winner, with the next sequence number and right totals
      const [, second, third] = t!.metadata.snapshots;
      expect(third?.["parent-snapshot-id"]).toBe(second?.["snapshot-id"]);
      expect(third?.["sequence-number"]).toBe(3n);
      expect(third?.summary["total-records"]).toBe("25");
      const read = await icebergRead({ tableUrl: env.storage.uriOf("race/events") });
      expect(read.map((r) => Number(r.id)).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, ...Array.from({ length: 10 }, (_, i) => 100 + i), ...Array.from({ length: 10 }, (_, i) => 200 + i)]);
      // the loser's first attempt left nothing behind (its manifest list was re-written as attempt 2)
      const lists = listFiles(join(env.dir, "warehouse/race/events/metadata")).filter((f) => f.startsWith("snap-"));
      expect(lists).toHaveLength(3);
      expect(lists.filter((f) => /^snap-\d+-2-/.test(f))).toHaveLength(1);
    });

    it("a write that loses every attempt fails cleanly: nothing visible, its files deleted", async () => {
      const table = { namespace: ["race"], name: "lost" };
      await appendRows({ connection: env.con, source: { sql: "SELECT 1::BIGINT AS id" }, table, catalog, storage: env.storage });
      const folder = join(env.dir, "warehouse/race/lost");
      const racing = new RacingCatalog(catalog, 2);
      const con2 = await env.duck.connect();
      const settled = await Promise.allSettled([
        appendRows({ connection: env.con, source: { sql: "SELECT 2::BIGINT AS id" }, table, catalog: racing, storage: env.storage, maxCommitRetries: 0 }),
        appendRows({ connection: con2, source: { sql: "SELECT 3::BIGINT AS id" }, table, catalog: racing, storage: env.storage, maxCommitRetries: 0 }),
      ]);
      con2.closeSync();
      const failed = settled.filter((s): s is PromiseRejectedResult => s.status === "rejected");
      expect(failed).toHaveLength(1);
      expect(failed[0]?.reason).toBeInstanceOf(CommitConflictError);
      const won = settled.find((s): s is PromiseFulfilledResult<WriteResult> => s.status === "fulfilled")!.value;
      const t = await loadTable({ catalog, storage: env.storage, table });
      expect(t!.metadata.snapshots.map((s) => s["snapshot-id"].toString()).at(-1)).toBe(won.snapshotId);
      // every file in the table folder is referenced (or is a metadata version / the hint)
      const referenced = new Set<string>();
      for (const s of t!.metadata.snapshots) {
        referenced.add(fileURLToPath(s["manifest-list"]));
        for (const mf of readAvro(fileURLToPath(s["manifest-list"])).records) {
          referenced.add(fileURLToPath(String(mf.manifest_path)));
          for (const e of readAvro(fileURLToPath(String(mf.manifest_path))).records) referenced.add(fileURLToPath(String((e.data_file as Record<string, unknown>).file_path)));
        }
      }
      const versions = new Set([t!.metadataLocation, ...t!.metadata["metadata-log"].map((e) => e["metadata-file"])].map((u) => fileURLToPath(u)));
      const stray = listFiles(folder)
        .map((f) => join(folder, f))
        .filter((f) => !referenced.has(f) && !versions.has(f) && !/metadata\/(v\d+\.metadata\.json|version-hint\.text)$/.test(f));
      expect(stray).toEqual([]);
    });
  });
}
