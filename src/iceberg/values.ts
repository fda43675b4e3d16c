// Iceberg single-value binary serialization (spec Appendix D) for bounds and partition summaries,
// and the parsing of DuckDB's text statistics into those values.

import { decimalOf, type PrimitiveType } from "./schema.js";
import type { JsonObject } from "./json.js";

/** A value in its Iceberg "internal" form: int/date → number, long/time/timestamp(tz) → bigint µs or days, decimal → unscaled bigint. */
export type IcebergValue = boolean | number | bigint | string | Uint8Array;

const DAY_US = 86_400_000_000n;

/**
 * Days since 1970-01-01 of a proleptic Gregorian date (exact for any year).
 *
 * @example
 * daysFromCivil(2024, 1, 2) // → 19724
 */
export function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/**
 * The calendar date of a day number (inverse of daysFromCivil), as `YYYY-MM-DD`.
 *
 * @example
 * isoDate(19724) // → "2024-01-02"
 */
export function isoDate(days: number): string {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return `${String(y).padStart(4, "0")}-${String(m).padStart(2, "0")}-${String(d).padStart(2, "0")}`;
}

/**
 * Serializes a value per Iceberg's single-value binary format: int/date 4 bytes LE, long/time/
 * timestamp(tz) 8 bytes LE, float/double IEEE LE, string UTF-8, uuid 16 bytes big-endian,
 * decimal as minimal big-endian two's complement of the unscaled value, binary/fixed raw.
 *
 * @example
 * serializeValue("int", 5)                   // → Uint8Array [5, 0, 0, 0]
 * serializeValue("decimal(10, 2)", -125n)    // → Uint8Array [0x83]
 */
export function serializeValue(type: PrimitiveType | JsonObject, v: IcebergValue): Uint8Array {
  if (typeof type !== "string") throw new Error("nested types have no single-value serialization");
  if (decimalOf(type)) return twosComplement(BigInt(v as bigint));
  const b = Buffer.alloc(type === "boolean" ? 1 : type === "int" || type === "date" || type === "float" ? 4 : 8);
  switch (type) {
    case "boolean":
      b.writeUInt8(v ? 1 : 0);
      return b;
    case "int":
    case "date":
      b.writeInt32LE(Number(v));
      return b;
    case "long":
    case "time":
    case "timestamp":
    case "timestamptz":
      b.writeBigInt64LE(BigInt(v as bigint));
      return b;
    case "float":
      b.writeFloatLE(Number(v));
      return b;
    case "double":
      b.writeDoubleLE(Number(v));
      return b;
    case "string":
      return Buffer.from(String(v), "utf8");
    case "uuid":
      return typeof v === "string" ? Buffer.from(v.replace(/-/g, ""), "hex") : (v as Uint8Array);
    default:
      return v as Uint8Array; // binary, fixed
  }
}

/**
 * Reads a single-value serialization back (for tests and for carrying bounds).
 *
 * @example
 * deserializeValue("long", serializeValue("long", 7n)) // → 7n
 */
export function deserializeValue(type: PrimitiveType, bytes: Uint8Array): IcebergValue {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (decimalOf(type)) {
    if (b.length === 0) return 0n;
    let n = BigInt(`0x${b.toString("hex")}`);
    if ((b[0] as number) & 0x80) n -= 1n << BigInt(b.length * 8);
    return n;
  }
  switch (type) {
    case "boolean":
      return b[0] === 1;
    case "int":
    case "date":
      return b.readInt32LE();
    case "long":
    case "time":
    case "timestamp":
    case "timestamptz":
      return b.readBigInt64LE();
    case "float":
      return b.readFloatLE();
    case "double":
      return b.readDoubleLE();
    case "string":
      return b.toString("utf8");
    case "uuid": {
      const h = b.toString("hex");
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    }
    default:
      return new Uint8Array(b);
  }
}

function twosComplement(n: bigint): Uint8Array {
  let len = 1;
  while (n < -(1n << BigInt(len * 8 - 1)) || n >= 1n << BigInt(len * 8 - 1)) len++;
  const u = n < 0n ? (1n << BigInt(len * 8)) + n : n;
  return Buffer.from(u.toString(16).padStart(len * 2, "0"), "hex");
}

/** Java's and PyIceberg's default metrics mode: strings and binaries truncated to 16. */
export const TRUNCATE_LENGTH = 16;

/**
 * Parses one DuckDB min/max statistic (the text RETURN_STATS gives) into the internal value of
 * the Iceberg type, or undefined when it cannot be parsed (then no bound is written, which is
 * always valid). `bound` says which side: a string or binary bound longer than 16 is truncated,
 * and an upper one is incremented so that it stays ≥ the real maximum; floats widen ±0 to
 * -0.0 (lower) / +0.0 (upper), since DuckDB prints both zeros as "0.0".
 *
 * @example
 * boundFromStat("timestamp", "2024-01-01 10:00:00.5", "lower") // → 1704103200500000n
 * boundFromStat("decimal(10, 2)", "-5.00", "upper")            // → -500n
 */
export function boundFromStat(type: PrimitiveType | JsonObject, text: string, bound: "lower" | "upper"): IcebergValue | undefined {
  if (typeof type !== "string") return undefined;
  const dec = decimalOf(type);
  if (dec) {
    const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
    if (!m) return undefined;
    const frac = (m[3] ?? "").padEnd(dec.scale, "0");
    if (frac.length !== dec.scale) return undefined;
    const n = BigInt(`${m[2]}${frac}`);
    return m[1] === "-" ? -n : n;
  }
  switch (type) {
    case "boolean":
      return text === "1" || text === "true" ? true : text === "0" || text === "false" ? false : undefined;
    case "int":
      return /^-?\d+$/.test(text) ? Number(text) : undefined;
    case "long":
      return /^-?\d+$/.test(text) ? BigInt(text) : undefined;
    case "float":
    case "double": {
      const n = Number(text);
      if (text.trim() === "" || Number.isNaN(n)) return undefined;
      if (n === 0) return bound === "lower" ? -0 : 0;
      return type === "float" ? Math.fround(n) : n;
    }
    case "date": {
      const m = /^(\d{4,})-(\d\d)-(\d\d)$/.exec(text);
      return m ? daysFromCivil(Number(m[1]), Number(m[2]), Number(m[3])) : undefined;
    }
    case "time": {
      const m = /^(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/.exec(text);
      if (!m) return undefined;
      return (BigInt(Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3])) * 1_000_000n + BigInt((m[4] ?? "").padEnd(6, "0")));
    }
    case "timestamp":
    case "timestamptz":
      return parseTimestamp(text);
    case "string":
      return truncateString(text, bound);
    case "uuid":
      return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text) ? text.toLowerCase() : undefined;
    case "binary":
      return /^([0-9A-Fa-f]{2})*$/.test(text) ? truncateBinary(Buffer.from(text, "hex"), bound) : undefined;
    default:
      return undefined;
  }
}

/** `YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM]]` → µs since the epoch (UTC when an offset is given). */
function parseTimestamp(text: string): bigint | undefined {
  const m = /^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::?(\d\d))?)?$/.exec(text);
  if (!m) return undefined;
  const days = daysFromCivil(Number(m[1]), Number(m[2]), Number(m[3]));
  const secs = Number(m[4]) * 3600 + Number(m[5]) * 60 + Number(m[6]);
  const offset = m[8] ? (m[8] === "-" ? -1 : 1) * (Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60) : 0;
  return BigInt(days) * DAY_US + BigInt(secs - offset) * 1_000_000n + BigInt((m[7] ?? "").padEnd(6, "0"));
}

function truncateString(s: string, bound: "lower" | "upper"): string | undefined {
  const cps = Array.from(s);
  if (cps.length <= TRUNCATE_LENGTH) return s;
  const head = cps.slice(0, TRUNCATE_LENGTH);
  if (bound === "lower") return head.join("");
  // the smallest string above every string with this prefix: bump the last code point that can grow
  for (let i = head.length - 1; i >= 0; i--) {
    let cp = (head[i] as string).codePointAt(0) as number;
    cp = cp === 0xd7ff ? 0xe000 : cp + 1; // skip the surrogate range
    if (cp <= 0x10ffff) return head.slice(0, i).join("") + String.fromCodePoint(cp);
  }
  return undefined;
}

function truncateBinary(b: Uint8Array, bound: "lower" | "upper"): Uint8Array | undefined {
  if (b.length <= TRUNCATE_LENGTH) return b;
  const head = Uint8Array.from(b.subarray(0, TRUNCATE_LENGTH));
  if (bound === "lower") return head;
  for (let i = head.length - 1; i >= 0; i--) {
    if ((head[i] as number) < 0xff) {
      head[i] = (head[i] as number) + 1;
      return head.subarray(0, i + 1);
    }
  }
  return undefined;
}

/**
 * Orders two values of one Iceberg type as Iceberg does (strings by UTF-8 bytes, binaries
 * unsigned byte-wise).
 *
 * @example
 * compareValues("string", "a", "b") // → -1
 */
export function compareValues(type: PrimitiveType, a: IcebergValue, b: IcebergValue): number {
  if (typeof a === "string" && typeof b === "string") {
    return type === "uuid" ? Buffer.compare(serializeValue(type, a), serializeValue(type, b)) : Buffer.compare(Buffer.from(a), Buffer.from(b));
  }
  if (a instanceof Uint8Array && b instanceof Uint8Array) return Buffer.compare(a, b);
  if (typeof a === "boolean" || typeof b === "boolean") return Number(a) - Number(b);
  const x = a as number | bigint;
  const y = b as number | bigint;
  return x < y ? -1 : x > y ? 1 : 0;
}
