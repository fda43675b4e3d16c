import { UserError } from "../errors.js";
import type { AssetGraph } from "./graph.js";
import { cachedKeys, upstreamPartitions } from "./mappings.js";
import type { PartitionsDefinition } from "./partitions.js";

/** A step: one asset, one partition (null for an unpartitioned asset). */
export interface StepKey {
  asset: string;
  partition: string | null;
}

export interface PlannedStep extends StepKey {
  /** `asset` or `asset[partition]`: unique within a plan. */
  id: string;
  /** Ids of the steps of this plan that must succeed first. */
  deps: string[];
}

export interface Plan {
  steps: PlannedStep[];
  /** Step ids in topological generations: each generation only depends on earlier ones. */
  generations: string[][];
}

/** Which partitions of the partitioned assets to plan. */
export type PartitionSelection = { key: string } | { from: string; to: string } | { all: true };

/** The id of a step: `orders` or `orders[2025-01-01]`. */
export function stepId(asset: string, partition: string | null): string {
  return partition === null ? asset : `${asset}[${partition}]`;
}

/**
 * Plans the steps (asset × partition) of a selection, in topological generations.
 * Partitioned assets need a partition selection; an unpartitioned asset is one step.
 *
 * @example
 * const p = plan(graph, new Set(["raw_orders", "orders"]), { from: "2025-01-01", to: "2025-01-03" });
 * p.steps.map((s) => s.id); // ["raw_orders[2025-01-01]", …, "orders[2025-01-03]"]
 */
export function plan(graph: AssetGraph, assets: ReadonlySet<string>, partitions?: PartitionSelection, now = new Date()): Plan {
  const partitioned = [...assets].filter((k) => graph.asset(k).partitions !== undefined);
  if (partitions && !("all" in partitions) && partitioned.length === 0) {
    const flag = "key" in partitions ? "--partition" : "--from/--to";
    throw new UserError(`${flag} given, but no selected asset is partitioned`);
  }
  if (!partitions && partitioned.length > 0) {
    const first = graph.asset(partitioned[0]!);
    const keys = first.partitions!.keys(now);
    const example = keys.length > 0 ? keys[keys.length - 1] : "KEY";
    throw new UserError(
      `asset \`${partitioned[0]}\` is partitioned (${first.partitions!.describe()}); pass --partition ${example} or --from KEY --to KEY`,
    );
  }
  const keysByDefinition = new Map<string, string[]>();
  const keysOf = (def: PartitionsDefinition): string[] => {
    let keys = keysByDefinition.get(def.id);
    if (!keys) {
      if (!partitions || "all" in partitions) keys = def.keys(now);
      else if ("key" in partitions) {
        const why = def.invalidReason(partitions.key, now);
        if (why) throw new UserError(why);
        keys = [partitions.key];
      } else {
        const [from, to] = windowIn(def, partitions.from, partitions.to);
        keys = def.range(from, to, now);
      }
      keysByDefinition.set(def.id, keys);
    }
    return keys;
  };

  const keys: StepKey[] = [];
  for (const key of assets) {
    const def = graph.asset(key);
    for (const partition of def.partitions ? keysOf(def.partitions) : [null]) keys.push({ asset: key, partition });
  }
  return linkSteps(graph, keys, now);
}

/**
 * Links given steps into a plan: each step depends on the steps of its upstream assets that are
 * among them (the same partition of a partitioned upstream, every step of an upstream otherwise).
 *
 * @example
 * linkSteps(graph, [{ asset: "raw", partition: null }, { asset: "orders", partition: null }]).steps[1]?.deps; // ["raw"]
 */
export function linkSteps(graph: AssetGraph, keys: readonly StepKey[], now = new Date()): Plan {
  const keysOf = cachedKeys(now);
  const stepsOfAsset = new Map<string, StepKey[]>();
  for (const k of keys) {
    const list = stepsOfAsset.get(k.asset);
    if (list) list.push(k);
    else stepsOfAsset.set(k.asset, [k]);
  }
  const ids = new Set(keys.map((k) => stepId(k.asset, k.partition)));
  const steps: PlannedStep[] = [];
  const generations: string[][] = [];
  for (const generation of graph.generations(new Set(stepsOfAsset.keys()))) {
    const gen: string[] = [];
    for (const asset of generation) {
      const parents = graph.parents(asset).filter((p) => stepsOfAsset.has(p));
      const def = graph.asset(asset);
      for (const { partition } of stepsOfAsset.get(asset)!) {
        const deps: string[] = [];
        for (const parent of parents) {
          const reads = upstreamPartitions(def, graph.asset(parent), partition, keysOf);
          if (reads === null) deps.push(stepId(parent, null));
          else for (const k of reads) if (ids.has(stepId(parent, k))) deps.push(stepId(parent, k));
        }
        const id = stepId(asset, partition);
        steps.push({ id, asset, partition, deps });
        gen.push(id);
      }
    }
    generations.push(gen);
  }
  return { steps, generations };
}

const TIME_FORMATS = { monthly: /^\d{4}-\d{2}$/, daily: /^\d{4}-\d{2}-\d{2}$/, hourly: /^\d{4}-\d{2}-\d{2}T\d{2}$/ } as const;

/**
 * A `--from`/`--to` range given in one time grain, in the keys of `def` when it has another:
 * the keys whose windows meet the range (days 2025-01-05…2025-02-03 → months 2025-01…2025-02;
 * months 2025-01…2025-02 → days 2025-01-01…2025-02-28). Otherwise the range as given.
 *
 * @example
 * windowIn(partitions.monthly({ start: "2025-01" }), "2025-01-05", "2025-02-03"); // ["2025-01", "2025-02"]
 */
export function windowIn(def: PartitionsDefinition, from: string, to: string): [string, string] {
  const unit = (k: string) => (Object.keys(TIME_FORMATS) as Array<keyof typeof TIME_FORMATS>).find((u) => TIME_FORMATS[u].test(k));
  const target = def.type;
  const a = unit(from);
  const b = unit(to);
  if (a === undefined || b === undefined || a !== b || a === target || (target !== "daily" && target !== "hourly" && target !== "monthly")) return [from, to];
  const lastDay = (month: string): string => {
    const [y, m] = month.split("-").map(Number);
    return new Date(Date.UTC(y!, m!, 0)).toISOString().slice(0, 10);
  };
  if (target === "monthly") return [from.slice(0, 7), to.slice(0, 7)];
  const firstDay = a === "monthly" ? `${from}-01` : from.slice(0, 10);
  const endDay = a === "monthly" ? lastDay(to) : to.slice(0, 10);
  return target === "daily" ? [firstDay, endDay] : [`${firstDay}T00`, `${endDay}T23`];
}
