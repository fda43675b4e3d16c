import { open, type FileHandle } from "node:fs/promises";

/** A physical line longer than the limit: its 1-based line number and its bytes with its line end (as DuckDB counts them). */
export interface LongLine {
  line: number;
  bytes: number;
}

const LF = 0x0a;
const CR = 0x0d;
/** Bytes read per look-back: a window's last line end is usually within a few dozen bytes of its end. */
const CHUNK = 64 * 1024;

/**
 * The first physical line of a file, from byte `start` on, that DuckDB's `max_line_size` rejects:
 * one whose bytes with its line end (`\n`, `\r\n` or a lone `\r`; an unterminated last line counts
 * one) are over `maxLineBytes`. Such a line is what DuckDB 1.5's parallel CSV reader can drop
 * silently, with the rows after it in its buffer of 16 x max_line_size (bench/duckdb-long-line.md).
 *
 * It reads a few KiB per `maxLineBytes` of file, not the file: from each line start it looks back
 * from `maxLineBytes` further on for the last line end; finding one, every line before it is short
 * enough and the next window starts after it; finding none, the line at the window's start is too
 * long. Only then is the file read up to that line, to number it. A quoted field may hold line
 * ends, so a record can be longer than its physical lines; DuckDB reports those itself.
 *
 * @example
 * await findLongLine("/landing/a.csv", 2 * 1024 * 1024, 0); // undefined, or { line: 4, bytes: 41943043 }
 */
export async function findLongLine(path: string, maxLineBytes: number, start: number): Promise<LongLine | undefined> {
  if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 1) return undefined;
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, maxLineBytes + 1));
    let p = start;
    while (size - p >= maxLineBytes) {
      const end = await lastLineEnd(fh, buf, p, p + maxLineBytes - 1, size);
      if (end === undefined) return { line: await lineNumber(fh, p), bytes: await lineLength(fh, p, size) };
      p = end + 1;
    }
    return undefined;
  } finally {
    await fh.close();
  }
}

/** The last byte in [lo, hi] that ends a line (`\n`, or a `\r` not followed by `\n`), looking back from hi. */
async function lastLineEnd(fh: FileHandle, buf: Buffer, lo: number, hi: number, size: number): Promise<number | undefined> {
  // Each read takes one byte past the bytes it examines, which tells whether a `\r` there ends a
  // line of its own or starts a `\r\n`.
  for (let top = hi; top >= lo; ) {
    const from = Math.max(lo, top - buf.length + 2);
    const n = Math.min(top + 1, size - 1) - from + 1;
    await readFully(fh, buf, n, from);
    // Native look-backs: the last `\n` or `\r` at or before k; a `\r` followed by `\n` is not a line end.
    for (let k = top - from; k >= 0; ) {
      const i = Math.max(buf.lastIndexOf(LF, k), buf.lastIndexOf(CR, k));
      if (i === -1) break;
      if (buf[i] === LF || (i + 1 < n ? buf[i + 1] : undefined) !== LF) return from + i;
      k = i - 1;
    }
    top = from - 1;
  }
  return undefined;
}

/** The 1-based number of the physical line that starts at byte `at` (failure path only: reads [0, at)). */
async function lineNumber(fh: FileHandle, at: number): Promise<number> {
  const buf = Buffer.allocUnsafe(1 << 20);
  let line = 1;
  let prev = -1;
  for (let pos = 0; pos < at; ) {
    const n = Math.min(buf.length, at - pos);
    await readFully(fh, buf, n, pos);
    for (let i = 0; i < n; i++) {
      const b = buf[i]!;
      if (b === LF || (prev === CR && b !== LF)) line++;
      prev = b;
    }
    pos += n;
  }
  return prev === CR ? line + 1 : line;
}

/** The bytes of the line starting at byte `at`, with its line end as DuckDB counts it (failure path only). */
async function lineLength(fh: FileHandle, at: number, size: number): Promise<number> {
  const buf = Buffer.allocUnsafe(1 << 20);
  for (let pos = at; pos < size; ) {
    const n = Math.min(buf.length, size - pos);
    await readFully(fh, buf, n, pos);
    const lf = buf.subarray(0, n).indexOf(LF);
    const cr = buf.subarray(0, n).indexOf(CR);
    const end = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr);
    if (end !== -1) {
      const bytes = pos + end - at + 1;
      if (buf[end] !== CR) return bytes;
      // `\r\n` counts two bytes; the `\n` may be the first byte of the next read
      const next = end + 1 < n ? buf[end + 1] : pos + end + 1 < size ? (await readFully(fh, buf, 1, pos + end + 1), buf[0]) : undefined;
      return next === LF ? bytes + 1 : bytes;
    }
    pos += n;
  }
  return size - at + 1; // an unterminated last line counts one byte for its missing line end
}

async function readFully(fh: FileHandle, buf: Buffer, n: number, position: number): Promise<void> {
  let got = 0;
  while (got < n) {
    const { bytesRead } = await fh.read(buf, got, n - got, position + got);
    if (bytesRead === 0) throw new Error(`file shrank while it was read (at byte ${position + got})`);
    got += bytesRead;
  }
}
