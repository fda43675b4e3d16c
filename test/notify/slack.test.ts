import { createServer as createHttpServer, type IncomingHttpHeaders } from "node:http";
import { createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { storeMetrics } from "../../src/metrics/server.js";
import { DeliveryTally, projectDispatcher } from "../../src/notify/runs.js";
import type { ProjectSettings } from "../../src/project/config.js";
import { Dispatcher, type Notification } from "../../src/notify/notifier.js";
import { slack } from "../../src/notify/webhook-notifier.js";
import { secret } from "../../src/secrets.js";
import { floe, tempProject } from "../helpers/project.js";
import { parsePrometheus } from "../helpers/observe.js";
import { testStore } from "../helpers/store.js";

// Slack-compatible delivery against an in-test HTTP receiver, and against an endpoint that accepts
// connections but never answers.
const received: Array<{ path: string; headers: IncomingHttpHeaders; body: string }> = [];
const receiver = createHttpServer((req, res) => {
  let body = "";
  req.on("data", (d: Buffer) => (body += d.toString()));
  req.on("end", () => {
    received.push({ path: req.url ?? "", headers: req.headers, body });
    res.writeHead(200, { "content-type": "text/plain" }).end("ok");
  });
});
const sockets = new Set<Socket>();
let accepted = 0;
const hanging = createTcpServer((socket) => {
  accepted++;
  sockets.add(socket); // read nothing, answer nothing
  socket.on("close", () => sockets.delete(socket));
});
let base = "";
let hangingUrl = "";
beforeAll(async () => {
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  await new Promise<void>((r) => hanging.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  hangingUrl = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/hook`;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => receiver.close(r));
  await new Promise((r) => hanging.close(r));
});

function notification(over: Partial<Notification> = {}): Notification {
  return {
    event: "run_failed", message: "run 3f2a9c1e failed: 1 of 2 steps succeeded: flaky: disk full", runId: "3f2a9c1e-0000-4000-8000-000000000000",
    status: "failed", assets: ["fine", "flaky"], pipelines: ["n"], failedSteps: [{ asset: "flaky", partition: null, error: "disk full" }], at: new Date().toISOString(), ...over,
  };
}

describe("slack", () => {
  it("posts { text } as JSON to its URL, given as a secret", async () => {
    process.env.FLOE_TEST_SLACK_URL = `${base}/services/T000/B000/slack-secret-path`;
    const outcomes: string[] = [];
    const d = new Dispatcher([{ notifier: slack({ url: secret("FLOE_TEST_SLACK_URL") }) }, { notifier: slack({ url: `${base}/ok`, name: "ops-slack" }), events: ["run_succeeded"] }], {
      onResult: (name, outcome) => outcomes.push(`${name} ${outcome}`),
    });
    d.publish(notification());
    d.publish(notification({ event: "run_succeeded", status: "success", message: "run 11112222 success: 2 of 2 steps succeeded", failedSteps: [] }));
    await d.close(5_000);
    expect(outcomes.sort()).toEqual(["ops-slack delivered", "slack delivered"]);
    const byPath = new Map(received.map((r) => [r.path, r]));
    const failed = byPath.get("/services/T000/B000/slack-secret-path")!;
    expect(failed.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(failed.body)).toEqual({ text: ":x: run 3f2a9c1e failed: 1 of 2 steps succeeded: flaky: disk full" });
    expect(JSON.parse(byPath.get("/ok")!.body)).toEqual({ text: ":white_check_mark: run 11112222 success: 2 of 2 steps succeeded" });
  });

  it("an endpoint that never answers: each attempt gives up after its timeout, retries are reported, the delivery is counted failed", async () => {
    const events: string[] = [];
    const counts: string[] = [];
    const before = accepted;
    const d = new Dispatcher([{ notifier: slack({ url: hangingUrl, name: "hung" }) }], {
      timeoutMs: 300, retryDelayMs: 50,
      onRetry: (name, attempt, attempts, error, delayMs) => events.push(`${name} retry ${attempt}/${attempts} in ${delayMs} ms: ${error}`),
      onResult: (name, outcome, error) => events.push(`${name} ${outcome}: ${error ?? ""}`),
      onCount: (l) => counts.push(`${l.notifier} ${l.event} ${l.outcome}`),
    });
    const t0 = Date.now();
    d.publish(notification());
    // publish returns before the first attempt has even reached the endpoint: the caller never waits
    expect(accepted - before, "publish does not wait for the delivery").toBe(0);
    expect(events).toEqual([]);
    await d.drain(10_000);
    // three timed-out attempts and two backoffs (a lower bound: the timeouts must have run out)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3 * 300 + 50 + 100 - 20);
    expect(events).toEqual([
      "hung retry 1/3 in 50 ms: no answer within 300 ms",
      "hung retry 2/3 in 100 ms: no answer within 300 ms",
      "hung failed: no answer within 300 ms",
    ]);
    expect(counts).toEqual(["hung run_failed retried", "hung run_failed retried", "hung run_failed failed"]);
    expect(accepted - before, "three attempts reached the endpoint").toBe(3);
  });

  it("through the CLI: the run's result is unaffected, each retry and the failure are on stderr", async () => {
    const p = tempProject({
      "pipelines/a.ts": `import { asset, pipeline } from "floe";\nexport default pipeline("a", { assets: [asset("a", { materialize: () => ({ metadata: { rows: 1 } }) })] });\n`,
      "floe.config.ts": `import { defineConfig, slack } from "floe";
export default defineConfig({ notifications: [{ notifier: slack({ url: ${JSON.stringify(hangingUrl)}, name: "hung" }), events: ["run_succeeded"] }] });
`,
    });
    try {
      const r = await floe(["materialize", "--select", "a", "--json"], { cwd: p.dir });
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { status: string; steps: Array<{ status: string; metadata: { rows: number } }> };
      expect(out.status).toBe("success");
      expect(out.steps[0]).toMatchObject({ status: "success", metadata: { rows: 1 } });
      const lines = r.stderr.trim().split("\n");
      // 5 s per attempt; the third is cut at the 15 s the CLI waits for notifications at exit, and still reported
      expect(lines.filter((l) => l.startsWith("floe: notification to hung "))).toEqual([
        "floe: notification to hung failed (attempt 1 of 3: no answer within 5000 ms); retrying in 500 ms",
        "floe: notification to hung failed (attempt 2 of 3: no answer within 5000 ms); retrying in 1000 ms",
        "floe: notification to hung failed after retries: no answer to attempt 3 of 3 before the process exits",
      ]);
    } finally {
      p.remove();
    }
  }, 40_000);

  it("a failed delivery is counted in the store's floe_notification_deliveries_total", async () => {
    const graph = AssetGraph.build([{ pipeline: pipeline("n", { assets: [asset("fine", { materialize: () => ({}) }), asset("flaky", { materialize: () => ({}) })] }), module: "n.ts" }]);
    const settings = { notifications: [{ notifier: slack({ url: hangingUrl, name: "hung_counted" }) }] } as unknown as ProjectSettings;
    const t = await testStore("deliveries");
    try {
      const tally = new DeliveryTally();
      const d = await projectDispatcher(settings, graph, { timeoutMs: 200, retryDelayMs: 10, onRetry: () => undefined }, tally);
      d.publish(notification());
      await d.close(5_000);
      tally.attach(t.store);
      await tally.close();
      const m = parsePrometheus(await storeMetrics(t.store).metrics());
      expect(m.get('floe_notification_deliveries_total{notifier="hung_counted",event="run_failed",outcome="retried"}')).toBe(2);
      expect(m.get('floe_notification_deliveries_total{notifier="hung_counted",event="run_failed",outcome="failed"}')).toBe(1);
      expect(m.get('floe_notification_deliveries_total{notifier="hung_counted",event="run_failed",outcome="delivered"}')).toBeUndefined();
      // a second process's counts add to the totals
      const other = new DeliveryTally();
      other.attach(t.store);
      other.count({ notifier: "hung_counted", event: "run_failed", outcome: "failed" });
      await other.close();
      expect(parsePrometheus(await storeMetrics(t.store).metrics()).get('floe_notification_deliveries_total{notifier="hung_counted",event="run_failed",outcome="failed"}')).toBe(2);
    } finally {
      await t.close();
    }
  });
});
