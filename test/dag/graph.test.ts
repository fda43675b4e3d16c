import { describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";

const noop = () => ({ metadata: {} });
const a = (key: string, deps: string[] = [], extra: object = {}) => asset(key, { deps, materialize: noop, ...extra });
const build = (...mods: Array<[string, ReturnType<typeof pipeline>]>) =>
  AssetGraph.build(mods.map(([module, p]) => ({ module, pipeline: p })));

describe("AssetGraph", () => {
  it("links upstream to downstream across pipelines and walks both ways", () => {
    const g = build(
      ["pipelines/orders.ts", pipeline("orders", { assets: [a("raw"), a("orders", ["raw"])] })],
      ["pipelines/lake.ts", pipeline("lake", { assets: [a("lake.orders", ["orders"]), a("report", ["lake.orders", "raw"])] })],
    );
    expect([...g.upstream("report")].sort()).toEqual(["lake.orders", "orders", "raw"]);
    expect([...g.upstream("report", 1)].sort()).toEqual(["lake.orders", "raw"]);
    expect([...g.downstream("raw")].sort()).toEqual(["lake.orders", "orders", "report"]);
    expect(g.generations()).toEqual([["raw"], ["orders"], ["lake.orders"], ["report"]]);
    expect(g.node("lake.orders").pipeline).toBe("lake");
  });

  it("names a cycle in order", () => {
    expect(() => build(["pipelines/x.ts", pipeline("x", { assets: [a("a", ["c"]), a("b", ["a"]), a("c", ["b"])] })])).toThrow(
      /^dependency cycle: (a → b → c → a|b → c → a → b|c → a → b → c)$/,
    );
  });

  it("names both modules of a duplicate key", () => {
    expect(() =>
      build(["pipelines/a.ts", pipeline("a", { assets: [a("orders")] })], ["pipelines/b.ts", pipeline("b", { assets: [a("orders")] })]),
    ).toThrow("duplicate asset key `orders` in pipelines/a.ts and pipelines/b.ts (pipelines `a` and `b`)");
  });

  it("rejects a dep that no pipeline declares, with a suggestion", () => {
    expect(() => build(["pipelines/a.ts", pipeline("a", { assets: [a("orders"), a("report", ["ordrs"])] })])).toThrow(
      "pipelines/a.ts: asset `report` depends on `ordrs`, which no loaded pipeline declares; did you mean `orders`?",
    );
  });

  it("rejects invalid keys and pipeline names", () => {
    expect(() => build(["pipelines/a.ts", pipeline("a", { assets: [a("Orders")] })])).toThrow(/invalid asset key `Orders`/);
    expect(() => build(["pipelines/a.ts", pipeline("a", { assets: [a("lake..orders")] })])).toThrow(/invalid asset key `lake..orders`/);
    expect(() => build(["pipelines/a.ts", pipeline("My-Pipe", { assets: [a("x")] })])).toThrow(/invalid pipeline name `My-Pipe`/);
    expect(() => build(["pipelines/a.ts", pipeline("p", { assets: [a("x")] })], ["pipelines/b.ts", pipeline("p", { assets: [a("y")] })])).toThrow(
      "duplicate pipeline `p` in pipelines/a.ts and pipelines/b.ts",
    );
  });

  it("rejects partitioned deps with different partitions, naming both assets", () => {
    const d = partitions.daily({ start: "2025-01-01" });
    const m = partitions.monthly({ start: "2025-01" });
    expect(() => build(["pipelines/a.ts", pipeline("a", { assets: [a("x", [], { partitions: d }), a("y", ["x"], { partitions: m })] })])).toThrow(
      /asset `y` \(monthly from 2025-01 \(UTC\)\) depends on `x` \(daily from 2025-01-01 \(UTC\)\) with different partitions/,
    );
  });

  it("builds a 10,000-asset graph without recursion limits", () => {
    const assets = Array.from({ length: 10_000 }, (_, i) => a(`n${i}`, i === 0 ? [] : [`n${i - 1}`]));
    const g = build(["pipelines/big.ts", pipeline("big", { assets })]);
    expect(g.upstream("n9999").size).toBe(9999);
    expect(g.generations()).toHaveLength(10_000);
  });
});
