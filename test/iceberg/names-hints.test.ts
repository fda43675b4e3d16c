import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { icebergRead } from "icebird";
import type { Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { currentSnapshot, metadataVersion } from "../../src/iceberg/metadata.js";
import type { IcebergCatalogTables, SqlCatalog } from "../../src/iceberg/sql-catalog.js";
import { appendRows, loadTable, overwritePartitions } from "../../src/iceberg/table-writer.js";
import type { ObjectStorage } from "../../src/storage/types.js";
import { norm, openEnv, pgliteCatalog, readAvro, rows, type Env } from "./helpers.js";

let env: Env;
let catalog: SqlCatalog;
let db: Kysely<IcebergCatalogTables>;
beforeAll(async () => {
  env = await openEnv();
  ({ catalog, db } = await pgliteCatalog());
});
afterAll(async () => {
  await db.destroy();
  await env.close();
});
const hintOf = (t: string): string => readFileSync(join(env.dir, "warehouse", "db", t, "metadata", "version-hint.text"), "utf8");
const asJson = (v: unknown): unknown => (typeof v === "string" ? JSON.parse(v) : v);
const dataFiles = (manifestList: string): string[] =>
  readAvro(fileURLToPath(manifestList)).records
    .flatMap((mf) => readAvro(fileURLToPath(String(mf.manifest_path))).records)
    .filter((e) => e.status !== 2)
    .map((e) => fileURLToPath(String((e.data_file as Record<string, unknown>).file_path)));

describe("partition field names that are not Avro names", () => {
  it('partitions by "Breed Name" and "1st": commits, reads back with icebird, overwrites a partition', async () => {
    const table = { namespace: ["db"], name: "dogs" };
    const partitionBy = [{ column: "Breed Name" }, { column: "1st" }];
    const src = (from: number, to: number, breeds: string) =>
      `SELECT i::BIGINT AS id, (ARRAY[${breeds}])[1 + i % 2] AS "Breed Name", (i % 3)::INTEGER AS "1st" FROM range(${from}, ${to}) r(i)`;
    const first = await appendRows({ connection: env.con, source: { sql: src(0, 12, "'Border Collie', 'Pug'") }, table, catalog, storage: env.storage, partitionBy });
    expect(first.addedFiles).toBe(6);
    const t = (await loadTable({ catalog, storage: env.storage, table }))!;
    // the metadata keeps the Iceberg names; the manifest's Avro record uses Java's compatible names
    expect(t.metadata["partition-specs"][0]?.fields.map((f) => f.name)).toEqual(["Breed Name", "1st"]);
    const list = readAvro(fileURLToPath(currentSnapshot(t.metadata)!["manifest-list"]));
    const manifest = readAvro(fileURLToPath(String(list.records[0]!.manifest_path)));
    const entrySchema = asJson(manifest.metadata["avro.schema"]) as { fields: Array<{ name: string; type: { fields?: Array<{ name: string; type: { fields?: Array<{ name: string; "field-id": number }> } }> } }> };
    const r102 = entrySchema.fields.find((f) => f.name === "data_file")!.type.fields!.find((f) => f.name === "partition")!.type.fields!;
    expect(r102.map((f) => [f.name, f["field-id"]])).toEqual([["Breed_x20Name", 1000], ["_1st", 1001]]);
    expect(asJson(manifest.metadata["partition-spec"])).toMatchObject([{ name: "Breed Name" }, { name: "1st" }]);
    const values = manifest.records.map((e) => (e.data_file as { partition: Record<string, unknown> }).partition);
    expect(values).toContainEqual({ Breed_x20Name: "Pug", _1st: 1 });

    const read = async () => norm(await icebergRead({ tableUrl: env.storage.uriOf("db/dogs") }), "id", ["id", "Breed Name", "1st"]);
    expect(await read()).toEqual(norm(await rows(env.con, src(0, 12, "'Border Collie', 'Pug'")), "id", ["id", "Breed Name", "1st"]));

    // overwrite reads the manifests back (Avro names → Iceberg names) to find the touched partitions
    const over = await overwritePartitions({ connection: env.con, source: { sql: `SELECT 100::BIGINT AS id, 'Pug' AS "Breed Name", 1::INTEGER AS "1st"` }, table, catalog, storage: env.storage, partitionBy });
    expect(over).toMatchObject({ addedRecords: 1, deletedFiles: 1, deletedRecords: 2 }); // ids 1 and 7 were Pug/1
    const after = await read();
    expect(after).toHaveLength(11);
    expect(after.filter((r) => r["Breed Name"] === "Pug" && r["1st"] === 1).map((r) => r.id)).toEqual(["100n"]);
  });

  it("partition field names that collide once Avro-sanitized are refused up front", async () => {
    const table = { namespace: ["db"], name: "collide" };
    await expect(
      appendRows({ connection: env.con, source: { sql: `SELECT 1 AS "a b", 2 AS a_x20b` }, table, catalog, storage: env.storage, partitionBy: [{ column: "a b" }, { column: "a_x20b" }] }),
    ).rejects.toThrow(/collide/);
  });
});

describe("the iceberg.schema key of Parquet data files", () => {
  it("names the schema id the files are committed with, also after a schema change", async () => {
    const table = { namespace: ["db"], name: "evolving" };
    const o = { connection: env.con, table, catalog, storage: env.storage };
    await appendRows({ ...o, source: { sql: "SELECT 1::BIGINT AS id" } });
    await appendRows({ ...o, source: { sql: "SELECT 2::BIGINT AS id, 'x' AS note" } }); // schema 1
    await appendRows({ ...o, source: { sql: "SELECT 3::BIGINT AS id, 'y' AS note" } }); // schema 1, unchanged
    await appendRows({ ...o, source: { sql: "SELECT 4::BIGINT AS id, 'z' AS note, 1.5::DOUBLE AS score" } }); // schema 2
    const t = (await loadTable(o))!;
    expect(t.metadata["current-schema-id"]).toBe(2);
    const ids: Array<[number, number]> = [];
    let before = new Set<string>();
    for (const s of t.metadata.snapshots) {
      const listed = dataFiles(s["manifest-list"]);
      const added = listed.filter((f) => !before.has(f));
      before = new Set(listed);
      expect(added).toHaveLength(1);
      const kv = await rows(env.con, `SELECT decode(value) AS v FROM parquet_kv_metadata('${added[0]!}') WHERE decode(key) = 'iceberg.schema'`);
      ids.push([s["schema-id"] ?? -99, (JSON.parse(String(kv[0]?.v)) as { "schema-id": number })["schema-id"]]);
    }
    expect(ids.map(([snap]) => snap)).toEqual([0, 1, 1, 2]);
    expect(ids.every(([snap, file]) => snap === file), JSON.stringify(ids)).toBe(true);
  });
});

describe("metadata/version-hint.text", () => {
  it("a hint left stale (killed between the catalog commit and the hint) is healed by the next load for a write", async () => {
    const table = { namespace: ["db"], name: "hinted" };
    const o = { connection: env.con, table, catalog, storage: env.storage, dedupeKey: "floe.batch", summary: { "floe.batch": "b1" } };
    const r = await appendRows({ ...o, source: { sql: "SELECT 1::BIGINT AS id" } });
    expect(hintOf("hinted")).toBe("1");
    // as if the process died right after the catalog swap: the hint and the v1 copy never written
    writeFileSync(join(env.dir, "warehouse/db/hinted/metadata/version-hint.text"), "0");
    rmSync(join(env.dir, "warehouse/db/hinted/metadata/v1.metadata.json"));
    // the step is retried: its batch is already committed, and the retry heals the hint
    const again = await appendRows({ ...o, source: { sql: "SELECT 1::BIGINT AS id" } });
    expect(again).toMatchObject({ alreadyCommitted: true, snapshotId: r.snapshotId });
    expect(hintOf("hinted")).toBe("1");
    expect(await icebergRead({ tableUrl: env.storage.uriOf("db/hinted") })).toHaveLength(1);
    // a missing hint heals the same way
    rmSync(join(env.dir, "warehouse/db/hinted/metadata/version-hint.text"));
    await appendRows({ ...o, source: { sql: "SELECT 1::BIGINT AS id" } });
    expect(hintOf("hinted")).toBe("1");
  });

  it("two committers racing on the hint never leave it behind the catalog", async () => {
    const table = { namespace: ["db"], name: "race" };
    const o = { connection: env.con, table, catalog, storage: env.storage };
    await appendRows({ ...o, source: { sql: "SELECT 0::BIGINT AS id" } }); // v1
    // Writer A commits v2 but is slow to write its hint: it read the hint (1) before B, and
    // writes it only after B has committed v3 and published its own hint.
    let releaseA!: () => void;
    const aMayWrite = new Promise<void>((r) => (releaseA = r));
    let aReachedHint!: () => void;
    const aAtHint = new Promise<void>((r) => (aReachedHint = r));
    const slow: ObjectStorage = {
      ...env.storage,
      write: async (key, body) => {
        if (key.endsWith("version-hint.text")) {
          aReachedHint();
          await aMayWrite;
        }
        return env.storage.write(key, body);
      },
    };
    const a = appendRows({ ...o, storage: slow, source: { sql: "SELECT 1::BIGINT AS id" } });
    await aAtHint;
    expect(metadataVersion((await loadTable(o))!.metadataLocation)).toBe(2);
    await appendRows({ ...o, source: { sql: "SELECT 2::BIGINT AS id" } }); // B: v3, hint 3
    expect(hintOf("race")).toBe("3");
    releaseA(); // A now writes "2" over "3"… and must put it right
    await a;
    const t = (await loadTable(o))!;
    expect(metadataVersion(t.metadataLocation)).toBe(3);
    expect(hintOf("race")).toBe("3");
    expect(await icebergRead({ tableUrl: env.storage.uriOf("db/race") })).toHaveLength(3);
    // and a hint already ahead of a writer's version is never lowered
    writeFileSync(join(env.dir, "warehouse/db/race/metadata/version-hint.text"), "9");
    await appendRows({ ...o, source: { sql: "SELECT 3::BIGINT AS id" } }); // v4
    expect(hintOf("race")).toBe("9");
  });
});
