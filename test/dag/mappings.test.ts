import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { asset, pipeline, type AssetOptions } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { downstreamPartitions, partitionMappings } from "../../src/dag/mappings.js";
import { partitions } from "../../src/dag/partitions.js";
import { plan } from "../../src/dag/plan.js";
import { assetStatuses } from "../../src/dag/staleness.js";
import { materialize } from "../../src/runner/launch.js";
import { StateStore } from "../../src/state/index.js";

const noop = () => ({});
const daily = partitions.daily({ start: "2025-01-01", end: "2025-02-28" });
const monthly = partitions.monthly({ start: "2025-01", end: "2025-02" });
const build = (...assets: Array<[string, Partial<AssetOptions>]>) =>
  AssetGraph.build([{ module: "pipelines/m.ts", pipeline: pipeline("m", { assets: assets.map(([k, o]) => asset(k, { materialize: noop, ...o })) }) }]);
const depsOf = (p: ReturnType<typeof plan>, id: string) => p.steps.find((s) => s.id === id)?.deps;

describe("partition mappings", () => {
  it("downstreamPartitions: identity is a direct lookup; other mappings invert once", () => {
    const hourly = partitions.hourly({ start: "2015-01-01T00", end: "2024-12-31T23" });
    const g = build(
      ["h", { partitions: hourly }],
      ["h2", { deps: ["h"], partitions: hourly }],
      ["days", { partitions: daily }],
      ["months", { deps: ["days"], partitions: monthly, mappings: { days: partitionMappings.timeWindow() } }],
      ["rolling", { deps: ["days"], partitions: daily, mappings: { days: partitionMappings.lastN(3) } }],
      ["total", { deps: ["days"] }],
    );
    const noListing = () => {
      throw new Error("listed the keys");
    };
    expect(downstreamPartitions(g.asset("h2"), g.asset("h"), ["2020-06-01T05", "2020-06-01T05", "2021-01-01T00"], noListing)).toEqual(["2020-06-01T05", "2021-01-01T00"]);
    const keysOf = (p: { keys(): string[] }) => p.keys();
    expect(downstreamPartitions(g.asset("months"), g.asset("days"), ["2025-01-05", "2025-02-03"], keysOf)).toEqual(["2025-01", "2025-02"]);
    expect(downstreamPartitions(g.asset("rolling"), g.asset("days"), ["2025-01-05"], keysOf)).toEqual(["2025-01-05", "2025-01-06", "2025-01-07"]);
    expect(downstreamPartitions(g.asset("total"), g.asset("days"), ["2025-01-05"], keysOf)).toEqual([null]);
    expect(downstreamPartitions(g.asset("months"), g.asset("days"), [], keysOf)).toEqual([]);
  });

  it("timeWindow: a month reads its days, a day reads its month", () => {
    const g = build(
      ["days", { partitions: daily }],
      ["months", { deps: ["days"], partitions: monthly, mappings: { days: partitionMappings.timeWindow() } }],
      ["back_to_days", { deps: ["months"], partitions: daily, mappings: { months: partitionMappings.timeWindow() } }],
    );
    const p1 = plan(g, new Set(["days", "months"]), { all: true });
    expect(depsOf(p1, "months[2025-02]")).toHaveLength(28);
    expect(depsOf(p1, "months[2025-02]")?.[0]).toBe("days[2025-02-01]");
    const p2 = plan(g, new Set(["months", "back_to_days"]), { all: true });
    expect(depsOf(p2, "back_to_days[2025-01-31]")).toEqual(["months[2025-01]"]);
  });

  it("lastN: a rolling window of the same partitions", () => {
    const g = build(["orders", { partitions: daily }], ["rolling", { deps: ["orders"], partitions: daily, mappings: { orders: partitionMappings.lastN(3) } }]);
    const p = plan(g, new Set(["orders", "rolling"]), { from: "2025-01-01", to: "2025-01-05" });
    expect(depsOf(p, "rolling[2025-01-05]")).toEqual(["orders[2025-01-03]", "orders[2025-01-04]", "orders[2025-01-05]"]);
    expect(depsOf(p, "rolling[2025-01-01]")).toEqual(["orders[2025-01-01]"]);
    // staleness follows the window
    const t = (n: number) => new Date(Date.UTC(2025, 5, 1, 0, 0, n));
    const mats = [
      { asset: "rolling", partition: "2025-01-05", runId: "r", materializedAt: t(5), codeVersion: null },
      ...["2025-01-03", "2025-01-04", "2025-01-05"].map((d, i) => ({ asset: "orders", partition: d, runId: "r", materializedAt: t(i), codeVersion: null })),
    ];
    const rows = (m: typeof mats) => assetStatuses(g, ["rolling"], m, [], new Date("2025-03-01")).find((r) => r.partition === "2025-01-05");
    expect(rows(mats)?.status).toBe("materialized");
    mats[1] = { ...mats[1]!, materializedAt: t(9) }; // 2025-01-03 rematerialized: inside the window
    expect(rows(mats)).toMatchObject({ status: "stale", reason: "upstream `orders[2025-01-03]` was materialized after it" });
  });

  it("all: every upstream partition", () => {
    const regions = partitions.static(["eu", "us"]);
    const g = build(["by_region", { partitions: regions }], ["per_day", { deps: ["by_region"], partitions: daily, mappings: { by_region: partitionMappings.all() } }]);
    expect(depsOf(plan(g, new Set(["by_region", "per_day"]), { all: true }), "per_day[2025-01-02]")).toEqual(["by_region[eu]", "by_region[us]"]);
  });

  it("bad mappings are load-time errors naming both assets", () => {
    const regions = partitions.static(["eu", "us"]);
    expect(() => build(["a", { partitions: regions }], ["b", { deps: ["a"], partitions: daily, mappings: { a: partitionMappings.timeWindow() } }])).toThrow(
      "pipelines/m.ts: asset `b` maps `a` with timeWindow, but timeWindow maps hourly, daily and monthly partitions (static eu, us → daily from 2025-01-01 to 2025-02-28 (UTC))",
    );
    expect(() => build(["a", { partitions: daily }], ["b", { deps: ["a"], partitions: monthly }])).toThrow(/give it a partition mapping \(mappings: \{ a: partitionMappings\.timeWindow\(\)/);
    expect(() => build(["a", {}], ["b", { mappings: { a: partitionMappings.all() } }])).toThrow("pipelines/m.ts: asset `b` has a partition mapping for `a`, which is not one of its deps");
    expect(() => partitionMappings.lastN(0)).toThrow("partitionMappings.lastN(0): n must be a whole number ≥ 1");
  });

  it("the runner hands a step the upstream partitions its mapping reads", async () => {
    const home = mkdtempSync(join(tmpdir(), "floe-map-"));
    const store = await StateStore.open({ home });
    try {
      const seen: Record<string, string[]> = {};
      const g = build(
        ["days", { partitions: daily, materialize: (ctx) => ({ metadata: { day: ctx.partitionKey } }) }],
        ["months", { deps: ["days"], partitions: monthly, mappings: { days: partitionMappings.timeWindow() }, materialize: (ctx) => {
          seen[ctx.partitionKey!] = ctx.upstreamPartitions("days").map((m) => String(m.metadata.day)).sort();
          return {};
        } }],
      );
      await materialize(store, g, { assets: new Set(["days"]), selection: "days", partitions: { from: "2025-01-30", to: "2025-02-02" } });
      const out = await materialize(store, g, { assets: new Set(["months"]), selection: "months", partitions: { from: "2025-01", to: "2025-02" } });
      expect(out.status).toBe("success");
      expect(seen).toEqual({ "2025-01": ["2025-01-30", "2025-01-31"], "2025-02": ["2025-02-01", "2025-02-02"] });
    } finally {
      await store.close();
      rmSync(home, { recursive: true, force: true });
    }
  });
});
