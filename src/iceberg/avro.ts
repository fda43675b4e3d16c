// Avro object container files for manifests and manifest lists, over avsc. Two avsc traps are
// avoided here: it drops `field-id`/`element-id` when it writes a schema into the header (so the
// header is written by us, with the schema JSON verbatim), and its default `long` cannot hold
// 64-bit ids (so longs are bigints, both ways).

import { randomBytes } from "node:crypto";
import { inflateRawSync } from "node:zlib";
import avro from "avsc";
import { parseJson, type JsonObject, type JsonValue } from "./json.js";

type AvscSchema = Parameters<typeof avro.Type.forSchema>[0];

const MAGIC = Buffer.from([0x4f, 0x62, 0x6a, 0x01]); // "Obj" 1

const bigintLong = avro.types.LongType.__with({
  fromBuffer: (b: Buffer): bigint => b.readBigInt64LE(),
  toBuffer: (n: bigint): Buffer => {
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(n));
    return b;
  },
  fromJSON: (v: number | string): bigint => BigInt(v),
  toJSON: (n: bigint): number => Number(n),
  isValid: (n: unknown): boolean => typeof n === "bigint",
  compare: (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0),
});

const headerType = avro.Type.forSchema({
  type: "record",
  name: "org.apache.avro.file.Header",
  fields: [
    { name: "magic", type: { type: "fixed", name: "Magic", size: 4 } },
    { name: "meta", type: { type: "map", values: "bytes" } },
    { name: "sync", type: { type: "fixed", name: "Sync", size: 16 } },
  ],
});
const plainLong = avro.Type.forSchema("long");

/**
 * An avsc type for a schema, with 64-bit longs as bigint and null-unions unwrapped.
 *
 * @example
 * const t = avroType({ type: "record", name: "r", fields: [{ name: "id", type: "long", "field-id": 1 }] });
 * t.toBuffer({ id: 2n ** 62n });
 */
export function avroType(schema: JsonObject): avro.Type {
  return avro.Type.forSchema(schema as AvscSchema, { registry: { long: bigintLong }, wrapUnions: "auto" });
}

/**
 * Encodes records as one Avro container file (codec null, a single block). The header carries
 * `avro.schema` as the given JSON text (field ids kept), `avro.codec` = "null", and `metadata`.
 *
 * @example
 * const bytes = encodeAvroFile(schema, [{ id: 1n }], { "format-version": "2" });
 */
export function encodeAvroFile(schema: JsonObject, records: readonly unknown[], metadata: Record<string, string>): Uint8Array {
  const type = avroType(schema);
  const sync = randomBytes(16);
  const meta: Record<string, Buffer> = { "avro.schema": Buffer.from(JSON.stringify(schema)), "avro.codec": Buffer.from("null") };
  for (const [k, v] of Object.entries(metadata)) meta[k] = Buffer.from(v);
  const parts: Buffer[] = [headerType.toBuffer({ magic: MAGIC, meta, sync })];
  if (records.length > 0) {
    const payload = Buffer.concat(records.map((r) => type.toBuffer(r)));
    parts.push(plainLong.toBuffer(records.length), plainLong.toBuffer(payload.length), payload, sync);
  }
  return Buffer.concat(parts);
}

/** A decoded container file: its header schema (as written, with field ids), metadata and records. */
export interface AvroFile {
  schema: JsonObject;
  metadata: Record<string, string>;
  records: unknown[];
}

/**
 * Decodes an Avro container file (codec null or deflate), longs as bigint.
 *
 * @example
 * const { metadata, records } = decodeAvroFile(await storage.read(key));
 */
export function decodeAvroFile(bytes: Uint8Array): AvroFile {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const head = headerType.decode(buf, 0);
  const header = head.value as { magic: Buffer; meta: Record<string, Buffer>; sync: Buffer } | undefined;
  if (!header || !header.magic.equals(MAGIC)) throw new Error("not an Avro container file");
  const metadata = Object.fromEntries(Object.entries(header.meta).map(([k, v]) => [k, v.toString("utf8")]));
  const schemaJson: JsonValue = parseJson(metadata["avro.schema"] ?? "null");
  if (schemaJson === null || typeof schemaJson !== "object" || Array.isArray(schemaJson)) throw new Error("Avro file without a record schema");
  const type = avroType(schemaJson);
  const codec = metadata["avro.codec"] ?? "null";
  const records: unknown[] = [];
  let pos = head.offset;
  while (pos < buf.length) {
    const count = plainLong.decode(buf, pos);
    const size = plainLong.decode(buf, count.offset);
    const start = size.offset;
    const end = start + Number(size.value);
    let block = buf.subarray(start, end);
    if (codec === "deflate") block = inflateRawSync(block);
    else if (codec !== "null") throw new Error(`unsupported Avro codec ${codec}`);
    let at = 0;
    for (let i = 0; i < Number(count.value); i++) {
      const r = type.decode(block, at);
      records.push(r.value);
      at = r.offset;
    }
    pos = end + 16;
  }
  return { schema: schemaJson, metadata, records };
}
