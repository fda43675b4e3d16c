import { createHmac } from "node:crypto";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { floe, repoRoot, tempProject } from "../helpers/project.js";
import { queryRows, testDatabase } from "../helpers/pg.js";

const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const received: Array<{ body: string; signature: string | undefined }> = [];
let attempts = 0;
const server = createServer((req: IncomingMessage, res) => {
  let body = "";
  req.on("data", (d: Buffer) => (body += d.toString()));
  req.on("end", () => {
    attempts++;
    if (attempts === 1) return void res.writeHead(500).end(); // the first delivery fails: retried
    received.push({ body, signature: req.headers["x-floe-signature"] as string | undefined });
    res.writeHead(204).end();
  });
});
let hook = "";
beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  hook = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
});
const project = tempProject({
  "pipelines/n.ts": `import { asset, pipeline } from "floe";
export default pipeline("n", { assets: [asset("fine", { materialize: () => ({}) }), asset("flaky", { materialize: () => { throw new Error("disk full"); } })] });
`,
  "floe.config.ts": `import { defineConfig, secret, webhook } from "floe";
export default defineConfig({
  notifications: [
    { notifier: webhook({ url: process.env.HOOK_URL!, secret: secret("HOOK_SECRET") }), events: ["run_failed"], select: "flaky" },
    { notifier: webhook({ url: "http://127.0.0.1:1/nowhere", name: "dead" }), events: ["run_failed"] },
  ],
});
`,
});
afterAll(async () => {
  server.close();
  project.remove();
  await db?.drop();
});

describe.skipIf(!db)("notifications", () => {
  it("a failed run is posted, signed, retried after a 500; a dead endpoint never changes the run's result", async () => {
    const env = { FLOE_DATABASE_URL: db!.url, HOOK_URL: hook, HOOK_SECRET: "s3cr3t-hmac-key" };
    const ok = await floe(["materialize", "--select", "fine"], { cwd: project.dir, env });
    expect(ok.code).toBe(0);
    expect(ok.stderr).not.toMatch(/notification/); // run_succeeded is not routed anywhere
    const r = await floe(["materialize", "--select", "*", "--json"], { cwd: project.dir, env });
    expect(r.code).toBe(1);
    const runId = (JSON.parse(r.stdout) as { runId: string }).runId;
    expect(received).toHaveLength(1);
    expect(attempts).toBe(2);
    const { body, signature } = received[0]!;
    expect(signature).toBe(`sha256=${createHmac("sha256", "s3cr3t-hmac-key").update(body).digest("hex")}`);
    expect(JSON.parse(body)).toMatchObject({
      event: "run_failed", runId, status: "failed", pipelines: ["n"],
      failedSteps: [{ asset: "flaky", partition: null, error: "disk full" }],
      message: `run ${runId.slice(0, 8)} failed: 1 of 2 steps succeeded: flaky: disk full`,
    });
    expect(r.stderr).toMatch(/^floe: notification to dead failed after retries: /m);
    // the short-lived command wrote its delivery counts to the store before it exited
    const rows = await queryRows<{ notifier: string; outcome: string; count: string }>(
      db!.url, "select notifier, outcome, count::text from notification_deliveries where event = 'run_failed' order by notifier, outcome",
    );
    expect(rows.map((x) => `${x.notifier} ${x.outcome} ${x.count}`)).toEqual(["dead failed 1", "dead retried 2", "webhook delivered 1", "webhook retried 1"]);
  });

  it("a bad notifications entry in floe.config.ts names the path", async () => {
    project.write({ "floe.config.ts": `export default { notifications: [{ notifier: "https://example.invalid" }] };\n` });
    const r = await floe(["list"], { cwd: project.dir, env: { FLOE_DATABASE_URL: db!.url } });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe("floe: floe.config.ts: notifications.0.notifier: expected a notifier, e.g. webhook({ url }) or slack({ url })");
  });
});

describe.skipIf(!db)("backfill notifications", () => {
  it("a finished backfill is announced once", async () => {
    const p = tempProject({
      "pipelines/d.ts": `import { asset, partitions, pipeline } from "floe";
export default pipeline("d", { assets: [asset("day", { partitions: partitions.daily({ start: "2025-01-01" }), materialize: () => ({}) })] });
`,
      "floe.config.ts": `import { defineConfig, webhook } from "floe";
export default defineConfig({ notifications: [{ notifier: webhook({ url: process.env.HOOK_URL! }), events: ["backfill_finished"] }] });
`,
    });
    try {
      const before = received.length;
      const r = await floe(["backfill", "--select", "day", "--from", "2025-01-01", "--to", "2025-01-03", "--json"], { cwd: p.dir, env: { FLOE_DATABASE_URL: db!.url, HOOK_URL: hook } });
      expect(r.code, r.stderr).toBe(0);
      const mine = received.slice(before).map((x) => JSON.parse(x.body) as { event: string; status: string; backfillId: string; message: string });
      expect(mine).toHaveLength(1);
      expect(mine[0]).toMatchObject({ event: "backfill_finished", status: "success", backfillId: (JSON.parse(r.stdout) as { backfillId: string }).backfillId });
      expect(mine[0]!.message).toMatch(/^backfill [0-9a-f]{8} success: 3 of 3 run\(s\) succeeded over 2025-01-01…2025-01-03$/);
    } finally {
      p.remove();
    }
  });

  it("a backfill whose driver was killed is settled and announced once by the worker that ends it", async () => {
    const p = tempProject({
      "pipelines/d.ts": `import { asset, partitions, pipeline } from "floe";
export default pipeline("d", { assets: [asset("day", { partitions: partitions.daily({ start: "2025-01-01" }), materialize: async () => (await new Promise((r) => setTimeout(r, 200)), {}) })] });
`,
      "floe.config.ts": `import { defineConfig, webhook } from "floe";
export default defineConfig({ notifications: [{ notifier: webhook({ url: process.env.HOOK_URL! }), events: ["backfill_finished"] }] });
`,
    });
    const env = { FLOE_DATABASE_URL: db!.url, HOOK_URL: hook, FLOE_HEARTBEAT_MS: "200" };
    try {
      const before = received.length;
      // the driver dies (kill -9) once its backfill is recorded; nothing settles it then
      const driver = spawn(process.execPath, [join(repoRoot, "bin", "floe.js"), "backfill", "--select", "day", "--from", "2025-01-01", "--to", "2025-01-04", "--concurrency", "1"], {
        cwd: p.dir, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"],
      });
      await new Promise<void>((resolve, reject) => {
        let seen = "";
        driver.stderr!.on("data", (d: Buffer) => {
          seen += d.toString();
          if (/✓ 2025-01-01/.test(seen)) resolve();
        });
        driver.once("exit", () => reject(new Error(`the driver exited early: ${seen}`)));
      });
      driver.kill("SIGKILL");
      await new Promise((r) => driver.once("exit", r));
      const w = await floe(["worker", "--runs", "2", "--until-empty"], { cwd: p.dir, env });
      expect(w.code, w.stderr).toBe(0);
      const mine = received.slice(before).map((x) => JSON.parse(x.body) as { event: string; status: string; message: string });
      expect(mine).toHaveLength(1);
      expect(mine[0]).toMatchObject({ event: "backfill_finished", status: "success" });
      expect(mine[0]!.message).toMatch(/success: 4 of 4 run\(s\) succeeded over 2025-01-01…2025-01-04$/);
    } finally {
      p.remove();
    }
  }, 60_000);
});
