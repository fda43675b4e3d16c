import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StateStore } from "../../src/state/index.js";
import { testDatabase } from "./pg.js";

/**
 * A state store for an engine-agnostic test: a fresh database on the test PostgreSQL when it is
 * reachable, else an embedded PGlite store in a temporary folder. `close()` removes either.
 *
 * @example
 * let t: Awaited<ReturnType<typeof testStore>>;
 * beforeAll(async () => (t = await testStore("runner")));
 * afterAll(() => t.close());
 */
export async function testStore(prefix: string): Promise<{ store: StateStore; close(): Promise<void> }> {
  const db = await testDatabase();
  if (db) {
    const store = await StateStore.open({ url: db.url, home: "/nonexistent" });
    return { store, close: async () => { await store.close(); await db.drop(); } };
  }
  const home = mkdtempSync(join(tmpdir(), `floe-${prefix}-`));
  const store = await StateStore.open({ home });
  return { store, close: async () => { await store.close(); rmSync(home, { recursive: true, force: true }); } };
}

/**
 * Several state stores on one fresh test database, as several processes would have: `open()`
 * adds one, `close()` closes them all and drops the database. `db` is undefined when no
 * PostgreSQL answers (outside CI only): skip the suite then.
 *
 * @example
 * const shared = await storesOnOneDatabase();
 * afterAll(() => shared.close());
 * const [a, b] = [await shared.open(), await shared.open()];
 */
export async function storesOnOneDatabase(): Promise<{ db: { url: string } | undefined; stores: StateStore[]; open(): Promise<StateStore>; close(): Promise<void> }> {
  const db = await testDatabase();
  const stores: StateStore[] = [];
  return {
    db,
    stores,
    async open() {
      const s = await StateStore.open({ url: db!.url, home: "/nonexistent" });
      stores.push(s);
      return s;
    },
    async close() {
      for (const s of stores) await s.close();
      await db?.drop();
    },
  };
}
