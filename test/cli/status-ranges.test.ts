import { afterAll, describe, expect, it } from "vitest";
import { floe, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";

const db = await testDatabase();
const project = tempProject({
  "pipelines/h.ts": `import { asset, partitions, pipeline } from "floe";
const hourly = partitions.hourly({ start: "2015-01-01T00", end: "2024-12-31T23" });
const daily = partitions.daily({ start: "2025-01-01", end: "2025-01-03" });
export default pipeline("h", { assets: [
  asset("ev", { partitions: hourly, materialize: () => ({}) }),
  asset("small", { partitions: daily, materialize: () => ({}) }),
] });
`,
});
afterAll(async () => {
  project.remove();
  await db?.drop();
});

describe.skipIf(!db)("floe status over a huge partition definition", () => {
  it("shows ten years of hourly partitions as ranges", async () => {
    const env = { FLOE_DATABASE_URL: db!.url };
    const m = await floe(["materialize", "--select", "ev", "--from", "2020-02-29T22", "--to", "2020-03-01T01"], { cwd: project.dir, env });
    expect(m.code, m.stderr).toBe(0);
    const s = await floe(["status"], { cwd: project.dir, env });
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout).toMatch(/^ev\s+2015-01-01T00…2020-02-29T21 missing \(45262\), 2020-02-29T22…2020-03-01T01 materialized \(4\), 2020-03-01T02…2024-12-31T23 missing \(42406\)\s+\S/m);
    expect(s.stdout).toMatch(/^small\s+2025-01-01…2025-01-03 missing \(3\)/m);
  });
});
