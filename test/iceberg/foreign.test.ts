// Tables floe did not write (issue 14, "silently wrong"): a v2 table written by Iceberg Java with
// position and equality deletes (test/fixtures/iceberg/java-bunnies, served by s3rver under the
// bucket its metadata names), and floe tables edited the way other engines leave them. icebird
// (an independent reader that applies both kinds of deletes) is the oracle for row contents.

import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { icebergRead } from "icebird";
import type { Kysely } from "kysely";
import S3rver from "s3rver";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parseJson, stringifyJson, type JsonObject } from "../../src/iceberg/json.js";
import { encodeAvroFile } from "../../src/iceberg/avro.js";
import { decodeManifest, decodeManifestList, encodeManifestList, EntryStatus, manifestEntrySchema, manifestFileFor, type DataFile, type ManifestEntry } from "../../src/iceberg/manifest.js";
import { currentSchema, currentSnapshot, defaultSpec, metadataFileName, newSnapshotId, serializeTableMetadata, withSnapshot, type Snapshot } from "../../src/iceberg/metadata.js";
import type { IcebergCatalogTables, SqlCatalog } from "../../src/iceberg/sql-catalog.js";
import * as reader from "../../src/iceberg/table-reader.js";
import { appendRows, keyOf, loadTable, overwritePartitions, type LoadedTable } from "../../src/iceberg/table-writer.js";
import { icebergParquetOptions } from "../../src/iceberg/parquet-options.js";
import { localStorage } from "../../src/storage/local-storage.js";
import { s3Storage } from "../../src/storage/s3-storage.js";
import type { ObjectStorage } from "../../src/storage/types.js";
import { listFiles, norm, openEnv, pgliteCatalog, rows, type Env } from "./helpers.js";

const BUCKET = "hyperparam-iceberg";
const FIXTURE = join(import.meta.dirname, "..", "fixtures", "iceberg", "java-bunnies");
const TABLE_URL = "s3a://hyperparam-iceberg/java/bunnies";
const PREFIX = "java/bunnies";
const COLUMNS = ["Breed Name", "Average Weight", "Fur Length", "Lifespan", "Origin Country", "Ear Type", "Temperament", "Popularity Rank", "__happy__"];
const NZ_UPDATE_SNAPSHOT = 9158179788527662767n;

let env: Env;
let catalog: SqlCatalog;
let db: Kysely<IcebergCatalogTables>;
let s3: S3rver;
let s3dir: string;
let endpoint: string;
let storage: ObjectStorage;
/** Every request s3rver answered: method, path and its If-None-Match header. */
const requests: Array<{ method: string; url: string; ifNoneMatch: string | undefined }> = [];

beforeAll(async () => {
  env = await openEnv();
  ({ catalog, db } = await pgliteCatalog());
  s3dir = mkdtempSync(join(tmpdir(), "floe-s3-foreign-"));
  s3 = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: s3dir, configureBuckets: [{ name: BUCKET, configs: [] }] });
  const { port } = (await s3.run()) as { port: number };
  (s3 as unknown as { httpServer: Server }).httpServer.on("request", (req) => {
    const h = req.headers["if-none-match"];
    requests.push({ method: req.method ?? "", url: req.url ?? "", ifNoneMatch: Array.isArray(h) ? h[0] : h });
  });
  endpoint = `http://127.0.0.1:${port}`;
  storage = s3Storage({ bucket: BUCKET, endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } });
  // icebird reads s3:// and s3a:// paths from https://<bucket>.s3.amazonaws.com/<key>: serve those from s3rver
  const inner = globalThis.fetch;
  globalThis.fetch = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const aws = `https://${BUCKET}.s3.amazonaws.com/`;
    return inner(url.startsWith(aws) ? `${endpoint}/${BUCKET}/${url.slice(aws.length)}` : input, init);
  };
});
afterAll(async () => {
  await db.destroy();
  await s3.close();
  rmSync(s3dir, { recursive: true, force: true });
  await env.close();
});

/** The fixture's files, by path relative to the table folder. */
const fixtureFiles = (): Map<string, Buffer> => {
  const out = new Map<string, Buffer>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(FIXTURE, p).split("\\").join("/"), readFileSync(p));
    }
  };
  walk(FIXTURE);
  return out;
};
const md5 = (b: Uint8Array): string => createHash("md5").update(b).digest("hex");
/** Every object of the table folder, key → md5. */
const folder = async (): Promise<Record<string, string>> => {
  const out: Record<string, string> = {};
  for await (const page of storage.list(`${PREFIX}/`)) for (const o of page) out[o.key] = md5(await storage.read(o.key));
  return out;
};
const text = async (key: string): Promise<string> => Buffer.from(await storage.read(key)).toString("utf8");

let serial = 0;
/** The fixture as it was published, alone in its folder, registered in the catalog (at `metadata`) under a fresh name. */
const registerJava = async (metadata = "v5.metadata.json"): Promise<{ table: { namespace: string[]; name: string }; o: { catalog: SqlCatalog; storage: ObjectStorage; table: { namespace: string[]; name: string } } }> => {
  const table = { namespace: ["java"], name: `bunnies_${++serial}` };
  expect(await catalog.createTable(table, `${TABLE_URL}/metadata/${metadata}`)).toBe(true);
  return { table, o: { catalog, storage, table } };
};
const load = async (o: { catalog: SqlCatalog; storage: ObjectStorage; table: { namespace: string[]; name: string } }): Promise<LoadedTable> => {
  const t = await loadTable(o);
  if (!t) throw new Error("no table");
  return t;
};
/** The fixture's v5 metadata, edited, as a new metadata file of the folder (`metadata/<name>`). */
const editedJava = async (name: string, edit: (m: JsonObject) => void): Promise<string> => {
  const m = parseJson(readFileSync(join(FIXTURE, "metadata", "v5.metadata.json"), "utf8")) as JsonObject;
  edit(m);
  await storage.write(`${PREFIX}/metadata/${name}`, stringifyJson(m, 2));
  return name;
};

beforeEach(async () => {
  const keys: string[] = [];
  for await (const page of storage.list(`${PREFIX}/`)) keys.push(...page.map((o) => o.key));
  await storage.delete(keys);
  for (const [rel, bytes] of fixtureFiles()) await storage.write(`${PREFIX}/${rel}`, bytes);
});

/** One row of the bunnies table, as SQL. */
const bunny = (name: string | null, rank: number, lifespan = "7::BIGINT"): string =>
  `SELECT ${name === null ? "NULL::VARCHAR" : `'${name}'`} AS "Breed Name", 1.5::DOUBLE AS "Average Weight", 2.5::DOUBLE AS "Fur Length", ${lifespan} AS "Lifespan",
     'Nowhere' AS "Origin Country", 'Lop' AS "Ear Type", 'Calm' AS "Temperament", ${rank}::BIGINT AS "Popularity Rank", true AS "__happy__"`;
const oracle = async (metadataFileName: string): Promise<Array<Record<string, unknown>>> =>
  norm(await icebergRead({ tableUrl: TABLE_URL, metadataFileName }), "Breed Name", COLUMNS);
const fileName = (location: string): string => location.slice(location.lastIndexOf("/") + 1);
/** The table's current rows as floe reads them: live files minus the deletes that apply. */
const floeRows = async (t: LoadedTable): Promise<Array<Record<string, unknown>>> => {
  const files = await reader.liveDataFiles(storage, t, { deletes: "include" });
  const relation = await reader.liveRowsSql({ connection: env.con, storage, table: t, files, tmpDir: env.dir });
  return norm(await rows(env.con, `SELECT * FROM ${relation}`), "Breed Name", COLUMNS);
};

describe("1. reads apply delete files (or refuse)", () => {
  it("a Java table with position and equality deletes: 15 rows as icebird reads them, not the 22 of its files", async () => {
    const { o } = await registerJava("v5.metadata.json");
    const t = await load(o);
    // reading the files as they are would return deleted rows: refused, naming both kinds
    const refused = await reader.liveDataFiles(storage, t).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(refused?.name).toBe("IcebergDeletesError");
    expect(refused?.message).toMatch(/has equality and position delete files that apply to 1 of the data files/);
    expect(refused?.message).toContain("bunnies-initial.parquet");

    const files = await reader.liveDataFiles(storage, t, { deletes: "include" });
    const byName = Object.fromEntries(files.map((f) => [fileName(f.path), f.deletes.map((d) => [fileName(d.path), d.content]).sort()]));
    expect(byName).toEqual({
      "bunnies-initial.parquet": [
        ["bunnies-eq-delete-new-zealand.parquet", 2],
        ["bunnies-pos-deletes.parquet", 1],
      ],
      // the equality delete is as old as this file (same commit): it does not apply to it
      "bunnies-updated-new-zealand.parquet": [],
    });
    expect(files.reduce((a, f) => a + f.records, 0)).toBe(22);
    // a caller reading only files no delete applies to is not refused
    const only = await reader.liveDataFiles(storage, t, { where: (f) => f.path.endsWith("updated-new-zealand.parquet") });
    expect(only.map((f) => fileName(f.path))).toEqual(["bunnies-updated-new-zealand.parquet"]);

    const got = await floeRows(t);
    expect(got).toHaveLength(15);
    expect(got).toEqual(await oracle("v5.metadata.json"));
    expect(got.filter((r) => r["Breed Name"] === "New Zealand")).toEqual([expect.objectContaining({ "Popularity Rank": "0n", __happy__: true })]);
    for (const gone of ["Flemish Giant", "English Lop", "Rex", "Mini Lop", "Lionhead", "French Angora"]) expect(got.some((r) => r["Breed Name"] === gone)).toBe(false);
  });

  it("the same table one version earlier (position deletes only) reads as icebird reads it", async () => {
    const { o } = await registerJava("v4.metadata.json");
    const t = await load(o);
    await expect(reader.liveDataFiles(storage, t)).rejects.toThrow(/has position delete files that apply to 1 of the data files/);
    const got = await floeRows(t);
    expect(got).toHaveLength(15);
    expect(got).toEqual(await oracle("v4.metadata.json"));
    expect(got.find((r) => r["Breed Name"] === "New Zealand")).toMatchObject({ "Popularity Rank": "21n", __happy__: null });
  });
});

describe("2. a commit keeps the members it does not model", () => {
  it("field defaults, partition spec, sort order, snapshot, ref and log members survive an append", async () => {
    const name = await editedJava("00005-edited.metadata.json", (m) => {
      const fields = ((m.schemas as JsonObject[])[1] as JsonObject).fields as JsonObject[];
      Object.assign(fields[8] as JsonObject, { "initial-default": false, "write-default": true, doc: "added later" });
      Object.assign(fields[3] as JsonObject, { doc: "years" });
      Object.assign((m["partition-specs"] as JsonObject[])[0] as JsonObject, { "x-written-by": "java" });
      m["sort-orders"] = [
        { "order-id": 0, fields: [] },
        { "order-id": 1, fields: [{ transform: "identity", "source-id": 8, direction: "desc", "null-order": "nulls-last" }], "x-note": "by rank" },
      ];
      Object.assign((m.snapshots as JsonObject[])[0] as JsonObject, { "x-engine-run": "spark-1", "added-rows": 21 });
      Object.assign((m.snapshots as JsonObject[])[2] as JsonObject, { "key-id": "k-7" });
      Object.assign((m.refs as JsonObject).main as JsonObject, { "max-snapshot-age-ms": 86400000, "min-snapshots-to-keep": 3 });
      (m.refs as JsonObject).audit = { "snapshot-id": 4951213507629824583n, type: "tag", "max-ref-age-ms": 1000 };
      Object.assign((m["snapshot-log"] as JsonObject[])[0] as JsonObject, { "x-note": "first" });
      Object.assign((m["metadata-log"] as JsonObject[])[0] as JsonObject, { "x-note": "created" });
    });
    const before = parseJson(await text(`${PREFIX}/metadata/${name}`)) as JsonObject;
    const { o } = await registerJava(name);
    const r = await appendRows({ ...o, connection: env.con, source: { sql: bunny("Lop X", 30) } });
    expect(r.addedRecords).toBe(1);
    const after = parseJson(await text(keyOf(storage, r.metadataLocation))) as JsonObject;
    for (const k of ["schemas", "current-schema-id", "partition-specs", "default-spec-id", "sort-orders", "default-sort-order-id", "properties", "statistics", "partition-statistics", "table-uuid", "location"]) {
      expect(after[k], k).toEqual(before[k]);
    }
    expect((after.snapshots as JsonObject[]).slice(0, 3)).toEqual(before.snapshots);
    expect((after["snapshot-log"] as JsonObject[]).slice(0, 3)).toEqual(before["snapshot-log"]);
    expect((after["metadata-log"] as JsonObject[]).slice(0, 4)).toEqual(before["metadata-log"]);
    expect((after.refs as JsonObject).audit).toEqual((before.refs as JsonObject).audit);
    const { "snapshot-id": newHead, ...mainAfter } = (after.refs as JsonObject).main as JsonObject;
    const { "snapshot-id": _oldHead, ...mainBefore } = (before.refs as JsonObject).main as JsonObject;
    expect(mainAfter).toEqual(mainBefore);
    expect(String(newHead)).toBe(r.snapshotId);
    // and the table still reads as before, plus the row
    expect(await floeRows(await load(o))).toHaveLength(16);
    expect(await oracle(fileName(r.metadataLocation))).toHaveLength(16);

    // a new column makes a new schema: the fields it keeps keep their members, and the schemas before it stay as they were
    const wider = await appendRows({ ...o, connection: env.con, source: { sql: `SELECT *, 'grey' AS "Color" FROM (${bunny("Lop Z", 32)})` } });
    const evolved = parseJson(await text(keyOf(storage, wider.metadataLocation))) as JsonObject;
    const schemas = evolved.schemas as JsonObject[];
    expect(schemas.slice(0, 2)).toEqual(before.schemas);
    expect(evolved["current-schema-id"]).toBe(2);
    const fields = (schemas[2] as JsonObject).fields as JsonObject[];
    expect(fields.slice(0, 9)).toEqual(((before.schemas as JsonObject[])[1] as JsonObject).fields);
    expect(fields[9]).toMatchObject({ id: 10, name: "Color", required: false, type: "string" });
  });
});

describe("3. NULLs in a required column", () => {
  it("fail the write naming the column, rewritten or adopted, and nothing is committed", async () => {
    const table = { namespace: ["db"], name: "required" };
    const local = { catalog, storage: env.storage, table };
    const first = await appendRows({ ...local, connection: env.con, source: { sql: "SELECT 1::BIGINT AS id, 'a' AS name" } });
    // another engine made `id` required (NOT NULL): a new metadata version, committed by CAS
    const t = await load(local);
    const m = parseJson(Buffer.from(await env.storage.read(keyOf(env.storage, t.metadataLocation))).toString("utf8")) as JsonObject;
    (((m.schemas as JsonObject[])[0] as JsonObject).fields as JsonObject[]).forEach((f) => {
      if (f.name === "id") f.required = true;
    });
    const edited = `${keyOf(env.storage, t.metadata.location)}/metadata/00002-not-null.metadata.json`;
    await env.storage.write(edited, stringifyJson(m, 2));
    expect(await catalog.commitTable(table, t.metadataLocation, env.storage.uriOf(edited))).toBe(true);
    const dataBefore = listFiles(join(env.dir, "warehouse", "db", "required", "data"));

    const err = await appendRows({ ...local, connection: env.con, source: { sql: "SELECT * FROM (VALUES (2::BIGINT, 'b'), (NULL, 'c')) v(id, name)" } }).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).name).toBe("IcebergSchemaError");
    expect((err as Error).message).toMatch(/column "id" of table db\.required is required, and the rows hold a NULL/);

    // a Parquet file that is otherwise ready to be listed as it is (field ids, iceberg.schema) is not adopted with its NULL
    const ready = join(env.dir, "ready-with-null.parquet");
    const opts = icebergParquetOptions([
      { name: "id", duckdbType: "BIGINT" },
      { name: "name", duckdbType: "VARCHAR" },
    ]);
    await env.con.run(`COPY (SELECT * FROM (VALUES (3::BIGINT, 'd'), (NULL, 'e')) v(id, name)) TO '${ready}' (FORMAT parquet, ${opts})`);
    await expect(appendRows({ ...local, connection: env.con, source: { parquet: [ready] } })).rejects.toThrow(/column "id" of table db\.required is required/);

    const now = await load(local);
    expect(now.metadataLocation).toBe(env.storage.uriOf(edited));
    expect(now.metadata.snapshots.map((s) => s["snapshot-id"].toString())).toEqual([first.snapshotId]);
    expect(listFiles(join(env.dir, "warehouse", "db", "required", "data"))).toEqual(dataBefore);
    // rows without a NULL there still go in
    await expect(appendRows({ ...local, connection: env.con, source: { sql: "SELECT 4::BIGINT AS id, NULL::VARCHAR AS name" } })).resolves.toMatchObject({ addedRecords: 1 });
  });
});

describe("4. totals when the parent snapshot has none", () => {
  it("are counted from the manifests (BigQuery writes no totals), not taken from the rows just added", async () => {
    const name = await editedJava("00005-no-totals.metadata.json", (m) => {
      for (const s of m.snapshots as JsonObject[]) {
        const summary = s.summary as JsonObject;
        for (const k of Object.keys(summary)) if (k.startsWith("total-")) delete summary[k];
      }
    });
    const { o } = await registerJava(name);
    const r = await appendRows({ ...o, connection: env.con, source: { sql: `${bunny("Lop X", 30)} UNION ALL ${bunny("Lop Y", 31)}` } });
    const summary = currentSnapshot((await load(o)).metadata)?.summary ?? {};
    expect(summary).toMatchObject({
      "added-records": "2",
      "total-records": "24", // 21 + 1 rows of the Java files (their deletes are not subtracted, as Java counts) + 2
      "total-data-files": "3",
      "total-delete-files": "2",
      "total-position-deletes": "6",
      "total-equality-deletes": "1",
      "total-files-size": String(10274 + Number(summary["added-files-size"])),
    });
    expect(r.addedRecords).toBe(2);
  });
});

describe("5. metadata files are created, never replaced, and only once a commit is valid", () => {
  it("writeIfAbsent creates once and then leaves the object alone, locally and on S3 (sent with If-None-Match: *)", async () => {
    const local = localStorage({ root: join(env.dir, "cia") });
    for (const s of [local, storage]) {
      const key = `cia/${s === local ? "local" : "s3"}/v1.metadata.json`;
      requests.length = 0;
      expect(await s.writeIfAbsent(key, "first")).toBe(true);
      expect(await s.writeIfAbsent(key, "second")).toBe(false);
      expect(Buffer.from(await s.read(key)).toString("utf8")).toBe("first");
      if (s === storage) expect(requests.filter((q) => q.method === "PUT").map((q) => q.ifNoneMatch)).toEqual(["*"]);
    }
    expect(readdirSync(join(env.dir, "cia", "cia", "local"))).toEqual(["v1.metadata.json"]); // no temp file left
  });

  it("a commit leaves another writer's v<N>.metadata.json and the hint as they were", async () => {
    // a Hadoop-catalog writer already published v6 in the folder; floe's catalog still points at v5
    const foreign = stringifyJson({ "format-version": 2, note: "written by another engine" });
    await storage.write(`${PREFIX}/metadata/v6.metadata.json`, foreign);
    const fixture = await folder();
    const { o } = await registerJava();
    const r = await appendRows({ ...o, connection: env.con, source: { sql: bunny("Lop X", 30) } });
    expect(fileName(r.metadataLocation)).toMatch(/^00006-[0-9a-f-]+\.metadata\.json$/);
    expect(await text(`${PREFIX}/metadata/v6.metadata.json`)).toBe(foreign);
    expect(await text(`${PREFIX}/metadata/version-hint.text`)).toBe("5");
    const now = await folder();
    for (const [key, sum] of Object.entries(fixture)) expect(now[key], key).toBe(sum);
  });

  it("a write that fails leaves the folder byte for byte as it was, even with its hint missing", async () => {
    await storage.delete([`${PREFIX}/metadata/version-hint.text`]);
    const before = await folder();
    const { o } = await registerJava();
    // the rows change the type of a column: refused before anything is committed
    await expect(appendRows({ ...o, connection: env.con, source: { sql: bunny("Lop X", 30, "'seven'") } })).rejects.toThrow(/column "Lifespan" changes type/);
    expect(await folder()).toEqual(before);
    expect((await load(o)).metadataLocation).toBe(`${TABLE_URL}/metadata/v5.metadata.json`);
  });
});

describe("6. an overwrite removes the delete files of the data files it removes", () => {
  it("replacing the whole (unpartitioned) table drops both delete files with the data files", async () => {
    const { o } = await registerJava();
    const r = await overwritePartitions({ ...o, connection: env.con, source: { sql: `${bunny("Lop X", 30)} UNION ALL ${bunny("Lop Y", 31)}` } });
    expect(r).toMatchObject({ addedRecords: 2, deletedFiles: 2, deletedRecords: 22 });
    const t = await load(o);
    const snapshot = currentSnapshot(t.metadata);
    const list = decodeManifestList(await storage.read(keyOf(storage, snapshot?.["manifest-list"] ?? "")));
    const live = [];
    for (const mf of list) for (const e of decodeManifest(await storage.read(keyOf(storage, mf.manifest_path)))) if (e.status !== 2) live.push([mf.content, e.data_file.content, fileName(e.data_file.file_path)]);
    expect(live).toEqual([[0, 0, expect.stringMatching(/^00000-0-[0-9a-f-]+\.parquet$/)]]); // only the new data file: no delete file is live
    expect(snapshot?.summary).toMatchObject({
      "removed-delete-files": "2",
      "removed-position-delete-files": "1",
      "removed-equality-delete-files": "1",
      "removed-position-deletes": "6",
      "removed-equality-deletes": "1",
      "total-delete-files": "0",
      "total-position-deletes": "0",
      "total-equality-deletes": "0",
      "total-data-files": "1",
      "total-records": "2",
    });
    // nothing is left to apply: the files read as they are, and icebird agrees
    const files = await reader.liveDataFiles(storage, t);
    expect(files.reduce((a, f) => a + f.records, 0)).toBe(2);
    expect((await oracle(fileName(t.metadataLocation))).map((x) => x["Breed Name"])).toEqual(["Lop X", "Lop Y"]);
  });

  it("delete files that still apply to a data file left in place are kept", async () => {
    const { o } = await registerJava();
    // replace only the rows of the Java update commit: the initial file and its deletes stay
    const r = await overwritePartitions({ ...o, connection: env.con, source: { sql: bunny("Lop X", 30) }, replaceWhere: (s) => s?.["snapshot-id"] === NZ_UPDATE_SNAPSHOT });
    expect(r).toMatchObject({ addedRecords: 1, deletedFiles: 1, deletedRecords: 1 });
    const t = await load(o);
    const files = await reader.liveDataFiles(storage, t, { deletes: "include" });
    expect(files.find((f) => f.path.endsWith("bunnies-initial.parquet"))?.deletes.map((d) => d.content).sort()).toEqual([1, 2]);
    expect(currentSnapshot(t.metadata)?.summary).toMatchObject({ "total-delete-files": "2", "total-records": "22" });
    expect(currentSnapshot(t.metadata)?.summary["removed-delete-files"]).toBeUndefined();
    const got = await floeRows(t);
    expect(got).toHaveLength(15); // 21 - 6 - 1 (New Zealand, deleted by equality) + 1
    expect(got).toEqual(await oracle(fileName(t.metadataLocation)));
  });
});

describe("1 and 6 on a partitioned table: delete files apply within their partition", () => {
  const table = { namespace: ["db"], name: "parted" };
  const local = (): { catalog: SqlCatalog; storage: ObjectStorage; table: typeof table } => ({ catalog, storage: env.storage, table });
  const day = (d: string, ids: number[]): string => ids.map((i) => `SELECT ${i}::BIGINT AS id, TIMESTAMPTZ '${d} 10:00:00+00' AS ts`).join(" UNION ALL ");
  const ids = async (t: LoadedTable): Promise<number[]> => {
    const files = await reader.liveDataFiles(env.storage, t, { deletes: "include" });
    const relation = await reader.liveRowsSql({ connection: env.con, storage: env.storage, table: t, files, tmpDir: env.dir });
    return (await rows(env.con, `SELECT id FROM ${relation} ORDER BY id`)).map((r) => Number(r.id));
  };
  /** The live delete files of the current snapshot: [file name, content]. */
  const liveDeletes = async (t: LoadedTable): Promise<Array<[string, number]>> => {
    const out: Array<[string, number]> = [];
    const list = decodeManifestList(await env.storage.read(keyOf(env.storage, currentSnapshot(t.metadata)?.["manifest-list"] ?? "")));
    for (const mf of list.filter((m) => m.content === 1)) {
      for (const e of decodeManifest(await env.storage.read(keyOf(env.storage, mf.manifest_path)))) if (e.status !== EntryStatus.Deleted) out.push([fileName(e.data_file.file_path), e.data_file.content]);
    }
    return out.sort();
  };

  /**
   * Commits delete files the way Spark's DELETE does (one "delete" snapshot with a delete manifest
   * added to the parent's manifests), written with this project's Avro writer: floe has no delete
   * writer, and no public fixture has deletes in a partitioned table.
   */
  const commitDeletes = async (files: Array<{ name: string; sql: string; fieldIds: string; content: 1 | 2; partitionOf: string; equalityIds?: number[] }>): Promise<void> => {
    const t = await load(local());
    const m = t.metadata;
    const schema = currentSchema(m);
    const spec = defaultSpec(m);
    const parent = currentSnapshot(m) as Snapshot;
    const parentList = decodeManifestList(await env.storage.read(keyOf(env.storage, parent["manifest-list"])));
    const dataEntries = (await Promise.all(parentList.map(async (mf) => decodeManifest(await env.storage.read(keyOf(env.storage, mf.manifest_path)))))).flat();
    const snapshotId = newSnapshotId(m);
    const sequenceNumber = m["last-sequence-number"] + 1n;
    const entries: ManifestEntry[] = [];
    for (const f of files) {
      const path = join(env.dir, f.name);
      await env.con.run(`COPY (${f.sql}) TO '${path}' (FORMAT parquet, FIELD_IDS {${f.fieldIds}})`);
      const key = `db/parted/data/${f.name}`;
      await env.storage.upload(path, key);
      const partition = dataEntries.find((e) => e.data_file.file_path.endsWith(f.partitionOf) || e.data_file.file_path === f.partitionOf)?.data_file.partition;
      const records = BigInt(String((await rows(env.con, `SELECT count(*) AS n FROM '${path}'`))[0]?.n));
      const dataFile: DataFile = {
        content: f.content, file_path: env.storage.uriOf(key), file_format: "PARQUET", partition: { ...partition }, record_count: records,
        file_size_in_bytes: BigInt(statSync(path).size), column_sizes: null, value_counts: null, null_value_counts: null, nan_value_counts: null,
        lower_bounds: null, upper_bounds: null, key_metadata: null, split_offsets: null, equality_ids: f.equalityIds ?? null, sort_order_id: null,
      };
      entries.push({ status: EntryStatus.Added, snapshot_id: snapshotId, sequence_number: null, file_sequence_number: null, data_file: dataFile });
    }
    const manifestKey = `db/parted/metadata/hand-${snapshotId}-m0.avro`;
    const bytes = encodeAvroFile(manifestEntrySchema(schema, spec), entries, {
      schema: stringifyJson(schema), "schema-id": String(schema["schema-id"]), "partition-spec": stringifyJson(spec.fields), "partition-spec-id": String(spec["spec-id"]), "format-version": "2", content: "deletes",
    });
    await env.storage.write(manifestKey, bytes);
    const deleteManifest = { ...manifestFileFor({ path: env.storage.uriOf(manifestKey), length: bytes.length, schema, spec, entries, snapshotId, sequenceNumber }), content: 1 };
    const listKey = `db/parted/metadata/snap-${snapshotId}-1-hand.avro`;
    await env.storage.write(listKey, encodeManifestList([deleteManifest, ...parentList], { snapshotId, parentSnapshotId: parent["snapshot-id"], sequenceNumber }));
    const count = (c: number): bigint => entries.filter((e) => e.data_file.content === c).reduce((a, e) => a + e.data_file.record_count, 0n);
    const size = entries.reduce((a, e) => a + e.data_file.file_size_in_bytes, 0n);
    const summary = {
      operation: "delete",
      "added-delete-files": String(entries.length),
      "total-records": parent.summary["total-records"] ?? "0",
      "total-data-files": parent.summary["total-data-files"] ?? "0",
      "total-files-size": String(BigInt(parent.summary["total-files-size"] ?? "0") + size),
      "total-delete-files": String(BigInt(parent.summary["total-delete-files"] ?? "0") + BigInt(entries.length)),
      "total-position-deletes": String(BigInt(parent.summary["total-position-deletes"] ?? "0") + count(1)),
      "total-equality-deletes": String(BigInt(parent.summary["total-equality-deletes"] ?? "0") + count(2)),
    };
    const snapshot: Snapshot = { "snapshot-id": snapshotId, "parent-snapshot-id": parent["snapshot-id"], "sequence-number": sequenceNumber, "timestamp-ms": Date.now(), "manifest-list": env.storage.uriOf(listKey), summary, "schema-id": schema["schema-id"] };
    const key = `db/parted/metadata/${metadataFileName(99)}`;
    await env.storage.write(key, serializeTableMetadata(withSnapshot(m, snapshot, t.metadataLocation)));
    expect(await catalog.commitTable(table, t.metadataLocation, env.storage.uriOf(key))).toBe(true);
  };

  it("reads each partition minus its own deletes, and an overwrite drops only the deletes of the partition it replaces", async () => {
    const partitionBy = [{ column: "ts", transform: "day" as const }];
    await appendRows({ ...local(), connection: env.con, source: { sql: `${day("2024-01-01", [1, 2, 3])} UNION ALL ${day("2024-01-02", [4, 5, 6])}` }, partitionBy });
    const files = await reader.liveDataFiles(env.storage, await load(local()));
    const fileA = files.find((f) => f.key.includes("2024-01-01"))?.path ?? "";
    const fileB = files.find((f) => f.key.includes("2024-01-02"))?.path ?? "";
    const posOf2 = Number((await rows(env.con, `SELECT file_row_number AS p FROM read_parquet('${fileURLToPath(fileA)}', file_row_number = true) WHERE id = 2`))[0]?.p);
    await commitDeletes([
      { name: "pos-a.parquet", sql: `SELECT '${fileA}' AS file_path, ${posOf2}::BIGINT AS pos`, fieldIds: "file_path: 2147483546, pos: 2147483545", content: 1, partitionOf: fileA },
      { name: "eq-a.parquet", sql: "SELECT 3::BIGINT AS id", fieldIds: "id: 1", content: 2, equalityIds: [1], partitionOf: fileA },
      // id 1 lives in the other day: a delete of its partition must not touch it
      { name: "eq-b.parquet", sql: "SELECT 1::BIGINT AS id", fieldIds: "id: 1", content: 2, equalityIds: [1], partitionOf: fileB },
    ]);
    let t = await load(local());
    await expect(reader.liveDataFiles(env.storage, t)).rejects.toThrow(/apply to 2 of the data files/);
    expect(await ids(t)).toEqual([1, 4, 5, 6]);

    // replace day 2: its file goes, and the equality delete that only it was subject to with it
    const r = await overwritePartitions({ ...local(), connection: env.con, source: { sql: day("2024-01-02", [7]) }, partitionBy });
    expect(r).toMatchObject({ deletedFiles: 1, deletedRecords: 3 });
    t = await load(local());
    expect(await liveDeletes(t)).toEqual([["eq-a.parquet", 2], ["pos-a.parquet", 1]]);
    expect(currentSnapshot(t.metadata)?.summary).toMatchObject({ "removed-delete-files": "1", "removed-equality-delete-files": "1", "total-delete-files": "2", "total-equality-deletes": "1", "total-position-deletes": "1" });
    expect(await ids(t)).toEqual([1, 7]);

    // replace day 1: the last delete files go too
    await overwritePartitions({ ...local(), connection: env.con, source: { sql: day("2024-01-01", [8]) }, partitionBy });
    t = await load(local());
    expect(await liveDeletes(t)).toEqual([]);
    expect(currentSnapshot(t.metadata)?.summary).toMatchObject({ "removed-delete-files": "2", "total-delete-files": "0", "total-equality-deletes": "0", "total-position-deletes": "0", "total-records": "2" });
    expect((await reader.liveDataFiles(env.storage, t)).map((f) => f.records)).toEqual([1, 1]);
    expect(norm(await icebergRead({ tableUrl: env.storage.uriOf("db/parted") }), "id", ["id"])).toEqual([{ id: "7n" }, { id: "8n" }]);
  });
});
