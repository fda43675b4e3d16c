import { afterAll, describe, expect, it } from "vitest";
import { testDatabase } from "../helpers/pg.js";
import { ingestWithWorkers } from "../cli/ingest-workers.js";

const db = await testDatabase();
afterAll(() => db?.drop());

describe("4 worker processes ingesting one folder into Iceberg, full scale", () => {
  it("1,000 files: each ingested by exactly one run, every row in Iceberg once", async () => {
    const { filesByRun, commitRetries } = await ingestWithWorkers(db!.url, 1_000, 4);
    console.log(`files per raw step: ${filesByRun.join(", ")}; Iceberg commit retries: ${commitRetries}`);
    // Raw steps of one partition take turns (the partition lock): the first ingests every file,
    // the others find the partition done and report its batch; no run exits 0 with rows missing.
    expect(filesByRun.filter((n) => n > 0), "one raw step ingested the folder").toEqual([1_000]);
  }, 600_000);
});
