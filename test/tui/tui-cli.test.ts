import { afterAll, describe, expect, it } from "vitest";
import { floe, pipelineModule, tempProject } from "../helpers/project.js";

const project = tempProject({ "pipelines/t.ts": pipelineModule("t", { raw: [], clean: ["raw"], report: ["clean"] }) });
afterAll(() => project.remove());

describe("floe tui without a terminal", () => {
  it("prints one plain-text snapshot of lineage and statuses, and exits 0", async () => {
    const m = await floe(["materialize", "--select", "raw"], { cwd: project.dir });
    expect(m.code, m.stderr).toBe(0);
    const r = await floe(["tui"], { cwd: project.dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(
      [
        "layer 0",
        "  ● raw  materialized",
        "layer 1",
        "  ○ clean  missing  ◀ raw",
        "layer 2",
        "  ○ report  missing  ◀ clean",
        "",
        "legend: ● materialized ◔ partial ◐ stale ✗ failed ◉ running ◷ queued ○ missing",
        "",
      ].join("\n"),
    );
  });
});
