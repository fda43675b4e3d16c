import { afterAll, describe, expect, it } from "vitest";
import { floe, pipelineModule, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";

const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const project = tempProject({ "pipelines/q.ts": pipelineModule("q", { a: [], b: ["a"] }) });
afterAll(async () => {
  project.remove();
  await db?.drop();
});

describe.skipIf(!db)("floe materialize --queue and floe worker", () => {
  it("queues runs that a worker process executes", async () => {
    const env = { FLOE_DATABASE_URL: db!.url };
    const queued: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await floe(["materialize", "--select", "+b", "--queue", "--json"], { cwd: project.dir, env });
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { runId: string; status: string; steps: Array<{ asset: string; status: string }> };
      expect(out).toMatchObject({ status: "queued", steps: [{ asset: "a", status: "pending" }, { asset: "b", status: "pending" }] });
      queued.push(out.runId);
    }
    const w = await floe(["worker", "--until-empty", "--runs", "2"], { cwd: project.dir, env });
    expect(w.code, w.stderr).toBe(0);
    expect(w.stdout.trim().split("\n").sort()).toEqual(queued.map((id) => `run ${id.slice(0, 8)} success: 2/2 steps succeeded`).sort());
    const runs = JSON.parse((await floe(["runs", "--json"], { cwd: project.dir, env })).stdout) as Array<{ runId: string; status: string }>;
    expect(runs.map((r) => r.status)).toEqual(["success", "success", "success"]);
    const bad = await floe(["worker", "--runs", "zero"], { cwd: project.dir, env });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe("floe: --runs must be a positive whole number, got `zero`");
  });
});
