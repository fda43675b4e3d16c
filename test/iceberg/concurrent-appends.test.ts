import { afterAll, describe, it } from "vitest";
import { testDatabase } from "../helpers/pg.js";
import { concurrentAppends } from "./concurrent-appends.js";

// Small scale here; 25 appends per process in test/soak/iceberg.soak.test.ts.
const db = await testDatabase();
afterAll(() => db?.drop());

describe.skipIf(!db)("two processes appending to one Iceberg table", () => {
  it("5 appends each: 10 snapshots in one line of history, every row once", async () => {
    const { retries } = await concurrentAppends(db!.url, 5);
    console.log(`commit retries: ${retries}`);
  }, 120_000);
});
