import { afterAll, describe, expect, it } from "vitest";
import { pgAvailable } from "../helpers/pg.js";
import {
  KILL_FILES, Suite, growingTrial, killTrial, partWay, rng, sigtermMaterializeTrial, sigtermWorkerTrial, workersTrial,
} from "./harness.js";

// Issue 20, "Exactly once, for real", small: one or two trials of each fault, with real floe
// processes on PostgreSQL and default settings. The full counts run in
// test/soak/reliability.soak.test.ts (npm run test:soak). Each trial asserts, after every floe
// command that exited 0, that the rows it was asked to land are in lake.orders (read by icebird),
// and at its end that the table holds every landed row exactly once and the store is settled.

const available = await pgAvailable();
const suite = new Suite();
afterAll(() => suite.cleanup());


describe.skipIf(!available)("reliability (issue 20), small: kills and signals", () => {
  const rand = rng(20);

  describe("1. kill -9 of floe materialize, then floe materialize again", () => {
    it("at a random moment", async () => {
      const delay = 600 + Math.floor(rand() * 2_000);
      const k = await suite.run((t) => killTrial(t, "random", delay));
      console.log(`kill at random+${delay} ms: killed ${String(k.killed)}, ledger ${JSON.stringify(k.atKill)}`);
    }, 120_000);
    it("right after the first file is claimed", async () => {
      const k = await suite.run((t) => killTrial(t, "claim", Math.floor(rand() * 50)));
      expect(k.reached, "the kill came after a claim").toBe(true);
      expect(k.killed).toBe(true);
      expect(partWay(k, KILL_FILES), `ledger at kill: ${JSON.stringify(k.atKill)}`).toBe(true);
    }, 120_000);
    it("as the catalog pointer moves (the Iceberg commit)", async () => {
      const k = await suite.run((t) => killTrial(t, "commit", 0));
      expect(k.reached, "the commit landed before the process ended").toBe(true);
    }, 120_000);
  });

  it("2. a growing landing with kills between runs ends exact after a clean run", async () => {
    // seed 6 draws: day 1 killed at its first claim, day 1 again (takes over the dead claims), day 1 killed at random, day 2
    const { kills } = await suite.run((t) => growingTrial(t, 4, 6, 0.5));
    expect(kills.length).toBe(2);
    console.log(`growing: ${kills.length} kill(s): ${kills.map((k) => `${k.moment}+${k.delayMs} ${JSON.stringify(k.atKill)}`).join(" / ")}`);
  }, 180_000);

  it("3. three workers, one killed mid-run: its run is failed and requeued once, the survivors finish", async () => {
    const r = await suite.run((t) => workersTrial(t, 4, Math.floor(rand() * 150)));
    console.log(`three workers: killed run ${r.killedRun.slice(0, 8)} recovered; queue drained ${r.detectedMs} ms after the kill`);
  }, 180_000);

  describe("6. SIGTERM", () => {
    it("of a floe worker mid-ingestion: a restarted worker resumes the run, the table ends exact", async () => {
      const r = await suite.run((t) => sigtermWorkerTrial(t, 50, 300));
      expect(r.atSignal.PROCESSING ?? 0, `the signal came mid-ingestion: ${JSON.stringify(r.atSignal)}`).toBeGreaterThan(0);
      console.log(`SIGTERM worker: exit ${r.exit}, ledger at signal ${JSON.stringify(r.atSignal)}, at exit ${JSON.stringify(r.atExit)}; runs: ${r.runs}`);
    }, 180_000);
    it("of floe materialize mid-ingestion, then floe rerun --from-failure exits 0 with every row", async () => {
      const r = await suite.run((t) => sigtermMaterializeTrial(t, 50, 300));
      expect(r.atSignal.PROCESSING ?? 0, `the signal came mid-ingestion: ${JSON.stringify(r.atSignal)}`).toBeGreaterThan(0);
      expect(r.exit, "an interrupted materialize does not report success").not.toBe(0);
      console.log(`SIGTERM materialize: exit ${r.exit}, run ${r.status}, ledger at signal ${JSON.stringify(r.atSignal)}, at exit ${JSON.stringify(r.atExit)}; runs: ${r.runs}`);
    }, 180_000);
  });

});
