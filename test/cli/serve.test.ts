import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { floe, repoRoot, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";

const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const project = tempProject({
  "pipelines/m.ts": `import { asset, pipeline } from "floe";
export default pipeline("m", { assets: [
  asset("ok", { materialize: () => ({}) }),
  asset("broken", { materialize: () => { throw new Error("no"); } }),
] });
`,
});
let server: ChildProcess | undefined;
afterAll(async () => {
  server?.kill("SIGKILL");
  project.remove();
  await db?.drop();
});

/** Parses Prometheus text into `name{labels}` → value. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

describe.skipIf(!db)("floe serve", () => {
  it("exposes metrics from the state store and turns /health 503 while the store is unreachable", async () => {
    const env = { FLOE_DATABASE_URL: db!.url };
    const run = await floe(["materialize", "--select", "*"], { cwd: project.dir, env });
    expect(run.code).toBe(1);
    await floe(["materialize", "--select", "ok", "--queue"], { cwd: project.dir, env });

    server = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "serve", "--port", "0"], { cwd: project.dir, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    const base = await new Promise<string>((resolve, reject) => {
      server!.stdout!.on("data", (d: Buffer) => {
        const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(d.toString());
        if (m) resolve(m[1]!);
      });
      server!.once("exit", (code) => reject(new Error(`serve exited ${code}`)));
    });

    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    const m = parse(await metrics.text());
    expect(m.get('floe_runs{status="failed",trigger="manual"}')).toBe(1);
    expect(m.get('floe_runs{status="queued",trigger="manual"}')).toBe(1);
    expect(m.get('floe_steps{asset="broken",status="failed"}')).toBe(1);
    expect(m.get('floe_steps{asset="ok",status="success"}')).toBe(1);
    expect(m.get("floe_queue_depth")).toBe(1);
    expect(m.get("floe_process_resident_memory_bytes")).toBeGreaterThan(0);
    expect([...m.keys()].some((k) => /[0-9a-f]{8}-[0-9a-f]{4}/.test(k)), "no run ids in labels").toBe(false);

    const ok = await fetch(`${base}/health`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ status: "ok", checks: { stateStore: { ok: true } } });

    // the database stops accepting connections, then comes back
    const admin = new pg.Client({ connectionString: process.env.FLOE_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test" });
    await admin.connect();
    const name = new URL(db!.url).pathname.slice(1);
    try {
      await admin.query(`alter database "${name}" allow_connections false`);
      await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1`, [name]);
      const down = await fetch(`${base}/health`);
      expect(down.status).toBe(503);
      expect(await down.json()).toMatchObject({ status: "failing", checks: { stateStore: { ok: false } } });
      await admin.query(`alter database "${name}" allow_connections true`);
      let back = 0;
      for (let i = 0; i < 20 && back !== 200; i++) {
        back = (await fetch(`${base}/health`)).status;
        if (back !== 200) await new Promise((r) => setTimeout(r, 250));
      }
      expect(back).toBe(200);
    } finally {
      await admin.end();
    }
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });

  it("rejects a bad port", async () => {
    const r = await floe(["serve", "--port", "99999"], { cwd: project.dir, env: { FLOE_DATABASE_URL: db!.url } });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe("floe: --port must be a port number (0-65535), got `99999`");
  });
});
