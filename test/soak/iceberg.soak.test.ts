import { afterAll, describe, it } from "vitest";
import { testDatabase } from "../helpers/pg.js";
import { concurrentAppends } from "../iceberg/concurrent-appends.js";

const db = await testDatabase();
afterAll(() => db?.drop());

describe("two processes appending to one Iceberg table, full scale", () => {
  it("25 appends each: 50 snapshots, nothing lost", async () => {
    const { retries } = await concurrentAppends(db!.url, 25);
    console.log(`commit retries over 50 appends: ${retries}`);
  }, 300_000);
});
