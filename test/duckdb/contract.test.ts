import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { checks, runChecks } from "../../src/duckdb/checks.js";
import { countIsScan } from "../../src/duckdb/plan.js";
import { contractFromZod, contractQuery, rawColumn, typedColumn } from "../../src/duckdb/contract.js";

let instance: DuckDBInstance;
let con: DuckDBConnection;
beforeAll(async () => {
  instance = await DuckDBInstance.create(":memory:", { autoinstall_known_extensions: "false", autoload_known_extensions: "false" });
  con = await instance.connect();
  await con.run("SET TimeZone = 'UTC'");
  await con.run(`CREATE TABLE src AS SELECT * FROM (VALUES
    ('1', '10.5', 'paid', '2025-01-01 10:00:00', 'f1'),
    ('x', '3', 'open', '2025-01-01', 'f1'),
    (NULL, 'abc', 'lost', 'never', 'f2'),
    ('4', NULL, NULL, '2025-01-02', 'f2')) t(id, amount, status, ts, _floe_source_file)`);
});
afterAll(() => {
  con.closeSync();
  instance.closeSync();
});

describe("table contract", () => {
  const schema = z.object({
    id: z.number().int(),
    amount: z.number().optional(),
    status: z.enum(["open", "paid"]).nullable(),
    ts: z.date(),
    day: z.iso.date().optional(),
    price: z.string().meta({ duckdbType: "DECIMAL(18,2)" }).optional(),
  });

  it("maps zod types to DuckDB types", () => {
    expect(contractFromZod(schema).map((c) => [c.name, c.type, c.required])).toEqual([
      ["id", "BIGINT", true], ["amount", "DOUBLE", false], ["status", "VARCHAR", false], ["ts", "TIMESTAMPTZ", true], ["day", "DATE", false], ["price", "DECIMAL(18,2)", false],
    ]);
    expect(() => contractFromZod(z.object({ tags: z.array(z.string()) }))).toThrow(/columns\.tags: zod type `array` has no table column type/);
  });

  it("types rows set-based and gives every invalid row its reasons", async () => {
    const contract = contractFromZod(z.object({ id: z.number().int(), amount: z.number().optional(), status: z.enum(["open", "paid"]).nullable(), ts: z.date() }));
    // the rows that fit, typed, and the others with their reasons
    const q = contractQuery("src", contract, { keep: ["_floe_source_file"], sourceTypes: { id: "VARCHAR", amount: "VARCHAR", status: "VARCHAR", ts: "VARCHAR" } });
    const valid = (await con.runAndReadAll(`${q.validRows} ORDER BY id`)).getRowObjectsJson();
    expect(valid.map((r) => [r.id, r.amount, r.status, r.ts])).toEqual([["1", 10.5, "paid", "2025-01-01T10:00:00.000Z"], ["4", null, null, "2025-01-02T00:00:00.000Z"]].map(([id, a, st, ts]) => [id, a, st, expect.stringContaining(String(ts).slice(0, 10)) as unknown]));
    expect(Object.keys(valid[0] ?? {})).toEqual(["id", "amount", "status", "ts"]);
    const invalid = (await con.runAndReadAll(`SELECT __floe_raw0 AS id, _floe_source_file, _floe_reason FROM (${q.invalidRows}) ORDER BY _floe_reason`)).getRowObjectsJson();
    expect(invalid.map((r) => [r.id, r._floe_source_file, r._floe_reason])).toEqual([
      ["x", "f1", "id: cannot cast 'x' to BIGINT"],
      [null, "f2", "id: missing; amount: cannot cast 'abc' to DOUBLE; status: 'lost' is not one of open, paid; ts: cannot cast 'never' to TIMESTAMPTZ"],
    ]);
  });

  it("reads text date-times exactly as DuckDB's TIMESTAMPTZ cast does, the zoneless ones through the fast path", async () => {
    const texts = [
      "2025-01-01 10:00:00", "2025-01-01T10:00:00", "2025-01-01", "2025-01-01 10:00:00.123456", "2025-01-01 10:00:00.1234567", "2025-01-01 10:00",
      "2025-01-01 10:00:00+02:00", "2025-01-01 10:00:00-05", "2025-01-01T10:00:00Z", "2025-01-01 10:00:00 Europe/Paris", "2025-01-01 10:00:00 UTC",
      " 2025-01-01 10:00:00", "2025-01-01 10:00:00 ", "infinity", "-infinity", "epoch", "2025-13-01 00:00:00", "2025-02-30", "garbage", "", "1969-12-31 23:59:59.999999",
      "0001-01-01 00:00:00", "9999-12-31 23:59:59", "2025-01-01 24:00:00", "20250101", "2025-01-01 10:00:00.", "2025-06-01 10:00:00.5 +05:30",
      "2025-01-01 10:00:00 EST", "2025-01-01 10:00:00utc", "2025-01-01T10:00:00+0530", "2025-01-01T10:00:00.5-03:30", "2025-01-01 10:00:00 America/New_York",
      "-0001-01-01 00:00:00", "0001-01-01 00:00:00 (BC)", "2025-01-01 10:00:00 z", "1970-01-01", "2262-04-12 00:00:00",
    ];
    await con.run(`CREATE TABLE texts AS SELECT unnest([${texts.map((t) => `'${t}'`).join(", ")}, NULL::VARCHAR]) AS ts`);
    const q = contractQuery("texts", contractFromZod(z.object({ ts: z.date().nullable() })), { keep: [], sourceTypes: { ts: "VARCHAR" } });
    expect(q.from).toContain("make_timestamptz"); // the fast path is the one under test
    const got = (await con.runAndReadAll(`SELECT ${rawColumn(0)} AS text, ${typedColumn(0)}::VARCHAR AS fast FROM ${q.from}`)).getRowObjectsJson();
    // each text cast alone: DuckDB 1.5.5's ICU cast carries a zone name over to the zoneless
    // values after it in the same vector (America/New_York, then '1970-01-01' → 05:00:00+00)
    const alone: Array<[unknown, unknown]> = [];
    for (const r of got) {
      const cast = r.text === null ? "NULL" : `TRY_CAST('${String(r.text)}' AS TIMESTAMPTZ)::VARCHAR`;
      alone.push([r.text, (await con.runAndReadAll(`SELECT ${cast} AS v`)).getRowObjectsJson()[0]?.v ?? null]);
    }
    expect(got).toHaveLength(texts.length + 1);
    expect(got.map((r) => [r.text, r.fast])).toEqual(alone);
    expect(alone.filter(([, v]) => v !== null).length).toBeGreaterThan(20);
    expect(got.find((r) => r.text === "1970-01-01")?.fast).toBe("1970-01-01 00:00:00+00"); // after a zone name, still UTC
  });
});

describe("checks", () => {
  it("evaluates every check in one query with counts", async () => {
    await con.run("CREATE TABLE t AS SELECT * FROM (VALUES (1, 5.0, 'a'), (2, -1.0, 'b'), (2, NULL, 'z'), (NULL, 7.0, 'a')) v(id, amount, status)");
    const results = await runChecks(con, "t", [
      checks.notNull("id"),
      checks.unique("id"),
      checks.range("amount", { min: 0 }),
      checks.acceptedValues("status", ["a", "b"], { severity: "warn" }),
      checks.rowCount({ min: 1, max: 3 }),
      checks.sql("positive_or_null", "amount IS NULL OR amount > 0"),
    ]);
    expect(results.map((r) => [r.name, r.severity, r.passed, r.message])).toEqual([
      ["not_null(id)", "error", false, "1 null values in id"],
      ["unique(id)", "error", false, "1 duplicate values in id"],
      ["range(amount)", "error", false, "1 values of amount outside 0…∞"],
      ["accepted_values(status)", "warn", false, "1 values of status not in a, b"],
      ["row_count", "error", false, "4 rows, expected at most 3"],
      ["positive_or_null", "error", false, "1 rows fail positive_or_null"],
    ]);
    const ok = await runChecks(con, "t", [checks.rowCount({ min: 4 }), checks.notNull("status")]);
    expect(ok.every((r) => r.passed)).toBe(true);
  });
});

describe("countIsScan", () => {
  it("says whether counting a query's rows only scans and filters, with the same count every time", async () => {
    await con.run("CREATE TABLE scan_src AS SELECT range AS id, range % 3 AS k FROM range(10)");
    expect(await countIsScan(con, "SELECT id FROM scan_src WHERE id > 2")).toBe(true);
    expect(await countIsScan(con, "SELECT 'x' AS id UNION ALL SELECT '2'")).toBe(true);
    expect(await countIsScan(con, "SELECT k, count(*) FROM scan_src GROUP BY k")).toBe(false);
    expect(await countIsScan(con, "SELECT a.id FROM scan_src a JOIN scan_src b ON a.id = b.k")).toBe(false);
    expect(await countIsScan(con, "SELECT id, row_number() OVER (ORDER BY id) AS n FROM scan_src")).toBe(false);
    expect(await countIsScan(con, "SELECT id FROM scan_src USING SAMPLE 50%")).toBe(false);
    expect(await countIsScan(con, "SELECT id FROM scan_src WHERE random() < 0.5")).toBe(false);
  });
});
