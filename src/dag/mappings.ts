import { UserError } from "../errors.js";
import type { PartitionsDefinition } from "./partitions.js";

export const MAPPING_BRAND = Symbol.for("floe.partitionMapping");

/**
 * Which partitions of an upstream asset one partition of a downstream asset reads.
 * Built-ins: `identity` (the default between equal partitions), `timeWindow`, `all`, `lastN`.
 */
export interface PartitionMapping {
  readonly [MAPPING_BRAND]: true;
  readonly name: string;
  /** Why these two definitions cannot be mapped, or undefined. */
  incompatible(upstream: PartitionsDefinition, downstream: PartitionsDefinition): string | undefined;
  /** The upstream keys that downstream partition `key` reads (among `upstreamKeys`, in order). */
  upstream(key: string, upstreamKeys: readonly string[]): string[];
}

const TIME = new Set(["hourly", "daily", "monthly"]);
const tz = (p: PartitionsDefinition): string => p.id.split(":").at(-1) ?? "";

/**
 * Partition mappings for `mappings: { [upstreamKey]: … }` on an asset.
 *
 * @example
 * asset("monthly_report", { deps: [daily], partitions: monthly, mappings: { daily_orders: partitionMappings.timeWindow() }, … })
 * asset("rolling_7d", { deps: [orders], partitions: daily, mappings: { orders: partitionMappings.lastN(7) }, … })
 */
export const partitionMappings = {
  identity: (): PartitionMapping => ({
    [MAPPING_BRAND]: true,
    name: "identity",
    incompatible: (u, d) => (u.id === d.id ? undefined : "identity needs the same partitions on both sides"),
    upstream: (key, keys) => (keys.includes(key) ? [key] : []),
  }),
  /** Time windows of different grain: a month reads its days, a day reads its month (same timezone). */
  timeWindow: (): PartitionMapping => ({
    [MAPPING_BRAND]: true,
    name: "timeWindow",
    incompatible: (u, d) =>
      !TIME.has(u.type) || !TIME.has(d.type)
        ? "timeWindow maps hourly, daily and monthly partitions"
        : tz(u) !== tz(d)
          ? `timeWindow needs one timezone (${tz(u)} and ${tz(d)})`
          : undefined,
    // Keys are calendar strings (2025-01, 2025-01-05, 2025-01-05T03): a window contains the keys it prefixes.
    upstream: (key, keys) => keys.filter((k) => k.startsWith(key) || key.startsWith(k)),
  }),
  /** Every partition of the upstream. */
  all: (): PartitionMapping => ({
    [MAPPING_BRAND]: true,
    name: "all",
    incompatible: () => undefined,
    upstream: (_key, keys) => [...keys],
  }),
  /** The `n` upstream partitions ending at the same key (a rolling window). */
  lastN: (n: number): PartitionMapping => {
    if (!Number.isInteger(n) || n < 1) throw new UserError(`partitionMappings.lastN(${n}): n must be a whole number ≥ 1`);
    return {
      [MAPPING_BRAND]: true,
      name: `lastN(${n})`,
      incompatible: (u, d) => (u.id === d.id ? undefined : `lastN needs the same partitions on both sides`),
      upstream: (key, keys) => {
        const i = keys.indexOf(key);
        return i < 0 ? [] : keys.slice(Math.max(0, i - n + 1), i + 1);
      },
    };
  },
};

export function isPartitionMapping(v: unknown): v is PartitionMapping {
  return typeof v === "object" && v !== null && (v as Record<symbol, unknown>)[MAPPING_BRAND] === true;
}

/**
 * The partitions of `parent` that partition `partition` of `child` reads: null when the parent
 * is unpartitioned (it has one materialization), all of them when the child is unpartitioned,
 * else what the child's mapping for it says (identity by default). `keysOf` lists a definition's
 * keys (callers cache it).
 *
 * @example
 * upstreamPartitions(rolling, orders, "2025-01-07", (p) => p.keys()); // with lastN(3): ["2025-01-05", "2025-01-06", "2025-01-07"]
 */
export function upstreamPartitions(
  child: { mappings: Readonly<Record<string, PartitionMapping>>; partitions?: PartitionsDefinition },
  parent: { key: string; partitions?: PartitionsDefinition },
  partition: string | null,
  keysOf: (p: PartitionsDefinition) => readonly string[],
): string[] | null {
  if (!parent.partitions) return null;
  const keys = keysOf(parent.partitions);
  if (partition === null || !child.partitions) return [...keys];
  const mapping = child.mappings[parent.key] ?? partitionMappings.identity();
  return mapping.upstream(partition, keys);
}

/** A `keysOf` that lists each definition's keys once. */
export function cachedKeys(now: Date): (p: PartitionsDefinition) => readonly string[] {
  const cache = new Map<string, readonly string[]>();
  return (p) => {
    let keys = cache.get(p.id);
    if (!keys) cache.set(p.id, (keys = p.keys(now)));
    return keys;
  };
}

/**
 * The partitions of `child` that read `partitions` of `parent`: the inverse of
 * `upstreamPartitions`, for many upstream partitions at once. An identity mapping is a direct
 * lookup; other mappings list the child's keys once, not once per upstream partition. `null`
 * stands for an unpartitioned side.
 *
 * @example
 * downstreamPartitions(graph.asset("orders"), graph.asset("raw"), ["2025-01-01"], keysOf); // ["2025-01-01"]
 */
export function downstreamPartitions(
  child: { mappings: Readonly<Record<string, PartitionMapping>>; partitions?: PartitionsDefinition },
  parent: { key: string; partitions?: PartitionsDefinition },
  partitions: ReadonlyArray<string | null>,
  keysOf: (p: PartitionsDefinition) => readonly string[],
): Array<string | null> {
  if (partitions.length === 0) return [];
  if (!child.partitions) return [null];
  const mapping = child.mappings[parent.key];
  if (parent.partitions && (mapping === undefined || mapping.name === "identity") && parent.partitions.id === child.partitions.id) {
    return [...new Set(partitions)].filter((p): p is string => p !== null);
  }
  const wanted = new Set(partitions.map((p) => p ?? ""));
  return keysOf(child.partitions).filter((k) => {
    const reads = upstreamPartitions(child, parent, k, keysOf);
    return reads === null || reads.some((r) => wanted.has(r));
  });
}
