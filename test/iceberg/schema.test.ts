import { fileURLToPath } from "node:url";
import { icebergRead } from "icebird";
import type { Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendRows, loadTable, type TableWriteOptions } from "../../src/iceberg/table-writer.js";
import { IcebergSchemaError, icebergTypeOf, reconcileSchema, sanitizeName, schemaFromColumns } from "../../src/iceberg/schema.js";
import { parseJson, stringifyJson } from "../../src/iceberg/json.js";
import { boundFromStat, serializeValue } from "../../src/iceberg/values.js";
import type { IcebergCatalogTables, SqlCatalog } from "../../src/iceberg/sql-catalog.js";
import { currentSnapshot } from "../../src/iceberg/metadata.js";
import { listFiles, openEnv, pgliteCatalog, readAvro, rows, type Env } from "./helpers.js";

describe("schema mapping and evolution", () => {
  it("maps DuckDB types to Iceberg types", () => {
    expect(["INTEGER", "SMALLINT", "BIGINT", "UINTEGER", "DOUBLE", "FLOAT", "DECIMAL(9,3)", "DECIMAL(20,2)", "HUGEINT", "VARCHAR", "BOOLEAN", "DATE", "TIME", "TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE", "BLOB", "UUID", "INTEGER[]"].map(icebergTypeOf)).toEqual(
      ["int", "int", "long", "long", "double", "float", "decimal(9, 3)", "decimal(38, 2)", "decimal(38, 0)", "string", "boolean", "date", "time", "timestamp", "timestamp", "timestamptz", "binary", "uuid", undefined],
    );
    expect(() => schemaFromColumns([{ name: "tags", duckdbType: "VARCHAR[]" }])).toThrow(/"tags"/);
    expect(sanitizeName("Breed Name")).toBe("Breed_x20Name");
    expect(sanitizeName("1st")).toBe("_1st");
  });

  it("adds new columns with new ids and names the column of a refused change", () => {
    const s = schemaFromColumns([{ name: "a", duckdbType: "INTEGER" }, { name: "b", duckdbType: "VARCHAR" }]);
    const added = reconcileSchema(s, 2, [{ name: "a", duckdbType: "INTEGER" }, { name: "b", duckdbType: "VARCHAR" }, { name: "c", duckdbType: "DATE" }], {});
    expect(added.changed).toBe(true);
    expect(added.schema.fields.map((f) => [f.id, f.name])).toEqual([[1, "a"], [2, "b"], [3, "c"]]);
    // narrower rows are fine (cast on write), wider need allowTypeWidening, other changes are refused
    expect(reconcileSchema(s, 2, [{ name: "a", duckdbType: "SMALLINT" }, { name: "b", duckdbType: "VARCHAR" }], {}).changed).toBe(false);
    const wide = [{ name: "a", duckdbType: "BIGINT" }, { name: "b", duckdbType: "VARCHAR" }];
    expect(() => reconcileSchema(s, 2, wide, {})).toThrow(/column "a" changes type from int to long \(set allowTypeWidening/);
    expect(reconcileSchema(s, 2, wide, { allowTypeWidening: true }).schema.fields[0]).toEqual({ id: 1, name: "a", required: false, type: "long" });
    const err = (() => {
      try {
        reconcileSchema(s, 2, [{ name: "a", duckdbType: "INTEGER" }, { name: "b", duckdbType: "DOUBLE" }], { allowTypeWidening: true });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(IcebergSchemaError);
    expect(err).toMatchObject({ column: "b", message: 'column "b" changes type from string to double' });
    expect(() => reconcileSchema(s, 2, [{ name: "a", duckdbType: "INTEGER" }], {})).toThrow(/column "b" of the table is missing/);
    expect(reconcileSchema(s, 2, [{ name: "a", duckdbType: "INTEGER" }], { allowDropColumns: true }).schema.fields.map((f) => f.name)).toEqual(["a"]);
  });

  it("serializes single values per the spec", () => {
    const hex = (u: Uint8Array): string => Buffer.from(u).toString("hex");
    expect(hex(serializeValue("int", -2))).toBe("feffffff");
    expect(hex(serializeValue("date", 19724))).toBe("0c4d0000");
    expect(hex(serializeValue("long", 1n))).toBe("0100000000000000");
    expect(hex(serializeValue("decimal(10, 2)", 0n))).toBe("00");
    expect(hex(serializeValue("decimal(10, 2)", 127n))).toBe("7f");
    expect(hex(serializeValue("decimal(10, 2)", 128n))).toBe("0080");
    expect(hex(serializeValue("decimal(10, 2)", -128n))).toBe("80");
    expect(hex(serializeValue("decimal(10, 2)", -129n))).toBe("ff7f");
    expect(hex(serializeValue("uuid", "f79c3e09-677c-4bbd-a479-3f349cb785e7"))).toBe("f79c3e09677c4bbda4793f349cb785e7");
    expect(boundFromStat("timestamptz", "2024-01-01 10:00:00.000001+02", "lower")).toBe(1704096000000001n);
    expect(boundFromStat("timestamp", "1969-12-31 23:59:59.5", "lower")).toBe(-500000n);
    expect(boundFromStat("string", "abcdefghijklmnop\u{10FFFF}q", "upper")).toBe("abcdefghijklmnoq");
    expect(boundFromStat("string", "abcdefghijklmno\u{10FFFF}\u{10FFFF}", "upper")).toBe("abcdefghijklmnp");
  });

  it("keeps 64-bit integers exact through JSON", () => {
    const text = '{"a":9223372036854775807,"b":[1.5,-3,1e3],"c":"x\\"y","d":null}';
    const v = parseJson(text);
    expect(v).toEqual({ a: 9223372036854775807n, b: [1.5, -3, 1000], c: 'x"y', d: null });
    expect(stringifyJson(v)).toBe('{"a":9223372036854775807,"b":[1.5,-3,1000],"c":"x\\"y","d":null}');
  });
});

describe("schema changes on a table", () => {
  let env: Env;
  let catalog: SqlCatalog;
  let db: Kysely<IcebergCatalogTables>;
  const table = { namespace: ["x"], name: "t" };
  const opts = (sql: string, extra: Partial<TableWriteOptions> = {}): TableWriteOptions => ({ connection: env.con, source: { sql }, table, catalog, storage: env.storage, ...extra });
  beforeAll(async () => {
    env = await openEnv();
    ({ catalog, db } = await pgliteCatalog());
    await appendRows(opts("SELECT 1::INTEGER AS a, 'x' AS b"));
  });
  afterAll(async () => {
    await db.destroy();
    await env.close();
  });

  it("refuses a type change and a dropped column, naming the column, and writes nothing", async () => {
    const before = listFiles(env.dir);
    await expect(appendRows(opts("SELECT 1::INTEGER AS a, 2.5::DOUBLE AS b"))).rejects.toThrow(/column "b" changes type from string to double/);
    await expect(appendRows(opts("SELECT 1::INTEGER AS a"))).rejects.toThrow(/column "b" of the table is missing/);
    await expect(appendRows(opts("SELECT 5::BIGINT AS a, 'y' AS b"))).rejects.toMatchObject({ name: "IcebergSchemaError", column: "a" });
    expect(listFiles(env.dir)).toEqual(before);
  });

  it("widens and drops when allowed; icebird reads the evolved table", async () => {
    await appendRows(opts("SELECT 5000000000::BIGINT AS a, 'y' AS b", { allowTypeWidening: true }));
    await appendRows(opts("SELECT 7::BIGINT AS a", { allowDropColumns: true }));
    const t = await loadTable({ catalog, storage: env.storage, table });
    expect(t?.metadata.schemas.map((s) => s.fields.map((f) => `${f.id}:${f.name}:${String(f.type)}`))).toEqual([["1:a:int", "2:b:string"], ["1:a:long", "2:b:string"], ["1:a:long"]]);
    const read = await icebergRead({ tableUrl: env.storage.uriOf("x/t") });
    expect(read.map((r) => Number(r.a)).sort()).toEqual([1, 5000000000, 7]);
  });

  it("names Parquet columns Avro-sanitized, with ids, and readers map them back by id", async () => {
    const t2 = { namespace: ["x"], name: "names" };
    await appendRows({ ...opts(`SELECT 1::INTEGER AS "Breed Name", 'a' AS "1st", 2.5::DOUBLE AS "x.y"`), table: t2 });
    const t = await loadTable({ catalog, storage: env.storage, table: t2 });
    const list = readAvro(fileURLToPath(currentSnapshot(t!.metadata)!["manifest-list"])).records;
    const entry = readAvro(fileURLToPath(String(list[0]!.manifest_path))).records[0]!;
    const file = fileURLToPath(String((entry.data_file as Record<string, unknown>).file_path));
    const cols = await rows(env.con, `SELECT name, field_id FROM parquet_schema('${file}') WHERE name <> 'duckdb_schema'`);
    expect(cols.map((c) => [c.name, Number(c.field_id)])).toEqual([["Breed_x20Name", 1], ["_1st", 2], ["x_x2Ey", 3]]);
    expect(await icebergRead({ tableUrl: env.storage.uriOf("x/names") })).toEqual([{ "Breed Name": 1, "1st": "a", "x.y": 2.5 }]);
  });

  it("refuses to change the partitioning of an existing table", async () => {
    await expect(appendRows(opts("SELECT 1::BIGINT AS a", { partitionBy: [{ column: "a" }] }))).rejects.toThrow(/partitioned by nothing; changing the partitioning is not supported/);
  });
});
