import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { floe, repoRoot, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";

const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const project = tempProject({
  "pipelines/s.ts": `import { writeFileSync } from "node:fs";
import { asset, pipeline } from "floe";
export default pipeline("s", { assets: [
  asset("quick", { materialize: () => ({}) }),
  asset("slow", { deps: ["quick"], materialize: async () => {
    if (process.env.SLOW_MARKER) { writeFileSync(process.env.SLOW_MARKER, "started"); await new Promise((r) => setTimeout(r, 60_000)); }
    return {};
  } }),
  asset("after", { deps: ["slow"], materialize: () => ({}) }),
] });
`,
});
afterAll(async () => {
  project.remove();
  await db?.drop();
});

function start(env: Record<string, string>) {
  const child = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "materialize", "--select", "*", "--json"], { cwd: project.dir, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return { child, exited, stdout: () => stdout };
}
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
}

describe.skipIf(!db)("shutdown", () => {
  it("SIGTERM lets running steps finish within the grace period, then marks them interrupted; a rerun recovers", async () => {
    const marker = join(project.dir, "started-1");
    const p = start({ FLOE_DATABASE_URL: db!.url, SLOW_MARKER: marker, FLOE_SHUTDOWN_GRACE_MS: "300" });
    await until(() => existsSync(marker));
    const t0 = Date.now();
    p.child.kill("SIGTERM");
    const code = await p.exited;
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(code).toBe(1);
    const out = JSON.parse(p.stdout()) as { runId: string; status: string; steps: Array<{ asset: string; status: string; error?: string }> };
    expect(out.status).toBe("canceled");
    expect(out.steps.map((s) => [s.asset, s.status])).toEqual([["quick", "success"], ["slow", "failed"], ["after", "skipped"]]);
    expect(out.steps[1]!.error).toBe("interrupted: still running 300 ms after shutdown began");
    const run = JSON.parse((await floe(["run", out.runId, "--json"], { cwd: project.dir, env: { FLOE_DATABASE_URL: db!.url } })).stdout) as { status: string };
    expect(run.status).toBe("canceled");
    const again = await floe(["rerun", out.runId, "--from-failure", "--json"], { cwd: project.dir, env: { FLOE_DATABASE_URL: db!.url } });
    expect(again.code, again.stderr).toBe(0);
    expect((JSON.parse(again.stdout) as { steps: Array<{ status: string }> }).steps.map((s) => s.status)).toEqual(["reused", "success", "success"]);
  });

  it("a second signal exits at once", async () => {
    const marker = join(project.dir, "started-2");
    const p = start({ FLOE_DATABASE_URL: db!.url, SLOW_MARKER: marker, FLOE_SHUTDOWN_GRACE_MS: "60000" });
    await until(() => existsSync(marker));
    p.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(130);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });
});
