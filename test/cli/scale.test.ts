import { afterAll, describe, expect, it } from "vitest";
import { testDatabase } from "../helpers/pg.js";
import { backfillKilledHalfway, backfillProject, killProject, killWorker, schedulerProject, threeWorkers, trials, twoSchedulers, workerProject } from "./scale-trials.js";

// The proofs with real `floe` processes on PostgreSQL, at small scale (test/soak runs them at full scale).
const available = await testDatabase();
await available?.drop();
const { setup, cleanup } = trials();
afterAll(cleanup);

describe.skipIf(!available)("at process scale", () => {
  it("two scheduler processes on one database run each per-second tick once", async () => {
    const { project, url } = await setup(schedulerProject);
    const { ticks } = await twoSchedulers(project.dir, url, 5);
    expect(ticks).toBeGreaterThanOrEqual(3);
  });

  it("three worker processes drain 30 queued runs, each once, within the pool limit", async () => {
    const { project, url } = await setup(workerProject);
    const { maxInPool } = await threeWorkers(project.dir, url, 30, 100);
    expect(maxInPool).toBe(2); // the limit was reached, so the pool was what held steps back
  });

  it("a worker killed with SIGKILL mid-run: another worker on the host finds its pid gone and recovers the run within one poll", async () => {
    const { project, url } = await setup(killProject);
    await killWorker(project.dir, url, 500);
  });

  it("a backfill over chained pipelines survives killing every process halfway", async () => {
    const { project, url } = await setup(backfillProject);
    await backfillKilledHalfway(project.dir, url, 6, 150);
  });
});
