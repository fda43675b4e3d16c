import { afterAll, describe, expect, it } from "vitest";
import { testDatabase } from "../helpers/pg.js";
import { crashProject, crashTrial } from "./crash-trial.js";

// Small scale here; 10 trials at random points in test/soak/crash.soak.test.ts.
const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const project = crashProject();
afterAll(async () => {
  project.remove();
  await db?.drop();
});

describe.skipIf(!db)("kill -9 during ingestion", () => {
  it("early and late kills: after the next start every row is in once, no file PROCESSING", async () => {
    const a = await crashTrial(project.dir, db!.url, "2025-02-01", 900);
    const b = await crashTrial(project.dir, db!.url, "2025-02-02", 50, "claim"); // right after the first claim
    expect((b.atKill.PROCESSING ?? 0) + (b.atKill.SUCCESS ?? 0)).toBeGreaterThan(0);
    const c = await crashTrial(project.dir, db!.url, "2025-02-03", 0, "commit"); // as the Iceberg commit lands
    expect(c.committedAtKill).toBe(true);
    console.log(`ledger at kill: ${JSON.stringify(a.atKill)} / ${JSON.stringify(b.atKill)} / Iceberg committed: ${String(c.committedAtKill)}`);
  });
});
