import { spawn } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { floe, repoRoot, tempProject } from "../helpers/project.js";
import { listeningUrl } from "../helpers/observe.js";

// `metricsPort` of floe.config.ts (and FLOE_METRICS_PORT over it): the port when no flag gives one.
const freePort = async (): Promise<number> => {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
};
const projects: Array<ReturnType<typeof tempProject>> = [];
const project = (config: string) => {
  const p = tempProject({
    "pipelines/m.ts": `import { asset, pipeline } from "floe";\nexport default pipeline("m", { assets: [asset("a", { materialize: () => ({}) })] });\n`,
    "floe.config.ts": `import { defineConfig } from "floe";\nexport default defineConfig(${config});\n`,
  });
  projects.push(p);
  return p;
};
afterAll(() => {
  for (const p of projects) p.remove();
});

describe("metricsPort", () => {
  it("is where `floe serve` listens without --port; FLOE_METRICS_PORT wins over it", async () => {
    const port = await freePort();
    const p = project(`{ metricsPort: ${port} }`);
    const env = { ...process.env, FLOE_DATABASE_URL: "", FLOE_METRICS_PORT: "" };
    const serve = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "serve"], { cwd: p.dir, env, stdio: ["ignore", "pipe", "pipe"] });
    try {
      expect(await listeningUrl(serve)).toBe(`http://127.0.0.1:${port}`);
      expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
    } finally {
      serve.kill("SIGTERM");
      await new Promise((r) => serve.once("exit", r));
    }
    const other = await freePort();
    const fromEnv = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "serve"], { cwd: p.dir, env: { ...env, FLOE_METRICS_PORT: String(other) }, stdio: ["ignore", "pipe", "pipe"] });
    try {
      expect(await listeningUrl(fromEnv)).toBe(`http://127.0.0.1:${other}`);
    } finally {
      fromEnv.kill("SIGTERM");
      await new Promise((r) => fromEnv.once("exit", r));
    }
  });

  it("a bad value, in the file or the environment, is a one-line error", async () => {
    const bad = await floe(["serve"], { cwd: project(`{ metricsPort: "9464" }`).dir });
    expect([bad.code, bad.stderr.trim()]).toEqual([2, "floe: floe.config.ts: metricsPort: expected number, got string"]);
    const big = await floe(["serve"], { cwd: project(`{ metricsPort: 70000 }`).dir });
    expect([big.code, big.stderr.trim()]).toEqual([2, "floe: floe.config.ts: metricsPort: expected a port number (0-65535)"]);
    const env = await floe(["serve"], { cwd: project(`{}`).dir, env: { FLOE_METRICS_PORT: "http" } });
    expect([env.code, env.stderr.trim()]).toEqual([2, "floe: FLOE_METRICS_PORT must be a port number (0-65535), got `http`"]);
  });
});

describe("metricsPort beside a role", () => {
  it("`floe worker` serves /health on the configured port without --metrics-port", async () => {
    const { testDatabase } = await import("../helpers/pg.js");
    const db = await testDatabase();
    if (!db) return;
    const port = await freePort();
    const p = project(`{ metricsPort: ${port} }`);
    const worker = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "worker"], {
      cwd: p.dir, env: { ...process.env, FLOE_DATABASE_URL: db.url, FLOE_METRICS_PORT: "" }, stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let seen = "";
        worker.stderr!.on("data", (d: Buffer) => {
          seen += d.toString();
          const m = /metrics on (http:\/\/[\d.]+:\d+)\/metrics/.exec(seen);
          if (m) resolve(m[1]!);
        });
        worker.once("exit", (code) => reject(new Error(`floe worker exited ${code}: ${seen}`)));
      });
      expect(url).toBe(`http://127.0.0.1:${port}`);
      expect((await fetch(`${url}/ready`)).status).toBe(200);
    } finally {
      worker.kill("SIGTERM");
      await new Promise((r) => worker.once("exit", r));
      await db.drop();
    }
  });
});
