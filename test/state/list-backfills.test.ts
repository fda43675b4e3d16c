import { afterAll, describe, expect, it } from "vitest";
import { testEngine } from "../helpers/engine.js";

const engine = await testEngine("backfills");
afterAll(() => engine.close());

describe("listBackfills", () => {
  it("lists the newest backfills with run counts and the partitions of failed runs not yet rerun", async () => {
    const { store } = engine;
    const run = (id: string, p: string) => ({ id, trigger: "backfill", partitionRange: p, status: "queued" as const, steps: [{ asset: "a", partition: p }] });
    const b = await store.createBackfill({ selection: "a", from: "2025-01-01", to: "2025-01-04", policy: "per-partition", runs: [run("r1", "2025-01-01"), run("r2", "2025-01-02"), run("r3", "2025-01-03"), run("r4", "2025-01-04")] });
    await store.writeBatch({ runs: [{ id: "r1", status: "success" }, { id: "r2", status: "failed" }, { id: "r3", status: "failed" }] });
    // r3 was retried: its rerun supersedes it
    await store.createRun({ id: "r3b", trigger: "backfill", parentRunId: "r3", backfillId: b.id, partitionRange: "2025-01-03", status: "queued", steps: [{ asset: "a", partition: "2025-01-03" }] });
    const [listed] = await store.listBackfills(5);
    expect(listed).toMatchObject({ id: b.id, selection: "a", from: "2025-01-01", to: "2025-01-04", runs: { success: 1, failed: 2, queued: 2 }, failedPartitions: ["2025-01-02"] });
  });
});
