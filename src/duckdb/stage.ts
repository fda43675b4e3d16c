import { randomUUID } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import type { DuckDBConnection } from "@duckdb/node-api";
import { literal } from "./sql.js";

export type RawFormat = "csv" | "json" | "ndjson" | "parquet";

/** CSV dialect, always explicit: floe never guesses a dialect from the data. */
export interface CsvOptions {
  delimiter?: string;
  quote?: string;
  escape?: string;
  /** Default true. Without a header, columns are named column0, column1, … */
  header?: boolean;
  /** Longest accepted line in bytes (default 2 MiB, as DuckDB). */
  maxLineBytes?: number;
}

export interface StagedFile {
  rows: number;
  /** Column names as read (before the contract types them). */
  columns: string[];
}

/** A file that cannot be read: the message is one line and names what is wrong. */
export class RawFileError extends Error {
  override readonly name = "RawFileError";
}

/**
 * Reads one raw file with DuckDB into a staged Parquet file, in the file's row order, adding
 * `_floe_source_file` (the storage key). CSV values stay text: the table contract types them,
 * so a bad value becomes a quarantined row rather than a failed file.
 *
 * @example
 * await stageFile(con, { path: "/tmp/a.csv", format: "csv", source: "orders/2025-01-01/a.csv", target: "/stage/a.parquet" });
 */
export async function stageFile(
  con: DuckDBConnection,
  file: { path: string; format: RawFormat; source: string; target: string; csv?: CsvOptions },
): Promise<StagedFile> {
  const reader = await readerSql(file.path, file.format, file.csv ?? {});
  // No row number here: a window over the file would hold it whole. The staged file keeps the
  // source's row order, so readers number rows with read_parquet's file_row_number.
  const query = `SELECT *, ${literal(file.source)} AS _floe_source_file FROM ${reader}`;
  // DuckDB leaves a partial file behind when a read fails: write aside, rename when whole.
  const tmp = `${file.target}.${randomUUID()}.tmp`;
  try {
    const described = await con.runAndReadAll(`DESCRIBE ${query}`);
    const columns = described.getRowObjectsJS().map((r) => String(r.column_name)).filter((c) => !c.startsWith("_floe_"));
    // Snappy without dictionaries: staged text is mostly distinct values, where building a dictionary
    // only to drop it costs a third of the write.
    const copied = await con.runAndReadAll(`COPY (${query}) TO ${literal(tmp)} (FORMAT parquet, COMPRESSION snappy, DICTIONARY_SIZE_LIMIT 1, RETURN_STATS)`);
    const rows = Number(copied.getRowObjectsJS()[0]?.count ?? 0);
    await rename(tmp, file.target);
    return { rows, columns };
  } catch (e) {
    await rm(tmp, { force: true });
    throw new RawFileError(describeDuckDbError(e));
  }
}

async function readerSql(path: string, format: RawFormat, csv: CsvOptions): Promise<string> {
  const p = literal(path);
  switch (format) {
    case "parquet":
      return `read_parquet(${p})`;
    case "ndjson":
      return `read_json(${p}, format = 'newline_delimited')`;
    case "json":
      return `read_json(${p}, format = 'auto')`;
    case "csv": {
      const delimiter = csv.delimiter ?? ",";
      const quote = csv.quote ?? '"';
      const header = csv.header ?? true;
      const names = await csvHeader(path, delimiter, quote, header);
      const columns = `{${names.map((n) => `${literal(n)}: 'VARCHAR'`).join(", ")}}`;
      return `read_csv(${p}, auto_detect = false, header = ${header}, delim = ${literal(delimiter)}, quote = ${literal(quote)}, escape = ${literal(csv.escape ?? quote)}, strict_mode = true, columns = ${columns}, max_line_size = ${csv.maxLineBytes ?? 2 * 1024 * 1024})`;
    }
  }
}

/** The column names of a CSV file from its first line (read in JS: DuckDB's sniffer hides real errors). */
async function csvHeader(path: string, delimiter: string, quote: string, header: boolean): Promise<string[]> {
  const fh = await open(path, "r");
  try {
    // The first 64 KiB hold the header line of nearly every file; a longer one is read up to 1 MiB.
    for (const size of [1 << 16, 1 << 20]) {
      const buf = Buffer.alloc(size);
      const { bytesRead } = await fh.read(buf, 0, size, 0);
      if (bytesRead === 0) throw new RawFileError("empty file: expected a header line");
      const fields = headerFields(buf.subarray(0, bytesRead).toString("utf8"), delimiter, quote, bytesRead < size);
      if (fields === undefined && bytesRead === size && size < 1 << 20) continue;
      if (fields === undefined) throw new RawFileError("line 1: the header line does not end (unterminated quote or a line over 1 MiB)");
      if (!header) return fields.map((_, n) => `column${n}`);
      const seen = new Set<string>();
      return fields.map((f, n) => {
        const name = f.trim() === "" ? `column${n}` : f.trim();
        if (seen.has(name)) throw new RawFileError(`line 1: column \`${name}\` appears twice in the header`);
        seen.add(name);
        return name;
      });
    }
    throw new RawFileError("line 1: the header line does not end (unterminated quote or a line over 1 MiB)");
  } finally {
    await fh.close();
  }
}

/** The fields of the first line of `raw`, or undefined when it ends before the line does (`whole`: `raw` is the whole file). */
function headerFields(raw: string, delimiter: string, quote: string, whole: boolean): string[] | undefined {
  const text = raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw;
  const fields: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === quote && text[i + 1] === quote) {
        field += quote;
        i++;
      } else if (ch === quote) quoted = false;
      else field += ch;
    } else if (ch === quote) quoted = true;
    else if (ch === delimiter) {
      fields.push(field);
      field = "";
    } else if (ch === "\n" || ch === "\r") {
      fields.push(field);
      return fields;
    } else field += ch;
  }
  if (quoted || !whole) return undefined;
  fields.push(field); // a file that is only a header line, without a line end
  return fields;
}

/**
 * One line out of a DuckDB error: its kind, the line number for CSV errors, the reason;
 * never the (possibly megabytes long) "Original Line".
 *
 * @example
 * describeDuckDbError(new Error("Invalid Input Error: CSV Error on Line: 2\nOriginal Line: 1,a,x\nExpected Number of Columns: 2 Found: 3"));
 * // "line 2: expected 2 columns, found 3"
 */
export function describeDuckDbError(e: unknown): string {
  if (e instanceof RawFileError) return e.message;
  const message = e instanceof Error ? e.message : String(e);
  const lines = message.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const csvLine = /CSV Error on Line: (\d+)/.exec(message)?.[1];
  const columns = /Expected Number of Columns: (\d+) Found: (\d+)/.exec(message);
  const clip = (s: string): string => (s.length > 200 ? `${s.slice(0, 200)}…` : s);
  if (csvLine) {
    if (columns) return `line ${csvLine}: expected ${columns[1]} columns, found ${columns[2]}`;
    const reason = lines.find((l) => !l.startsWith("Invalid Input Error") && !l.startsWith("Original Line") && !l.startsWith("Possible") && !/^\*|^[-+]/.test(l) && l.length < 300 && l !== "");
    if (/Maximum line size/.test(message)) return `line ${csvLine}: ${clip(lines.find((l) => l.includes("Maximum line size")) ?? "line too long")} (raise csv.maxLineBytes to accept it)`;
    if (/unicode/i.test(message)) return `line ${csvLine}: not valid UTF-8`;
    return `line ${csvLine}: ${clip(reason ?? "unreadable CSV (is a quote left open?)")}`;
  }
  return clip((lines[0] ?? message).replace(/^(Invalid Input|IO|Binder|Parser|Conversion) Error: /, ""));
}

