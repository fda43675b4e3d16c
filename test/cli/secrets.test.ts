import { afterAll, describe, expect, it } from "vitest";
import { floe, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";
import { storedText } from "../helpers/observe.js";

// A canary secret pushed through a failing run must not appear in any output or table.
const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const CANARY = "canary-7f3a9e1d-secret-value";
const project = tempProject({
  "pipelines/leak.ts": `import { asset, pipeline, resolveSecret, secret } from "floe";
const token = secret("FLOE_TEST_TOKEN");
export default pipeline("leak", { assets: [
  asset("talker", { retry: { maxAttempts: 2, delayMs: 1 }, materialize: (ctx) => {
    const value = resolveSecret(token);
    ctx.log.info("using token " + value, { token: value });
    throw new Error("auth failed for token " + value);
  } }),
  asset("after", { deps: ["talker"], materialize: () => ({}) }),
] });
`,
});
afterAll(async () => {
  project.remove();
  await db?.drop();
});

describe.skipIf(!db)("secrets", () => {
  it("are redacted from CLI output, events, steps and runs", async () => {
    const env = { FLOE_DATABASE_URL: db!.url, FLOE_TEST_TOKEN: CANARY };
    const outputs: string[] = [];
    const m = await floe(["materialize", "--select", "*", "--json"], { cwd: project.dir, env });
    expect(m.code).toBe(1);
    const runId = (JSON.parse(m.stdout) as { runId: string }).runId;
    expect(m.stdout).toContain("auth failed for token ***");
    outputs.push(m.stdout, m.stderr);
    for (const args of [["materialize", "--select", "*"], ["run", runId], ["run", runId, "--json"], ["runs", "--json"], ["status", "--json"]]) {
      const r = await floe(args, { cwd: project.dir, env });
      outputs.push(r.stdout, r.stderr);
    }
    for (const o of outputs) expect(o).not.toContain(CANARY);
    const stored = await storedText(db!.url);
    expect(stored).toContain("***");
    expect(stored).not.toContain(CANARY);
  });

  it("an unset secret is a one-line error naming it", async () => {
    const r = await floe(["materialize", "--select", "talker", "--json"], { cwd: project.dir, env: { FLOE_DATABASE_URL: db!.url } });
    expect((JSON.parse(r.stdout) as { steps: Array<{ error: string }> }).steps[0]!.error).toBe(
      "secret `FLOE_TEST_TOKEN` is not set: not in the environment, and no secrets file is configured; export FLOE_TEST_TOKEN=… or add it to a secrets file (secretsFile in floe.config.ts, or FLOE_SECRETS_FILE)",
    );
  });
});
