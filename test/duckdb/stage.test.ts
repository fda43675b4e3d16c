import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stageFile, type RawFormat } from "../../src/duckdb/stage.js";

let instance: DuckDBInstance;
let con: DuckDBConnection;
const dir = mkdtempSync(join(tmpdir(), "floe-stage-"));
beforeAll(async () => {
  instance = await DuckDBInstance.create(":memory:", { autoinstall_known_extensions: "false", autoload_known_extensions: "false" });
  con = await instance.connect();
});
afterAll(() => {
  con.closeSync();
  instance.closeSync();
  rmSync(dir, { recursive: true, force: true });
});

async function stage(name: string, content: string | Buffer, format: RawFormat = "csv") {
  const path = join(dir, name);
  writeFileSync(path, content);
  const target = join(dir, `${name}.parquet`);
  const staged = await stageFile(con, { path, format, source: `landing/${name}`, target });
  // rows in the source's order: file_row_number is the row's place in the file
  const rows = (await con.runAndReadAll(`SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS _floe_row FROM read_parquet('${target}', file_row_number = true) ORDER BY file_row_number`)).getRowObjectsJson();
  return { staged, rows };
}

async function failure(name: string, content: string | Buffer, format: RawFormat = "csv"): Promise<string> {
  const target = join(dir, `${name}.parquet`);
  try {
    await stage(name, content, format);
  } catch (e) {
    expect(existsSync(target), "nothing half-written").toBe(false);
    return (e as Error).message;
  }
  throw new Error(`${name} was accepted`);
}

describe("stageFile", () => {
  it("reads CSV with an explicit dialect: quotes, escaped quotes, CRLF, BOM; values stay text", async () => {
    const { staged, rows } = await stage("good.csv", '\uFEFFid,name,amount\r\n1,"a,b",10.5\r\n2,"say ""hi""",x\r\n');
    expect(staged).toEqual({ rows: 2, columns: ["id", "name", "amount"] });
    expect(rows).toEqual([
      { id: "1", name: "a,b", amount: "10.5", _floe_source_file: "landing/good.csv", _floe_row: "1" },
      { id: "2", name: 'say "hi"', amount: "x", _floe_source_file: "landing/good.csv", _floe_row: "2" },
    ]);
  });

  it("reads NDJSON, JSON arrays and Parquet", async () => {
    expect((await stage("a.ndjson", '{"id":1,"name":"a"}\n{"id":2,"name":"b"}\n', "ndjson")).staged.rows).toBe(2);
    expect((await stage("a.json", '[{"id":1},{"id":2},{"id":3}]', "json")).staged.rows).toBe(3);
    await con.run(`COPY (SELECT 7 AS id) TO '${join(dir, "src.parquet")}' (FORMAT parquet)`);
    const target = join(dir, "out.parquet");
    await stageFile(con, { path: join(dir, "src.parquet"), format: "parquet", source: "p", target });
    const rows = (await con.runAndReadAll(`SELECT id FROM read_parquet('${target}')`)).getRowObjectsJson();
    expect(rows).toEqual([{ id: 7 }]);
  });

  it("a header-only file stages zero rows", async () => {
    expect((await stage("header.csv", "id,name\n")).staged).toEqual({ rows: 0, columns: ["id", "name"] });
    expect((await stage("header-no-eol.csv", "id,name")).staged).toEqual({ rows: 0, columns: ["id", "name"] });
  });

  it("reads a header line longer than its first read (64 KiB), even with a quoted line break in it", async () => {
    const names = Array.from({ length: 2000 }, (_, i) => `a_rather_long_column_name_number_${i}`); // ~75 KiB
    names[1000] = '"multi\nline"';
    const { staged } = await stage("wide.csv", `${names.join(",")}\n${names.map((_, i) => i).join(",")}\n`);
    expect(staged.rows).toBe(1);
    expect(staged.columns).toHaveLength(2000);
    expect(staged.columns[1000]).toBe("multi\nline");
    expect(staged.columns[1999]).toBe("a_rather_long_column_name_number_1999");
    expect(await failure("huge-header.csv", `${"h".repeat(1_100_000)}\n1\n`)).toBe("line 1: the header line does not end (unterminated quote or a line over 1 MiB)");
  });

  it("names what is wrong with a bad file, in one line", async () => {
    expect(await failure("empty.csv", "")).toBe("empty file: expected a header line");
    expect(await failure("count.csv", "id,name\n1,a,extra\n2,b\n")).toBe("line 2: expected 2 columns, found 3");
    expect(await failure("short.csv", "id,name\n1\n")).toBe("line 2: expected 2 columns, found 1");
    expect(await failure("quote.csv", 'id,name\n1,"ab\n2,c\n')).toMatch(/^line 2: /);
    expect(await failure("utf8.csv", Buffer.from([...Buffer.from("id,name\n1,"), 0xff, 0xfe, 0x0a]))).toBe("line 2: not valid UTF-8");
    const long = await failure("long.csv", `id,name\n1,${"x".repeat(10_000_000)}\n`);
    expect(long).toBe("line 2 is 9.5 MiB, over the maximum line size of 2 MiB; raise csv.maxLineBytes (now 2097152) or fix the file");
    expect(long.length).toBeLessThan(300);
    expect(await failure("dup.csv", "id,id\n1,2\n")).toBe("line 1: column `id` appears twice in the header");
    expect(await failure("bad.ndjson", '{"id":1,\n', "ndjson")).toMatch(/Malformed JSON/);
  });
});
