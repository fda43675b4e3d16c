import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findLongLine, type LongLine } from "../../src/duckdb/long-line.js";
import { stageFile, type CsvOptions, type RawFormat } from "../../src/duckdb/stage.js";

// DuckDB 1.5.5's parallel CSV reader drops a line over max_line_size without an error at some
// places in a file (bench/duckdb-long-line.md). stageFile fails such a file itself.

const MiB = 1024 * 1024;
let instance: DuckDBInstance;
let con: DuckDBConnection;
const dir = mkdtempSync(join(tmpdir(), "floe-long-line-"));
beforeAll(async () => {
  instance = await DuckDBInstance.create(":memory:", { threads: "2", autoinstall_known_extensions: "false", autoload_known_extensions: "false" });
  con = await instance.connect();
});
afterAll(() => {
  con.closeSync();
  instance.closeSync();
  rmSync(dir, { recursive: true, force: true });
});

type Outcome = { rows: number } | { error: string };

/** Stages `content` as a file of `dir`, then removes the file and its staged copy. */
async function stage(name: string, content: string | Buffer, csv: CsvOptions = {}, format: RawFormat = "csv"): Promise<Outcome> {
  const path = join(dir, name);
  const target = `${path}.parquet`;
  writeFileSync(path, content);
  try {
    const staged = await stageFile(con, { path, format, source: `landing/${name}`, target, csv });
    const counted = await con.runAndReadAll(`SELECT count(*)::INTEGER AS n FROM read_parquet('${target}')`);
    expect(counted.getRowObjectsJS()[0]?.n, "the staged file holds the rows reported").toBe(staged.rows);
    return { rows: staged.rows };
  } catch (e) {
    expect(existsSync(target), "nothing staged").toBe(false);
    return { error: (e as Error).message };
  } finally {
    rmSync(path, { force: true });
    rmSync(target, { force: true });
  }
}

/** `n` short rows of 17 bytes each, line end included. */
const shortRows = (n: number): string => "1,abcdefghijklmn\n".repeat(n);

describe("a line over csv.maxLineBytes fails the file, never stages fewer rows", () => {
  it("a 40 MiB last line (DuckDB alone returns the rows before it and no error)", async () => {
    const out = await stage("last.csv", `id,name\n1,a\n2,b\n3,${"x".repeat(40 * MiB)}\n`);
    expect(out).toEqual({ error: "line 4 is 40 MiB, over the maximum line size of 2 MiB; raise csv.maxLineBytes (now 2097152) or fix the file" });
  });

  it("a 2.5 MiB line just after the first 32 MiB buffer, rows after it (DuckDB alone drops it and the rows after it)", async () => {
    // the long line starts at byte 32 MiB + 6, right after a short line that straddles the buffer boundary
    const head = "id,name\n" + shortRows(1973790);
    expect(head.length).toBe(32 * MiB + 6);
    const out = await stage("middle.csv", `${head}7,${"x".repeat(2.5 * MiB)}\n8,d\n9,e\n`);
    expect(out).toEqual({ error: "line 1973792 is 2.5 MiB, over the maximum line size of 2 MiB; raise csv.maxLineBytes (now 2097152) or fix the file" });
  });

  it("with csv.maxLineBytes raised above it, the same 40 MiB line stages with every row", async () => {
    const out = await stage("raised.csv", `id,name\n1,a\n2,b\n3,${"x".repeat(40 * MiB)}\n`, { maxLineBytes: 48 * MiB });
    expect(out).toEqual({ rows: 3 });
  });
});

describe("ordinary files stage every row", () => {
  it("short lines with quoted multi-line fields, LF and CRLF", async () => {
    const rows = [`1,"first\nsecond"`, `2,plain`, `3,"a ""quoted"" word, and a comma"`, `4,"three\nphysical\nlines"`];
    expect(await stage("quoted-lf.csv", `id,note\n${rows.join("\n")}\n`)).toEqual({ rows: 4 });
    expect(await stage("quoted-crlf.csv", `id,note\r\n${rows.map((r) => r.replace(/\n/g, "\r\n")).join("\r\n")}\r\n`)).toEqual({ rows: 4 });
  });

  it("a quoted record longer than maxLineBytes made of short physical lines is DuckDB's to report, and it does", async () => {
    const field = "y".repeat(99) + "\n";
    expect(await stage("ml-ok.csv", `id,note\n1,"${field.repeat(9)}"\n2,b\n`, { maxLineBytes: 1000 })).toEqual({ rows: 2 });
    const out = await stage("ml-long.csv", `id,note\n1,"${field.repeat(11)}"\n2,b\n`, { maxLineBytes: 1000 });
    expect(out).toMatchObject({ error: expect.stringMatching(/^line 2: Maximum line size of 1000 bytes exceeded/) });
  });

  it("a header line longer than maxLineBytes is not a data line: DuckDB does not hold it to the limit either", async () => {
    expect(await stage("wide-header.csv", `id,${"n".repeat(200)}\n1,a\n`, { maxLineBytes: 100 })).toEqual({ rows: 1 });
    expect(await stage("wide-header-quoted.csv", `id,"${"n".repeat(100)}\n${"m".repeat(100)}"\n1,a\n`, { maxLineBytes: 100 })).toEqual({ rows: 1 });
  });

  it("many lines just under the limit, far past the guard's 64 KiB look-back", async () => {
    const max = 200_000;
    const line = (i: number, len: number) => `${i},${"z".repeat(len - String(i).length - 2)}\n`; // len bytes with its line end
    const body = Array.from({ length: 40 }, (_, i) => line(i, i % 2 === 0 ? max : 70_000)).join("");
    expect(await stage("near.csv", `id,v\n${body}`, { maxLineBytes: max })).toEqual({ rows: 40 });
    const over = body + line(40, 70_000) + line(41, max + 1) + line(42, 10);
    expect(await stage("near-over.csv", `id,v\n${over}`, { maxLineBytes: max })).toEqual({
      error: "line 43 is 200001 bytes, over the maximum line size of 200000 bytes; raise csv.maxLineBytes (now 200000) or fix the file",
    });
  });
});

describe("the limit, to the byte, agrees with DuckDB's max_line_size", () => {
  // DuckDB counts a line with its line end: LF one byte, CRLF two, a lone CR one, none at the end of the file one.
  const max = 100;
  const cases: Array<{ name: string; file: (n: number) => string; longest: number }> = [
    { name: "LF", file: (n) => `id,v\n1,a\n2,${"x".repeat(n - 2)}\n3,c\n`, longest: 99 },
    { name: "CRLF", file: (n) => `id,v\r\n1,a\r\n2,${"x".repeat(n - 2)}\r\n3,c\r\n`, longest: 98 },
    { name: "lone CR", file: (n) => `id,v\r1,a\r2,${"x".repeat(n - 2)}\r3,c\r`, longest: 99 },
    { name: "last line without a line end", file: (n) => `id,v\n1,a\n3,c\n2,${"x".repeat(n - 2)}`, longest: 99 },
  ];
  for (const c of cases) {
    it(`${c.name}: a line of ${c.longest} bytes before its line end stages, one byte more fails`, async () => {
      expect(await stage(`ok-${c.name}.csv`, c.file(c.longest), { maxLineBytes: max })).toEqual({ rows: 3 });
      const line = c.name === "last line without a line end" ? 4 : 3;
      expect(await stage(`over-${c.name}.csv`, c.file(c.longest + 1), { maxLineBytes: max })).toEqual({
        error: `line ${line} is 101 bytes, over the maximum line size of 100 bytes; raise csv.maxLineBytes (now 100) or fix the file`,
      });
      // DuckDB itself rejects the longer one (here, away from a buffer boundary, it does raise an error)
      const path = join(dir, `duck-${c.name}.csv`);
      writeFileSync(path, c.file(c.longest + 1));
      await expect(con.run(`SELECT count(*) FROM read_csv('${path}', auto_detect = false, header = true, columns = {'id': 'VARCHAR', 'v': 'VARCHAR'}, max_line_size = ${max})`)).rejects.toThrow(/Maximum line size/);
      rmSync(path);
    });
  }
});

describe("findLongLine agrees with a line-by-line reading", () => {
  /** Every physical line, its bytes with the line end counted as DuckDB does; the first over `max`. */
  function reference(text: Buffer, max: number): LongLine | undefined {
    let start = 0;
    let line = 1;
    for (let i = 0; i <= text.length; i++) {
      const b = text[i];
      const end = i === text.length ? (start < text.length ? i + 1 : undefined) : b === 0x0a ? i + 1 : b === 0x0d && text[i + 1] !== 0x0a ? i + 1 : undefined;
      if (end === undefined) continue;
      if (end - start > max) return { line, bytes: end - start };
      start = i + 1;
      line++;
    }
    return undefined;
  }

  it("on random files: line ends of every kind, lengths around the limit, limits below and above the 64 KiB look-back", async () => {
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const ends = ["\n", "\r\n", "\r"];
    let flagged = 0;
    for (let round = 0; round < 300; round++) {
      const max = [10, 64, 1000, 70_000, 150_000][round % 5]!;
      const parts: string[] = [];
      const lines = 1 + random(round % 5 >= 3 ? 30 : 200);
      for (let l = 0; l < lines; l++) {
        const len = random(10) === 0 ? max - 3 + random(6) : random(max);
        parts.push("a".repeat(len) + (l === lines - 1 && random(3) === 0 ? "" : ends[random(3)]!));
      }
      const text = Buffer.from(parts.join(""));
      const path = join(dir, `random-${round}.txt`);
      writeFileSync(path, text);
      const expected = reference(text, max);
      if (expected) flagged++;
      expect(await findLongLine(path, max, 0), `round ${round}, max ${max}`).toEqual(expected);
      rmSync(path);
    }
    expect(flagged, "both outcomes were exercised").toBeGreaterThan(50);
    expect(flagged).toBeLessThan(250);
  });
});

describe("NDJSON and JSON: DuckDB's read_json fails a long last record rather than dropping it", () => {
  it("a 40 MiB last record, after short ones", async () => {
    const big = `{"id":3,"name":"${"x".repeat(40 * MiB)}"}`;
    expect(await stage("last.ndjson", `{"id":1}\n{"id":2}\n${big}\n`, {}, "ndjson")).toMatchObject({ error: expect.stringMatching(/maximum_object_size/) });
    expect(await stage("last.json", `[{"id":1},{"id":2},${big}]`, {}, "json")).toMatchObject({ error: expect.stringMatching(/maximum_object_size/) });
  });
});
