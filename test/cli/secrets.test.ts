import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { floe, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";

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
    const client = new pg.Client({ connectionString: db!.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ t: string }>(
        `select string_agg(x, ' ') as t from (
           select row_to_json(e)::text as x from events e union all select row_to_json(s)::text from run_steps s
           union all select row_to_json(r)::text from runs r union all select row_to_json(a)::text from asset_partitions a) q`,
      );
      expect(rows[0]!.t).toContain("***");
      expect(rows[0]!.t).not.toContain(CANARY);
    } finally {
      await client.end();
    }
  });

  it("an unset secret is a one-line error naming it", async () => {
    const r = await floe(["materialize", "--select", "talker", "--json"], { cwd: project.dir, env: { FLOE_DATABASE_URL: db!.url } });
    expect((JSON.parse(r.stdout) as { steps: Array<{ error: string }> }).steps[0]!.error).toBe("secret `FLOE_TEST_TOKEN` is not set; export FLOE_TEST_TOKEN=… before running floe");
  });
});
