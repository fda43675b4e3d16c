import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { connect as amqpConnect } from "amqplib";
import { connect as natsConnect } from "nats";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { amqp } from "../../src/notify/amqp-notifier.js";
import { nats } from "../../src/notify/nats-notifier.js";
import { Dispatcher, type Notification } from "../../src/notify/notifier.js";
import { email } from "../../src/notify/smtp-notifier.js";
import { redact, secret } from "../../src/secrets.js";

// Real brokers of this machine: RabbitMQ on 5672 (guest/guest), NATS on 4222; an in-test SMTP server.
const AMQP_URL = process.env.FLOE_TEST_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const NATS_URL = process.env.FLOE_TEST_NATS_URL ?? "nats://127.0.0.1:4222";

function notification(over: Partial<Notification> = {}): Notification {
  return {
    event: "run_failed", message: "run 3f2a9c1e failed: 1 of 2 steps succeeded: flaky: disk full", runId: "3f2a9c1e-0000-4000-8000-000000000000",
    status: "failed", assets: ["fine", "flaky"], pipelines: ["n"], failedSteps: [{ asset: "flaky", partition: null, error: "disk full" }], at: new Date().toISOString(), ...over,
  };
}

const mails: Array<{ from: string; to: string[]; data: string; user: string | undefined }> = [];
const smtp = new SMTPServer({
  disabledCommands: ["STARTTLS"],
  allowInsecureAuth: true,
  onAuth(auth, _session, cb) {
    if (auth.username === "floe" && auth.password === "smtp-pass-1234") cb(null, { user: auth.username });
    else cb(new Error("invalid credentials"));
  },
  onData(stream, session, cb) {
    let data = "";
    stream.on("data", (d: Buffer) => (data += d.toString()));
    stream.on("end", () => {
      // unfold folded header lines
      mails.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "", to: session.envelope.rcptTo.map((r) => r.address), data: data.replace(/\r?\n[ \t]+/g, " "), user: session.user as string | undefined });
      cb();
    });
  },
});
let smtpPort = 0;
beforeAll(async () => {
  await new Promise<void>((r) => smtp.listen(0, "127.0.0.1", () => r()));
  smtpPort = (smtp.server.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise<void>((r) => smtp.close(() => r()));
});

describe("email over SMTP", () => {
  it("sends the notification, authenticated with a secret, over one reused connection", async () => {
    process.env.FLOE_TEST_SMTP_PASSWORD = "smtp-pass-1234";
    const n = email({ host: "127.0.0.1", port: smtpPort, user: "floe", password: secret("FLOE_TEST_SMTP_PASSWORD"), from: "floe@example.com", to: ["data@example.com", "ops@example.com"] });
    let connections = 0;
    const onConnect = (): void => void connections++;
    smtp.server.on("connection", onConnect);
    try {
      await n.send(notification(), AbortSignal.timeout(5_000));
      await n.send(notification({ event: "run_succeeded", message: "run 11112222 success: 2 of 2 steps succeeded", failedSteps: [] }), AbortSignal.timeout(5_000));
    } finally {
      await n.close?.();
      smtp.server.off("connection", onConnect);
    }
    expect(mails).toHaveLength(2);
    expect(mails[0]).toMatchObject({ from: "floe@example.com", to: ["data@example.com", "ops@example.com"], user: "floe" });
    expect(mails[0]!.data).toContain("Subject: [floe] run 3f2a9c1e failed: 1 of 2 steps succeeded: flaky: disk full");
    expect(mails[0]!.data).toContain("failed: flaky: disk full");
    expect(mails[1]!.data).toContain("Subject: [floe] run 11112222 success");
    expect(connections).toBe(1);
    expect(redact("pw smtp-pass-1234")).toBe("pw ***");
  });

  it("a wrong password fails the delivery with the server's answer", async () => {
    const n = email({ host: "127.0.0.1", port: smtpPort, user: "floe", password: "wrong", from: "floe@example.com", to: "data@example.com" });
    await expect(n.send(notification(), AbortSignal.timeout(5_000))).rejects.toThrow(/invalid credentials/i);
    await n.close?.();
  });
});

describe("RabbitMQ", () => {
  it("publishes to an exchange with the event as routing key, and straight to a queue", async () => {
    const conn = await amqpConnect(AMQP_URL);
    const ch = await conn.createChannel();
    const exchange = `floe-test-${randomUUID()}`;
    await ch.assertExchange(exchange, "topic", { durable: false, autoDelete: true });
    const { queue: bound } = await ch.assertQueue(`${exchange}-bound`, { durable: false });
    await ch.bindQueue(bound, exchange, "floe.run_failed");
    const { queue: direct } = await ch.assertQueue(`${exchange}-direct`, { durable: false });
    process.env.FLOE_TEST_AMQP_URL_SECRET = AMQP_URL;
    const toExchange = amqp({ url: secret("FLOE_TEST_AMQP_URL_SECRET"), exchange });
    const toQueue = amqp({ url: AMQP_URL, queue: direct, name: "rabbit-queue" });
    try {
      await toExchange.send(notification(), AbortSignal.timeout(5_000));
      await toExchange.send(notification({ event: "run_succeeded" }), AbortSignal.timeout(5_000)); // no binding: routed nowhere
      await toQueue.send(notification({ event: "check_failed" }), AbortSignal.timeout(5_000));
      const got = await ch.get(bound, { noAck: true });
      expect(got && JSON.parse(got.content.toString())).toMatchObject({ event: "run_failed", failedSteps: [{ asset: "flaky", error: "disk full" }] });
      expect(got && got.properties.contentType).toBe("application/json");
      expect(got && got.fields.routingKey).toBe("floe.run_failed");
      expect(await ch.get(bound, { noAck: true })).toBe(false);
      const q = await ch.get(direct, { noAck: true });
      expect(q && JSON.parse(q.content.toString())).toMatchObject({ event: "check_failed" });
      expect(redact(`url ${AMQP_URL}`)).toBe("url ***");
    } finally {
      await toExchange.close?.();
      await toQueue.close?.();
      await ch.deleteQueue(bound);
      await ch.deleteQueue(direct);
      await conn.close();
    }
  });

  it("a missing exchange fails the send, naming it", async () => {
    const n = amqp({ url: AMQP_URL, exchange: `floe-missing-${randomUUID()}` });
    await expect(n.send(notification(), AbortSignal.timeout(5_000))).rejects.toThrow(/NOT_FOUND - no exchange 'floe-missing-/);
    await n.close?.();
  });
});

describe("NATS", () => {
  it("publishes on the event's subject over one connection", async () => {
    const sub = await natsConnect({ servers: NATS_URL });
    const prefix = `floe-test-${randomUUID().slice(0, 8)}`;
    const s = sub.subscribe(`${prefix}.>`);
    await sub.flush();
    const n = nats({ servers: NATS_URL, subject: `${prefix}.{event}` });
    try {
      await n.send(notification(), AbortSignal.timeout(5_000));
      await n.send(notification({ event: "files_failed", counts: [{ asset: "raw", partition: "2025-01-01", failedFiles: 2 }] }), AbortSignal.timeout(5_000));
      const got: Array<{ subject: string; body: Notification }> = [];
      for await (const m of s) {
        got.push({ subject: m.subject, body: JSON.parse(new TextDecoder().decode(m.data)) as Notification });
        if (got.length === 2) break;
      }
      expect(got.map((g) => g.subject)).toEqual([`${prefix}.run_failed`, `${prefix}.files_failed`]);
      expect(got[1]!.body.counts).toEqual([{ asset: "raw", partition: "2025-01-01", failedFiles: 2 }]);
    } finally {
      await n.close?.();
      await sub.close();
    }
  });
});

describe("a broker that is down", () => {
  it("fails the delivery after retries and counts it; the caller is never held up or thrown at", async () => {
    const counts: string[] = [];
    const results: string[] = [];
    const notifiers = [
      amqp({ url: "amqp://guest:guest@127.0.0.1:1", exchange: "x", name: "rabbit" }),
      nats({ servers: "nats://127.0.0.1:1", name: "nats" }),
      email({ host: "127.0.0.1", port: 1, from: "a@b.c", to: "d@e.f", name: "mail" }),
    ];
    const d = new Dispatcher(notifiers.map((notifier) => ({ notifier, events: ["run_failed"] as const })), {
      attempts: 2, retryDelayMs: 1,
      onResult: (name, outcome, error) => results.push(`${name} ${outcome} ${error ?? ""}`),
      onCount: (l) => counts.push(`${l.notifier} ${l.event} ${l.outcome}`),
    });
    d.publish(notification()); // returns at once
    await d.close(10_000);
    expect(results.sort()).toEqual([
      expect.stringMatching(/^mail failed .*ECONNREFUSED/),
      expect.stringMatching(/^nats failed .*(CONNECTION_REFUSED|ECONNREFUSED)/),
      expect.stringMatching(/^rabbit failed .*ECONNREFUSED/),
    ]);
    expect(counts.sort()).toEqual([
      "mail run_failed failed", "mail run_failed retried",
      "nats run_failed failed", "nats run_failed retried",
      "rabbit run_failed failed", "rabbit run_failed retried",
    ]);
  });
});
