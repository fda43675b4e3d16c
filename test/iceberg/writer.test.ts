import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { icebergRead } from "icebird";
import type { Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendRows, loadTable, overwritePartitions, type LoadedTable, type WriteResult } from "../../src/iceberg/table-writer.js";
import { findSnapshotBySummary, currentSnapshot } from "../../src/iceberg/metadata.js";
import { parseJson, stringifyJson } from "../../src/iceberg/json.js";
import type { IcebergCatalogTables, SqlCatalog } from "../../src/iceberg/sql-catalog.js";
import { listFiles, norm, openEnv, pgliteCatalog, readAvro, rows, type Env } from "./helpers.js";

const table = { namespace: ["db"], name: "events" };
const COLS = ["id", "n_int", "n_long", "n_double", "n_dec", "s", "flag", "d", "ts", "tstz"];

// Deterministic rows over every supported scalar type; every 7th row has nulls. Timestamps are
// whole milliseconds (icebird returns Dates).
const gen = (from: number, to: number, day = "2024-01-01"): string => `
  SELECT i::BIGINT AS id,
    CASE WHEN i % 7 = 3 THEN NULL ELSE (i * 37 - 500)::INTEGER END AS n_int,
    (i * 3000000000 - 7)::BIGINT AS n_long,
    CASE WHEN i % 7 = 3 THEN NULL ELSE i / 8.0 - 1.5 END::DOUBLE AS n_double,
    (i * 1.25 - 30)::DECIMAL(10,2) AS n_dec,
    CASE WHEN i % 7 = 3 THEN NULL ELSE 'name ' || i || ' é' END AS s,
    i % 2 = 0 AS flag,
    DATE '${day}' + (i % 3)::INTEGER AS d,
    TIMESTAMP '${day} 00:00:00.123' + (i - ${from}) * INTERVAL 5 HOUR AS ts,
    TIMESTAMPTZ '${day} 00:30:00.5+00' + (i - ${from}) * INTERVAL 5 HOUR AS tstz
  FROM range(${from}, ${to}) r(i)`;

describe("Iceberg table writer, read back by icebird", () => {
  let env: Env;
  let catalog: SqlCatalog;
  let db: Kysely<IcebergCatalogTables>;
  const results: WriteResult[] = [];
  const tableUrl = (): string => env.storage.uriOf("db/events");
  const load = async (): Promise<LoadedTable> => {
    const t = await loadTable({ catalog, storage: env.storage, table });
    if (!t) throw new Error("no table");
    return t;
  };
  const icebird = async (): Promise<Array<Record<string, unknown>>> => icebergRead({ tableUrl: tableUrl() });
  const write = async (op: typeof appendRows, sql: string, batch: string, extra: object = {}): Promise<WriteResult> => {
    const r = await op({ connection: env.con, source: { sql }, table, catalog, storage: env.storage, partitionBy: [{ column: "ts", transform: "day" }], summary: { "floe.run-id": "run-1", "floe.batch": batch }, ...extra });
    results.push(r);
    await env.con.run(`INSERT INTO truth BY NAME ${sql}`);
    return r;
  };

  beforeAll(async () => {
    env = await openEnv();
    ({ catalog, db } = await pgliteCatalog());
    await env.con.run(`CREATE TABLE truth AS ${gen(0, 0)}`);
  });
  afterAll(async () => {
    await db.destroy();
    await env.close();
  });

  const expectSameRows = async (columns = COLS): Promise<void> => {
    const expected = await rows(env.con, `SELECT ${columns.join(", ")} FROM truth`);
    expect(norm(await icebird(), "id", columns)).toEqual(norm(expected, "id", columns));
  };

  it("creates the table on the first append; every type reads back row-exact", async () => {
    const r = await write(appendRows, gen(0, 12), "1");
    expect(r).toMatchObject({ addedRecords: 12, commitRetries: 0, alreadyCommitted: false });
    expect(r.addedFiles).toBe(3); // 12 rows × 5 h span 3 days
    await expectSameRows();
    const t = await load();
    expect(t.metadataLocation).toMatch(/\/metadata\/00001-[0-9a-f-]{36}\.metadata\.json$/);
    expect(readFileSync(join(env.dir, "warehouse/db/events/metadata/version-hint.text"), "utf8")).toBe("1");
    // the metastore-style file reads too
    const viaName = await icebergRead({ tableUrl: tableUrl(), metadataFileName: t.metadataLocation.split("/").pop() });
    expect(viaName).toHaveLength(12);
    expect(t.metadata.schemas[0]?.fields.map((f) => [f.id, f.name, f.type])).toEqual([
      [1, "id", "long"],
      [2, "n_int", "int"],
      [3, "n_long", "long"],
      [4, "n_double", "double"],
      [5, "n_dec", "decimal(10, 2)"],
      [6, "s", "string"],
      [7, "flag", "boolean"],
      [8, "d", "date"],
      [9, "ts", "timestamp"],
      [10, "tstz", "timestamptz"],
    ]);
  });

  it("appends again: a second snapshot whose totals add up", async () => {
    const r = await write(appendRows, gen(12, 30), "2");
    expect(r.addedRecords).toBe(18);
    await expectSameRows();
    const snap = currentSnapshot((await load()).metadata);
    expect(snap?.summary).toMatchObject({ operation: "append", "total-records": "30", "floe.batch": "2", "floe.run-id": "run-1" });
  });

  it("overwrites one day partition; the other days are untouched", async () => {
    const before = await icebird();
    const day2 = (r: Record<string, unknown>): boolean => (r.ts as Date).toISOString().startsWith("2024-01-02");
    expect(before.filter(day2).length).toBeGreaterThan(0);
    const sql = gen(100, 104, "2024-01-02");
    await env.con.run(`DELETE FROM truth WHERE CAST(ts AS DATE) = DATE '2024-01-02'`);
    const r = await write(overwritePartitions, sql, "3");
    expect(r.deletedRecords).toBe(before.filter(day2).length);
    await expectSameRows();
    const after = await icebird();
    expect(after.filter((x) => !day2(x))).toHaveLength(before.filter((x) => !day2(x)).length);
    const snap = currentSnapshot((await load()).metadata);
    expect(snap?.summary).toMatchObject({ operation: "overwrite", "total-records": String(after.length), "changed-partition-count": "1" });
  });

  it("adds a column: old rows read null for it, new rows their value", async () => {
    await env.con.run("ALTER TABLE truth ADD COLUMN note VARCHAR");
    const r = await write(appendRows, `SELECT *, 'note ' || id AS note FROM (${gen(200, 203, "2024-01-05")})`, "4");
    expect(r.addedRecords).toBe(3);
    await expectSameRows([...COLS, "note"]);
    const m = (await load()).metadata;
    expect(m.schemas).toHaveLength(2);
    expect(m["current-schema-id"]).toBe(1);
    expect(m.schemas[1]?.fields.at(-1)).toEqual({ id: 11, name: "note", required: false, type: "string" });
    expect(m["last-column-id"]).toBe(11);
    expect(currentSnapshot(m)?.["schema-id"]).toBe(1);
  });

  it("exactly-once: a step finds its own snapshot, and dedupeKey makes a repeat a no-op", async () => {
    const m = (await load()).metadata;
    expect(findSnapshotBySummary(m, "floe.batch", "2")?.["snapshot-id"].toString()).toBe(results[1]?.snapshotId);
    expect(findSnapshotBySummary(m, "floe.batch", "99")).toBeUndefined();
    const again = await appendRows({
      connection: env.con, source: { sql: gen(0, 3) }, table, catalog, storage: env.storage,
      summary: { "floe.run-id": "run-1", "floe.batch": "4" }, dedupeKey: "floe.batch",
    });
    expect(again).toMatchObject({ alreadyCommitted: true, snapshotId: results[3]?.snapshotId });
    expect((await load()).metadata.snapshots).toHaveLength(4);
  });

  it("writes Parquet files with a field id on every column and the iceberg.schema key", async () => {
    const m = (await load()).metadata;
    const list = readAvro(fileURLToPath(currentSnapshot(m)?.["manifest-list"] ?? ""));
    const paths = list.records.flatMap((mf) => readAvro(fileURLToPath(String(mf.manifest_path))).records)
      .filter((e) => e.status !== 2)
      .map((e) => String((e.data_file as Record<string, unknown>).file_path));
    expect(paths.length).toBeGreaterThan(3);
    for (const p of paths) {
      expect(p).toMatch(/^file:\/\/\/.*\/data\/ts_day=\d{4}-\d\d-\d\d\/\d{5}-0-[0-9a-f-]{36}\.parquet$/);
      const file = fileURLToPath(p);
      const ids = await rows(env.con, `SELECT name, field_id FROM parquet_schema('${file}') WHERE name <> 'duckdb_schema'`);
      const schemaId = ids.length === 11 ? 1 : 0;
      const fields = m.schemas[schemaId]?.fields ?? [];
      expect(ids.map((r) => [r.name, Number(r.field_id)])).toEqual(fields.map((f) => [f.name, f.id]));
      const kv = await rows(env.con, `SELECT decode(value) AS v FROM parquet_kv_metadata('${file}') WHERE decode(key) = 'iceberg.schema'`);
      expect(JSON.parse(String(kv[0]?.v))).toMatchObject({ type: "struct", fields: fields.map((f) => ({ id: f.id, name: f.name })) });
    }
  });

  it("writes manifests and manifest lists with field ids everywhere and the v2 header keys", async () => {
    const m = (await load()).metadata;
    const snap = currentSnapshot(m);
    const list = readAvro(fileURLToPath(snap?.["manifest-list"] ?? ""));
    expect(list.metadata).toMatchObject({ "format-version": "2", "avro.codec": "null", "snapshot-id": snap?.["snapshot-id"].toString(), "sequence-number": "4" });
    expect(list.metadata["parent-snapshot-id"]).toBe(results[2]?.snapshotId);
    expectFieldIds(list.metadata["avro.schema"]);
    for (const mf of list.records) {
      const man = readAvro(fileURLToPath(String(mf.manifest_path)));
      expect(man.metadata).toMatchObject({ "format-version": "2", content: "data", "avro.codec": "null", "partition-spec-id": "0" });
      expect(json(man.metadata["partition-spec"])).toEqual([{ "source-id": 9, "field-id": 1000, name: "ts_day", transform: "day" }]);
      expect(json(man.metadata.schema)).toMatchObject({ type: "struct", fields: expect.any(Array) }); // the table schema, not the entry schema
      expectFieldIds(man.metadata["avro.schema"]);
      for (const e of man.records) expect((e.data_file as Record<string, unknown>).content).toBe(0);
    }
    // overwrite's rewritten manifest: DELETED entries carry explicit sequence numbers
    const overwrite = m.snapshots[2];
    const olist = readAvro(fileURLToPath(overwrite?.["manifest-list"] ?? ""));
    const entries = olist.records.flatMap((mf) => readAvro(fileURLToPath(String(mf.manifest_path))).records);
    const deleted = entries.filter((e) => e.status === 2);
    expect(deleted.length).toBeGreaterThan(0);
    for (const e of deleted) expect(typeof e.sequence_number).toBe("bigint");
    for (const e of entries.filter((x) => x.status === 0)) expect(typeof e.sequence_number).toBe("bigint");
  });

  it("writes snapshot ids below 2^53 and keeps 64-bit ids exact in metadata JSON and Avro", async () => {
    const t = await load();
    const raw = readFileSync(fileURLToPath(t.metadataLocation), "utf8");
    const ids = t.metadata.snapshots.map((s) => s["snapshot-id"]);
    expect(ids.map(String)).toEqual(results.slice(0, 4).map((r) => r.snapshotId));
    // ours stay exact for readers that use JSON.parse; a Java writer's 63-bit ids must survive us
    const java = 5276958600260276572n;
    expect(stringifyJson(parseJson(`{"snapshot-id": ${java}}`))).toContain(String(java));
    for (const id of ids) {
      expect(id > 0n && id < 2n ** 53n).toBe(true);
      expect(raw).toContain(`"snapshot-id": ${id}`);
      const list = readAvro(fileURLToPath(t.metadata.snapshots.find((s) => s["snapshot-id"] === id)?.["manifest-list"] ?? ""));
      expect(list.metadata["snapshot-id"]).toBe(id.toString());
      expect(list.records.some((r) => r.added_snapshot_id === id)).toBe(true);
    }
    const json = parseJson(raw) as Record<string, unknown>;
    expect(BigInt(json["current-snapshot-id"] as number)).toBe(ids.at(-1));
    expect(BigInt((json.refs as Record<string, Record<string, number>>).main!["snapshot-id"]!)).toBe(ids.at(-1));
    expect(t.metadata["metadata-log"]).toHaveLength(4);
    expect(t.metadata["snapshot-log"].map((e) => e["snapshot-id"])).toEqual(ids);
  });

  it("leaves only referenced files behind", async () => {
    const t = await load();
    const referenced = new Set<string>();
    for (const s of t.metadata.snapshots) {
      referenced.add(fileURLToPath(s["manifest-list"]));
      for (const mf of readAvro(fileURLToPath(s["manifest-list"])).records) {
        referenced.add(fileURLToPath(String(mf.manifest_path)));
        for (const e of readAvro(fileURLToPath(String(mf.manifest_path))).records) referenced.add(fileURLToPath(String((e.data_file as Record<string, unknown>).file_path)));
      }
    }
    const root = join(env.dir, "warehouse/db/events");
    const stray = listFiles(root)
      .map((f) => join(root, f))
      .filter((f) => !referenced.has(f) && !/metadata\/(v\d+\.metadata\.json|version-hint\.text|\d{5}-[0-9a-f-]+\.metadata\.json)$/.test(f));
    expect(stray).toEqual([]);
  });
});

describe("Iceberg table writer: text date-times in date/time partition columns", () => {
  let env: Env;
  let catalog: SqlCatalog;
  let db: Kysely<IcebergCatalogTables>;
  beforeAll(async () => {
    env = await openEnv(); // session zone America/New_York: the casts must not depend on it
    ({ catalog, db } = await pgliteCatalog());
  });
  afterAll(async () => {
    await db.destroy();
    await env.close();
  });
  const text = (values: ReadonlyArray<string | null>, firstId = 0): string =>
    `SELECT * FROM (VALUES ${values.map((v, i) => `(${firstId + i}, ${v === null ? "NULL" : `'${v}'`})`).join(", ")}) t(id, ts)`;
  const read = async (name: string): Promise<string[]> =>
    (await icebergRead({ tableUrl: env.storage.uriOf(`dt/${name}`) })).map((r) => `${String(r.id)}=${r.ts instanceof Date ? r.ts.toISOString() : String(r.ts)}`).sort();

  it("a new table partitioned by hour(ts) of text gets a timestamptz column; later text is cast the same way", async () => {
    const table = { namespace: ["dt"], name: "hourly" };
    const o = { connection: env.con, table, catalog, storage: env.storage, partitionBy: [{ column: "ts", transform: "hour" as const }] };
    await appendRows({ ...o, source: { sql: text(["2025-03-01 10:15:00", "2025-03-01 10:45:00-05:00", null]) } });
    await appendRows({ ...o, source: { sql: `SELECT 7 AS id, '2025-03-01 10:59:59 Europe/Paris' AS ts` } });
    const t = (await loadTable({ catalog, storage: env.storage, table }))!;
    expect(t.metadata.schemas.at(-1)!.fields.map((f) => [f.name, f.type])).toEqual([["id", "int"], ["ts", "timestamptz"]]);
    expect(await read("hourly")).toEqual(["0=2025-03-01T10:15:00.000Z", "1=2025-03-01T15:45:00.000Z", "2=null", "7=2025-03-01T09:59:59.000Z"]);
    const folders = listFiles(join(env.dir, "warehouse/dt/hourly/data")).map((f) => f.split("/")[0]).sort();
    expect(folders).toEqual(["ts_hour=2025-03-01-09", "ts_hour=2025-03-01-10", "ts_hour=2025-03-01-15", "ts_hour=null"]);
  });

  it("text into an existing timestamp partition column is cast to its UTC wall time; a value that does not cast commits nothing", async () => {
    const table = { namespace: ["dt"], name: "plain" };
    const o = { connection: env.con, table, catalog, storage: env.storage, partitionBy: [{ column: "ts", transform: "day" as const }] };
    await appendRows({ ...o, source: { sql: `SELECT 0 AS id, TIMESTAMP '2025-03-01 23:00:00' AS ts` } });
    await appendRows({ ...o, source: { sql: text(["2025-03-02T01:00:00+02:00"], 1) } });
    expect(await read("plain")).toEqual(["0=2025-03-01T23:00:00.000Z", "1=2025-03-01T23:00:00.000Z"]);
    const before = listFiles(join(env.dir, "warehouse/dt/plain"));
    const bad = appendRows({ ...o, source: { sql: text(["2025-03-03", "03/04/2025 10:00", "2025-03-05"]) } });
    await expect(bad).rejects.toMatchObject({ name: "IcebergValueError", column: "ts", value: "03/04/2025 10:00" });
    await expect(bad).rejects.toThrow(`column "ts" holds '03/04/2025 10:00', which is not a date-time (the table is partitioned by day(ts))`);
    expect(listFiles(join(env.dir, "warehouse/dt/plain"))).toEqual(before);
    expect((await loadTable({ catalog, storage: env.storage, table }))!.metadata.snapshots).toHaveLength(2);
  });
});

/** icebird's header reader already parses values that are JSON. */
const json = (v: unknown): unknown => (typeof v === "string" ? (JSON.parse(v) as unknown) : v);

function expectFieldIds(schemaJson: unknown): void {
  const schema = json(schemaJson);
  let fields = 0;
  const walk = (t: unknown): void => {
    if (Array.isArray(t)) return t.forEach(walk);
    if (!t || typeof t !== "object") return;
    const o = t as Record<string, unknown>;
    if (o.type === "record") {
      for (const f of o.fields as Array<Record<string, unknown>>) {
        fields++;
        expect(typeof f["field-id"], `field ${String(f.name)}`).toBe("number");
        walk(f.type);
      }
    } else if (o.type === "array") {
      if (o.logicalType !== "map") expect(typeof o["element-id"]).toBe("number");
      walk(o.items);
    }
  };
  walk(schema);
  expect(fields).toBeGreaterThan(10);
}
