import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { floe, pipelineModule, repoRoot, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";

const tmux = spawnSync("tmux", ["-V"]).status === 0;
const db = await testDatabase();
const project = tempProject({ "pipelines/t.ts": pipelineModule("t", { raw: [], clean: ["raw"], other: [] }) });
const session = `floe-tui-${process.pid}`;
afterAll(async () => {
  spawnSync("tmux", ["kill-session", "-t", session]);
  project.remove();
  await db?.drop();
});

const screen = (): string => execFileSync("tmux", ["capture-pane", "-p", "-t", session], { encoding: "utf8" });
async function until(cond: (s: string) => boolean, ms: number): Promise<{ ok: boolean; screen: string; ms: number }> {
  const t0 = Date.now();
  let s = screen();
  while (!cond(s) && Date.now() - t0 < ms) {
    await new Promise((r) => setTimeout(r, 50));
    s = screen();
  }
  return { ok: cond(s), screen: s, ms: Date.now() - t0 };
}

// The real `floe tui` in a real terminal (tmux): it must see another process's run, and narrow.
// CI=true on every UI below: CI sets it, and Ink would then draw nothing until exit.
describe.skipIf(!tmux || !db)("floe tui in a terminal", () => {
  it("on the embedded store, a separate floe tui says in one line to use floe dev, exit 2", async () => {
    const out = `${project.dir}/tui-exit.txt`;
    execFileSync("tmux", ["new-session", "-d", "-s", `${session}-e`, "-x", "120", "-y", "10", `cd ${project.dir} && ${process.execPath} ${join(repoRoot, "bin", "floe.js")} tui 2>${out}.err; echo $? > ${out}`]);
    for (let i = 0; i < 200 && !existsSync(out); i++) await new Promise((r) => setTimeout(r, 50));
    spawnSync("tmux", ["kill-session", "-t", `${session}-e`]);
    expect(readFileSync(out, "utf8").trim()).toBe("2");
    expect(readFileSync(`${out}.err`, "utf8")).toBe(
      "floe: the embedded store belongs to one process: run `floe dev` (scheduler, worker and this UI together), or set FLOE_DATABASE_URL to attach to a PostgreSQL store\n",
    );
  });

  it("floe dev runs scheduler, worker and the UI on the embedded store: m queues a run the worker executes; q stops it all", async () => {
    const dev = `${session}-dev`;
    const home = `${project.dir}/.floe-dev`;
    execFileSync("tmux", ["new-session", "-d", "-s", dev, "-x", "80", "-y", "24", `cd ${project.dir} && CI=true FLOE_HOME=${home} ${process.execPath} ${join(repoRoot, "bin", "floe.js")} dev`]);
    const pane = (): string => execFileSync("tmux", ["capture-pane", "-p", "-t", dev], { encoding: "utf8" });
    const wait = async (cond: (s: string) => boolean, ms: number): Promise<string> => {
      const t0 = Date.now();
      let s = pane();
      while (!cond(s) && Date.now() - t0 < ms) {
        await new Promise((r) => setTimeout(r, 50));
        s = pane();
      }
      return s;
    };
    try {
      expect(await wait((s) => s.includes("○ raw"), 30_000)).toContain("floe · lineage"); // a loaded machine starts slowly
      execFileSync("tmux", ["send-keys", "-t", dev, "m"]);
      expect(await wait((s) => s.includes("materialize raw? (y/n)"), 3_000)).toContain("materialize raw? (y/n)");
      execFileSync("tmux", ["send-keys", "-t", dev, "y"]);
      // the runs list opens with the new run selected, and shows it succeed
      const done = await wait((s) => /› [0-9a-f]{8}\s+success/.test(s), 5_000);
      expect(done, "the in-process worker ran the queued run").toMatch(/› [0-9a-f]{8}\s+success\s+manual/);
      expect(done).toMatch(/run [0-9a-f]{8} queued for raw/);
      execFileSync("tmux", ["send-keys", "-t", dev, "r"]);
      expect(await wait((s) => s.includes("● raw"), 3_000)).toContain("● raw");
      execFileSync("tmux", ["send-keys", "-t", dev, "q"]);
      let alive = true;
      for (let i = 0; i < 200 && alive; i++) {
        await new Promise((r) => setTimeout(r, 50));
        alive = spawnSync("tmux", ["has-session", "-t", dev]).status === 0;
      }
      expect(alive, "q stops floe dev").toBe(false);
    } finally {
      spawnSync("tmux", ["kill-session", "-t", dev]);
    }
  });

  it("floe dev: m on a partitioned asset queues its missing partitions, and the worker materializes them", async () => {
    const parted = tempProject({
      "pipelines/p.ts": `import { asset, partitions, pipeline } from "floe";\nconst daily = partitions.daily({ start: "2025-01-01", end: "2025-01-03" });\nexport default pipeline("p", { assets: [asset("events", { partitions: daily, materialize: () => ({}) })] });\n`,
    });
    const dev = `${session}-part`;
    execFileSync("tmux", ["new-session", "-d", "-s", dev, "-x", "80", "-y", "24", `cd ${parted.dir} && CI=true NO_COLOR=1 FLOE_HOME=${parted.dir}/.floe-dev ${process.execPath} ${join(repoRoot, "bin", "floe.js")} dev`]);
    const pane = (): string => execFileSync("tmux", ["capture-pane", "-p", "-t", dev], { encoding: "utf8" });
    const wait = async (cond: (s: string) => boolean, ms: number): Promise<string> => {
      const t0 = Date.now();
      let s = pane();
      while (!cond(s) && Date.now() - t0 < ms) {
        await new Promise((r) => setTimeout(r, 50));
        s = pane();
      }
      return s;
    };
    try {
      expect(await wait((s) => s.includes("○ events"), 30_000)).toContain("floe · lineage");
      execFileSync("tmux", ["send-keys", "-t", dev, "m"]);
      const ask = await wait((s) => s.includes("materialize events, 3 partitions? (y/n)"), 3_000);
      expect(ask).toContain("materialize events, 3 partitions? (y/n)");
      expect(ask).toContain("partitions: 2025-01-01…2025-01-03");
      execFileSync("tmux", ["send-keys", "-t", dev, "y"]);
      const done = await wait((s) => /› [0-9a-f]{8}\s+success/.test(s), 10_000);
      expect(done, done).toMatch(/› [0-9a-f]{8}\s+success\s+manual/);
      execFileSync("tmux", ["send-keys", "-t", dev, "r"]);
      expect(await wait((s) => s.includes("● events 3/3"), 3_000)).toContain("● events 3/3");
      execFileSync("tmux", ["send-keys", "-t", dev, "q"]);
    } finally {
      spawnSync("tmux", ["kill-session", "-t", dev]);
      parted.remove();
    }
  });

  it("shows a materialization from another process within 2 s, and narrows the graph with /", async () => {
    const env = `FLOE_DATABASE_URL=${db!.url} NO_COLOR=1`;
    execFileSync("tmux", ["new-session", "-d", "-s", session, "-x", "80", "-y", "24", `cd ${project.dir} && CI=true ${env} ${process.execPath} ${join(repoRoot, "bin", "floe.js")} tui`]);
    const up = await until((s) => s.includes("○ raw"), 15_000);
    expect(up.ok, up.screen).toBe(true);
    expect(up.screen).toContain("○ clean");

    const m = await floe(["materialize", "--select", "raw"], { cwd: project.dir, env: { FLOE_DATABASE_URL: db!.url } });
    expect(m.code, m.stderr).toBe(0);
    const seen = await until((s) => s.includes("● raw"), 2_000);
    expect(seen.ok, `not shown within 2 s:\n${seen.screen}`).toBe(true);

    execFileSync("tmux", ["send-keys", "-t", session, "/", "+clean", "Enter"]);
    const narrowed = await until((s) => s.includes("showing +clean") && !s.includes("other"), 3_000);
    expect(narrowed.ok, narrowed.screen).toBe(true);
    expect(narrowed.screen).toContain("● raw");
    expect(narrowed.screen).toContain("○ clean");

    // it adapts to a resize, and with NO_COLOR (set below for this session) draws no colour
    execFileSync("tmux", ["resize-window", "-t", session, "-x", "60", "-y", "20"]);
    const resized = await until((s) => s.split("\n").some((l) => l.startsWith("floe · lineage") && l.trimEnd().length <= 60 && l.trimEnd().length > 50), 3_000);
    expect(resized.ok, resized.screen).toBe(true);
    expect(resized.screen.split("\n").every((l) => l.trimEnd().length <= 60)).toBe(true);
    // the screen is cleared on a resize: one frame, no old lines stacked above or below it
    const clean = await until((s) => s.split("\n").filter((l) => l.startsWith("floe · ")).length === 1 && s.split("\n")[0]!.startsWith("floe · lineage"), 3_000);
    expect(clean.ok, clean.screen).toBe(true);
    expect(clean.screen.split("\n").filter((l) => l.includes("legend:")).length).toBe(1);
    execFileSync("tmux", ["resize-window", "-t", session, "-x", "80", "-y", "24"]);
    const grown = await until((s) => s.split("\n").some((l) => l.startsWith("floe · lineage") && l.trimEnd().length > 70), 3_000);
    expect(grown.ok, grown.screen).toBe(true);
    expect(grown.screen.split("\n").filter((l) => l.startsWith("floe · ")).length, grown.screen).toBe(1);
    expect(grown.screen.split("\n").filter((l) => l.includes("legend:")).length, grown.screen).toBe(1);
    const colored = execFileSync("tmux", ["capture-pane", "-p", "-e", "-t", session], { encoding: "utf8" });
    expect(colored).not.toMatch(/\x1b\[(3[1-7]|9[0-7])m/); // no foreground colours

    execFileSync("tmux", ["send-keys", "-t", session, "q"]);
    let alive = true;
    for (let i = 0; i < 100 && alive; i++) {
      await new Promise((r) => setTimeout(r, 50));
      alive = spawnSync("tmux", ["has-session", "-t", session]).status === 0;
    }
    expect(alive, "q quits").toBe(false);
  });
});
