import { fileURLToPath } from "node:url";
import { icebergRead } from "icebird";
import type { Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendRows, loadTable } from "../../src/iceberg/table-writer.js";
import { currentSnapshot } from "../../src/iceberg/metadata.js";
import type { IcebergCatalogTables, SqlCatalog } from "../../src/iceberg/sql-catalog.js";
import { norm, openEnv, pgliteCatalog, readAvro, rows, type Env } from "./helpers.js";

type Row = Record<string, unknown>;

// Independent decoders of the single-value serialization (spec Appendix D).
const b = (u: unknown): Buffer => Buffer.from(u as Uint8Array);
const decode: Record<string, (u: unknown) => unknown> = {
  int: (u) => b(u).readInt32LE(),
  long: (u) => b(u).readBigInt64LE(),
  float: (u) => b(u).readFloatLE(),
  double: (u) => b(u).readDoubleLE(),
  string: (u) => b(u).toString("utf8"),
  bool: (u) => b(u)[0] === 1,
  hex: (u) => b(u).toString("hex").toUpperCase(),
  uuid: (u) => b(u).toString("hex").replace(/^(.{8})(.{4})(.{4})(.{4})/, "$1-$2-$3-$4-"),
  decimal: (u) => {
    const x = b(u);
    let n = BigInt(`0x${x.toString("hex")}`);
    if ((x[0] ?? 0) & 0x80) n -= 1n << BigInt(x.length * 8);
    return n;
  },
};

describe("column statistics and partition values", () => {
  let env: Env;
  let catalog: SqlCatalog;
  let db: Kysely<IcebergCatalogTables>;
  beforeAll(async () => {
    env = await openEnv();
    ({ catalog, db } = await pgliteCatalog());
    await env.con.run(`CREATE TABLE src AS SELECT
        (i * 1000 - 20000)::INTEGER AS i32,
        CASE WHEN i = 3 THEN NULL ELSE (i - 20) * 461168601842738790 END::BIGINT AS i64,
        (i / 3 - 5)::FLOAT AS f32,
        CASE WHEN i = 5 THEN 'NaN'::DOUBLE ELSE i * 1.5 - 7 END::DOUBLE AS f64_nan,
        CASE WHEN i < 2 THEN -0.0 ELSE i - 2.0 END::DOUBLE AS f64_zero_low,
        CASE WHEN i < 2 THEN 0.0 ELSE -1.0 * i END::DOUBLE AS f64_zero_high,
        ((i - 20) * 12.34)::DECIMAL(10,2) AS dec,
        ((i - 20) * 123456789012345.6789)::DECIMAL(30,4) AS dec_wide,
        ['zeta', 'Alpha', 'émile', 'a', 'ßtraße', 'b'][i % 6 + 1] AS s,
        repeat(chr((97 + i % 26)::INTEGER), (20 + i)::INTEGER) || i AS s_long,
        CASE WHEN i = 7 THEN repeat('z', 400) ELSE 'y' || i END AS s_huge,
        DATE '1969-12-25' + (i * 3)::INTEGER AS d,
        TIMESTAMP '1969-12-31 22:59:59.999999' + i * INTERVAL 1 HOUR + i * INTERVAL 7 MICROSECOND AS ts,
        TIMESTAMPTZ '2024-03-10 06:30:00.000001+00' + i * INTERVAL 97 MINUTE AS tstz,
        i % 3 = 0 AS flag,
        ('0000000' || (i % 10) || '-1111-4222-8333-44444444444' || (i % 10))::UUID AS u,
        TIME '00:00:01.5' + i * INTERVAL 3 MINUTE AS t,
        from_hex(printf('%02X00FF', i * 9)) AS bin,
        NULL::INTEGER AS all_null,
        ['a', 'b/c', NULL][i % 3 + 1] AS kind
      FROM range(24) r(i)`);
  });
  afterAll(async () => {
    await db.destroy();
    await env.close();
  });

  const manifests = async (name: string): Promise<{ list: Row[]; entries: Row[] }> => {
    const t = await loadTable({ catalog, storage: env.storage, table: { namespace: ["s"], name } });
    const list = readAvro(fileURLToPath(currentSnapshot(t!.metadata)!["manifest-list"])).records;
    return { list, entries: list.flatMap((m) => readAvro(fileURLToPath(String(m.manifest_path))).records) };
  };
  const map = (kvs: unknown): Map<number, unknown> => new Map(((kvs as Array<{ key: number; value: unknown }> | undefined) ?? []).map((kv) => [kv.key, kv.value]));

  it("writes bounds that decode to the true min/max, counts per column, and NaN counts only when known", async () => {
    const r = await appendRows({ connection: env.con, source: { table: "src" }, table: { namespace: ["s"], name: "unpart" }, catalog, storage: env.storage });
    expect(r.addedFiles).toBe(1);
    const t = await loadTable({ catalog, storage: env.storage, table: { namespace: ["s"], name: "unpart" } });
    const ids = new Map(t!.metadata.schemas[0]!.fields.map((f) => [f.name, f.id]));
    expect(t!.metadata.schemas[0]!.fields.find((f) => f.name === "dec_wide")?.type).toBe("decimal(38, 4)");
    const { entries } = await manifests("unpart");
    const df = entries[0]!.data_file as Row;
    const lower = map(df.lower_bounds);
    const upper = map(df.upper_bounds);
    const values = map(df.value_counts);
    const nulls = map(df.null_value_counts);
    const nans = map(df.nan_value_counts);
    const bounds = (col: string, how: (u: unknown) => unknown): unknown[] => [how(lower.get(ids.get(col)!)), how(upper.get(ids.get(col)!))];
    const truth = (await rows(env.con, `SELECT
        min(i32) i32_lo, max(i32) i32_hi, min(i64) i64_lo, max(i64) i64_hi, min(f32) f32_lo, max(f32) f32_hi,
        min(f64_nan) FILTER (WHERE NOT isnan(f64_nan)) nan_lo, max(f64_nan) FILTER (WHERE NOT isnan(f64_nan)) nan_hi,
        (min(dec) * 100)::BIGINT dec_lo, (max(dec) * 100)::BIGINT dec_hi,
        (min(dec_wide) * 10000)::HUGEINT::VARCHAR dw_lo, (max(dec_wide) * 10000)::HUGEINT::VARCHAR dw_hi,
        min(s) s_lo, max(s) s_hi, min(s_long) sl_lo, max(s_long) sl_hi, max(s_huge) sh_hi,
        min(d) - DATE '1970-01-01' d_lo, max(d) - DATE '1970-01-01' d_hi,
        epoch_us(min(ts)) ts_lo, epoch_us(max(ts)) ts_hi, epoch_us(min(tstz)) tz_lo, epoch_us(max(tstz)) tz_hi,
        min(u)::VARCHAR u_lo, max(u)::VARCHAR u_hi, epoch_us(min(t)) t_lo, epoch_us(max(t)) t_hi,
        hex(min(bin)) bin_lo, hex(max(bin)) bin_hi
      FROM src`))[0]!;
    expect(bounds("i32", decode.int!)).toEqual([truth.i32_lo, truth.i32_hi]);
    expect(bounds("i64", decode.long!)).toEqual([truth.i64_lo, truth.i64_hi]);
    expect(bounds("f32", decode.float!)).toEqual([truth.f32_lo, truth.f32_hi]);
    expect(bounds("f64_nan", decode.double!)).toEqual([truth.nan_lo, truth.nan_hi]);
    const [zlo] = bounds("f64_zero_low", decode.double!);
    const [, zhi] = bounds("f64_zero_high", decode.double!);
    expect(Object.is(zlo, -0)).toBe(true); // -0.0 sorts before +0.0: the lower bound must be -0.0
    expect(Object.is(zhi, 0)).toBe(true);
    expect(bounds("dec", decode.decimal!)).toEqual([BigInt(truth.dec_lo as bigint), BigInt(truth.dec_hi as bigint)]);
    expect(b(lower.get(ids.get("dec")!)).length).toBe(2); // -246.80 → unscaled -24680: 2 bytes, minimal
    expect(bounds("dec_wide", decode.decimal!).map(String)).toEqual([truth.dw_lo, truth.dw_hi]);
    expect(bounds("s", decode.string!)).toEqual([truth.s_lo, truth.s_hi]);
    expect(bounds("d", decode.int!)).toEqual([Number(truth.d_lo), Number(truth.d_hi)]);
    expect(b(lower.get(ids.get("d")!)).length).toBe(4);
    expect(bounds("ts", decode.long!)).toEqual([truth.ts_lo, truth.ts_hi]);
    expect(bounds("tstz", decode.long!)).toEqual([truth.tz_lo, truth.tz_hi]);
    expect(bounds("flag", decode.bool!)).toEqual([false, true]);
    expect(bounds("u", decode.uuid!)).toEqual([truth.u_lo, truth.u_hi]);
    expect(bounds("t", decode.long!)).toEqual([truth.t_lo, truth.t_hi]);
    expect(bounds("bin", decode.hex!)).toEqual([truth.bin_lo, truth.bin_hi]);
    // long strings: truncated to 16 code points; the upper bound is bumped to stay above the max
    const [sl, su] = bounds("s_long", decode.string!) as string[];
    expect(sl).toBe(String(truth.sl_lo).slice(0, 16));
    expect(Array.from(su!).length).toBeLessThanOrEqual(16);
    expect(Buffer.compare(Buffer.from(su!), Buffer.from(String(truth.sl_hi)))).toBe(1);
    const [, hu] = bounds("s_huge", decode.string!) as string[];
    expect(Buffer.compare(Buffer.from(hu!), Buffer.from(String(truth.sh_hi)))).toBe(1); // DuckDB's own max is cut at 256 bytes
    // counts: value counts include nulls; NaN counts only where DuckDB knows there are none
    for (const id of ids.values()) expect(values.get(id)).toBe(24n);
    expect(nulls.get(ids.get("i64")!)).toBe(1n);
    expect(nulls.get(ids.get("all_null")!)).toBe(24n);
    expect(lower.has(ids.get("all_null")!)).toBe(false);
    expect(nans.has(ids.get("f64_nan")!)).toBe(false);
    expect(nans.get(ids.get("f64_zero_low")!)).toBe(0n);
    expect(nans.has(ids.get("i32")!)).toBe(false);
  });

  it("computes identity/year/month/day/hour partitions in UTC with floor semantics, nulls included", async () => {
    const table = { namespace: ["s"], name: "part" };
    const partitionBy = [
      { column: "kind" },
      { column: "d", transform: "year" as const },
      { column: "ts", transform: "month" as const },
      { column: "tstz", transform: "hour" as const },
      { column: "ts", transform: "day" as const },
    ];
    const r = await appendRows({ connection: env.con, source: { sql: "SELECT i32, kind, d, ts, tstz FROM src" }, table, catalog, storage: env.storage, partitionBy });
    const { list, entries } = await manifests("part");
    const expected = await rows(env.con, `SELECT kind, year(d) - 1970 AS d_year, (year(ts) - 1970) * 12 + month(ts) - 1 AS ts_month,
        floor(epoch_us(tstz) / 3600000000)::INTEGER AS tstz_hour, floor(epoch_us(ts) / 86400000000)::INTEGER AS ts_day, count(*) AS n
      FROM src GROUP BY ALL`);
    expect(r.addedFiles).toBe(expected.length);
    const got = entries.map((e) => {
      const df = e.data_file as Row;
      const p = df.partition as Row;
      return { ...p, ts_day: p.ts_day instanceof Date ? Math.round(p.ts_day.getTime() / 86400000) : p.ts_day, n: df.record_count };
    });
    const cols = ["kind", "d_year", "ts_month", "tstz_hour", "ts_day", "n"];
    const key = (x: Row): string => cols.map((c) => String(x[c] ?? null)).join("|");
    expect(got.map(key).sort()).toEqual(expected.map((x) => key({ ...x, d_year: Number(x.d_year), ts_month: Number(x.ts_month), n: x.n })).sort());
    expect(expected.some((x) => Number(x.ts_day) === -1)).toBe(true); // pre-1970 rows floor to day -1
    // folder names never percent-encode: "b/c" is hashed
    for (const e of entries) expect(String((e.data_file as Row).file_path)).not.toMatch(/%/);
    // manifest-list partition summaries: bounds of each field, null presence
    const summaries = list[0]!.partitions as Row[];
    expect(summaries).toHaveLength(5);
    expect(summaries[0]).toMatchObject({ contains_null: true, contains_nan: false });
    expect(decode.string!(summaries[0]!.lower_bound)).toBe("a");
    expect(decode.string!(summaries[0]!.upper_bound)).toBe("b/c");
    const days = expected.map((x) => Number(x.ts_day));
    expect([decode.int!(summaries[4]!.lower_bound), decode.int!(summaries[4]!.upper_bound)]).toEqual([Math.min(...days), Math.max(...days)]);
    // and icebird reads it all
    const cs = ["i32", "kind", "d", "ts", "tstz"];
    const read = await icebergRead({ tableUrl: env.storage.uriOf("s/part") });
    expect(norm(read, "i32", cs)).toEqual(norm(await rows(env.con, "SELECT i32, kind, d, ts::TIMESTAMP_MS::TIMESTAMP AS ts, tstz FROM src"), "i32", cs));
  });
});
