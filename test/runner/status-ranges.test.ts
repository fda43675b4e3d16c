import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { asset, pipeline, type AssetOptions } from "../../src/assets/asset.js";
import { ranges } from "../../src/cli/format.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { keyAtOrdinal, keyOrdinal, partitions, type PartitionsDefinition } from "../../src/dag/partitions.js";
import { statusOf, statusRanges } from "../../src/runner/launch.js";
import { StateStore } from "../../src/state/index.js";
import { rng } from "../../bench/lib.js";
import { testDatabase } from "../helpers/pg.js";

const db = await testDatabase();
let store: StateStore;
beforeAll(async () => {
  if (db) store = await StateStore.open({ url: db.url, home: "/nonexistent" });
});
afterAll(async () => {
  await store?.close();
  await db?.drop();
});

const noop = () => ({});
/** A definition whose key list must never be built. */
const unlisted = (p: PartitionsDefinition): PartitionsDefinition => ({
  ...p,
  keys: () => {
    throw new Error(`listed every key of ${p.describe()}`);
  },
});
const build = (...assets: Array<[string, Partial<AssetOptions>]>) =>
  AssetGraph.build([{ module: "pipelines/s.ts", pipeline: pipeline("s", { assets: assets.map(([k, o]) => asset(k, { materialize: noop, ...o })) }) }]);

async function materialized(asset: string, from: string, to: string, at: string, codeVersion: string | null = null): Promise<void> {
  await sql`insert into asset_partitions (asset, partition, last_run_id, materialized_at, code_version, metadata)
    select ${asset}, to_char(h, 'YYYY-MM-DD"T"HH24'), 'r', ${at}::timestamptz, ${codeVersion}, '{}'::jsonb
    from generate_series(${from}::timestamp, ${to}::timestamp, interval '1 hour') h
    on conflict (asset, partition) do update set materialized_at = excluded.materialized_at`.execute(store.db);
}

describe("key ordinals", () => {
  it("round-trip for each unit", () => {
    expect(keyOrdinal("daily", "1970-01-02")).toBe(1);
    expect(keyOrdinal("monthly", "1971-02")).toBe(13);
    expect(keyOrdinal("hourly", "2024-12-31T23")).toBe(482_135);
    for (const [unit, key] of [["daily", "2024-02-29"], ["hourly", "2016-03-27T02"], ["monthly", "2025-12"]] as const) {
      expect(keyAtOrdinal(unit, keyOrdinal(unit, key)!)).toBe(key);
    }
    expect(keyOrdinal("daily", "2024-02-30")).toBeUndefined();
  });
});

describe.skipIf(!db)("partition status as ranges", () => {
  it("ten years of hourly partitions: ranges from SQL, no key list built", async () => {
    const hourly = unlisted(partitions.hourly({ start: "2015-01-01T00", end: "2024-12-31T23", timezone: "Europe/Paris" }));
    const g = build(["ev", { partitions: hourly }], ["ev2", { deps: ["ev"], partitions: hourly }], ["ev3", { partitions: hourly, codeVersion: "2" }]);
    await materialized("ev", "2015-01-01 00:00", "2015-12-31 23:00", "2025-01-01T00:00:00Z");
    await store.createRun({ trigger: "manual", status: "failed", steps: [{ asset: "ev", partition: "2016-01-01T05", status: "failed" }] });
    await store.createRun({ trigger: "manual", status: "running", steps: [{ asset: "ev", partition: "2016-01-02T00", status: "running" }] });
    const total = 87_672; // hours in 2015…2024
    expect((await statusRanges(store, g, "ev"))!.ranges).toEqual([
      { from: "2015-01-01T00", to: "2015-12-31T23", status: "materialized", count: 8760 },
      { from: "2016-01-01T00", to: "2016-01-01T04", status: "missing", count: 5 },
      { from: "2016-01-01T05", to: "2016-01-01T05", status: "failed", count: 1 },
      { from: "2016-01-01T06", to: "2016-01-01T23", status: "missing", count: 18 },
      { from: "2016-01-02T00", to: "2016-01-02T00", status: "running", count: 1 },
      { from: "2016-01-02T01", to: "2024-12-31T23", status: "missing", count: total - 8760 - 25 },
    ]);
    // an identity-mapped upstream materialized later makes that key stale
    await materialized("ev2", "2015-01-01 00:00", "2015-01-01 09:00", "2025-02-01T00:00:00Z");
    await materialized("ev", "2015-01-01 03:00", "2015-01-01 03:00", "2025-03-01T00:00:00Z");
    const ev2 = (await statusRanges(store, g, "ev2"))!;
    expect(ev2.ranges.slice(0, 4)).toEqual([
      { from: "2015-01-01T00", to: "2015-01-01T02", status: "materialized", count: 3 },
      { from: "2015-01-01T03", to: "2015-01-01T03", status: "stale", count: 1 },
      { from: "2015-01-01T04", to: "2015-01-01T09", status: "materialized", count: 6 },
      { from: "2015-01-01T10", to: "2024-12-31T23", status: "missing", count: total - 10 },
    ]);
    expect(ev2.lastMaterializedAt?.toISOString()).toBe("2025-02-01T00:00:00.000Z");
    // another code version is stale; a key of another shape is ignored, not cast
    await materialized("ev3", "2024-12-31 22:00", "2024-12-31 23:00", "2025-01-01T00:00:00Z", "1");
    await sql`insert into asset_partitions (asset, partition, last_run_id, materialized_at, metadata) values ('ev3', '2024-12', 'r', now(), '{}')`.execute(store.db);
    expect((await statusRanges(store, g, "ev3"))!.ranges).toEqual([
      { from: "2015-01-01T00", to: "2024-12-31T21", status: "missing", count: total - 2 },
      { from: "2024-12-31T22", to: "2024-12-31T23", status: "stale", count: 2 },
    ]);
  });

  it("agrees with statusOf key by key on a year of daily partitions in random states", async () => {
    const daily = partitions.daily({ start: "2024-01-01", end: "2024-12-31" });
    const g = build(["d1", { partitions: daily }], ["d2", { deps: ["d1"], partitions: daily }]);
    const rand = rng(7);
    const keys = daily.keys();
    const t = (n: number) => new Date(Date.UTC(2025, 0, 1, 0, 0, n));
    const mats = [];
    const steps: Array<{ asset: string; partition: string; status: "failed" | "running" }> = [];
    for (const k of keys) {
      for (const [a, when] of [["d1", 2], ["d2", 1]] as const) {
        const x = rand();
        if (x < 0.5) mats.push({ asset: a, partition: k, runId: "r", materializedAt: t(a === "d1" && rand() < 0.2 ? 3 : when), codeVersion: null, dataVersion: null, metadata: {} });
        else if (x < 0.6) steps.push({ asset: a, partition: k, status: "failed" });
        else if (x < 0.65) steps.push({ asset: a, partition: k, status: "running" });
      }
    }
    await store.writeBatch({ materializations: mats });
    await store.createRun({ trigger: "manual", status: "running", steps });
    for (const a of ["d1", "d2"]) {
      const byKey = (await statusOf(store, g, [a])).map((r) => ({ key: r.partition!, status: r.status }));
      expect((await statusRanges(store, g, a))!.ranges, a).toEqual(ranges(byKey));
    }
  });
});
