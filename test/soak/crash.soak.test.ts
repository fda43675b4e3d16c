import { afterAll, describe, it } from "vitest";
import { rng } from "../../bench/lib.js";
import { testDatabase } from "../helpers/pg.js";
import { expect } from "vitest";
import { crashProject, crashTrial, partWay } from "../cli/crash-trial.js";

const db = await testDatabase();
const project = crashProject();
afterAll(async () => {
  project.remove();
  await db?.drop();
});

describe("kill -9 during ingestion, 10 trials at random points", () => {
  const rand = rng(2026);
  const states: Array<Record<string, number>> = [];
  for (let t = 0; t < 10; t++) {
    // even trials: at a random time from start; odd trials: within 100 ms of the first claim (40 local files ingest in about 150 ms now)
    const claimed = t % 2 === 1;
    const killAfter = claimed ? Math.floor(rand() * 100) : 300 + Math.floor(rand() * 2_500);
    it(`trial ${t + 1}: kill ${killAfter} ms after ${claimed ? "the first claim" : "start"}`, async () => {
      const { atKill } = await crashTrial(project.dir, db!.url, `2025-03-${String(t + 1).padStart(2, "0")}`, killAfter, claimed ? "claim" : "start");
      states.push(atKill);
      console.log(`trial ${t + 1}: kill ${killAfter} ms after ${claimed ? "the first claim" : "start"} left ${JSON.stringify(atKill)}`);
    }, 120_000);
  }
  for (let t = 0; t < 5; t++) {
    it(`Iceberg trial ${t + 1}: kill as the commit lands`, async () => {
      const r = await crashTrial(project.dir, db!.url, `2025-04-${String(t + 1).padStart(2, "0")}`, Math.floor(rand() * 5), "commit");
      expect(r.committedAtKill).toBe(true);
    }, 120_000);
  }
  it("the kills landed part-way through ingestion in several trials", () => {
    expect(states.filter(partWay).length).toBeGreaterThanOrEqual(4);
    expect(states.filter((s) => (s.PROCESSING ?? 0) > 0).length).toBeGreaterThanOrEqual(3);
  });
});
