import { createHmac } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Dispatcher, type Notification } from "../../src/notify/notifier.js";
import { webhook } from "../../src/notify/webhook-notifier.js";
import { redact, secret } from "../../src/secrets.js";
import { floe, tempProject } from "../helpers/project.js";

// Webhook headers given as secret() references: sent resolved, never written anywhere else.
const CANARY = "Bearer canary-hdr-5e1f77aa";
const received: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
const receiver = createServer((req, res) => {
  let body = "";
  req.on("data", (d: Buffer) => (body += d.toString()));
  req.on("end", () => {
    received.push({ headers: req.headers, body });
    res.writeHead(204).end();
  });
});
let hook = "";
beforeAll(async () => {
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
});
afterAll(async () => {
  await new Promise((r) => receiver.close(r));
});

const notification: Notification = {
  event: "run_failed", message: "run 3f2a9c1e failed", runId: "3f2a9c1e-0000-4000-8000-000000000000", status: "failed",
  assets: ["a"], pipelines: ["a"], failedSteps: [], at: new Date().toISOString(),
};

describe("webhook headers", () => {
  it("a header may be a secret: sent resolved, beside plain headers and the signature, and redacted after", async () => {
    process.env.FLOE_TEST_HOOK_AUTH = CANARY;
    const before = received.length;
    const d = new Dispatcher([{ notifier: webhook({ url: hook, secret: "sign-key", headers: { authorization: secret("FLOE_TEST_HOOK_AUTH"), "x-team": "data" } }) }]);
    d.publish(notification);
    await d.close(5_000);
    const got = received.slice(before);
    expect(got).toHaveLength(1);
    expect(got[0]!.headers).toMatchObject({ authorization: CANARY, "x-team": "data", "content-type": "application/json" });
    expect(got[0]!.headers["x-floe-signature"]).toBe(`sha256=${createHmac("sha256", "sign-key").update(got[0]!.body).digest("hex")}`);
    expect(redact(`rejected ${CANARY}`)).toBe("rejected ***");
  });

  it("through the CLI: delivered with the header; a missing header secret stops the command (exit 2); a bad header name names its path", async () => {
    const p = tempProject({
      "pipelines/a.ts": `import { asset, pipeline } from "floe";
export default pipeline("a", { assets: [asset("a", { materialize: () => { throw new Error("no: " + process.env.HOOK_AUTH); } })] });
`,
      "floe.config.ts": `import { defineConfig, secret, webhook } from "floe";
export default defineConfig({ notifications: [{ notifier: webhook({ url: ${JSON.stringify(hook)}, headers: { authorization: secret("HOOK_AUTH") } }), events: ["run_failed"] }] });
`,
    });
    try {
      const before = received.length;
      const r = await floe(["materialize", "--select", "a", "--json"], { cwd: p.dir, env: { HOOK_AUTH: CANARY } });
      expect(r.code, r.stderr).toBe(1);
      expect((JSON.parse(r.stdout) as { steps: Array<{ error: string }> }).steps[0]!.error).toBe("no: ***");
      const got = received.slice(before);
      expect(got).toHaveLength(1);
      expect(got[0]!.headers.authorization).toBe(CANARY);
      expect(got[0]!.body).not.toContain(CANARY);
      expect(JSON.parse(got[0]!.body)).toMatchObject({ event: "run_failed", failedSteps: [{ asset: "a", error: "no: ***" }] });
      const text = await floe(["run", (JSON.parse(r.stdout) as { runId: string }).runId, "--json"], { cwd: p.dir, env: { HOOK_AUTH: CANARY } });
      for (const o of [r.stdout, r.stderr, text.stdout, text.stderr]) expect(o).not.toContain(CANARY);

      const missing = await floe(["materialize", "--select", "a"], { cwd: p.dir });
      expect(missing.code).toBe(2);
      expect(missing.stderr.trim()).toMatch(/^floe: floe\.config\.ts: notifications\.0\.notifier \(webhook\): secret `HOOK_AUTH` is not set: /);

      p.write({ "floe.config.ts": `import { defineConfig, secret, webhook } from "floe";
export default defineConfig({ notifications: [{ notifier: webhook({ url: ${JSON.stringify(hook)}, headers: { "bad header": secret("HOOK_AUTH"), "x-n": 5 as unknown as string } }) }] });
` });
      const bad = await floe(["list"], { cwd: p.dir });
      expect([bad.code, bad.stderr.trim()]).toEqual([2, "floe: floe.config.ts: notifications.0.notifier.headers.bad header: expected an HTTP header name"]);
    } finally {
      p.remove();
    }
  }, 60_000);
});
