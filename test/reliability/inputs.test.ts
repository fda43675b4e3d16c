import { afterAll, describe, expect, it } from "vitest";
import { pgAvailable } from "../helpers/pg.js";
import {
  BAD_INPUTS, Suite, besideWorkerTrial, concurrentTrial, corruptTrial, deletedFileTrial, outageTrial, rng,
} from "./harness.js";

// Issue 20, "Exactly once, for real", small: one or two trials of each fault, with real floe
// processes on PostgreSQL and default settings. The full counts run in
// test/soak/reliability.soak.test.ts (npm run test:soak). Each trial asserts, after every floe
// command that exited 0, that the rows it was asked to land are in lake.orders (read by icebird),
// and at its end that the table holds every landed row exactly once and the store is settled.

const available = await pgAvailable();
const suite = new Suite();
afterAll(() => suite.cleanup());


describe.skipIf(!available)("reliability (issue 20), small: inputs, neighbours, outages", () => {
  const rand = rng(20);

  it("4. floe materialize and floe rerun beside an idle floe worker: each run started once, by its command", async () => {
    await suite.run((t) => besideWorkerTrial(t));
  }, 120_000);

  describe("5. corrupt input fails naming the file; fixed, the next run lands every row once", () => {
    it("CSV: unterminated quote, too many columns, non-UTF-8, empty, truncated; header-only and a folder land", async () => {
      const { messages } = await suite.run((t) => corruptTrial(t, BAD_INPUTS.filter((b) => b.format === "csv")));
      console.log(`corrupt CSV messages: ${JSON.stringify(messages)}`);
    }, 120_000);
    it("Parquet: a truncated file", async () => {
      await suite.run((t) => corruptTrial(t, BAD_INPUTS.filter((b) => b.name === "parquet: truncated file")), "parquet");
    }, 120_000);
  });

  describe("7. the database refuses connections for 10 s", () => {
    // an idle worker through an outage: test/cli/db-outage.test.ts here, and the soak
    it("with the worker mid-run: it survives, the run succeeds, rows exact", async () => {
      await suite.run((t) => outageTrial(t, true, 10_000, 300));
    }, 180_000);
  });

  it("8. a duplicate-id file fails checks.unique; deleted, the next run holds exactly the remaining rows", async () => {
    // (the soak also deletes it after the day was appended to lake.orders)
    const { warnings } = await suite.run((t) => deletedFileTrial(t, false));
    expect(warnings.some((w) => w.includes("zz-duplicate.csv")), `the deletion is reported: ${JSON.stringify(warnings)}`).toBe(true);
  }, 180_000);

  it("9. a second floe materialize of the same day at once: each exit 0 has landed every row", async () => {
    // 600 files: two claim batches, so the second process takes the second batch while the first holds the first
    const r = await suite.run((t) => concurrentTrial(t, 600, 0));
    console.log(`concurrent: exits ${r.codes.join(", ")}${r.errors.length ? `; ${r.errors.join(" | ")}` : ""}`);
  }, 120_000);
});
