import { afterAll, describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import { runWorker } from "../../src/runner/worker.js";
import { StateStore } from "../../src/state/index.js";
import { storesOnOneDatabase } from "../helpers/store.js";

// A backfill whose driver is gone ends all the same: the worker that finishes its last run
// settles it, once across every worker, and says so (for the backfill_finished notification).
const shared = await storesOnOneDatabase();
const { db, stores, open } = shared; // db is undefined only outside CI with no server: the suite is skipped
afterAll(() => shared.close());

const daily = partitions.daily({ start: "2025-01-01" });
const days = (n: number) => Array.from({ length: n }, (_, i) => `2025-01-${String(i + 1).padStart(2, "0")}`);
let failing = new Set<string>();
const graph = AssetGraph.build([{
  module: "p.ts",
  pipeline: pipeline("p", {
    assets: [asset("day", { partitions: daily, materialize: async (ctx) => {
      await new Promise((r) => setTimeout(r, 5));
      if (failing.has(ctx.partitionKey!)) throw new Error(`no data for ${ctx.partitionKey}`);
      return {};
    } })],
  }),
}]);
const backfillOf = (store: StateStore, keys: readonly string[]) =>
  store.createBackfill({
    selection: "day", from: keys[0]!, to: keys.at(-1)!, policy: "per-partition",
    runs: keys.map((k) => ({ trigger: "backfill", partitionRange: k, steps: [{ asset: "day", partition: k }] })),
  });

describe.skipIf(!db)("a backfill without its driver", () => {
  it("two workers drain it; exactly one settles it success and reports it", async () => {
    failing = new Set();
    const [a, b] = [await open(), await open()];
    const bf = await backfillOf(a, days(12));
    const settled: string[] = [];
    const work = (s: StateStore, id: string) =>
      runWorker(s, graph, { workerId: id, runs: 2, untilEmpty: true, pollMs: 50, heartbeatMs: 1_000, backfillSlots: 2, onBackfillSettled: (bid, status) => settled.push(`${id} ${bid} ${status}`) });
    const executed = await Promise.all([work(a, "w1"), work(b, "w2")]);
    expect(executed[0]! + executed[1]!).toBe(12);
    expect(settled).toHaveLength(1);
    expect(settled[0]).toMatch(new RegExp(` ${bf.id} success$`));
    expect((await a.getBackfill(bf.id)).status).toBe("success");
    // settling again changes nothing and reports nothing
    expect(await a.settleBackfill(bf.id)).toBeUndefined();
  });

  it("a failed partition settles it failed; a later successful rerun turns it success", async () => {
    failing = new Set(["2025-01-02"]);
    const s = await open();
    const bf = await backfillOf(s, days(3));
    const settled: string[] = [];
    await runWorker(s, graph, { workerId: "w", runs: 1, untilEmpty: true, pollMs: 50, heartbeatMs: 1_000, onBackfillSettled: (_id, status) => settled.push(status) });
    expect(settled).toEqual(["failed"]);
    expect((await s.getBackfill(bf.id)).status).toBe("failed");
    // a rerun of the failed run lands in the backfill (as a recovered run does) and succeeds
    failing = new Set();
    const failed = (await s.backfillRuns(bf.id)).find((r) => r.status === "failed")!;
    await s.createRuns([{ trigger: "backfill", partitionRange: "2025-01-02", backfillId: bf.id, parentRunId: failed.id, steps: [{ asset: "day", partition: "2025-01-02" }] }]);
    await runWorker(s, graph, { workerId: "w", runs: 1, untilEmpty: true, pollMs: 50, heartbeatMs: 1_000, onBackfillSettled: (_id, status) => settled.push(status) });
    expect(settled).toEqual(["failed", "success"]);
    expect((await s.getBackfill(bf.id)).status).toBe("success");
  });

  it("a canceled backfill stays canceled", async () => {
    failing = new Set();
    const s = await open();
    const bf = await backfillOf(s, days(2));
    await s.setBackfillStatus(bf.id, "canceled");
    expect(await s.settleBackfill(bf.id)).toBeUndefined();
    expect((await s.getBackfill(bf.id)).status).toBe("canceled");
  });
});
