import { afterAll, describe, expect, it } from "vitest";
import { floe, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";

const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const project = tempProject({
  "pipelines/c.ts": `import { checks, duckdbTable, partitions, pipeline } from "floe";
const daily = partitions.daily({ start: "2025-01-01" });
export default pipeline("c", { assets: [
  duckdbTable("people", {
    sql: () => "select * from (values (1, 'ada'), (2, null)) t(id, name)",
    checks: [checks.unique("id"), checks.notNull("name", { severity: "warn" })],
  }),
  duckdbTable("dupes", {
    sql: () => "select * from (values (1), (1)) t(id)",
    checks: [checks.unique("id"), checks.rowCount({ min: 1 })],
  }),
  duckdbTable("clean", { partitions: daily, sql: () => "select 1 as id", checks: [checks.notNull("id")] }),
  duckdbTable("plain", { sql: () => "select 1 as id" }),
] });
`,
});
afterAll(async () => {
  project.remove();
  await db?.drop();
});

describe.skipIf(!db)("floe status shows check results", () => {
  it("per asset, the failed checks of its last materialization or failed step; --json rows get `checks`", async () => {
    const env = { FLOE_DATABASE_URL: db!.url };
    const m = await floe(["materialize", "--select", "people dupes plain", "--json"], { cwd: project.dir, env });
    expect(m.code, m.stderr).toBe(1); // dupes fails its error check
    const c = await floe(["materialize", "--select", "clean", "--partition", "2025-01-02", "--json"], { cwd: project.dir, env });
    expect(c.code, c.stderr).toBe(0);

    const j = await floe(["status", "--select", "people dupes plain clean", "--json"], { cwd: project.dir, env });
    expect(j.code, j.stderr).toBe(0);
    const rows = JSON.parse(j.stdout) as Array<Record<string, unknown>>;
    const row = (asset: string, partition: string | null = null) => rows.find((r) => r.asset === asset && r.partition === partition)!;
    for (const r of rows) expect(Object.keys(r)).toEqual(expect.arrayContaining(["asset", "partition", "status", "lastRunId", "lastMaterializedAt", "checks"]));
    expect(row("people")).toMatchObject({ status: "materialized", checks: [
      { name: "unique(id)", severity: "error", passed: true, message: expect.any(String) },
      { name: "not_null(name)", severity: "warn", passed: false, message: "1 null values in name" },
    ] });
    expect(row("dupes")).toMatchObject({ status: "failed", lastMaterializedAt: null, checks: [
      { name: "unique(id)", severity: "error", passed: false, message: expect.stringMatching(/duplicate/) },
      { name: expect.stringMatching(/^row_count/), passed: true },
    ] });
    expect(row("plain").checks).toEqual([]);
    expect(row("clean", "2025-01-02")).toMatchObject({ status: "materialized", checks: [{ name: "not_null(id)", passed: true }] });
    expect(row("clean", "2025-01-01")).toMatchObject({ status: "missing", checks: [] });

    const t = await floe(["status", "--select", "people dupes plain clean"], { cwd: project.dir, env });
    expect(t.code, t.stderr).toBe(0);
    const failedPart = t.stdout.slice(t.stdout.indexOf("failed checks (last materialization):"));
    const [title, ...lines] = failedPart.trimEnd().split("\n");
    expect(title).toBe("failed checks (last materialization):");
    expect(lines.sort()).toEqual([
      `  dupes: ✗ unique(id) (error: ${(row("dupes").checks as Array<{ message: string }>)[0]!.message})`,
      "  people: ! not_null(name) (warn: 1 null values in name)",
    ]);
    expect(failedPart).not.toMatch(/clean|plain/);
  });
});
