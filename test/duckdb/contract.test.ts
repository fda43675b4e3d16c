import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { checks, runChecks } from "../../src/duckdb/checks.js";
import { contractFromZod, typedSql } from "../../src/duckdb/contract.js";

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
    const rows = (await con.runAndReadAll(`${typedSql("src", contract, ["_floe_source_file"])} ORDER BY _floe_source_file, _floe_reason NULLS FIRST`)).getRowObjectsJson();
    expect(rows.map((r) => r._floe_reason)).toEqual([
      null,
      "id: cannot cast 'x' to BIGINT",
      null,
      "id: missing; amount: cannot cast 'abc' to DOUBLE; status: 'lost' is not one of open, paid; ts: cannot cast 'never' to TIMESTAMPTZ",
    ]);
    expect(rows[0]).toMatchObject({ id: "1", amount: 10.5, status: "paid", _floe_source_file: "f1" });
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
