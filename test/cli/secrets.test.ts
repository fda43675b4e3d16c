import { connect as amqpConnect, type ChannelModel } from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { floe, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";
import { storedText } from "../helpers/observe.js";

// A canary secret pushed through a failing run must not appear in any output or table.
const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const CANARY = "canary-7f3a9e1d-secret-value";
const AMQP_URL = process.env.FLOE_TEST_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const QUEUE = `floe-canary-${Math.random().toString(36).slice(2, 10)}`;
let broker: ChannelModel | undefined;
beforeAll(async () => {
  broker = await amqpConnect(AMQP_URL);
  const ch = await broker.createChannel();
  await ch.assertQueue(QUEUE, { durable: false, autoDelete: false });
  await ch.close();
});
const project = tempProject({
  "floe.config.ts": `import { amqp, defineConfig } from "floe";
export default defineConfig({ notifications: [{ notifier: amqp({ url: ${JSON.stringify(AMQP_URL)}, queue: ${JSON.stringify(QUEUE)} }), events: ["run_failed"] }] });
`,
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
  if (broker) {
    const ch = await broker.createChannel();
    await ch.deleteQueue(QUEUE);
    await broker.close();
  }
  project.remove();
  await db?.drop();
});

describe.skipIf(!db)("secrets", () => {
  it("are redacted from CLI output (text, --json, the tui snapshot), every table of the store and notifications", async () => {
    const env = { FLOE_DATABASE_URL: db!.url, FLOE_TEST_TOKEN: CANARY };
    const outputs: string[] = [];
    const m = await floe(["materialize", "--select", "*", "--json"], { cwd: project.dir, env });
    expect(m.code).toBe(1);
    const runId = (JSON.parse(m.stdout) as { runId: string }).runId;
    expect(m.stdout).toContain("auth failed for token ***");
    outputs.push(m.stdout, m.stderr);
    const texts = new Map<string, string>();
    for (const args of [["materialize", "--select", "*"], ["run", runId], ["run", runId, "--json"], ["runs"], ["runs", "--json"], ["status"], ["status", "--json"], ["tui"]]) {
      const r = await floe(args, { cwd: project.dir, env }); // stdout is a pipe: `floe tui` prints its snapshot, like `floe tui | cat`
      texts.set(args.join(" "), r.stdout);
      outputs.push(r.stdout, r.stderr);
    }
    expect(texts.get("tui")).toContain("talker");
    expect(texts.get("runs")).toContain("failed");
    expect(texts.get("status")).toContain("talker");
    // the run_failed notifications (one per failing run) as the AMQP consumer receives them
    const ch = await broker!.createChannel();
    const bodies: string[] = [];
    for (let i = 0; i < 50 && bodies.length < 2; i++) {
      const msg = await ch.get(QUEUE, { noAck: true });
      if (msg) bodies.push(msg.content.toString());
      else await new Promise((r) => setTimeout(r, 100));
    }
    await ch.close();
    expect(bodies).toHaveLength(2);
    expect(bodies[0]).toContain("auth failed for token ***");
    for (const o of [...outputs, ...bodies]) expect(o).not.toContain(CANARY);
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
