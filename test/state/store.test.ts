import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UserError } from "../../src/errors.js";
import { StateStore } from "../../src/state/index.js";
import { defaultMigrations } from "../../src/state/store.js";
import { pgAvailable, testDatabase } from "../helpers/pg.js";

const pgUp = await pgAvailable();
const t = (iso: string): Date => new Date(`2025-01-01T${iso}Z`);

// One suite body, run on both engines: they must behave identically.
for (const engine of ["pglite", "postgres"] as const) {
  describe.skipIf(engine === "postgres" && !pgUp)(`StateStore on ${engine}`, () => {
    let store: StateStore;
    let reopen: () => Promise<StateStore>;
    let cleanup: () => Promise<void>;

    beforeAll(async () => {
      if (engine === "pglite") {
        const home = mkdtempSync(join(tmpdir(), "floe-store-"));
        reopen = () => StateStore.open({ home, owner: "store.test" });
        cleanup = async () => rmSync(home, { recursive: true, force: true });
      } else {
        const db = (await testDatabase())!;
        reopen = () => StateStore.open({ url: db.url, home: "/nonexistent" });
        cleanup = () => db.drop();
      }
      store = await reopen();
    });
    afterAll(async () => {
      await store?.close();
      await cleanup?.();
    });

    it("opens the right engine", () => {
      expect(store.engine).toBe(engine);
    });

    it("createRuns writes many runs in one statement; getStepsOfRuns reads their steps in one query", async () => {
      const ids = await store.createRuns([
        { trigger: "rerun", selection: "x", tags: { k: "v" }, priority: -1, steps: [{ asset: "x", partition: "2025-01-01" }, { asset: "y", partition: "2025-01-01", status: "success", attempts: 0, metadata: { rows: 3 } }] },
        { trigger: "manual", status: "success", steps: [{ asset: "z", partition: null }] },
      ]);
      expect(ids).toHaveLength(2);
      const [a, b] = await Promise.all(ids.map((id) => store.getRun(id)));
      expect(a).toMatchObject({ trigger: "rerun", selection: "x", status: "queued", tags: { k: "v" } });
      expect(b).toMatchObject({ trigger: "manual", status: "success" });
      const steps = await store.getStepsOfRuns([...ids, "nope"]);
      expect(steps.get(ids[0]!)?.map((s) => [s.asset, s.partition, s.status, s.metadata])).toEqual([["x", "2025-01-01", "pending", {}], ["y", "2025-01-01", "success", { rows: 3 }]]);
      expect(steps.get(ids[1]!)?.map((s) => [s.asset, s.partition])).toEqual([["z", null]]);
      expect(steps.get("nope")).toEqual([]);
      // each run's run_created event carries what createRun records too
      const created = (await store.getEvents(ids[0]!)).find((e) => e.type === "run_created");
      expect(created).toMatchObject({ message: "run created: 2 steps", data: { trigger: "rerun", selection: "x", partitionRange: null, steps: 2 } });
      expect(await store.createRuns([])).toEqual([]);
      // the queued one is claimable, the finished one is not
      expect((await store.claimRun("w"))?.id).toBe(ids[0]);
      expect(await store.claimRun("w")).toBeUndefined();
      await store.writeBatch({ runs: [{ id: ids[0]!, status: "success", endedAt: new Date() }] });
    });

    it("creates a run with its steps, in plan order, and a run_created event", async () => {
      const run = await store.createRun({
        trigger: "manual",
        selection: "+orders",
        tags: { team: "data" },
        steps: [
          { asset: "c_raw", partition: "2025-01-02" },
          { asset: "c_raw", partition: "2025-01-01" },
          { asset: "c_orders", partition: null, status: "success", attempts: 0, metadata: { reused: true } },
        ],
      });
      expect(run).toMatchObject({ status: "queued", trigger: "manual", selection: "+orders", partitionRange: null, parentRunId: null, tags: { team: "data" }, error: null, startedAt: null, endedAt: null });
      expect(run.createdAt).toBeInstanceOf(Date);
      expect(run.id).toMatch(/^[0-9a-f-]{36}$/);
      const steps = await store.getSteps(run.id);
      expect(steps.map((s) => [s.asset, s.partition, s.status])).toEqual([
        ["c_raw", "2025-01-02", "pending"],
        ["c_raw", "2025-01-01", "pending"],
        ["c_orders", null, "success"],
      ]);
      expect(steps[2]).toMatchObject({ runId: run.id, attempts: 0, metadata: { reused: true }, startedAt: null, endedAt: null, error: null });
      const events = await store.getEvents(run.id);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ runId: run.id, type: "run_created", level: "info", asset: null, partition: null });
      expect(typeof events[0]!.id).toBe("number");
      expect(events[0]!.createdAt).toBeInstanceOf(Date);
    });

    it("writes run and step transitions in one batch", async () => {
      const run = await store.createRun({ trigger: "manual", steps: [{ asset: "w_a", partition: null }, { asset: "w_b", partition: "eu" }] });
      await store.writeBatch({
        runs: [{ id: run.id, status: "running", startedAt: t("10:00:00") }],
        steps: [
          { runId: run.id, asset: "w_a", partition: null, status: "running", attempts: 1, startedAt: t("10:00:01") },
          { runId: run.id, asset: "w_b", partition: "eu", status: "skipped" },
        ],
      });
      expect(await store.getRun(run.id)).toMatchObject({ status: "running", startedAt: t("10:00:00"), endedAt: null });
      await store.writeBatch({
        runs: [{ id: run.id, status: "failed", endedAt: t("10:00:05"), error: "1 step failed" }],
        steps: [{ runId: run.id, asset: "w_a", partition: null, status: "failed", endedAt: t("10:00:04"), error: "boom" }],
      });
      expect(await store.getRun(run.id)).toMatchObject({ status: "failed", startedAt: t("10:00:00"), endedAt: t("10:00:05"), error: "1 step failed" });
      const [a, b] = await store.getSteps(run.id);
      expect(a).toMatchObject({ status: "failed", attempts: 1, startedAt: t("10:00:01"), endedAt: t("10:00:04"), error: "boom" });
      expect(b).toMatchObject({ asset: "w_b", partition: "eu", status: "skipped", attempts: 0 });
      await store.writeBatch({}); // nothing to do
    });

    it("keeps fields a partial update leaves undefined, and clears error on null", async () => {
      const run = await store.createRun({ trigger: "manual", steps: [{ asset: "p_a", partition: null }] });
      const key = { runId: run.id, asset: "p_a", partition: null };
      await store.writeBatch({ steps: [{ ...key, status: "running", attempts: 1, startedAt: t("11:00:00"), error: "first try failed", metadata: { rows: 1 } }] });
      await store.writeBatch({ steps: [{ ...key, status: "running", attempts: undefined }] });
      expect((await store.getSteps(run.id))[0]).toMatchObject({ status: "running", attempts: 1, startedAt: t("11:00:00"), error: "first try failed", metadata: { rows: 1 } });
      await store.writeBatch({ steps: [{ ...key, status: "success", endedAt: t("11:00:02"), error: null }] });
      expect((await store.getSteps(run.id))[0]).toMatchObject({ status: "success", attempts: 1, startedAt: t("11:00:00"), endedAt: t("11:00:02"), error: null, metadata: { rows: 1 } });
      // several updates of one step in one batch merge, later fields winning
      await store.writeBatch({
        steps: [
          { ...key, status: "running", attempts: 2, metadata: { rows: 2 } },
          { ...key, status: "success", endedAt: t("11:00:09") },
        ],
      });
      expect((await store.getSteps(run.id))[0]).toMatchObject({ status: "success", attempts: 2, endedAt: t("11:00:09"), metadata: { rows: 2 } });
    });

    it("keeps the newest materialization per asset partition", async () => {
      const run = await store.createRun({ trigger: "manual", steps: [] });
      const mat = (partition: string | null, at: Date, rows: number) =>
        ({ asset: "m_orders", partition, runId: run.id, materializedAt: at, codeVersion: "v1", dataVersion: `d${rows}`, metadata: { rows } });
      await store.writeBatch({ materializations: [mat(null, t("12:00:02"), 2), mat("2025-01-01", t("12:00:00"), 10)] });
      await store.writeBatch({ materializations: [mat(null, t("12:00:01"), 1)] }); // older: ignored
      expect((await store.latestMaterializations(["m_orders"])).map((m) => [m.partition, m.metadata.rows])).toEqual([[null, 2], ["2025-01-01", 10]]);
      await store.writeBatch({ materializations: [mat(null, t("12:00:05"), 5), mat(null, t("12:00:03"), 3)] }); // newest of the batch wins
      const [m] = await store.latestMaterializations(["m_orders"]).then((ms) => ms.filter((x) => x.partition === null));
      expect(m).toEqual({ asset: "m_orders", partition: null, runId: run.id, materializedAt: t("12:00:05"), codeVersion: "v1", dataVersion: "d5", metadata: { rows: 5 } });
    });

    it("filters materializations by asset", async () => {
      const run = await store.createRun({ trigger: "manual", steps: [] });
      const mat = (asset: string) => ({ asset, partition: null, runId: run.id, materializedAt: t("13:00:00"), codeVersion: null, dataVersion: null, metadata: {} });
      await store.writeBatch({ materializations: [mat("f_a"), mat("f_b"), mat("f_c")] });
      expect((await store.latestMaterializations(["f_a", "f_c", "f_none"])).map((m) => m.asset)).toEqual(["f_a", "f_c"]);
      expect(await store.latestMaterializations([])).toEqual([]);
      expect((await store.latestMaterializations()).map((m) => m.asset)).toEqual(expect.arrayContaining(["f_a", "f_b", "f_c", "m_orders"]));
    });

    it("returns events in write order, with paging", async () => {
      const run = await store.createRun({ trigger: "manual", steps: [] });
      const ev = (i: number) => ({ runId: run.id, asset: "e_a", partition: i % 2 ? "eu" : null, type: "log", message: `m${i}` });
      await store.writeBatch({ events: [ev(1), { ...ev(2), level: "warn" as const, data: { n: 2 } }, ev(3)] });
      await store.writeBatch({ events: [{ ...ev(4), at: t("14:00:00"), data: null }, ev(5)] });
      const all = await store.getEvents(run.id);
      expect(all.map((e) => e.message)).toEqual(["run created: 0 steps", "m1", "m2", "m3", "m4", "m5"]);
      expect(all.map((e) => e.id)).toEqual([...all.map((e) => e.id)].sort((a, b) => a - b));
      expect(all[2]).toMatchObject({ level: "warn", data: { n: 2 }, partition: null, asset: "e_a" });
      expect(all[1]).toMatchObject({ level: "info", data: null, partition: "eu" });
      expect(all[4]!.createdAt).toEqual(t("14:00:00"));
      const page = await store.getEvents(run.id, { afterId: all[1]!.id, limit: 2 });
      expect(page.map((e) => e.message)).toEqual(["m2", "m3"]);
    });

    it("finds a run by id or unique prefix, and says when it cannot", async () => {
      const a = await store.createRun({ id: "beef0001-run", trigger: "manual", steps: [] });
      await store.createRun({ id: "beef0002-run", trigger: "manual", steps: [] });
      expect((await store.getRun("beef0001-run")).id).toBe(a.id);
      expect((await store.getRun("beef0001")).id).toBe(a.id);
      await expect(store.getRun("beef")).rejects.toThrow(new UserError("run prefix `beef` is ambiguous: matches 2 runs"));
      await expect(store.getRun("dead")).rejects.toThrow(/^unknown run `dead`$/);
      await expect(store.getRun("bee")).rejects.toThrow(/^unknown run `bee`/);
      await expect(store.getRun("beef")).rejects.toBeInstanceOf(UserError);
    });

    it("lists runs newest first, by status, with a limit", async () => {
      const ids: string[] = [];
      for (const status of ["success", "failed", "success"] as const) ids.push((await store.createRun({ trigger: "schedule", status, steps: [] })).id);
      const listed = await store.listRuns({ status: ["success", "failed"], limit: 3 });
      expect(listed.map((r) => r.id)).toEqual([...ids].reverse());
      const failed = await store.listRuns({ status: ["failed"] });
      expect(failed.map((r) => r.id)).toContain(ids[1]);
      expect(failed.every((r) => r.status === "failed")).toBe(true);
      const all = await store.listRuns();
      expect(all.length).toBeGreaterThan(3);
      expect(all.map((r) => r.createdAt.getTime())).toEqual([...all.map((r) => r.createdAt.getTime())].sort((x, y) => y - x));
    });

    it("gives the latest step state per asset partition", async () => {
      const r1 = await store.createRun({ trigger: "manual", steps: [{ asset: "l_a", partition: "d1" }, { asset: "l_a", partition: "d2" }, { asset: "l_b", partition: null }] });
      await store.writeBatch({
        steps: [
          { runId: r1.id, asset: "l_a", partition: "d1", status: "success", startedAt: t("15:00:00"), endedAt: t("15:00:01") },
          { runId: r1.id, asset: "l_a", partition: "d2", status: "success", startedAt: t("15:00:00"), endedAt: t("15:00:02") },
          { runId: r1.id, asset: "l_b", partition: null, status: "success", startedAt: t("15:00:03"), endedAt: t("15:00:04") },
        ],
      });
      const r2 = await store.createRun({ trigger: "rerun", parentRunId: r1.id, steps: [{ asset: "l_a", partition: "d1" }] });
      await store.writeBatch({ steps: [{ runId: r2.id, asset: "l_a", partition: "d1", status: "running", startedAt: t("15:01:00") }] });
      const states = await store.latestStepStates(["l_a", "l_b"]);
      expect(states).toEqual([
        { asset: "l_a", partition: "d1", runId: r2.id, status: "running", at: t("15:01:00") },
        { asset: "l_a", partition: "d2", runId: r1.id, status: "success", at: t("15:00:02") },
        { asset: "l_b", partition: null, runId: r1.id, status: "success", at: t("15:00:04") },
      ]);
      expect((await store.latestStepStates(["l_b"])).map((s) => s.asset)).toEqual(["l_b"]);
      expect(await store.latestStepStates([])).toEqual([]);
      expect((await store.latestStepStates()).length).toBeGreaterThanOrEqual(3);
      expect((await store.getRun(r2.id)).parentRunId).toBe(r1.id);
    });

    it("sees its data after reopening, without migrating again", async () => {
      const run = await store.createRun({ trigger: "manual", steps: [{ asset: "r_a", partition: null }] });
      const migrations = async (s: StateStore) =>
        (await sql<{ id: string; applied_at: Date }>`select id, applied_at from floe_migrations order by id`.execute(s.db)).rows;
      const before = await migrations(store);
      expect(before.map((m) => m.id)).toEqual([...defaultMigrations].map((m) => m.id).sort());
      await store.close();
      await store.close(); // idempotent
      store = await reopen();
      expect((await store.getRun(run.id)).id).toBe(run.id);
      expect((await store.getSteps(run.id)).map((s) => s.asset)).toEqual(["r_a"]);
      expect(await migrations(store)).toEqual(before);
    });
  });
}
