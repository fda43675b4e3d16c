// Shared set-up for the Iceberg tests: a file:// fetch for icebird, DuckDB, a local warehouse and
// a SQL catalog on PGlite.

import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { PGlite } from "@electric-sql/pglite";
import { avroMetadata, avroRead } from "icebird";
import { Kysely } from "kysely";
import { PGliteDialect } from "../../src/state/pglite-dialect.js";
import { icebergCatalogMigration, SqlCatalog, type IcebergCatalogTables } from "../../src/iceberg/sql-catalog.js";
import { localStorage } from "../../src/storage/local-storage.js";
import type { ObjectStorage } from "../../src/storage/types.js";

// icebird reads through global fetch, and Node's fetch has no file:// (Range requests included).
const realFetch = globalThis.fetch;
globalThis.fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
  const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
  if (!url.startsWith("file://")) return realFetch(input, init);
  const path = fileURLToPath(url);
  if (!existsSync(path)) return new Response("not found", { status: 404, statusText: "Not Found" });
  const buf = readFileSync(path);
  const range = new Headers(init?.headers).get("Range");
  const m = range ? /bytes=(\d+)-(\d*)/.exec(range) : null;
  if (m) {
    const start = Number(m[1]);
    const end = m[2] ? Math.min(Number(m[2]), buf.length - 1) : buf.length - 1;
    return new Response(buf.subarray(start, end + 1), { status: 206 });
  }
  return new Response(buf, { status: 200 });
};

export interface Env {
  dir: string;
  storage: ObjectStorage;
  duck: DuckDBInstance;
  con: DuckDBConnection;
  close(): Promise<void>;
}

/**
 * A temp warehouse folder with local storage and an in-memory DuckDB (session zone deliberately not UTC).
 *
 * @example
 * const env = await openEnv(); afterAll(() => env.close());
 */
export async function openEnv(): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), "floe-ice-test-"));
  const storage = localStorage({ root: join(dir, "warehouse") });
  const duck = await DuckDBInstance.create(":memory:", { threads: "2" });
  const con = await duck.connect();
  await con.run("SET TimeZone = 'America/New_York'");
  return {
    dir,
    storage,
    duck,
    con,
    async close() {
      con.closeSync();
      duck.closeSync();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A migrated SQL catalog on a fresh in-memory PGlite.
 *
 * @example
 * const { catalog, db } = await pgliteCatalog(); afterAll(() => db.destroy());
 */
export async function pgliteCatalog(name = "floe"): Promise<{ catalog: SqlCatalog; db: Kysely<IcebergCatalogTables> }> {
  const db = new Kysely<IcebergCatalogTables>({ dialect: new PGliteDialect(new PGlite()) });
  await icebergCatalogMigration.up(db as unknown as Kysely<unknown>);
  return { catalog: new SqlCatalog(db, name), db };
}

/**
 * Rows of a DuckDB query in a comparable form (Dates as ISO strings, bigints as "<n>n", null for missing).
 *
 * @example
 * expect(norm(await icebergRead(...))).toEqual(norm(await rows(con, "SELECT ...")));
 */
export function norm(rows: ReadonlyArray<Record<string, unknown>>, key: string, columns: readonly string[]): Array<Record<string, unknown>> {
  const value = (v: unknown): unknown =>
    v === undefined || v === null ? null : v instanceof Date ? v.toISOString() : typeof v === "bigint" ? `${v}n` : v;
  return rows
    .map((r) => Object.fromEntries(columns.map((c) => [c, value(r[c])])))
    .sort((a, b) => String(a[key]).localeCompare(String(b[key]), "en", { numeric: true }));
}

/**
 * Runs a query and returns JS row objects.
 *
 * @example
 * const r = await rows(con, "SELECT 1 AS x"); // [{ x: 1 }]
 */
export async function rows(con: DuckDBConnection, q: string): Promise<Array<Record<string, unknown>>> {
  return (await con.runAndReadAll(q)).getRowObjectsJS();
}

/**
 * Decodes an Avro file with icebird's reader (independent of avsc): header metadata and records.
 *
 * @example
 * const { metadata, records } = readAvro(path);
 */
export function readAvro(path: string): { metadata: Record<string, unknown>; records: Array<Record<string, unknown>> } {
  const buf = readFileSync(path);
  const reader = { view: new DataView(buf.buffer, buf.byteOffset, buf.byteLength), offset: 0 };
  const { metadata, syncMarker } = avroMetadata(reader);
  return { metadata, records: avroRead({ reader, metadata, syncMarker }) };
}

/**
 * Every file under a folder, recursively (relative paths, sorted).
 *
 * @example
 * listFiles(join(env.dir, "warehouse", "db", "t", "data"))
 */
export function listFiles(root: string): string[] {
  if (!existsSync(root)) return [];
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p, `${rel}${name}/`);
      else out.push(`${rel}${name}`);
    }
  };
  walk(root, "");
  return out.sort();
}
