import { DirectedGraph } from "graphology";
import { topologicalGenerations } from "graphology-dag";
import { bfsFromNode } from "graphology-traversal";
import { UserError, didYouMean } from "../errors.js";
import type { AssetDefinition, PipelineDefinition } from "./types.js";

/** Asset keys: `[a-z][a-z0-9_]*` segments joined by `.`. */
export const ASSET_KEY = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/;
/** Pipeline names: one key segment. */
export const PIPELINE_NAME = /^[a-z][a-z0-9_]*$/;

/** A pipeline as loaded from a module of the project. */
export interface LoadedPipeline {
  pipeline: PipelineDefinition;
  /** The module file it came from, relative to the project (for messages). */
  module: string;
}

/** Node attributes of the asset graph. */
export interface AssetNode {
  key: string;
  asset: AssetDefinition;
  pipeline: string;
  module: string;
}

/**
 * The resolved asset graph: one node per asset key, an edge from each upstream to each
 * downstream. Pure: built from definitions, no I/O.
 *
 * @example
 * const graph = AssetGraph.build([{ pipeline: ordersPipeline, module: "pipelines/orders.ts" }]);
 * graph.upstream("orders");        // Set { "raw_orders" }
 * graph.generations();             // [["raw_orders"], ["orders"], …]
 */
export class AssetGraph {
  private constructor(
    readonly graph: DirectedGraph<AssetNode>,
    readonly pipelines: ReadonlyMap<string, LoadedPipeline>,
  ) {}

  /** Builds and checks the graph; throws a UserError naming the first problem found. */
  static build(loaded: readonly LoadedPipeline[]): AssetGraph {
    const g = new DirectedGraph<AssetNode>();
    const pipelines = new Map<string, LoadedPipeline>();
    for (const lp of loaded) {
      const { pipeline, module } = lp;
      if (!PIPELINE_NAME.test(pipeline.name)) {
        throw new UserError(`${module}: invalid pipeline name \`${pipeline.name}\`; use lowercase letters, digits and _ , starting with a letter`);
      }
      const other = pipelines.get(pipeline.name);
      if (other) {
        throw new UserError(`duplicate pipeline \`${pipeline.name}\` in ${other.module} and ${module}`);
      }
      pipelines.set(pipeline.name, lp);
      for (const asset of pipeline.assets) {
        if (typeof asset.key !== "string" || !ASSET_KEY.test(asset.key)) {
          throw new UserError(
            `${module}: invalid asset key \`${String(asset.key)}\`; keys are lowercase segments [a-z][a-z0-9_]* joined by \`.\` (e.g. \`lake.orders\`)`,
          );
        }
        const existing = g.hasNode(asset.key) ? g.getNodeAttributes(asset.key) : undefined;
        if (existing) {
          const where = existing.module === module ? `twice in ${module}` : `in ${existing.module} and ${module}`;
          throw new UserError(`duplicate asset key \`${asset.key}\` ${where} (pipelines \`${existing.pipeline}\` and \`${pipeline.name}\`)`);
        }
        g.addNode(asset.key, { key: asset.key, asset, pipeline: pipeline.name, module });
      }
    }
    g.forEachNode((key, { asset, module }) => {
      for (const dep of asset.deps) {
        if (!g.hasNode(dep)) {
          throw new UserError(`${module}: asset \`${key}\` depends on \`${dep}\`, which no loaded pipeline declares${didYouMean(dep, g.nodes())}`);
        }
        if (dep === key) throw new UserError(`${module}: asset \`${key}\` depends on itself`);
        g.mergeEdge(dep, key);
      }
    });
    const cycle = findCycle(g);
    if (cycle) throw new UserError(`dependency cycle: ${cycle.join(" → ")}`);
    checkPartitionCompatibility(g);
    return new AssetGraph(g, pipelines);
  }

  keys(): string[] {
    return this.graph.nodes();
  }

  has(key: string): boolean {
    return this.graph.hasNode(key);
  }

  node(key: string): AssetNode {
    return this.graph.getNodeAttributes(key);
  }

  asset(key: string): AssetDefinition {
    return this.graph.getNodeAttributes(key).asset;
  }

  /** Direct upstream keys of `key`. */
  parents(key: string): string[] {
    return this.graph.inNeighbors(key);
  }

  /** Direct downstream keys of `key`. */
  children(key: string): string[] {
    return this.graph.outNeighbors(key);
  }

  /** All upstream keys of `key` (not `key` itself), up to `depth` edges away. */
  upstream(key: string, depth = Infinity): Set<string> {
    return this.walk(key, "inbound", depth);
  }

  /** All downstream keys of `key` (not `key` itself), up to `depth` edges away. */
  downstream(key: string, depth = Infinity): Set<string> {
    return this.walk(key, "outbound", depth);
  }

  /**
   * Every key within `depth` edges upstream (`inbound`) or downstream (`outbound`) of any of
   * `keys`, the keys themselves included. One breadth-first walk from all of them at once.
   */
  expand(keys: Iterable<string>, mode: "inbound" | "outbound", depth = Infinity): Set<string> {
    const seen = new Set(keys);
    let frontier = [...seen];
    for (let d = 0; d < depth && frontier.length > 0; d++) {
      const next: string[] = [];
      for (const k of frontier) {
        for (const n of mode === "inbound" ? this.graph.inNeighbors(k) : this.graph.outNeighbors(k)) {
          if (!seen.has(n)) {
            seen.add(n);
            next.push(n);
          }
        }
      }
      frontier = next;
    }
    return seen;
  }

  /** Keys in topological generations: every asset comes after all its upstream assets. */
  generations(keys?: ReadonlySet<string>): string[][] {
    const gens = topologicalGenerations(this.graph);
    return keys ? gens.map((gen) => gen.filter((k) => keys.has(k))).filter((gen) => gen.length > 0) : gens;
  }

  private walk(key: string, mode: "inbound" | "outbound", depth: number): Set<string> {
    const out = new Set<string>();
    bfsFromNode(
      this.graph,
      key,
      (node, _attrs, d) => {
        if (node !== key) out.add(node);
        return d >= depth;
      },
      { mode },
    );
    return out;
  }
}

/** A cycle as a list of keys that starts and ends with the same key, or undefined. */
function findCycle(g: DirectedGraph<AssetNode>): string[] | undefined {
  const state = new Map<string, 1 | 2>(); // 1 = on the stack, 2 = done
  const stack: string[] = [];
  for (const root of g.nodes()) {
    if (state.has(root)) continue;
    // iterative DFS: frames of (node, its remaining children)
    const frames: Array<{ node: string; next: string[] }> = [{ node: root, next: g.outNeighbors(root) }];
    state.set(root, 1);
    stack.push(root);
    while (frames.length > 0) {
      const top = frames[frames.length - 1]!;
      const child = top.next.pop();
      if (child === undefined) {
        state.set(top.node, 2);
        stack.pop();
        frames.pop();
        continue;
      }
      const s = state.get(child);
      if (s === 1) return [...stack.slice(stack.indexOf(child)), child];
      if (s === undefined) {
        state.set(child, 1);
        stack.push(child);
        frames.push({ node: child, next: g.outNeighbors(child) });
      }
    }
  }
  return undefined;
}

/**
 * Two partitioned assets joined by an edge need the same partitions, or a partition mapping
 * that can map them; a mapping must name a dependency.
 */
function checkPartitionCompatibility(g: DirectedGraph<AssetNode>): void {
  g.forEachNode((key, { asset, module }) => {
    for (const dep of Object.keys(asset.mappings)) {
      if (!asset.deps.includes(dep)) throw new UserError(`${module}: asset \`${key}\` has a partition mapping for \`${dep}\`, which is not one of its deps`);
    }
  });
  g.forEachEdge((_edge, _attrs, from, to, fromAttrs, toAttrs) => {
    const a = fromAttrs.asset.partitions;
    const b = toAttrs.asset.partitions;
    if (!a || !b) return;
    const mapping = toAttrs.asset.mappings[from];
    if (!mapping) {
      if (a.id !== b.id) {
        throw new UserError(
          `${toAttrs.module}: asset \`${to}\` (${b.describe()}) depends on \`${from}\` (${a.describe()}) with different partitions; give it a partition mapping (mappings: { ${from}: partitionMappings.timeWindow() / all() / lastN(n) }) or the same partitions`,
        );
      }
      return;
    }
    const why = mapping.incompatible(a, b);
    if (why) throw new UserError(`${toAttrs.module}: asset \`${to}\` maps \`${from}\` with ${mapping.name}, but ${why} (${a.describe()} → ${b.describe()})`);
  });
}
