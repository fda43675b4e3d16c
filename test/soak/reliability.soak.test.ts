import { afterAll, describe, expect, it } from "vitest";
import { pgAvailable } from "../helpers/pg.js";
import {
  BAD_INPUTS, KILL_FILES, MANY_FILES, Suite, besideWorkerTrial, concurrentTrial, corruptTrial, deletedFileTrial, growingTrial, killTrial, outageTrial, partWay, rng, sigtermMaterializeTrial, sigtermWorkerTrial, workersTrial, type KillResult, type Moment,
} from "../reliability/harness.js";

// Issue 20, "Exactly once, for real", at full scale (npm run test:soak): the trials of
// test/reliability/reliability.test.ts, many times, at seeded random moments. Every trial has its
// own database and project; every floe command that exits 0 is checked to have landed its rows.

const available = await pgAvailable();
const suite = new Suite();
afterAll(() => suite.cleanup());


const KILL_TRIALS = 20;

describe.skipIf(!available)("reliability (issue 20), soak", () => {
  const rand = rng(2020);

  describe("1. kill -9 of floe materialize, then floe materialize again", () => {
    const results = new Map<Moment, KillResult[]>([["random", []], ["claim", []], ["commit", []]]);
    for (const moment of ["random", "claim", "commit"] as const) {
      for (let i = 0; i < KILL_TRIALS; i++) {
        // random: anywhere from start-up to about the end (a run takes 2-3 s on a quiet machine);
        // claim: within 100 ms of the first claim; commit: within 5 ms of the catalog pointer moving
        const delay = moment === "random" ? 200 + Math.floor(rand() * 2_300) : moment === "claim" ? Math.floor(rand() * 100) : Math.floor(rand() * 5);
        it(`${moment} trial ${i + 1}: kill ${delay} ms after ${moment === "random" ? "start" : moment === "claim" ? "the first claim" : "the commit"}`, async () => {
          const k = await suite.run((t) => killTrial(t, moment, delay));
          results.get(moment)!.push(k);
          console.log(`kill at ${moment}+${delay} ms: reached ${String(k.reached)}, killed ${String(k.killed)}, ledger ${JSON.stringify(k.atKill)}`);
        }, 180_000);
      }
    }
    // 600 files: two claim batches in one step; killed once the first batch's rows are recorded
    // (its files still PROCESSING until the step commits), so the next run takes over both
    const recorded: KillResult[] = [];
    for (let i = 0; i < 10; i++) {
      const delay = Math.floor(rand() * 300);
      it(`recorded trial ${i + 1}: kill ${delay} ms after the first batch was recorded (${MANY_FILES} files)`, async () => {
        const k = await suite.run((t) => killTrial(t, "recorded", delay, MANY_FILES, 10));
        recorded.push(k);
        console.log(`kill at recorded+${delay} ms: reached ${String(k.reached)}, killed ${String(k.killed)}, ledger ${JSON.stringify(k.atKill)}`);
      }, 240_000);
    }
    it("the kills landed where they were aimed", () => {
      expect(recorded.filter((k) => k.reached && k.killed && (k.atKill.PROCESSING ?? 0) > 0).length, "kills with a recorded batch pending").toBeGreaterThanOrEqual(8);
      const claim = results.get("claim")!;
      const commit = results.get("commit")!;
      const random = results.get("random")!;
      expect(claim.filter((k) => k.reached && k.killed).length, "claim kills after a claim").toBeGreaterThanOrEqual(KILL_TRIALS * 0.8);
      expect(claim.filter((k) => partWay(k, KILL_FILES)).length, "claim kills part-way").toBeGreaterThanOrEqual(KILL_TRIALS / 2);
      expect(commit.filter((k) => k.reached && k.killed).length, "commit kills as the commit landed").toBeGreaterThanOrEqual(KILL_TRIALS * 0.8);
      console.log(`random kills: ${random.filter((k) => !k.killed).length} after the command ended, ${random.filter((k) => partWay(k, KILL_FILES)).length} part-way through ingestion, ${random.filter((k) => k.killed && !partWay(k, KILL_FILES)).length} before or after it`);
    });
  });

  describe("2. a growing landing with kills between runs", () => {
    for (const seed of [1, 2, 3]) {
      it(`seed ${seed}: 20 rounds, then a clean run`, async () => {
        const { kills, slowest } = await suite.run((t) => growingTrial(t, 20, seed, 0.4));
        expect(kills.length).toBeGreaterThanOrEqual(4);
        console.log(`growing seed ${seed}: ${kills.length} kills, ${kills.filter((k) => (k.atKill.PROCESSING ?? 0) > 0).length} left files PROCESSING; slowest command: ${slowest}`);
      }, 600_000);
    }
  });

  describe("3. three workers, one killed mid-run", () => {
    for (let i = 0; i < 5; i++) {
      const delay = Math.floor(rand() * 300);
      it(`trial ${i + 1}: kill ${delay} ms after the victim took a run`, async () => {
        const r = await suite.run((t) => workersTrial(t, 6, delay));
        console.log(`three workers ${i + 1}: queue drained ${r.detectedMs} ms after the kill`);
      }, 300_000);
    }
  });

  describe("4. floe materialize and floe rerun beside an idle floe worker", () => {
    for (let i = 0; i < 10; i++) {
      it(`trial ${i + 1}`, async () => {
        await suite.run((t) => besideWorkerTrial(t));
      }, 120_000);
    }
  });

  describe("5. corrupt input, then fixed", () => {
    for (const kind of BAD_INPUTS) {
      it(`${kind.name} (alone)`, async () => {
        const { messages } = await suite.run((t) => corruptTrial(t, [kind]), kind.format);
        console.log(`${kind.name}: ${messages[kind.name] ?? "(not corrupt)"}`);
      }, 120_000);
    }
    for (const format of ["csv", "ndjson", "json", "parquet"] as const) {
      it(`every ${format} kind at once, in one run`, async () => {
        await suite.run((t) => corruptTrial(t, BAD_INPUTS.filter((b) => b.format === format), 6), format);
      }, 180_000);
    }
  });

  describe("6. SIGTERM", () => {
    // claim: during the first claim batch (500 of 600 files); recorded: once the first batch's
    // rows are recorded, while the second batch is claimed and ingested
    const points: Array<[Moment, number]> = [["claim", 0], ["claim", 100], ["claim", 400], ["recorded", 20], ["recorded", 150]];
    for (const [moment, delay] of points) {
      it(`of a floe worker ${delay} ms after the first ${moment === "claim" ? "claim" : "recorded batch"}, then a new worker`, async () => {
        const r = await suite.run((t) => sigtermWorkerTrial(t, delay, MANY_FILES, moment));
        expect(r.atSignal.PROCESSING ?? 0, "the signal came mid-ingestion").toBeGreaterThan(0);
        console.log(`SIGTERM worker ${moment}+${delay}: exit ${r.exit}, at signal ${JSON.stringify(r.atSignal)}, at exit ${JSON.stringify(r.atExit)}; runs: ${r.runs}`);
      }, 240_000);
      it(`of floe materialize ${delay} ms after the first ${moment === "claim" ? "claim" : "recorded batch"}, then floe rerun --from-failure`, async () => {
        const r = await suite.run((t) => sigtermMaterializeTrial(t, delay, MANY_FILES, moment));
        expect(r.atSignal.PROCESSING ?? 0, "the signal came mid-ingestion").toBeGreaterThan(0);
        expect(r.exit, "an interrupted materialize does not report success").not.toBe(0);
        console.log(`SIGTERM materialize ${moment}+${delay}: exit ${r.exit}, run ${r.status}, at signal ${JSON.stringify(r.atSignal)}, at exit ${JSON.stringify(r.atExit)}; runs: ${r.runs}`);
      }, 240_000);
    }
  });

  describe("7. the database refuses connections", () => {
    for (const ms of [10_000, 20_000]) {
      it(`for ${ms / 1000} s with the worker idle`, async () => {
        await suite.run((t) => outageTrial(t, false, ms));
      }, 300_000);
      it(`for ${ms / 1000} s with the worker mid-run`, async () => {
        await suite.run((t) => outageTrial(t, true, ms));
      }, 300_000);
    }
  });

  describe("8. a bad file deleted", () => {
    for (const landedFirst of [false, true]) {
      for (let i = 0; i < 2; i++) {
        it(`${landedFirst ? "after the day was appended" : "before the day was appended"}, trial ${i + 1}`, async () => {
          await suite.run((t) => deletedFileTrial(t, landedFirst));
        }, 180_000);
      }
    }
  });

  describe("9. a second floe materialize of the same day at once", () => {
    for (const [files, delay] of [[40, 0], [40, 50], [600, 0], [600, 200], [600, 600], [600, 1_500]] as const) {
      it(`${files} files, the second started ${delay} ms after the first claim`, async () => {
        const r = await suite.run((t) => concurrentTrial(t, files, delay));
        console.log(`concurrent ${files}/${delay}: exits ${r.codes.join(", ")}${r.errors.length ? `; ${r.errors.join(" | ")}` : ""}`);
      }, 240_000);
    }
  });
});
