import { get as httpGet } from "node:http";
import { spawn, type ChildProcess } from "node:child_process";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { floe, repoRoot, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";
import { listeningUrl, parsePrometheus } from "../helpers/observe.js";

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


/** GET over a connection of its own, as a fetch Response. */
function freshGet(url: string): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 0, headers: { "content-type": String(res.headers["content-type"] ?? "") } })));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}
describe.skipIf(!db)("floe serve", () => {
  it("exposes metrics from the state store and turns /health 503 while the store is unreachable", async () => {
    const env = { FLOE_DATABASE_URL: db!.url };
    const run = await floe(["materialize", "--select", "*"], { cwd: project.dir, env });
    expect(run.code).toBe(1);
    await floe(["materialize", "--select", "ok", "--queue"], { cwd: project.dir, env });

    server = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "serve", "--port", "0"], { cwd: project.dir, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let serverErr = "";
    server.stderr!.on("data", (d: Buffer) => (serverErr += d.toString()));
    const base = await listeningUrl(server);
    // A new connection per request (no keep-alive socket to race the server's idle timeout), and a
    // failed request says what the server printed (a crash would show here).
    const get = (path: string): Promise<Response> =>
      freshGet(`${base}${path}`).catch((e: unknown) => {
        throw new Error(`GET ${path}: ${String(e)}; floe serve ${server?.exitCode === null ? "still runs" : `exited ${server?.exitCode}`}, stderr: ${serverErr}`);
      });

    const metrics = await get("/metrics");
    expect(metrics.status).toBe(200);
    const m = parsePrometheus(await metrics.text());
    expect(m.get('floe_runs{status="failed",trigger="manual"}')).toBe(1);
    expect(m.get('floe_runs{status="queued",trigger="manual"}')).toBe(1);
    expect(m.get('floe_steps{asset="broken",status="failed"}')).toBe(1);
    expect(m.get('floe_steps{asset="ok",status="success"}')).toBe(1);
    expect(m.get("floe_queue_depth")).toBe(1);
    expect(m.get("floe_process_resident_memory_bytes")).toBeGreaterThan(0);
    expect([...m.keys()].some((k) => /[0-9a-f]{8}-[0-9a-f]{4}/.test(k)), "no run ids in labels").toBe(false);

    const ok = await get("/health");
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ status: "ok", checks: { stateStore: { ok: true } } });

    // the database stops accepting connections, then comes back
    const admin = new pg.Client({ connectionString: process.env.FLOE_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test" });
    await admin.connect();
    const name = new URL(db!.url).pathname.slice(1);
    let reopened = false;
    try {
      await admin.query(`alter database "${name}" allow_connections false`);
      await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1`, [name]);
      const down = await get("/health");
      expect(down.status).toBe(503);
      expect(await down.json()).toMatchObject({ status: "failing", checks: { stateStore: { ok: false } } });
      const scrape = await get("/metrics");
      expect(scrape.status).toBe(503);
      expect(await scrape.text()).toMatch(/^state store unreachable: .+\n$/);
      await admin.query(`alter database "${name}" allow_connections true`);
      reopened = true;
      let back = 0;
      for (let i = 0; i < 20 && back !== 200; i++) {
        back = (await get("/health")).status;
        if (back !== 200) await new Promise((r) => setTimeout(r, 250));
      }
      expect(back).toBe(200);
    } finally {
      // the other tests share the database: it must take connections again, whatever failed here
      if (!reopened) await admin.query(`alter database "${name}" allow_connections true`);
      await admin.end();
    }
    expect((await get("/nope")).status).toBe(404);
  });

  it("/health reports a scheduler that stopped heartbeating (kill -9), and forgets one that stopped cleanly", async () => {
    const env = { ...process.env, FLOE_DATABASE_URL: db!.url, FLOE_HEARTBEAT_MS: "200" }; // stale after 0.6 s
    const spawnFloe = (...args: string[]) => spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), ...args], { cwd: project.dir, env, stdio: ["ignore", "pipe", "pipe"] });
    const serve = spawnFloe("serve", "--port", "0");
    try {
      const base = await listeningUrl(serve);
      type Report = { status: string; checks: Record<string, { ok: boolean; detail?: string }> };
      const health = async (): Promise<{ code: number; body: Report }> => {
        const r = await fetch(`${base}/health`);
        return { code: r.status, body: (await r.json()) as Report };
      };
      const until = async (cond: (h: { code: number; body: Report }) => boolean): Promise<{ code: number; body: Report }> => {
        let h = await health();
        for (let i = 0; i < 100 && !cond(h); i++) {
          await new Promise((r) => setTimeout(r, 100));
          h = await health();
        }
        return h;
      };
      const scheduler = spawnFloe("scheduler");
      const alive = await until((h) => h.body.checks.scheduler?.ok === true);
      expect(alive.code).toBe(200);
      scheduler.kill("SIGKILL");
      const dead = await until((h) => h.body.checks.scheduler?.ok === false);
      expect(dead.code).toBe(503);
      expect(dead.body.checks.scheduler!.detail).toMatch(/^no scheduler has heartbeated for \d+ s$/);

      const again = spawnFloe("scheduler");
      expect((await until((h) => h.code === 200)).body.checks.scheduler?.ok).toBe(true);
      again.kill("SIGTERM");
      await new Promise((r) => again.once("exit", r));
      const forgotten = await health();
      expect(forgotten.code).toBe(200);
      expect(forgotten.body.checks.scheduler).toBeUndefined();
    } finally {
      serve.kill("SIGKILL");
    }
  });

  it("`floe dev` heartbeats its worker at FLOE_HEARTBEAT_MS, so /health stays ok at a non-default interval", async () => {
    const env = { ...process.env, FLOE_DATABASE_URL: db!.url, FLOE_HEARTBEAT_MS: "200" }; // stale after 0.6 s
    const dev = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "dev", "--no-tui", "--metrics-port", "0"], { cwd: project.dir, env, stdio: ["ignore", "pipe", "pipe"] });
    try {
      const base = await new Promise<string>((resolve, reject) => {
        let seen = "";
        dev.stderr!.on("data", (d: Buffer) => {
          seen += d.toString();
          const m = /metrics on (http:\/\/[\d.]+:\d+)\/metrics/.exec(seen);
          if (m) resolve(m[1]!);
        });
        dev.once("exit", (code) => reject(new Error(`floe dev exited ${code}: ${seen}`)));
      });
      type Report = { status: string; checks: Record<string, { ok: boolean; detail?: string }> };
      const health = async (): Promise<{ code: number; body: Report }> => {
        const r = await fetch(`${base}/health`);
        return { code: r.status, body: (await r.json()) as Report };
      };
      let h = await health();
      for (let i = 0; i < 100 && !(h.body.checks.worker && h.body.checks.scheduler); i++) {
        await new Promise((r) => setTimeout(r, 100));
        h = await health();
      }
      // for 2 s (over 3 intervals of 0.6 s), both roles of the process stay fresh
      for (let i = 0; i < 10; i++) {
        expect(h.body.checks.worker, JSON.stringify(h.body)).toEqual(expect.objectContaining({ ok: true }));
        expect(h.body.checks.scheduler, JSON.stringify(h.body)).toEqual(expect.objectContaining({ ok: true }));
        expect(h.code).toBe(200);
        await new Promise((r) => setTimeout(r, 200));
        h = await health();
      }
    } finally {
      dev.kill("SIGKILL");
    }
  });

  it("/health answers 503 within its timeout while the store hangs, then 200 again", async () => {
    // A TCP proxy in front of PostgreSQL that, when stalled, keeps the connections open but forwards nothing.
    let stalled = false;
    const held: Array<() => void> = [];
    const proxy = createServer((client) => {
      const pgUrl = new URL(db!.url);
      const upstream = connect(Number(pgUrl.port || 5432), pgUrl.hostname);
      const pipe = (from: Socket, to: Socket): void => {
        from.on("data", (d: Buffer) => {
          if (!stalled) to.write(d);
          else held.push(() => to.write(d));
        });
      };
      pipe(client, upstream);
      pipe(upstream, client);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const url = new URL(db!.url);
    url.host = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const serve = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "serve", "--port", "0"], { cwd: project.dir, env: { ...process.env, FLOE_DATABASE_URL: url.toString() }, stdio: ["ignore", "pipe", "pipe"] });
    try {
      const base = await listeningUrl(serve);
      expect((await fetch(`${base}/health`)).status).toBe(200);
      stalled = true;
      const t0 = Date.now();
      const down = await fetch(`${base}/health`, { signal: AbortSignal.timeout(10_000) });
      const took = Date.now() - t0;
      expect(down.status).toBe(503);
      expect(await down.json()).toMatchObject({ status: "failing", checks: { stateStore: { ok: false, detail: "the state store did not answer within 2000 ms" } } });
      expect(took).toBeGreaterThanOrEqual(1_900);
      expect(took).toBeLessThan(5_000);
      stalled = false;
      for (const f of held.splice(0)) f();
      let back = 0;
      for (let i = 0; i < 40 && back !== 200; i++) {
        back = (await fetch(`${base}/health`, { signal: AbortSignal.timeout(10_000) })).status;
        if (back !== 200) await new Promise((r) => setTimeout(r, 250));
      }
      expect(back).toBe(200);
    } finally {
      serve.kill("SIGKILL");
      proxy.close();
    }
  });

  it("rejects a bad port, a port in use and a host this machine does not have", async () => {
    const env = { FLOE_DATABASE_URL: db!.url };
    const r = await floe(["serve", "--port", "99999"], { cwd: project.dir, env });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe("floe: --port must be a port number (0-65535), got `99999`");
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    try {
      const port = String((taken.address() as AddressInfo).port);
      const inUse = await floe(["serve", "--port", port], { cwd: project.dir, env });
      expect([inUse.code, inUse.stderr.trim()]).toEqual([2, `floe: --port ${port} is in use; pick another`]);
      const metrics = await floe(["worker", "--until-empty", "--metrics-port", port], { cwd: project.dir, env });
      expect([metrics.code, metrics.stderr.trim()]).toEqual([2, `floe: --metrics-port ${port} is in use; pick another`]);
    } finally {
      taken.close();
    }
    const host = await floe(["serve", "--port", "0", "--host", "999.1.1.1"], { cwd: project.dir, env });
    expect([host.code, host.stderr.trim()]).toEqual([2, "floe: --host 999.1.1.1 is not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of its interfaces"]);
  });
});
