import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { StateStore } from "../../src/state/index.js";
import { testDatabase } from "../helpers/pg.js";
import { randomDagTrial } from "./random-dag.js";

let store: StateStore;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  const db = await testDatabase();
  const home = mkdtempSync(join(tmpdir(), "floe-dag-"));
  store = await StateStore.open(db ? { url: db.url, home } : { home });
  cleanup = async () => {
    await store.close();
    await db?.drop();
    rmSync(home, { recursive: true, force: true });
  };
});
afterAll(() => cleanup());

describe("runner on random DAGs with failures (small scale; full scale in test:soak)", () => {
  for (const [seed, concurrency] of [[1, 1], [2, 2], [3, 8]] as const) {
    it(`200 assets, seed ${seed}, concurrency ${concurrency}`, () => randomDagTrial(store, 200, seed, concurrency));
  }
});
