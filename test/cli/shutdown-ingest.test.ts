import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { floe, repoRoot, tempProject } from "../helpers/project.js";
import { queryRows, testDatabase } from "../helpers/pg.js";

const FILES = 60;
const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const project = tempProject({
  "pipelines/i.ts": `import { pipeline, rawFiles } from "floe";
export default pipeline("i", { assets: [rawFiles("raw", { storage: { type: "local", root: "landing" }, glob: "in/*.csv", format: "csv", batchSize: 2, parallelism: 1 })] });
`,
});
afterAll(async () => {
  project.remove();
  await db?.drop();
});

const query = <T extends pg.QueryResultRow>(text: string): Promise<T[]> => queryRows<T>(db!.url, text);
const ledger = async (): Promise<Record<string, number>> => {
  const exists = await query<{ t: string | null }>("select to_regclass('processed_files')::text as t");
  if (!exists[0]?.t) return {};
  return Object.fromEntries((await query<{ status: string; n: number }>("select status, count(*)::int as n from processed_files group by status")).map((r) => [r.status, r.n]));
};

describe.skipIf(!db)("SIGTERM during an ingestion", () => {
  it("stops claiming, commits what it ingested, leaves nothing PROCESSING; the next run ingests the rest once", async () => {
    mkdirSync(join(project.dir, "landing", "in"), { recursive: true });
    for (let f = 0; f < FILES; f++) writeFileSync(join(project.dir, "landing", "in", `f${String(f).padStart(3, "0")}.csv`), `id\n${f}\n`);
    const child = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "materialize", "--select", "raw"], { cwd: project.dir, env: { ...process.env, FLOE_DATABASE_URL: db!.url }, stdio: "ignore" });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    for (let i = 0; i < 400 && ((await ledger()).PROCESSING ?? 0) === 0; i++) await new Promise((r) => setTimeout(r, 10));
    child.kill("SIGTERM");
    await exited;
    const after = await ledger();
    expect(after.PROCESSING ?? 0, JSON.stringify(after)).toBe(0);
    expect(after.DISCOVERED ?? 0, "the stop left files for the next run").toBeGreaterThan(0);
    const done = after.SUCCESS ?? 0;
    const recorded = await query<{ files: number }>("select coalesce(sum((metadata->>'files')::int), 0)::int as files from run_steps where asset = 'raw' and status = 'success'");
    expect(recorded[0]!.files).toBe(done);

    const again = await floe(["materialize", "--select", "raw", "--json"], { cwd: project.dir, env: { FLOE_DATABASE_URL: db!.url } });
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).steps[0].metadata.files).toBe(FILES - done);
    expect(await ledger()).toEqual({ SUCCESS: FILES });
    const claims = await query<{ n: number }>("select sum(attempts)::int as n from processed_files");
    expect(claims[0]!.n, "each file claimed once").toBe(FILES);
  });
});
