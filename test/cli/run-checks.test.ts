import { afterAll, describe, expect, it } from "vitest";
import { floe, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";

const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const project = tempProject({
  "pipelines/c.ts": `import { z } from "zod";
import { checks, duckdbTable, pipeline } from "floe";
export default pipeline("c", { assets: [duckdbTable("people", {
  sql: () => "select * from (values ('1', 'ada'), ('2', null), ('x', 'bob')) t(id, name)",
  columns: z.object({ id: z.number().int(), name: z.string().nullable() }),
  onInvalidRows: "quarantine",
  checks: [checks.unique("id"), checks.notNull("name", { severity: "warn" })],
})] });
`,
});
afterAll(async () => {
  project.remove();
  await db?.drop();
});

describe.skipIf(!db)("floe run shows checks and quarantined rows", () => {
  it("lists each check's result and where invalid rows went", async () => {
    const env = { FLOE_DATABASE_URL: db!.url };
    const m = await floe(["materialize", "--select", "people", "--json"], { cwd: project.dir, env });
    expect(m.code, m.stderr).toBe(0);
    const runId = (JSON.parse(m.stdout) as { runId: string }).runId;
    const r = await floe(["run", runId.slice(0, 8)], { cwd: project.dir, env });
    expect(r.stdout).toContain("checks:\n  people: ✓ unique(id), ! not_null(name) (1 null values in name)\n  people: 1 invalid row(s) quarantined in quarantine/people/_/");
    expect(r.stdout).toMatch(/warn\s+people: check not_null\(name\) failed: 1 null values in name/);
  });
});
