import { randomBytes } from "node:crypto";
import pg from "pg";

/** The server tests use: FLOE_TEST_DATABASE_URL, else the local default. */
export const baseUrl = process.env.FLOE_TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test";

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: baseUrl, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

let available: Promise<boolean> | undefined;

/**
 * Whether the test PostgreSQL server answers (checked once per process). Throws instead of
 * answering false under CI, where the server is required.
 *
 * @example
 * describe.skipIf(!(await pgAvailable()))("on PostgreSQL", () => { ... });
 */
export function pgAvailable(): Promise<boolean> {
  available ??= withAdmin(() => Promise.resolve(true)).catch((e: unknown) => {
    if (process.env.CI) throw new Error(`PostgreSQL for tests is not reachable at ${baseUrl}: ${String(e)}`);
    return false;
  });
  return available;
}

/**
 * A fresh, uniquely named database (`floe_t_<random>`) on the test server, or undefined when
 * the server is unreachable outside CI. `drop()` removes it, closing whatever still uses it.
 *
 * @example
 * const db = await testDatabase();
 * const store = db && (await StateStore.open({ url: db.url, home }));
 * afterAll(async () => { await store?.close(); await db?.drop(); });
 */
export async function testDatabase(): Promise<{ url: string; drop(): Promise<void> } | undefined> {
  if (!(await pgAvailable())) return undefined;
  const name = `floe_t_${randomBytes(6).toString("hex")}`;
  await withAdmin((c) => c.query(`create database ${name}`));
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => withAdmin((c) => c.query(`drop database if exists ${name} with (force)`)).then(() => undefined),
  };
}

/**
 * The rows of one query on a database, over a connection of its own (for asserting what a
 * process under test left in the store).
 *
 * @example
 * const rows = await queryRows<{ n: string }>(db.url, "select count(*)::text as n from runs");
 */
export async function queryRows<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}
