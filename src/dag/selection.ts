import { UserError, didYouMean } from "../errors.js";
import type { AssetGraph } from "./graph.js";

/** A parsed selection expression. */
export type SelectionNode =
  | { type: "all" }
  | { type: "key"; key: string }
  | { type: "glob"; pattern: string }
  | { type: "tag"; key: string; value?: string }
  | { type: "kind"; kind: string }
  | { type: "pipeline"; name: string }
  | { type: "graph"; node: SelectionNode; up: number; down: number }
  | { type: "not"; node: SelectionNode }
  | { type: "union" | "intersection"; nodes: SelectionNode[] };

type Token = { t: "(" | ")" | "," | " " } | { t: "word"; v: string };

function tokenize(expr: string): Token[] {
  const out: Token[] = [];
  for (const m of expr.matchAll(/\s+|[(),]|[^\s(),]+/g)) {
    const s = m[0];
    if (/^\s/.test(s)) out.push({ t: " " });
    else if (s === "(" || s === ")" || s === ",") out.push({ t: s });
    else out.push({ t: "word", v: s });
  }
  return out;
}

const PREFIX_OP = /^(\d*)\+$/;
const SUFFIX_OP = /^\+(\d*)$/;
const ATOM = /^(?:(\d*)\+)?([^+]+?)(?:\+(\d*))?$/;
const depth = (d: string | undefined): number => (d === undefined ? 0 : d === "" ? Infinity : Number(d));

/**
 * Parses a selection: `orders`, `+orders`, `orders+`, `2+orders`, `orders+1`, `raw_*`, `tag:pii`,
 * `tag:team=data`, `kind:iceberg`, `pipeline:orders`, `a b` (union), `a,b` (intersection),
 * `not a`, parentheses. Precedence: `not`, then `,`, then space.
 *
 * @example
 * parseSelection("+orders,kind:duckdb"); // { type: "intersection", nodes: [...] }
 */
export function parseSelection(expr: string): SelectionNode {
  const tokens = tokenize(expr.trim());
  if (tokens.length === 0) throw new UserError("empty selection; name an asset, e.g. `--select orders`");
  let i = 0;
  const fail = (why: string): never => {
    throw new UserError(`malformed selection \`${oneLine(expr)}\`: ${why}`);
  };
  const peek = (): Token | undefined => tokens[i];
  const skipSpace = (): void => {
    while (peek()?.t === " ") i++;
  };
  const nextIsComma = (): boolean => {
    let j = i;
    while (tokens[j]?.t === " ") j++;
    return tokens[j]?.t === ",";
  };

  const union = (): SelectionNode => {
    const nodes = [intersection()];
    for (;;) {
      const spaced = peek()?.t === " ";
      skipSpace();
      const t = peek();
      if (t === undefined || t.t === ")") break;
      if (!spaced) fail(`expected a space or \`,\` before \`${t.t === "word" ? t.v : t.t}\``);
      nodes.push(intersection());
    }
    return nodes.length === 1 ? nodes[0]! : { type: "union", nodes };
  };
  const intersection = (): SelectionNode => {
    const nodes = [unary()];
    while (nextIsComma()) {
      skipSpace();
      i++; // ,
      skipSpace();
      const t = peek();
      if (t === undefined || t.t === ")" || t.t === ",") fail("expected an asset after `,`");
      nodes.push(unary());
    }
    return nodes.length === 1 ? nodes[0]! : { type: "intersection", nodes };
  };
  const unary = (): SelectionNode => {
    const t = peek();
    const after = tokens[i + 1];
    if (t?.t === "word" && t.v === "not" && (after === undefined || after.t === ")" || after.t === ",")) fail("expected an asset after `not`");
    if (t?.t === "word" && t.v === "not" && (after?.t === " " || after?.t === "(")) {
      i++;
      skipSpace();
      if (peek() === undefined || peek()?.t === ")" || peek()?.t === ",") fail("expected an asset after `not`");
      return { type: "not", node: unary() };
    }
    return postfix();
  };
  const postfix = (): SelectionNode => {
    const t = peek();
    if (t === undefined) return fail("expected an asset");
    if (t.t === "word" && PREFIX_OP.test(t.v) && tokens[i + 1]?.t === "(") {
      i++;
      const up = depth(PREFIX_OP.exec(t.v)![1]);
      return withSuffix(group(), up);
    }
    if (t.t === "(") return withSuffix(group(), 0);
    if (t.t === ")") return fail("unexpected `)`");
    if (t.t === ",") return fail("expected an asset before `,`");
    if (t.t !== "word") return fail("expected an asset");
    i++;
    const m = ATOM.exec(t.v);
    if (!m) return fail(`\`${t.v}\` is not an asset key, glob, tag:, kind: or pipeline:`);
    const node = atom(m[2]!, t.v);
    const up = depth(m[1]);
    const down = depth(m[3]);
    return up === 0 && down === 0 ? node : { type: "graph", node, up, down };
  };
  const group = (): SelectionNode => {
    i++; // (
    skipSpace();
    if (peek()?.t === ")") fail("empty parentheses");
    const inner = union();
    skipSpace();
    if (peek()?.t !== ")") fail("missing `)`");
    i++;
    return inner;
  };
  const withSuffix = (node: SelectionNode, up: number): SelectionNode => {
    const t = peek();
    let down = 0;
    if (t?.t === "word" && SUFFIX_OP.test(t.v)) {
      down = depth(SUFFIX_OP.exec(t.v)![1]);
      i++;
    }
    return up === 0 && down === 0 ? node : { type: "graph", node, up, down };
  };
  const atom = (name: string, word: string): SelectionNode => {
    if (name === "*") return { type: "all" };
    const colon = name.indexOf(":");
    if (colon >= 0) {
      const prefix = name.slice(0, colon);
      const rest = name.slice(colon + 1);
      if (rest === "") fail(`\`${prefix}:\` needs a value`);
      if (prefix === "tag") {
        const eq = rest.indexOf("=");
        return eq < 0 ? { type: "tag", key: rest } : { type: "tag", key: rest.slice(0, eq), value: rest.slice(eq + 1) };
      }
      if (prefix === "kind") return { type: "kind", kind: rest };
      if (prefix === "pipeline") return { type: "pipeline", name: rest };
      return fail(`unknown prefix \`${prefix}:\`; use tag:, kind: or pipeline:`);
    }
    if (!/^[A-Za-z0-9_.*?-]+$/.test(name)) fail(`\`${word}\` is not an asset key, glob, tag:, kind: or pipeline:`);
    return /[*?]/.test(name) ? { type: "glob", pattern: name } : { type: "key", key: name };
  };

  const node = union();
  skipSpace();
  if (i < tokens.length) fail(peek()?.t === ")" ? "unexpected `)`" : "unexpected input");
  return node;
}

/**
 * Evaluates a selection against the graph. Unknown names fail with a suggestion, and a
 * selection never silently selects nothing.
 *
 * @example
 * select(graph, "+orders");            // Set { "raw_orders", "orders" }
 * select(graph, "pipeline:orders,not tag:pii");
 */
export function select(graph: AssetGraph, expr: string): Set<string> {
  const result = evaluate(graph, parseSelection(expr));
  if (result.size === 0) throw new UserError(`selection \`${oneLine(expr)}\` selects no asset`);
  return result;
}

/** The expression as messages show it: on one line. */
const oneLine = (expr: string): string => expr.replace(/\s/g, " ");

function evaluate(graph: AssetGraph, node: SelectionNode): Set<string> {
  const keys = graph.keys();
  switch (node.type) {
    case "all":
      return new Set(keys);
    case "key":
      if (!graph.has(node.key)) throw new UserError(`unknown asset \`${node.key}\`${didYouMean(node.key, keys)}`);
      return new Set([node.key]);
    case "glob": {
      const re = new RegExp(`^${node.pattern.replace(/[.+^${}()|[\]\\-]/g, "\\$&").replaceAll("*", ".*").replaceAll("?", ".")}$`);
      const hits = keys.filter((k) => re.test(k));
      if (hits.length === 0) throw new UserError(`\`${node.pattern}\` matches no asset`);
      return new Set(hits);
    }
    case "tag": {
      const hits = keys.filter((k) => {
        const tags = graph.asset(k).tags;
        return Object.hasOwn(tags, node.key) && (node.value === undefined || tags[node.key] === node.value);
      });
      if (hits.length === 0) {
        const all = new Set(keys.flatMap((k) => Object.keys(graph.asset(k).tags)));
        const label = node.value === undefined ? node.key : `${node.key}=${node.value}`;
        throw new UserError(`no asset has tag \`${label}\`${all.has(node.key) ? "" : didYouMean(node.key, all)}`);
      }
      return new Set(hits);
    }
    case "kind": {
      const hits = keys.filter((k) => graph.asset(k).kinds.includes(node.kind));
      if (hits.length === 0) {
        throw new UserError(`no asset has kind \`${node.kind}\`${didYouMean(node.kind, new Set(keys.flatMap((k) => graph.asset(k).kinds)))}`);
      }
      return new Set(hits);
    }
    case "pipeline": {
      if (!graph.pipelines.has(node.name)) throw new UserError(`unknown pipeline \`${node.name}\`${didYouMean(node.name, graph.pipelines.keys())}`);
      return new Set(keys.filter((k) => graph.node(k).pipeline === node.name));
    }
    case "graph": {
      const base = evaluate(graph, node.node);
      const up = node.up > 0 ? graph.expand(base, "inbound", node.up) : base;
      const down = node.down > 0 ? graph.expand(base, "outbound", node.down) : base;
      return new Set([...up, ...down]);
    }
    case "not": {
      const inner = evaluate(graph, node.node);
      return new Set(keys.filter((k) => !inner.has(k)));
    }
    case "union":
      return new Set(node.nodes.flatMap((n) => [...evaluate(graph, n)]));
    case "intersection": {
      const [first, ...rest] = node.nodes.map((n) => evaluate(graph, n));
      return new Set([...first!].filter((k) => rest.every((s) => s.has(k))));
    }
  }
}
