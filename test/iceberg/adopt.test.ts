import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { icebergRead } from "icebird";
import type { Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planAdoption } from "../../src/iceberg/adopt.js";
import { stringifyJson } from "../../src/iceberg/json.js";
import { currentSchema, currentSnapshot, defaultSpec } from "../../src/iceberg/metadata.js";
import { icebergParquetOptions } from "../../src/iceberg/parquet-options.js";
import type { Schema } from "../../src/iceberg/schema.js";
import type { IcebergCatalogTables, SqlCatalog } from "../../src/iceberg/sql-catalog.js";
import { appendRows, loadTable, overwritePartitions, type LoadedTable, type TableWriteOptions } from "../../src/iceberg/table-writer.js";
import type { ObjectStorage } from "../../src/storage/types.js";
import { listFiles, norm, openEnv, pgliteCatalog, readAvro, rows, type Env } from "./helpers.js";

type Row = Record<string, unknown>;

// Every type floe maps, nulls, several row groups, bounds that need care: -0.0 (lower bound
// -0.0), a NaN (no footer min/max), strings > 64 chars with non-ASCII and 4-byte code points
// (truncated to 16 code points), strings > 256 bytes (DuckDB cuts their statistics), pre-1970
// timestamps. Timestamps are whole milliseconds: icebird returns Dates.
const gen = (from: number, to: number): string => `
  SELECT i::BIGINT AS id,
    CASE WHEN i % 7 = 3 THEN NULL ELSE (i * 37 - 500)::INTEGER END AS n_int,
    (i * 3000000000 - 7)::BIGINT AS n_long,
    CASE WHEN i % 11 = 4 THEN NULL WHEN i % 10 = 0 THEN -0.0 ELSE i / 8.0 + 0.5 END::DOUBLE AS x,
    CASE WHEN i % 500 = 17 THEN 'NaN'::DOUBLE ELSE i * 1.5 - 3 END AS x_nan,
    (i / 3 - 5)::FLOAT AS f,
    (i * 1.25 - 30)::DECIMAL(10,2) AS dec,
    (i * 123456.7891 - 1000)::DECIMAL(38,4) AS wide,
    CASE WHEN i % 7 = 3 THEN NULL ELSE ['zeta', 'Alpha', 'émile', 'ßtraße'][i % 4 + 1] || i END AS s,
    chr((945 + i % 20)::INTEGER) || repeat('ü', 40) || i || '😀' || repeat('x', 30) AS s_long,
    repeat('x', 300) || i AS s_huge,
    i % 2 = 0 AS flag,
    DATE '2024-01-01' + (i % 40)::INTEGER AS d,
    TIMESTAMP '1969-12-31 23:00:00.123' + i * INTERVAL 17 MINUTE AS ts,
    TIMESTAMPTZ '2024-03-10 06:30:00.5+00' + i * INTERVAL 97 MINUTE AS tstz,
    NULL::INTEGER AS all_null
  FROM range(${from}, ${to}) r(i)`;
const COLS = ["id", "n_int", "n_long", "x", "x_nan", "f", "dec", "wide", "s", "s_long", "s_huge", "flag", "d", "ts", "tstz", "all_null"];

// Independent decoder of the single-value serialization (spec Appendix D), by Iceberg type.
const decodeBound = (type: string, u: unknown): unknown => {
  if (u === undefined) return undefined;
  const x = Buffer.from(u as Uint8Array);
  if (type.startsWith("decimal")) {
    let n = BigInt(`0x${x.toString("hex")}`);
    if ((x[0] ?? 0) & 0x80) n -= 1n << BigInt(x.length * 8);
    return n;
  }
  const read: Record<string, () => unknown> = {
    int: () => x.readInt32LE(),
    date: () => x.readInt32LE(),
    long: () => x.readBigInt64LE(),
    timestamp: () => x.readBigInt64LE(),
    timestamptz: () => x.readBigInt64LE(),
    float: () => x.readFloatLE(),
    double: () => x.readDoubleLE(),
    boolean: () => x[0] === 1,
    string: () => x.toString("utf8"),
  };
  const r = read[type];
  if (!r) throw new Error(`no decoder for ${type}`);
  return r();
};

describe("adopting Iceberg-ready Parquet files without rewriting them", () => {
  let env: Env;
  let catalog: SqlCatalog;
  let db: Kysely<IcebergCatalogTables>;
  let srcDir: string;
  beforeAll(async () => {
    env = await openEnv();
    ({ catalog, db } = await pgliteCatalog());
    srcDir = join(env.dir, "src");
    mkdirSync(srcDir, { recursive: true });
  });
  afterAll(async () => {
    await db.destroy();
    await env.close();
  });

  const id = (name: string) => ({ namespace: ["a"], name });
  const target = (name: string, extra: Partial<TableWriteOptions> = {}) => ({ connection: env.con, table: id(name), catalog, storage: env.storage, ...extra });
  const load = async (name: string): Promise<LoadedTable> => {
    const t = await loadTable({ catalog, storage: env.storage, table: id(name) });
    if (!t) throw new Error(`no table ${name}`);
    return t;
  };
  /** The live data_file records of the current snapshot (decoded by icebird's Avro reader). */
  const dataFiles = async (name: string): Promise<Row[]> => {
    const list = readAvro(fileURLToPath(currentSnapshot((await load(name)).metadata)!["manifest-list"])).records;
    return list
      .flatMap((m) => readAvro(fileURLToPath(String(m.manifest_path))).records)
      .filter((e) => e.status !== 2)
      .map((e) => e.data_file as Row);
  };
  const bytesOf = (uri: unknown): Buffer => readFileSync(fileURLToPath(String(uri)));
  /** A Parquet file written the way duckdbTable writes its output: with icebergParquetOptions. */
  const ready = async (name: string, sql: string, extra = ""): Promise<string> => {
    const path = join(srcDir, `${name}.parquet`);
    const columns = (await rows(env.con, `DESCRIBE ${sql}`)).map((r) => ({ name: String(r.column_name), duckdbType: String(r.column_type) }));
    const options = icebergParquetOptions(columns);
    expect(options).toBeDefined();
    await env.con.run(`COPY (${sql}) TO '${path}' (FORMAT parquet, ${options}${extra})`);
    return path;
  };
  /** A Parquet file with hand-picked options (for files that are almost, but not quite, ready). */
  const plain = async (name: string, sql: string, options: string): Promise<string> => {
    const path = join(srcDir, `${name}.parquet`);
    await env.con.run(`COPY (${sql}) TO '${path}' (FORMAT parquet${options})`);
    return path;
  };
  const fieldIdsOf = (schema: Schema): string => `, FIELD_IDS {${schema.fields.map((f) => `"${f.name}": ${f.id}`).join(", ")}}`;
  const kvOf = (schema: Schema): string => `, KV_METADATA {'iceberg.schema': '${stringifyJson(schema).replaceAll("'", "''")}'}`;
  const expectRows = async (name: string, sql: string, columns: readonly string[]): Promise<void> => {
    // icebird reads 16-byte decimals into a double: compare them at their scale
    const scaled = (r: Row): Row => ("wide" in r && r.wide !== null ? { ...r, wide: Number(r.wide).toFixed(4) } : r);
    const got = (await icebergRead({ tableUrl: env.storage.uriOf(`a/${name}`) })).map(scaled);
    expect(norm(got, "id", columns)).toEqual(norm((await rows(env.con, sql)).map(scaled), "id", columns));
  };
  /** Every Parquet column of each live data file carries the table's field id for its name. */
  const expectFieldIds = async (name: string): Promise<void> => {
    const fields = currentSchema((await load(name)).metadata).fields;
    for (const df of await dataFiles(name)) {
      const ids = await rows(env.con, `SELECT name, field_id FROM parquet_schema('${fileURLToPath(String(df.file_path))}') WHERE column_id > 0`);
      expect(ids.map((r) => [r.name, Number(r.field_id)]).sort()).toEqual(fields.map((f) => [f.name, f.id]).sort());
    }
  };
  const kv = (list: unknown): Map<number, unknown> => new Map(((list as Array<{ key: number; value: unknown }> | null) ?? []).map((e) => [e.key, e.value]));

  it("lists a ready file as it is (same bytes), with footer stats equal to a rewrite's, and reads back row-exact", async () => {
    const src = await ready("all_types", gen(0, 3000), ", ROW_GROUP_SIZE 1000");
    const groups = await rows(env.con, `SELECT count(DISTINCT row_group_id) AS n FROM parquet_metadata('${src}')`);
    expect(Number(groups[0]?.n)).toBeGreaterThan(1); // bounds and counts are aggregated over row groups

    const r = await appendRows({ ...target("adopted"), source: { parquet: [src] } });
    expect(r).toMatchObject({ addedFiles: 1, adoptedFiles: 1, addedRecords: 3000 });
    const [adopted] = await dataFiles("adopted");
    expect(bytesOf(adopted!.file_path).equals(readFileSync(src))).toBe(true);
    expect(adopted!.file_size_in_bytes).toBe(BigInt(statSync(src).size));
    expect(String(adopted!.file_path)).toMatch(/\/a\/adopted\/data\/\d{5}-0-[0-9a-f-]{36}\.parquet$/);
    await expectFieldIds("adopted");
    await expectRows("adopted", `SELECT * FROM read_parquet('${src}')`, COLS);

    // the same rows through the rewrite path: the reference for every metric
    const w = await appendRows({ ...target("rewritten"), source: { sql: `SELECT * FROM read_parquet('${src}')` } });
    expect(w).toMatchObject({ addedFiles: 1, adoptedFiles: 0 });
    const [rewritten] = await dataFiles("rewritten");
    expect(bytesOf(rewritten!.file_path).equals(readFileSync(src))).toBe(false);
    expect(adopted!.record_count).toBe(3000n);
    expect(rewritten!.record_count).toBe(3000n);

    const fields = currentSchema((await load("adopted")).metadata).fields;
    expect(fields.map((f) => f.name)).toEqual(COLS);
    const a = { values: kv(adopted!.value_counts), nulls: kv(adopted!.null_value_counts), nans: kv(adopted!.nan_value_counts), lower: kv(adopted!.lower_bounds), upper: kv(adopted!.upper_bounds), sizes: kv(adopted!.column_sizes) };
    const b = { values: kv(rewritten!.value_counts), nulls: kv(rewritten!.null_value_counts), nans: kv(rewritten!.nan_value_counts), lower: kv(rewritten!.lower_bounds), upper: kv(rewritten!.upper_bounds) };
    const footerSizes = await rows(env.con, `SELECT path_in_schema AS name, sum(total_compressed_size)::BIGINT AS size FROM parquet_metadata('${src}') GROUP BY ALL`);
    const bound = (m: Map<number, unknown>, f: (typeof fields)[number]): unknown => decodeBound(f.type as string, m.get(f.id));
    // left out on purpose: x_nan has no footer min/max (it holds a NaN); s_huge's are cut (not exact)
    const omitted = new Set(["x_nan", "s_huge"]);
    for (const f of fields) {
      expect(a.values.get(f.id), f.name).toBe(3000n);
      expect(a.values.get(f.id), f.name).toBe(b.values.get(f.id));
      expect(a.nulls.get(f.id), f.name).toBe(b.nulls.get(f.id));
      expect(a.sizes.get(f.id), f.name).toBe(footerSizes.find((s) => s.name === f.name)?.size);
      if (omitted.has(f.name)) continue;
      expect(bound(a.lower, f), `${f.name} lower`).toEqual(bound(b.lower, f));
      expect(bound(a.upper, f), `${f.name} upper`).toEqual(bound(b.upper, f));
    }
    const byName = (n: string) => fields.find((f) => f.name === n)!;
    // exact where the footer is exact: checked against the data itself too
    const truth = (await rows(env.con, `SELECT min(id) id_lo, max(id) id_hi, epoch_us(min(ts)) ts_lo, epoch_us(max(ts)) ts_hi,
        epoch_us(min(tstz)) tz_lo, epoch_us(max(tstz)) tz_hi, (min(dec) * 100)::BIGINT dec_lo, (max(dec) * 100)::BIGINT dec_hi,
        min(d) - DATE '1970-01-01' d_lo, max(s_long) sl_hi, min(s_long) sl_lo, count(*) FILTER (WHERE s IS NULL) s_nulls,
        count(*) FILTER (WHERE isnan(x_nan)) nan_n FROM read_parquet('${src}')`))[0]!;
    expect([bound(a.lower, byName("id")), bound(a.upper, byName("id"))]).toEqual([truth.id_lo, truth.id_hi]);
    expect([bound(a.lower, byName("ts")), bound(a.upper, byName("ts"))]).toEqual([truth.ts_lo, truth.ts_hi]);
    expect(bound(a.lower, byName("ts")) as bigint).toBeLessThan(0n); // pre-1970
    expect([bound(a.lower, byName("tstz")), bound(a.upper, byName("tstz"))]).toEqual([truth.tz_lo, truth.tz_hi]);
    expect([bound(a.lower, byName("dec")), bound(a.upper, byName("dec"))]).toEqual([BigInt(truth.dec_lo as bigint), BigInt(truth.dec_hi as bigint)]);
    expect(Buffer.from(a.lower.get(byName("dec").id) as Uint8Array)).toHaveLength(2); // minimal big-endian
    expect(bound(a.lower, byName("d"))).toBe(Number(truth.d_lo));
    expect([bound(a.lower, byName("flag")), bound(a.upper, byName("flag"))]).toEqual([false, true]);
    expect(Object.is(bound(a.lower, byName("x")), -0)).toBe(true); // -0.0 sorts first
    const [slLo, slHi] = [bound(a.lower, byName("s_long")) as string, bound(a.upper, byName("s_long")) as string];
    expect(slLo).toBe(Array.from(String(truth.sl_lo)).slice(0, 16).join(""));
    expect(Array.from(slHi)).toHaveLength(16);
    expect(Buffer.compare(Buffer.from(slHi), Buffer.from(String(truth.sl_hi)))).toBe(1); // above the real max
    expect(a.nulls.get(byName("s").id)).toBe(BigInt(truth.s_nulls as bigint));
    expect(a.nulls.get(byName("all_null").id)).toBe(3000n);
    expect(a.lower.has(byName("all_null").id)).toBe(false);
    // NaN: the footer holds no min/max, so no bounds; the count is exact (the rewrite only knows "some")
    expect(a.lower.has(byName("x_nan").id) || a.upper.has(byName("x_nan").id)).toBe(false);
    expect(b.lower.has(byName("x_nan").id)).toBe(true);
    expect(a.nans.get(byName("x_nan").id)).toBe(BigInt(truth.nan_n as bigint));
    expect(a.nans.get(byName("x_nan").id)).toBe(6n);
    expect(b.nans.has(byName("x_nan").id)).toBe(false);
    for (const n of ["x", "f"]) expect([a.nans.get(byName(n).id), b.nans.get(byName(n).id)]).toEqual([0n, 0n]);
    // strings > 256 bytes: DuckDB's footer says its min/max are not exact, so they are left out
    const huge = await rows(env.con, `SELECT bool_or(min_is_exact) AS lo, bool_or(max_is_exact) AS hi FROM parquet_metadata('${src}') WHERE path_in_schema = 's_huge'`);
    expect(huge[0]).toEqual({ lo: false, hi: false });
    expect(a.lower.has(byName("s_huge").id) || a.upper.has(byName("s_huge").id)).toBe(false);
  });

  it("rewrites a file instead when it is not ready, naming why: no field ids, a type to cast, a floe column, no iceberg.schema", async () => {
    const base = await ready("base", gen(0, 50));
    expect((await appendRows({ ...target("neg"), source: { parquet: [base] } })).adoptedFiles).toBe(1);
    const t = await load("neg");
    const schema = currentSchema(t.metadata);
    const cases = [
      { name: "no_ids", rows: gen(50, 60), sql: (q: string) => q, options: kvOf(schema), reason: /column "id" has field id none, the table 1/ },
      { name: "int_id", rows: gen(60, 70), sql: (q: string) => `SELECT * REPLACE (id::INTEGER AS id) FROM (${q})`, options: fieldIdsOf(schema) + kvOf(schema), reason: /column "id" is INTEGER, the table needs BIGINT/ },
      { name: "floe_col", rows: gen(70, 80), sql: (q: string) => `SELECT *, 'f.csv' AS _floe_source_file FROM (${q})`, options: fieldIdsOf(schema) + kvOf(schema), reason: /floe's column "_floe_source_file"/ },
      { name: "no_kv", rows: gen(80, 90), sql: (q: string) => q, options: fieldIdsOf(schema), reason: /iceberg\.schema is missing/ },
    ];
    await env.con.run(`CREATE TABLE truth AS SELECT * FROM read_parquet('${base}')`);
    for (const c of cases) {
      const path = await plain(c.name, c.sql(c.rows), c.options);
      const plan = await planAdoption({ connection: env.con, paths: [path], schema, spec: defaultSpec(t.metadata) });
      expect(plan.adopt, c.name).toEqual([]);
      expect(plan.rewrite.map((x) => x.reason), c.name).toEqual([expect.stringMatching(c.reason)]);
      const r = await appendRows({ ...target("neg"), source: { parquet: [path] } });
      expect(r, c.name).toMatchObject({ addedFiles: 1, adoptedFiles: 0, addedRecords: 10 });
      expect((await dataFiles("neg")).some((df) => bytesOf(df.file_path).equals(readFileSync(path))), c.name).toBe(false);
      await env.con.run(`INSERT INTO truth ${c.rows}`);
    }
    // the same files pass when they are what the table needs: the check above refuses for its reason only
    const ok = await plain("all_ok", gen(90, 100), fieldIdsOf(schema) + kvOf(schema));
    expect((await planAdoption({ connection: env.con, paths: [ok], schema, spec: defaultSpec(t.metadata) })).adopt).toHaveLength(1);
    await expectFieldIds("neg");
    await expectRows("neg", "SELECT * FROM truth", COLS);
    expect(await dataFiles("neg")).toHaveLength(5);
  });

  it("adopts and rewrites in one commit when a batch mixes ready and unready files", async () => {
    const a = await ready("mix_a", gen(100, 130));
    const b = await ready("mix_b", gen(130, 140));
    const schema = currentSchema((await load("neg")).metadata);
    const noIds = await plain("mix_no_ids", gen(140, 150), kvOf(schema));
    const noKv = await plain("mix_no_kv", gen(150, 175), fieldIdsOf(schema));
    const empty = await ready("mix_empty", `${gen(0, 0)}`);
    const before = await load("neg");
    const earlier = new Set((await dataFiles("neg")).map((df) => df.file_path));
    const r = await appendRows({ ...target("neg"), source: { parquet: [a, noIds, empty, b, noKv] } });
    expect(r).toMatchObject({ addedRecords: 75, adoptedFiles: 2, addedFiles: 3, commitRetries: 0 });
    expect((await load("neg")).metadata.snapshots).toHaveLength(before.metadata.snapshots.length + 1);
    const added = (await dataFiles("neg")).filter((df) => !earlier.has(df.file_path));
    const origin = (df: Row): string => [a, b].find((p) => bytesOf(df.file_path).equals(readFileSync(p))) ?? "rewritten";
    expect(added.map((df) => [origin(df), df.record_count]).sort()).toEqual([[a, 30n], [b, 10n], ["rewritten", 35n]].sort());
    await env.con.run(`INSERT INTO truth ${gen(100, 175)}`);
    await expectFieldIds("neg");
    await expectRows("neg", "SELECT * FROM truth", COLS);
  });

  it("day(ts): files of one day are adopted with their partition; a file spanning two days is rewritten; overwrite replaces a day", async () => {
    const day = (d: string, from: number, n: number, start = "00:00:00") =>
      `SELECT i::BIGINT AS id, TIMESTAMP '${d} ${start}' + (i - ${from}) * INTERVAL 7 MINUTE AS ts, 'v' || i AS s, (i * 0.5)::DOUBLE AS x FROM range(${from}, ${from + n}) r(i)`;
    const d1 = await ready("day1", day("2024-03-01", 0, 200));
    const d2 = await ready("day2", day("2024-03-02", 200, 150, "01:00:00"));
    const both = await ready("days34", day("2024-03-03", 400, 20, "23:00:00"));
    const partitionBy = [{ column: "ts", transform: "day" as const }];
    const r = await appendRows({ ...target("daily", { partitionBy }), source: { parquet: [d1, both, d2] } });
    expect(r).toMatchObject({ addedRecords: 370, adoptedFiles: 2, addedFiles: 4 });
    const t = await load("daily");
    const plan = await planAdoption({ connection: env.con, paths: [both], schema: currentSchema(t.metadata), spec: defaultSpec(t.metadata) });
    expect(plan.rewrite.map((x) => x.reason)).toEqual(["its rows fall in 2 partitions"]);

    const dayOf = (df: Row): string => {
      const v = (df.partition as Row).ts_day;
      return (v instanceof Date ? v : new Date(Number(v) * 86_400_000)).toISOString().slice(0, 10);
    };
    const files = await dataFiles("daily");
    const summary = files.map((df) => [dayOf(df), df.record_count, bytesOf(df.file_path).equals(readFileSync(d1)) ? "d1" : bytesOf(df.file_path).equals(readFileSync(d2)) ? "d2" : "rewritten"]);
    expect(summary.sort()).toEqual([
      ["2024-03-01", 200n, "d1"],
      ["2024-03-02", 150n, "d2"],
      ["2024-03-03", 9n, "rewritten"],
      ["2024-03-04", 11n, "rewritten"],
    ]);
    for (const df of files) expect(String(df.file_path)).toContain(`/a/daily/data/ts_day=${dayOf(df)}/`);
    await expectFieldIds("daily");
    const perDay = async (): Promise<Record<string, number>> => {
      const got = await icebergRead({ tableUrl: env.storage.uriOf("a/daily") });
      const out: Record<string, number> = {};
      for (const row of got) {
        const k = (row.ts as Date).toISOString().slice(0, 10);
        out[k] = (out[k] ?? 0) + 1;
      }
      return out;
    };
    expect(await perDay()).toEqual({ "2024-03-01": 200, "2024-03-02": 150, "2024-03-03": 9, "2024-03-04": 11 });
    await env.con.run(`CREATE TABLE daily_truth AS SELECT * FROM read_parquet(['${d1}', '${d2}', '${both}'])`);
    await expectRows("daily", "SELECT * FROM daily_truth", ["id", "ts", "s", "x"]);

    // a new version of day 1, adopted, replaces the old one; the other days stay
    const d1b = await ready("day1b", day("2024-03-01", 1000, 30, "12:00:00"));
    const o = await overwritePartitions({ ...target("daily", { partitionBy }), source: { parquet: [d1b] } });
    expect(o).toMatchObject({ addedFiles: 1, adoptedFiles: 1, deletedFiles: 1, deletedRecords: 200 });
    const after = await dataFiles("daily");
    expect(after.filter((df) => dayOf(df) === "2024-03-01").map((df) => bytesOf(df.file_path).equals(readFileSync(d1b)))).toEqual([true]);
    expect(await perDay()).toEqual({ "2024-03-01": 30, "2024-03-02": 150, "2024-03-03": 9, "2024-03-04": 11 });
    await env.con.run(`DELETE FROM daily_truth WHERE CAST(ts AS DATE) = DATE '2024-03-01'; INSERT INTO daily_truth SELECT * FROM read_parquet('${d1b}')`);
    await expectRows("daily", "SELECT * FROM daily_truth", ["id", "ts", "s", "x"]);
  });

  it("leaves nothing behind when the rewrite fails after files were adopted, and the source files stay intact", async () => {
    const a = await ready("fail_a", gen(0, 20));
    const copy = readFileSync(a);
    const schema = currentSchema((await load("neg")).metadata);
    const noKv = await plain("fail_no_kv", gen(20, 30), fieldIdsOf(schema));
    const uploads: string[] = [];
    const failing: ObjectStorage = {
      ...env.storage,
      // the rewrite's files come from the writer's temp folder; adopted ones from the source folder
      upload: async (local, key) => {
        uploads.push(key);
        if (local.includes("floe-iceberg-")) throw new Error("disk full");
        await env.storage.upload(local, key);
      },
    };
    await expect(appendRows({ ...target("failing"), storage: failing, source: { parquet: [a, noKv] } })).rejects.toThrow("disk full");
    expect(uploads.length).toBe(2); // the adopted file did go up first
    expect(listFiles(join(env.dir, "warehouse/a/failing/data"))).toEqual([]);
    expect(currentSnapshot((await load("failing")).metadata)).toBeUndefined();
    expect(existsSync(a) && readFileSync(a).equals(copy)).toBe(true);
  });
});
