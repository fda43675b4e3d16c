import { randomUUID } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import type { DuckDBConnection } from "@duckdb/node-api";
import { findLongLine } from "./long-line.js";
import { literal } from "./sql.js";

export type RawFormat = "csv" | "json" | "ndjson" | "parquet";

/** CSV dialect, always explicit: floe never guesses a dialect from the data. */
export interface CsvOptions {
  delimiter?: string;
  quote?: string;
  escape?: string;
  /** Default true. Without a header, columns are named column0, column1, … */
  header?: boolean;
  /** Longest accepted line in bytes, its line end included (default 2 MiB, as DuckDB). */
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
      const { names, end } = await csvHeader(path, delimiter, quote, header);
      const maxLineBytes = csv.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
      // DuckDB 1.5's parallel reader can drop a line over max_line_size without an error, with the
      // rows after it in its buffer (16 x max_line_size; bench/duckdb-long-line.md): such a line
      // fails the file here first. The header is not held to max_line_size, by DuckDB either.
      const long = await findLongLine(path, maxLineBytes, header ? end : 0);
      if (long) {
        const [is, max] = [formatBytes(long.bytes), formatBytes(maxLineBytes)];
        const [a, b] = is === max ? [`${long.bytes} bytes`, `${maxLineBytes} bytes`] : [is, max];
        throw new RawFileError(`line ${long.line} is ${a}, over the maximum line size of ${b}; raise csv.maxLineBytes (now ${maxLineBytes}) or fix the file`);
      }
      const columns = `{${names.map((n) => `${literal(n)}: 'VARCHAR'`).join(", ")}}`;
      return `read_csv(${p}, auto_detect = false, header = ${header}, delim = ${literal(delimiter)}, quote = ${literal(quote)}, escape = ${literal(csv.escape ?? quote)}, strict_mode = true, columns = ${columns}, max_line_size = ${maxLineBytes})`;
    }
  }
}

const DEFAULT_MAX_LINE_BYTES = 2 * 1024 * 1024;

/** A byte count for a message: `40 MiB`, `2.5 MiB`, `900 bytes` (a line's length is shown to the byte under 1 MiB). */
function formatBytes(bytes: number): string {
  return bytes >= 1 << 20 ? `${Number((bytes / (1 << 20)).toFixed(1))} MiB` : `${bytes} bytes`;
}

/**
 * The column names of a CSV file from its first record (read in JS: DuckDB's sniffer hides real
 * errors), and the byte offset where that record ends, its line end included.
 */
async function csvHeader(path: string, delimiter: string, quote: string, header: boolean): Promise<{ names: string[]; end: number }> {
  const fh = await open(path, "r");
  try {
    // The first 64 KiB hold the header line of nearly every file; a longer one is read up to 1 MiB.
    for (const size of [1 << 16, 1 << 20]) {
      const buf = Buffer.alloc(size);
      const { bytesRead } = await fh.read(buf, 0, size, 0);
      if (bytesRead === 0) throw new RawFileError("empty file: expected a header line");
      const text = buf.subarray(0, bytesRead).toString("utf8");
      const parsed = headerFields(text, delimiter, quote, bytesRead < size);
      if (parsed === undefined && bytesRead === size && size < 1 << 20) continue;
      if (parsed === undefined) throw new RawFileError("line 1: the header line does not end (unterminated quote or a line over 1 MiB)");
      const end = Buffer.byteLength(text.slice(0, parsed.end));
      if (!header) return { names: parsed.fields.map((_, n) => `column${n}`), end };
      const seen = new Set<string>();
      const names = parsed.fields.map((f, n) => {
        const name = f.trim() === "" ? `column${n}` : f.trim();
        if (seen.has(name)) throw new RawFileError(`line 1: column \`${name}\` appears twice in the header`);
        seen.add(name);
        return name;
      });
      return { names, end };
    }
    throw new RawFileError("line 1: the header line does not end (unterminated quote or a line over 1 MiB)");
  } finally {
    await fh.close();
  }
}

/**
 * The fields of the first record of `raw` and the index in `raw` after its line end, or undefined
 * when `raw` ends before the record does (`whole`: `raw` is the whole file).
 */
function headerFields(raw: string, delimiter: string, quote: string, whole: boolean): { fields: string[]; end: number } | undefined {
  const bom = raw.charCodeAt(0) === 0xfeff ? 1 : 0;
  const text = bom ? raw.slice(1) : raw;
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
      return { fields, end: bom + i + (ch === "\r" && text[i + 1] === "\n" ? 2 : 1) };
    } else field += ch;
  }
  if (quoted || !whole) return undefined;
  fields.push(field); // a file that is only a header line, without a line end
  return { fields, end: raw.length };
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

