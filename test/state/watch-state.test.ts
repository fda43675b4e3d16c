import { afterAll, describe, expect, it } from "vitest";
import { StateStore } from "../../src/state/index.js";
import { testDatabase } from "../helpers/pg.js";

const db = await testDatabase();
afterAll(() => db?.drop());

describe.skipIf(!db)("watchState", () => {
  it("hears a step change written by another store (another process) through NOTIFY", async () => {
    const [watcher, writer] = await Promise.all([StateStore.open({ url: db!.url, home: "/nonexistent" }), StateStore.open({ url: db!.url, home: "/nonexistent" })]);
    try {
      const run = await writer.createRun({ trigger: "manual", status: "queued", steps: [{ asset: "a", partition: null }] });
      let heard = 0;
      const stop = await watcher.watchState(() => heard++);
      const t0 = Date.now();
      await writer.writeBatch({ steps: [{ runId: run.id, asset: "a", partition: null, status: "running", startedAt: new Date() }] });
      while (heard === 0 && Date.now() - t0 < 2_000) await new Promise((r) => setTimeout(r, 10));
      expect(heard).toBeGreaterThan(0);
      // an event-only batch (a log line) is not a state change
      heard = 0;
      await writer.writeBatch({ events: [{ runId: run.id, type: "log", message: "hello" }] });
      await new Promise((r) => setTimeout(r, 200));
      expect(heard).toBe(0);
      await stop();
    } finally {
      await Promise.all([watcher.close(), writer.close()]);
    }
  });
});
