import { rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { connect } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { floe, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";
import { storedText } from "../helpers/observe.js";

// A canary secret read from the secrets file, pushed through a failing run, must not appear in
// any output, table or notification.
const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const NATS_URL = process.env.FLOE_TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const CANARY = "canary-file-8c2d41b7-value";
const SUBJECT = `floe-secrets-${Math.random().toString(36).slice(2, 10)}`;
const bodies: string[] = [];
const receiver = createServer((req, res) => {
  let body = "";
  req.on("data", (d: Buffer) => (body += d.toString()));
  req.on("end", () => {
    bodies.push(`${JSON.stringify(req.headers)}\n${body}`);
    res.writeHead(204).end();
  });
});
let hook = "";
beforeAll(async () => {
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", () => r()));
  hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook?token=${CANARY}`;
});
const project = tempProject({
  "ops/secrets.env": `# floe secrets\nexport FILE_TOKEN="${CANARY}"\nWHICH='file-value-1234'\nHOOK_URL=will-be-set-below\n`,
  // a malformed line that quotes the secret: the parser's error (file ledger, step error) quotes it back
  "landing/bad.csv": `id,amount\n1,10\n2,${CANARY},extra\n`,
  "pipelines/leak.ts": `import { asset, pipeline, rawFiles, resolveSecret, secret } from "floe";
export default pipeline("leak", { assets: [
  asset("talker", { materialize: (ctx) => {
    const value = resolveSecret(secret("FILE_TOKEN"));
    ctx.log.warn("using token " + value, { token: value });
    throw new Error("auth failed for token " + value);
  } }),
  asset("which", { materialize: () => ({ metadata: { fromFile: resolveSecret(secret("WHICH")).startsWith("file-") } }) }),
  asset("missing", { materialize: () => ({ metadata: { v: resolveSecret(secret("MISSING_ONE")) } }) }),
  rawFiles("landing_raw", { storage: { type: "local", root: "landing" }, glob: "*.csv", format: "csv", maxAttempts: 1 }),
] });
`,
  "floe.config.ts": `import { defineConfig, nats, secret, webhook } from "floe";
export default defineConfig({
  secretsFile: "ops/secrets.env",
  notifications: [
    { notifier: webhook({ url: secret("HOOK_URL"), secret: secret("FILE_TOKEN") }), events: ["run_failed"] },
    { notifier: nats({ servers: ${JSON.stringify(NATS_URL)}, subject: "${SUBJECT}", token: secret("NO_TOKEN_NEEDED") }), events: ["run_failed"] },
  ],
});
`,
});
afterAll(async () => {
  receiver.close();
  project.remove();
  await db?.drop();
});

describe.skipIf(!db)("secrets file", () => {
  it("a canary from the file never reaches stdout, stderr, --json, tables or notifications", async () => {
    project.write({ "ops/secrets.env": `# floe secrets\nexport FILE_TOKEN="${CANARY}"\nWHICH='file-value-1234'\nHOOK_URL=${hook}\nNO_TOKEN_NEEDED=unused-token-5678\n` });
    const env = { FLOE_DATABASE_URL: db!.url };
    const nc = await connect({ servers: NATS_URL });
    const messages: string[] = [];
    nc.subscribe(SUBJECT, { callback: (_e, m) => messages.push(new TextDecoder().decode(m.data)) });
    await nc.flush();
    const outputs: string[] = [];
    try {
      const m = await floe(["materialize", "--select", "talker which landing_raw", "--json"], { cwd: project.dir, env });
      expect(m.code, m.stderr).toBe(1);
      const result = JSON.parse(m.stdout) as { runId: string; steps: Array<{ asset: string; error?: string; metadata: Record<string, unknown> }> };
      expect(result.steps.find((s) => s.asset === "talker")!.error).toBe("auth failed for token ***");
      expect(result.steps.find((s) => s.asset === "which")!.metadata).toEqual({ fromFile: true });
      outputs.push(m.stdout, m.stderr);
      expect(result.steps.find((s) => s.asset === "landing_raw")!.error).toMatch(/bad\.csv/);
      for (const args of [["run", result.runId], ["run", result.runId, "--json"], ["runs"], ["runs", "--json"], ["status"], ["status", "--json"], ["tui"], ["materialize", "--select", "talker"]]) {
        const r = await floe(args, { cwd: project.dir, env });
        outputs.push(r.stdout, r.stderr);
      }
      await nc.flush();
    } finally {
      await nc.close();
    }
    expect(bodies.length).toBe(2); // one run_failed per failing run, to the URL from the file
    expect(messages.length).toBe(2);
    expect(bodies.join("\n")).toContain("auth failed for token ***");
    expect(messages.join("\n")).toContain("auth failed for token ***");
    for (const o of [...outputs, ...bodies, ...messages]) expect(o).not.toContain(CANARY);
    const stored = await storedText(db!.url);
    expect(stored).toContain("using token ***");
    expect(stored).toMatch(/^processed_files: .*bad\.csv.*FAILED/m); // every table is read, the file ledger too
    expect(stored).not.toContain(CANARY);
  });

  it("the environment wins over the file; a secret in neither names both places", async () => {
    const env = { FLOE_DATABASE_URL: db!.url, WHICH: "env-value-5678" };
    const r = await floe(["materialize", "--select", "which missing", "--json"], { cwd: project.dir, env });
    const steps = (JSON.parse(r.stdout) as { steps: Array<{ asset: string; error?: string; metadata: Record<string, unknown> }> }).steps;
    expect(steps.find((s) => s.asset === "which")!.metadata).toEqual({ fromFile: false });
    expect(steps.find((s) => s.asset === "missing")!.error).toBe(
      `secret \`MISSING_ONE\` is not set: not in the environment, nor in the secrets file ${join(project.dir, "ops/secrets.env")}; export MISSING_ONE=… or add a line MISSING_ONE=… to the file`,
    );
  });

  it("bad input: a notifier's missing secret, a malformed or missing file: one line, exit 2", async () => {
    const env = { FLOE_DATABASE_URL: db!.url };
    project.write({ "ops/secrets.env": `FILE_TOKEN=${CANARY}\nHOOK_URL=${hook}\n` }); // NO_TOKEN_NEEDED is gone
    const noToken = await floe(["materialize", "--select", "which"], { cwd: project.dir, env });
    expect(noToken.code).toBe(2);
    expect(noToken.stderr.trim()).toBe(
      `floe: floe.config.ts: notifications.1.notifier (nats): secret \`NO_TOKEN_NEEDED\` is not set: not in the environment, nor in the secrets file ${join(project.dir, "ops/secrets.env")}; export NO_TOKEN_NEEDED=… or add a line NO_TOKEN_NEEDED=… to the file`,
    );
    project.write({ "ops/secrets.env": `FILE_TOKEN=${CANARY}\n${CANARY}\n` });
    const malformed = await floe(["list"], { cwd: project.dir, env });
    expect(malformed.code).toBe(2);
    expect(malformed.stderr.trim()).toBe(`floe: ${join(project.dir, "ops/secrets.env")}:2: expected NAME=value (a secrets file holds one secret per line)`);
    const missing = await floe(["list"], { cwd: project.dir, env: { ...env, FLOE_SECRETS_FILE: "nowhere/secrets.env" } });
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim()).toBe(`floe: FLOE_SECRETS_FILE: ${join(project.dir, "nowhere/secrets.env")} does not exist`);
    rmSync(join(project.dir, "ops/secrets.env"));
    const missingFromConfig = await floe(["list"], { cwd: project.dir, env });
    expect([missingFromConfig.code, missingFromConfig.stderr.trim()]).toEqual([2, `floe: floe.config.ts: secretsFile: ${join(project.dir, "ops/secrets.env")} does not exist`]);
  });
});
