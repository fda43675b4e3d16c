import { randomUUID } from "node:crypto";
import { connect } from "nats";
import { afterAll, describe, expect, it } from "vitest";
import type { Notification } from "../../src/notify/notifier.js";
import { floe, tempProject } from "../helpers/project.js";
import { testDatabase } from "../helpers/pg.js";

// Check failures, failed files and quarantined rows, derived from step metadata, routed by
// event and selection to real NATS subjects.
const db = await testDatabase(); // undefined only outside CI with no server: the suite is skipped
const NATS_URL = process.env.FLOE_TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const P = `floe-ev-${randomUUID().slice(0, 8)}`;
const project = tempProject({
  "landing/people/a.csv": "id,name\n1,ada\n2,\nx,bob\n",
  "landing/people/bad.csv": "id,name\n4,dan,extra\n",
  "landing/strict/bad.csv": "id,name\n4,dan,extra\n",
  "pipelines/q.ts": `import { z } from "zod";
import { checks, duckdbTable, pipeline, rawFiles } from "floe";
const raw = rawFiles("raw_people", { storage: { type: "local", root: "landing" }, glob: "people/*.csv", format: "csv", maxFailedFiles: 1, maxAttempts: 1 });
const people = duckdbTable("people", {
  deps: [raw], sql: ({ ref }) => \`select id, name from \${ref(raw)}\`,
  columns: z.object({ id: z.number().int(), name: z.string().nullable() }), onInvalidRows: "quarantine",
  checks: [checks.notNull("name", { severity: "warn" })],
});
const strict = duckdbTable("strict_people", { deps: [people], sql: ({ ref }) => \`select * from \${ref(people)}\`, checks: [checks.rowCount({ min: 100 })] });
// no failed file allowed: the step fails, and the ledger tells which files failed
const rawStrict = rawFiles("raw_strict", { storage: { type: "local", root: "landing" }, glob: "strict/*.csv", format: "csv", maxAttempts: 1 });
export default pipeline("q", { assets: [raw, people, strict, rawStrict] });
`,
  "floe.config.ts": `import { defineConfig, nats } from "floe";
const servers = ${JSON.stringify(NATS_URL)};
export default defineConfig({ notifications: [
  { notifier: nats({ servers, subject: "${P}.all.{event}" }), events: ["run_failed", "check_failed", "files_failed", "rows_quarantined"] },
  { notifier: nats({ servers, subject: "${P}.strict.{event}", name: "strict-only" }), events: ["check_failed"], select: "strict_people" },
  { notifier: nats({ servers, subject: "${P}.raw.{event}", name: "raw-only" }), events: ["check_failed", "rows_quarantined", "run_succeeded"], select: "raw_people" },
] });
`,
});
afterAll(async () => {
  project.remove();
  await db?.drop();
});

describe.skipIf(!db)("check, file and quarantine notifications", () => {
  it("are derived from step metadata and routed by event and selection", async () => {
    const nc = await connect({ servers: NATS_URL });
    const got: Array<{ subject: string; body: Notification }> = [];
    nc.subscribe(`${P}.>`, { callback: (_e, m) => got.push({ subject: m.subject, body: JSON.parse(new TextDecoder().decode(m.data)) as Notification }) });
    await nc.flush();
    try {
      const r = await floe(["materialize", "--select", "*", "--json"], { cwd: project.dir, env: { FLOE_DATABASE_URL: db!.url } });
      expect(r.code, r.stderr).toBe(1);
      const out = JSON.parse(r.stdout) as { runId: string; steps: Array<{ asset: string; status: string; metadata: Record<string, unknown> }> };
      // the failed step keeps its check results
      expect(out.steps.find((s) => s.asset === "strict_people")).toMatchObject({ status: "failed", metadata: { checks: [{ name: "row_count", severity: "error", passed: false }] } });
      await nc.flush(); // the publisher flushed before it exited: what it sent is ahead of this round trip
      const subjects = got.map((g) => g.subject).sort();
      expect(subjects).toEqual([`${P}.all.check_failed`, `${P}.all.files_failed`, `${P}.all.rows_quarantined`, `${P}.all.run_failed`, `${P}.strict.check_failed`]);
      const by = (s: string): Notification => got.find((g) => g.subject === `${P}.${s}`)!.body;
      expect(by("all.check_failed")).toMatchObject({
        runId: out.runId, pipelines: ["q"], assets: ["people", "strict_people"],
        checks: [
          { asset: "people", partition: null, name: "not_null(name)", severity: "warn", message: "1 null values in name" },
          { asset: "strict_people", partition: null, name: "row_count", severity: "error" },
        ],
      });
      expect(by("all.check_failed").message).toBe(`run ${out.runId.slice(0, 8)}: 2 check(s) failed: people not_null(name) (warn): 1 null values in name`);
      const files = by("all.files_failed");
      expect(files.assets.sort()).toEqual(["raw_people", "raw_strict"]);
      expect(files.counts!.sort((a, b) => a.asset.localeCompare(b.asset))).toEqual([
        { asset: "raw_people", partition: null, failedFiles: 1 },
        { asset: "raw_strict", partition: null, failedFiles: 1 },
      ]);
      expect(files.failedSteps).toEqual([{ asset: "raw_strict", partition: null, error: expect.stringMatching(/^1 file failed \(maxFailedFiles: 0\), e\.g\. strict\/bad\.csv: /) as unknown }]);
      expect(by("all.rows_quarantined")).toMatchObject({ assets: ["people"], counts: [{ asset: "people", quarantinedRows: 1, quarantine: expect.stringMatching(/^quarantine\/people\//) as unknown }] });
      expect(by("strict.check_failed").checks).toHaveLength(2);
    } finally {
      await nc.close();
    }
  });

  it("a broker that is down fails only the delivery: the run succeeds, the failure is reported", async () => {
    const p = tempProject({
      "pipelines/a.ts": `import { asset, pipeline } from "floe";\nexport default pipeline("a", { assets: [asset("a", { materialize: () => ({}) })] });\n`,
      "floe.config.ts": `import { amqp, defineConfig, nats } from "floe";
export default defineConfig({ notifications: [
  { notifier: amqp({ url: "amqp://guest:guest@127.0.0.1:1", exchange: "ops", name: "rabbit" }), events: ["run_succeeded"] },
  { notifier: nats({ servers: "nats://127.0.0.1:1", name: "nats" }), events: ["run_succeeded"] },
] });
`,
    });
    try {
      const r = await floe(["materialize", "--select", "a", "--json"], { cwd: p.dir, env: { FLOE_DATABASE_URL: db!.url } });
      expect(r.code).toBe(0);
      expect((JSON.parse(r.stdout) as { status: string }).status).toBe("success");
      expect(r.stderr).toMatch(/^floe: notification to rabbit failed after retries: .*ECONNREFUSED/m);
      expect(r.stderr).toMatch(/^floe: notification to nats failed after retries: /m);
    } finally {
      p.remove();
    }
  });

  it("a notifier's bad options (a bad URL, an unknown key, a password without user) name their path in floe.config.ts", async () => {
    const p = tempProject({
      "pipelines/a.ts": `import { asset, pipeline } from "floe";\nexport default pipeline("a", { assets: [asset("a", { materialize: () => ({}) })] });\n`,
      "floe.config.ts": `import { amqp, defineConfig, email } from "floe";
export default defineConfig({ notifications: [
  { notifier: email({ host: "smtp.example.com", from: "floe@example.com", to: "ops@example.com" }) },
  { notifier: email({ host: "smtp.example.com", port: "25" as unknown as number, from: "floe@example.com", to: "ops@example.com" }) },
] });
`,
    });
    try {
      const r = await floe(["list"], { cwd: p.dir });
      expect(r.code).toBe(2);
      expect(r.stderr.trim()).toBe("floe: floe.config.ts: notifications.1.notifier.port: Invalid input: expected number, received string");
      p.write({ "floe.config.ts": `import { amqp, defineConfig } from "floe";\nexport default defineConfig({ notifications: [{ notifier: amqp({ url: "amqp://127.0.0.1", exchange: "a", queue: "b" }) }] });\n` });
      const both = await floe(["list"], { cwd: p.dir });
      expect(both.code).toBe(2);
      expect(both.stderr.trim()).toBe("floe: floe.config.ts: notifications.0.notifier: give exactly one of exchange and queue");
      const cases: Array<[string, string]> = [
        ['webhook({ url: "not a url" })', "notifications.0.notifier.url: expected an http(s) URL or secret(\"NAME\")"],
        ['slack({ url: "https://hooks.example.com/x", channel: "#ops" } as never)', 'notifications.0.notifier: Unrecognized key: "channel"'],
        ['email({ host: "smtp.example.com", password: "pw", from: "floe@example.com", to: "ops@example.com" })', "notifications.0.notifier: password is given without user"],
      ];
      for (const [notifier, message] of cases) {
        p.write({ "floe.config.ts": `import { defineConfig, email, slack, webhook } from "floe";\nexport default defineConfig({ notifications: [{ notifier: ${notifier} }] });\n` });
        const r = await floe(["list"], { cwd: p.dir });
        expect([r.code, r.stderr.trim()], notifier).toEqual([2, `floe: floe.config.ts: ${message}`]);
      }
    } finally {
      p.remove();
    }
  });
});
