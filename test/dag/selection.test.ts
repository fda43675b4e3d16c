import { describe, expect, it } from "vitest";
import { AssetGraph } from "../../src/dag/graph.js";
import { parseSelection, select } from "../../src/dag/selection.js";
import { ASSET_BRAND, PIPELINE_BRAND, type AssetDefinition, type PipelineDefinition } from "../../src/dag/types.js";

// Plain branded definitions, so these tests do not depend on the asset() factory.
type Opts = { deps?: string[]; tags?: Record<string, string>; kinds?: string[] };
const asset = (key: string, { deps = [], tags = {}, kinds = ["asset"] }: Opts = {}): AssetDefinition => ({
  [ASSET_BRAND]: true,
  key,
  kind: kinds[0] ?? "asset",
  kinds,
  deps,
  tags,
  mappings: {},
  materialize() {},
});
const pipeline = (name: string, assets: AssetDefinition[]): PipelineDefinition => ({ [PIPELINE_BRAND]: true, name, assets });

// raw_orders → orders → lake.orders → report ; raw_customers → customers → report ; audit (alone)
const graph = AssetGraph.build([
  {
    module: "pipelines/orders.ts",
    pipeline: pipeline("orders", [
      asset("raw_orders", { tags: { landing: "" } }),
      asset("raw_customers", { tags: { landing: "", pii: "" } }),
      asset("orders", { kinds: ["duckdb"], deps: ["raw_orders"] }),
      asset("customers", { kinds: ["duckdb"], deps: ["raw_customers"], tags: { pii: "" } }),
    ]),
  },
  {
    module: "pipelines/lake.ts",
    pipeline: pipeline("lake", [
      asset("lake.orders", { kinds: ["iceberg", "duckdb"], deps: ["orders"] }),
      asset("report", { deps: ["lake.orders", "customers"], tags: { team: "finance" } }),
      asset("audit", { tags: { team: "ops" }, kinds: ["asset", "python"] }),
    ]),
  },
]);
const sel = (e: string) => [...select(graph, e)].sort();

describe("parseSelection", () => {
  it("builds the AST with not > , > space precedence", () => {
    expect(parseSelection("a b,not c")).toEqual({
      type: "union",
      nodes: [{ type: "key", key: "a" }, { type: "intersection", nodes: [{ type: "key", key: "b" }, { type: "not", node: { type: "key", key: "c" } }] }],
    });
    expect(parseSelection("2+tag:team=data+")).toEqual({ type: "graph", node: { type: "tag", key: "team", value: "data" }, up: 2, down: Infinity });
    expect(parseSelection("+(raw_* kind:x)+1")).toEqual({
      type: "graph",
      node: { type: "union", nodes: [{ type: "glob", pattern: "raw_*" }, { type: "kind", kind: "x" }] },
      up: Infinity,
      down: 1,
    });
    expect(parseSelection("*")).toEqual({ type: "all" });
    expect(parseSelection("not(pipeline:p)")).toEqual({ type: "not", node: { type: "pipeline", name: "p" } });
  });
});

describe("select", () => {
  it("keys, globs, *", () => {
    expect(sel("orders")).toEqual(["orders"]);
    expect(sel("lake.orders")).toEqual(["lake.orders"]);
    expect(sel("raw_*")).toEqual(["raw_customers", "raw_orders"]);
    expect(sel("*orders")).toEqual(["lake.orders", "orders", "raw_orders"]);
    expect(sel("lake.*")).toEqual(["lake.orders"]); // `.` is literal in a glob
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
    expect(sel("1+orders+1")).toEqual(["lake.orders", "orders", "raw_orders"]);
    expect(sel("0+orders+0")).toEqual(["orders"]);
    expect(sel("+audit+")).toEqual(["audit"]);
  });

  it("graph operators apply to any atom and to groups", () => {
    expect(sel("+(orders customers)")).toEqual(["customers", "orders", "raw_customers", "raw_orders"]);
    expect(sel("(raw_orders)+1")).toEqual(["orders", "raw_orders"]);
    expect(sel("1+(lake.orders)")).toEqual(["lake.orders", "orders"]);
    expect(sel("tag:landing+1")).toEqual(["customers", "orders", "raw_customers", "raw_orders"]);
    expect(sel("1+tag:team=finance")).toEqual(["customers", "lake.orders", "report"]);
    expect(sel("kind:iceberg+")).toEqual(["lake.orders", "report"]);
    expect(sel("pipeline:lake+")).toEqual(["audit", "lake.orders", "report"]);
    expect(sel("1+pipeline:lake")).toEqual(["audit", "customers", "lake.orders", "orders", "report"]);
    expect(sel("raw_c*+")).toEqual(["customers", "raw_customers", "report"]);
    expect(sel("*+")).toHaveLength(7);
  });

  it("tag:, kind:, pipeline: across pipelines", () => {
    expect(sel("tag:pii")).toEqual(["customers", "raw_customers"]);
    expect(sel("tag:team=finance")).toEqual(["report"]);
    expect(sel("tag:team")).toEqual(["audit", "report"]);
    expect(sel("tag:landing=")).toEqual(["raw_customers", "raw_orders"]);
    expect(sel("kind:duckdb")).toEqual(["customers", "lake.orders", "orders"]); // any of asset.kinds
    expect(sel("kind:iceberg")).toEqual(["lake.orders"]);
    expect(sel("kind:python")).toEqual(["audit"]);
    expect(sel("kind:asset")).toEqual(["audit", "raw_customers", "raw_orders", "report"]);
    expect(sel("pipeline:lake")).toEqual(["audit", "lake.orders", "report"]);
    expect(sel("pipeline:orders")).toEqual(["customers", "orders", "raw_customers", "raw_orders"]);
    expect(sel("pipeline:orders pipeline:lake")).toHaveLength(7);
    expect(sel("+report,pipeline:orders")).toEqual(["customers", "orders", "raw_customers", "raw_orders"]);
  });

  it("union, intersection, not, precedence and parentheses", () => {
    expect(sel("orders customers")).toEqual(["customers", "orders"]);
    expect(sel("orders\t customers")).toEqual(["customers", "orders"]);
    expect(sel("+report,tag:pii")).toEqual(["customers", "raw_customers"]);
    expect(sel("+report , tag:pii")).toEqual(["customers", "raw_customers"]);
    expect(sel("+report ,tag:pii, kind:duckdb")).toEqual(["customers"]);
    expect(sel("not tag:landing,kind:asset")).toEqual(["audit", "report"]); // (not tag:landing) , kind:asset
    expect(sel("audit +orders,tag:landing")).toEqual(["audit", "raw_orders"]); // audit ∪ (+orders ∩ tag:landing)
    expect(sel("(audit +orders),tag:landing")).toEqual(["raw_orders"]);
    expect(sel("not (pipeline:orders audit)")).toEqual(["lake.orders", "report"]);
    expect(sel("not(pipeline:orders audit)")).toEqual(["lake.orders", "report"]);
    expect(sel("not not audit")).toEqual(["audit"]);
    expect(sel("not raw_orders+")).toEqual(["audit", "customers", "raw_customers"]); // + binds to the atom
    expect(sel("((orders))")).toEqual(["orders"]);
    expect(sel("  orders   ")).toEqual(["orders"]);
  });

  it("unknown names fail with a suggestion", () => {
    expect(() => select(graph, "ordrs")).toThrow(/^unknown asset `ordrs`; did you mean `orders`\?$/);
    expect(() => select(graph, "zebra")).toThrow(/^unknown asset `zebra`$/);
    expect(() => select(graph, "+ordrs,tag:pii")).toThrow(/^unknown asset `ordrs`; did you mean `orders`\?$/);
    expect(() => select(graph, "pipeline:lak")).toThrow(/^unknown pipeline `lak`; did you mean `lake`\?$/);
    expect(() => select(graph, "pipeline:zebra")).toThrow(/^unknown pipeline `zebra`$/);
    expect(() => select(graph, "kind:icebrg")).toThrow(/^no asset has kind `icebrg`; did you mean `iceberg`\?$/);
    expect(() => select(graph, "kind:zebra")).toThrow(/^no asset has kind `zebra`$/);
    expect(() => select(graph, "tag:pi")).toThrow(/^no asset has tag `pi`; did you mean `pii`\?$/);
    expect(() => select(graph, "tag:zebra")).toThrow(/^no asset has tag `zebra`$/);
    expect(() => select(graph, "tag:team=hr")).toThrow(/^no asset has tag `team=hr`$/);
    expect(() => select(graph, "zz_*")).toThrow(/^`zz_\*` matches no asset$/);
    expect(() => select(graph, "raw_x?")).toThrow(/^`raw_x\?` matches no asset$/);
  });

  it("never selects nothing silently", () => {
    expect(() => select(graph, "orders,customers")).toThrow(/^selection `orders,customers` selects no asset$/);
    expect(() => select(graph, "not *")).toThrow(/^selection `not \*` selects no asset$/);
    expect(() => select(graph, "")).toThrow(/^empty selection; name an asset, e.g. `--select orders`$/);
    expect(() => select(graph, " \n\t ")).toThrow(/^empty selection; name an asset, e.g. `--select orders`$/);
  });

  it("every error is a one-line UserError", () => {
    for (const e of ["a\n(b", "orders\n,customers", "ordrs"]) {
      const err = (() => {
        try {
          select(graph, e);
        } catch (x) {
          return x;
        }
      })();
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).name).toBe("UserError");
      expect((err as Error).message).not.toMatch(/\n/);
    }
  });

  it("malformed input says where", () => {
    const bad = (e: string, why: string) => expect(() => parseSelection(e)).toThrow(`malformed selection \`${e}\`: ${why}`);
    bad("a (b", "missing `)`");
    bad("(a", "missing `)`");
    bad("a)", "unexpected `)`");
    bad("a,,b", "expected an asset after `,`");
    bad("a, ,b", "expected an asset after `,`");
    bad("a,", "expected an asset after `,`");
    bad("(a,)", "expected an asset after `,`");
    bad(",a", "expected an asset before `,`");
    bad("not ", "expected an asset after `not`");
    bad("a,not", "expected an asset after `not`");
    bad("()", "empty parentheses");
    bad("a(b)", "expected a space or `,` before `(`");
    bad("(a)b", "expected a space or `,` before `b`");
    bad("foo:bar", "unknown prefix `foo:`; use tag:, kind: or pipeline:");
    bad("tag:", "`tag:` needs a value");
    bad("a$b", "`a$b` is not an asset key, glob, tag:, kind: or pipeline:");
    bad("++a", "`++a` is not an asset key, glob, tag:, kind: or pipeline:");
    bad("+", "`+` is not an asset key, glob, tag:, kind: or pipeline:");
  });

  it("scales to 10,000 assets without recursion", () => {
    // a chain n0 → n1 → … → n9999
    const assets = Array.from({ length: 10_000 }, (_, i) => asset(`n${i}`, { deps: i === 0 ? [] : [`n${i - 1}`] }));
    const big = AssetGraph.build([{ module: "big.ts", pipeline: pipeline("big", assets) }]);
    expect(select(big, "+n9999").size).toBe(10_000);
    expect(select(big, "n0+").size).toBe(10_000);
    expect(select(big, "n0+,not n5*").size).toBe(10_000 - 1111);
    expect(select(big, "*+").size).toBe(10_000);
    expect([...select(big, "3+n5000+2")].sort()).toEqual(["n4997", "n4998", "n4999", "n5000", "n5001", "n5002"]);
  });
});
