import { afterAll, describe, expect, it } from "vitest";
import { backfillKilledHalfway, backfillProject, killProject, killWorker, schedulerProject, threeWorkers, trials, twoSchedulers, workerProject } from "../cli/scale-trials.js";

// The proofs at full scale, with real `floe` processes on PostgreSQL.
const { setup, cleanup } = trials();
afterAll(cleanup);

describe("at process scale, full size", () => {
  it("two scheduler processes, a per-second cron for 30 s: exactly one run per tick", async () => {
    const { project, url } = await setup(schedulerProject);
    const r = await twoSchedulers(project.dir, url, 30);
    console.log(`schedulers: ${r.ticks} ticks, runs created per scheduler ${r.perScheduler.join(" + ")}`);
    expect(r.ticks).toBeGreaterThanOrEqual(28);
  }, 120_000);

  it("three worker processes drain 200 queued runs, each once, within the pool limit", async () => {
    const { project, url } = await setup(workerProject);
    const r = await threeWorkers(project.dir, url, 200, 50);
    console.log(`workers: runs per worker ${r.perWorker.join(" + ")}; most pool steps at once ${r.maxInPool} (sampled slots held ${r.maxSlotsHeld})`);
    expect(r.maxInPool).toBe(2);
  }, 300_000);

  for (const heartbeatMs of [200, 500, 1_000]) {
    it(`kill -9 a worker mid-run (heartbeat ${heartbeatMs} ms): recovered within three heartbeats`, async () => {
      const { project, url } = await setup(killProject);
      const r = await killWorker(project.dir, url, heartbeatMs);
      console.log(`kill -9 at heartbeat ${heartbeatMs} ms: failed ${r.staleForMs} ms after its last heartbeat, ${r.detectedAfterKillMs} ms after the kill`);
    }, 120_000);
  }

  it("a 90-day backfill over two chained pipelines survives kill -9 of every process halfway", async () => {
    const { project, url } = await setup(backfillProject);
    const r = await backfillKilledHalfway(project.dir, url, 90, 40);
    console.log(`backfill: runs by status at the kill ${JSON.stringify(r.atKill)}`);
  }, 600_000);
});
