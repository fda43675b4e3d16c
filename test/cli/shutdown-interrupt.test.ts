import { spawn } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { repoRoot, tempProject } from "../helpers/project.js";
import { queryRows, testDatabase } from "../helpers/pg.js";

const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
// The real rawFiles ingestion, whose warehouse never finishes an upload once the marker is
// written: the step outlives any grace period, in the middle of a claimed batch.
const project = tempProject({
  "floe.config.ts": `import { defineConfig } from "floe";
export default defineConfig({ pools: { ingest: 1 } });
`,
  "pipelines/h.ts": `import { writeFileSync } from "node:fs";
import { pipeline, rawFiles } from "floe";
const raw = rawFiles("raw", { storage: { type: "local", root: "landing" }, glob: "in/*.csv", format: "csv", batchSize: 5, parallelism: 1, pool: "ingest" });
const hanging = {
  ...raw,
  materialize: (ctx) => raw.materialize({
    ...ctx,
    onInterrupt: ctx.onInterrupt,
    afterCommit: ctx.afterCommit,
    upstreamPartitions: ctx.upstreamPartitions,
    resource: async (name) => {
      const r = await ctx.resource(name);
      if (name !== "warehouse") return r;
      return { ...r, upload: () => { writeFileSync(process.env.HANG_MARKER, "uploading"); return new Promise(() => undefined); } };
    },
  }),
};
export default pipeline("h", { assets: [hanging] });
`,
});
afterAll(async () => {
  project.remove();
  await db?.drop();
});

const query = <T extends pg.QueryResultRow>(text: string): Promise<T[]> => queryRows<T>(db!.url, text);

describe.skipIf(!db)("a step still running when the shutdown grace runs out", () => {
  it("is abandoned with its claims given back (nothing PROCESSING, no attempt used) and its pool slot freed", async () => {
    mkdirSync(join(project.dir, "landing", "in"), { recursive: true });
    for (let f = 0; f < 12; f++) writeFileSync(join(project.dir, "landing", "in", `f${String(f).padStart(2, "0")}.csv`), `id\n${f}\n`);
    const marker = join(project.dir, "uploading");
    const child = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "materialize", "--select", "raw", "--json"], {
      cwd: project.dir,
      env: { ...process.env, FLOE_DATABASE_URL: db!.url, HANG_MARKER: marker, FLOE_SHUTDOWN_GRACE_MS: "300" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    for (let i = 0; i < 400 && !existsSync(marker); i++) await new Promise((r) => setTimeout(r, 25));
    expect(existsSync(marker), stderr).toBe(true);
    // mid-batch: the batch's files are claimed, and the step holds the pool's slot
    expect((await query<{ n: number }>("select count(*)::int as n from processed_files where status = 'PROCESSING'"))[0]!.n).toBe(5);
    expect((await query<{ n: number }>("select count(*)::int as n from pool_slots where pool = 'ingest' and run_id is not null"))[0]!.n).toBe(1);

    const t0 = Date.now();
    child.kill("SIGTERM");
    const code = await exited;
    expect(Date.now() - t0, "the exit does not wait for the stuck upload").toBeLessThan(8_000);
    expect(code).toBe(1);
    const out = JSON.parse(stdout) as { status: string; steps: Array<{ status: string; error?: string }> };
    expect(out.status).toBe("canceled");
    expect(out.steps.map((s) => [s.status, s.error])).toEqual([["failed", "interrupted: still running 300 ms after shutdown began"]]);

    const files = await query<{ status: string; n: number; attempts: number }>("select status, count(*)::int as n, sum(attempts)::int as attempts from processed_files group by status");
    expect(files).toEqual([{ status: "DISCOVERED", n: 12, attempts: 0 }]);
    expect((await query<{ n: number }>("select count(*)::int as n from pool_slots where run_id is not null"))[0]!.n).toBe(0);
  });
});
