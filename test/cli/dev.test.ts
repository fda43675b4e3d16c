import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { floe, repoRoot, tempProject } from "../helpers/project.js";

const project = tempProject({
  "pipelines/beat.ts": `import { asset, pipeline } from "floe";
export default pipeline("beat", { assets: [asset("pulse", { materialize: (ctx) => ({ metadata: { run: ctx.runId } }) })], schedule: { cron: "* * * * * *" } });
`,
});
afterAll(() => project.remove());

describe("floe dev", () => {
  it("runs scheduler and worker in one process on the embedded store, and stops on Ctrl-C", async () => {
    const child = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "dev", "--metrics-port", "0"], { cwd: project.dir, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, FLOE_DATABASE_URL: "" } });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const succeeded = () => out.split("\n").filter((l) => / success$/.test(l)).length;
    for (let i = 0; i < 100 && succeeded() < 2; i++) await new Promise((r) => setTimeout(r, 200));
    const metricsUrl = /metrics on (http:\/\/\S+\/metrics)/.exec(err)?.[1];
    expect(metricsUrl, err).toBeDefined();
    const text = await (await fetch(metricsUrl!)).text();
    expect(text).toMatch(/^floe_runs\{status="success",trigger="schedule"\} [1-9]/m);
    child.kill("SIGINT");
    const code = await new Promise<number | null>((r) => child.once("exit", r));
    expect(code).toBe(0);
    expect(out).toMatch(/^tick beat \S+: run [0-9a-f]{8} queued$/m);
    expect(succeeded()).toBeGreaterThanOrEqual(2);
    const runs = JSON.parse((await floe(["runs", "--json"], { cwd: project.dir, env: { FLOE_DATABASE_URL: "" } })).stdout) as Array<{ trigger: string; status: string }>;
    expect(runs.filter((r) => r.trigger === "schedule" && r.status === "success").length).toBeGreaterThanOrEqual(2);
  });
});
