import { describe, expect, it } from "vitest";
import { asset, defineAsset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { parseSelection, select } from "../../src/dag/selection.js";

const noop = () => ({});
// raw_orders → orders → lake.orders → report ; raw_customers → customers → report ; audit (alone)
const graph = AssetGraph.build([
  {
    module: "pipelines/orders.ts",
    pipeline: pipeline("orders", {
      assets: [
        asset("raw_orders", { tags: ["landing"], materialize: noop }),
        asset("raw_customers", { tags: ["landing", "pii"], materialize: noop }),
        defineAsset("orders", { kind: "duckdb", deps: ["raw_orders"], materialize: noop }),
        defineAsset("customers", { kind: "duckdb", deps: ["raw_customers"], tags: ["pii"], materialize: noop }),
      ],
    }),
  },
  {
    module: "pipelines/lake.ts",
    pipeline: pipeline("lake", {
      assets: [
        defineAsset("lake.orders", { kind: "iceberg", deps: ["orders"], materialize: noop }),
        asset("report", { deps: ["lake.orders", "customers"], tags: { team: "finance" }, materialize: noop }),
        asset("audit", { tags: { team: "ops" }, kinds: ["python"], materialize: noop }),
      ],
    }),
  },
]);
const sel = (e: string) => [...select(graph, e)].sort();

describe("selection", () => {
  it("keys, globs, *", () => {
    expect(sel("orders")).toEqual(["orders"]);
    expect(sel("lake.orders")).toEqual(["lake.orders"]);
    expect(sel("raw_*")).toEqual(["raw_customers", "raw_orders"]);
    expect(sel("*orders")).toEqual(["lake.orders", "orders", "raw_orders"]);
    expect(sel("?udit")).toEqual(["audit"]);
    expect(sel("*")).toHaveLength(7);
  });

  it("upstream and downstream, with depth", () => {
    expect(sel("+report")).toEqual(["customers", "lake.orders", "orders", "raw_customers", "raw_orders", "report"]);
    expect(sel("1+report")).toEqual(["customers", "lake.orders", "report"]);
    expect(sel("2+report")).toEqual(["customers", "lake.orders", "orders", "raw_customers", "report"]);
    expect(sel("raw_orders+")).toEqual(["lake.orders", "orders", "raw_orders", "report"]);
    expect(sel("raw_orders+1")).toEqual(["orders", "raw_orders"]);
    expect(sel("+orders+")).toEqual(["lake.orders", "orders", "raw_orders", "report"]);
    expect(sel("+(orders customers)")).toEqual(["customers", "orders", "raw_customers", "raw_orders"]);
    expect(sel("(raw_orders)+1")).toEqual(["orders", "raw_orders"]);
    expect(sel("tag:landing+1")).toEqual(["customers", "orders", "raw_customers", "raw_orders"]);
  });

  it("tag:, kind:, pipeline:", () => {
    expect(sel("tag:pii")).toEqual(["customers", "raw_customers"]);
    expect(sel("tag:team=finance")).toEqual(["report"]);
    expect(sel("tag:team")).toEqual(["audit", "report"]);
    expect(sel("kind:duckdb")).toEqual(["customers", "orders"]);
    expect(sel("kind:python")).toEqual(["audit"]);
    expect(sel("kind:asset")).toEqual(["audit", "raw_customers", "raw_orders", "report"]);
    expect(sel("pipeline:lake")).toEqual(["audit", "lake.orders", "report"]);
  });

  it("union, intersection, not, precedence and parentheses", () => {
    expect(sel("orders customers")).toEqual(["customers", "orders"]);
    expect(sel("+report,tag:pii")).toEqual(["customers", "raw_customers"]);
    expect(sel("+report , tag:pii")).toEqual(["customers", "raw_customers"]);
    expect(sel("not tag:landing,kind:asset")).toEqual(["audit", "report"]); // (not tag:landing) , kind:asset
    expect(sel("audit +orders,tag:landing")).toEqual(["audit", "raw_orders"]); // audit ∪ (+orders ∩ tag:landing)
    expect(sel("not (pipeline:orders audit)")).toEqual(["lake.orders", "report"]);
    expect(sel("  orders   ")).toEqual(["orders"]);
  });

  it("unknown names fail with a suggestion", () => {
    expect(() => select(graph, "ordrs")).toThrow("unknown asset `ordrs`; did you mean `orders`?");
    expect(() => select(graph, "zebra")).toThrow(/^unknown asset `zebra`$/);
    expect(() => select(graph, "pipeline:lak")).toThrow("unknown pipeline `lak`; did you mean `lake`?");
    expect(() => select(graph, "kind:icebrg")).toThrow("no asset has kind `icebrg`; did you mean `iceberg`?");
    expect(() => select(graph, "tag:pi")).toThrow("no asset has tag `pi`; did you mean `pii`?");
    expect(() => select(graph, "tag:team=hr")).toThrow(/^no asset has tag `team=hr`$/);
    expect(() => select(graph, "zz_*")).toThrow("`zz_*` matches no asset");
  });

  it("never selects nothing silently", () => {
    expect(() => select(graph, "orders,customers")).toThrow("selection `orders,customers` selects no asset");
    expect(() => select(graph, "not *")).toThrow("selection `not *` selects no asset");
    expect(() => select(graph, "   ")).toThrow("empty selection; name an asset, e.g. `--select orders`");
  });

  it("malformed input says where", () => {
    expect(() => parseSelection("a (b")).toThrow("malformed selection `a (b`: missing `)`");
    expect(() => parseSelection("a)")).toThrow("malformed selection `a)`: unexpected `)`");
    expect(() => parseSelection("a,,b")).toThrow("malformed selection `a,,b`: expected an asset after `,`");
    expect(() => parseSelection("a,")).toThrow("malformed selection `a,`: expected an asset after `,`");
    expect(() => parseSelection(",a")).toThrow("malformed selection `,a`: expected an asset before `,`");
    expect(() => parseSelection("not ")).toThrow("malformed selection `not `: expected an asset after `not`");
    expect(() => parseSelection("()")).toThrow("malformed selection `()`: empty parentheses");
    expect(() => parseSelection("foo:bar")).toThrow("malformed selection `foo:bar`: unknown prefix `foo:`; use tag:, kind: or pipeline:");
    expect(() => parseSelection("tag:")).toThrow("malformed selection `tag:`: `tag:` needs a value");
    expect(() => parseSelection("a$b")).toThrow("malformed selection `a$b`: `a$b` is not an asset key, glob, tag:, kind: or pipeline:");
  });

  it("scales to 10,000 assets without recursion", () => {
    const assets = Array.from({ length: 10_000 }, (_, i) => asset(`n${i}`, { deps: i === 0 ? [] : [`n${i - 1}`], materialize: noop }));
    const big = AssetGraph.build([{ module: "big.ts", pipeline: pipeline("big", { assets }) }]);
    expect(select(big, "+n9999").size).toBe(10_000);
    expect(select(big, "n0+,not n5*").size).toBe(10_000 - 1111);
    expect(select(big, "*+").size).toBe(10_000);
  });
});
