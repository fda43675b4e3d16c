import { afterAll, beforeAll, describe, it } from "vitest";
import { StateStore } from "../../src/state/index.js";
import { testDatabase } from "../helpers/pg.js";
import { randomDagTrial } from "../runner/random-dag.js";

// Full scale: 20 random DAGs of 2,000 assets each on real PostgreSQL.
let store: StateStore;
let drop: () => Promise<void>;
beforeAll(async () => {
  const db = await testDatabase();
  if (!db) throw new Error("the soak needs PostgreSQL (FLOE_TEST_DATABASE_URL)");
  store = await StateStore.open({ url: db.url, home: "/nonexistent" });
  drop = db.drop;
});
afterAll(async () => {
  await store.close();
  await drop();
});

describe("runner soak", () => {
  for (let seed = 100; seed < 120; seed++) {
    it(`2,000 assets, seed ${seed}`, () => randomDagTrial(store, 2_000, seed, 1 + (seed % 8)), 120_000);
  }
});
