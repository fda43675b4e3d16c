import type { PlannedStep } from "./plan.js";

/**
 * How an asset takes partitions in one run: `"per-partition"` (the default) materializes each
 * partition on its own; `"single-run"` hands every partition of the run to one `materialize`
 * call; `{ maxPartitionsPerRun: N }` hands them over N at a time. As Dagster's `BackfillPolicy`.
 */
export type AssetBackfillPolicy = "per-partition" | "single-run" | { maxPartitionsPerRun: number };

/** Steps executed by one `materialize` call: one step, or a range of one asset's partitions. */
export interface StepUnit {
  /** The step's id, or `asset[first…last]` for a range. */
  id: string;
  asset: string;
  /** The steps it stands for, in plan order (one for an ordinary step). */
  members: PlannedStep[];
  /** Ids of the units that must succeed first. */
  deps: string[];
}

/**
 * Groups a run's steps into the units the runner executes: the partitions of an asset whose
 * policy takes ranges become one unit per chunk (in plan order); every other step is a unit of
 * its own. A unit waits for every upstream unit of any of its members. Grouping the steps of one
 * asset never makes a cycle, since the asset graph has none.
 *
 * @example
 * const units = stepUnits(plan.steps, (asset) => (asset === "lake.orders" ? "single-run" : undefined));
 * units.find((u) => u.asset === "lake.orders")?.id; // "lake.orders[2025-01-01…2025-01-07]"
 */
export function stepUnits(steps: readonly PlannedStep[], policyOf: (asset: string) => AssetBackfillPolicy | undefined): StepUnit[] {
  const byAsset = new Map<string, PlannedStep[]>();
  for (const s of steps) {
    const list = byAsset.get(s.asset);
    if (list) list.push(s);
    else byAsset.set(s.asset, [s]);
  }
  const unitOf = new Map<string, string>();
  const units: StepUnit[] = [];
  const grouped = new Set<string>();
  for (const [asset, members] of byAsset) {
    const size = chunkSize(policyOf(asset));
    if (size <= 1 || members.length < 2 || members.some((m) => m.partition === null)) continue;
    grouped.add(asset);
    for (let i = 0; i < members.length; i += size) {
      const chunk = members.slice(i, i + size);
      const id = chunk.length === 1 ? chunk[0]!.id : `${asset}[${chunk[0]!.partition}…${chunk.at(-1)!.partition}]`;
      for (const m of chunk) unitOf.set(m.id, id);
      units.push({ id, asset, members: chunk, deps: [] });
    }
  }
  for (const s of steps) if (!grouped.has(s.asset)) units.push({ id: s.id, asset: s.asset, members: [s], deps: [] });
  for (const u of units) {
    const deps = new Set<string>();
    for (const m of u.members) for (const d of m.deps) deps.add(unitOf.get(d) ?? d);
    deps.delete(u.id);
    u.deps = [...deps];
  }
  // plan order: a unit stands where its first member stood
  const order = new Map(steps.map((s, i) => [s.id, i]));
  return units.sort((a, b) => order.get(a.members[0]!.id)! - order.get(b.members[0]!.id)!);
}

function chunkSize(policy: AssetBackfillPolicy | undefined): number {
  if (policy === undefined || policy === "per-partition") return 1;
  if (policy === "single-run") return Number.POSITIVE_INFINITY;
  return policy.maxPartitionsPerRun;
}

/**
 * Checks an asset's `backfillPolicy` option; the message says what is wrong, or undefined.
 *
 * @example
 * invalidBackfillPolicy({ maxPartitionsPerRun: 0 }); // "backfillPolicy.maxPartitionsPerRun must be a whole number ≥ 1, got 0"
 */
export function invalidBackfillPolicy(policy: unknown): string | undefined {
  if (policy === undefined || policy === "per-partition" || policy === "single-run") return undefined;
  if (typeof policy === "object" && policy !== null && "maxPartitionsPerRun" in policy) {
    const n = (policy as { maxPartitionsPerRun: unknown }).maxPartitionsPerRun;
    return typeof n === "number" && Number.isInteger(n) && n >= 1 ? undefined : `backfillPolicy.maxPartitionsPerRun must be a whole number ≥ 1, got ${JSON.stringify(n)}`;
  }
  return `backfillPolicy must be "per-partition", "single-run" or { maxPartitionsPerRun: N }, got ${JSON.stringify(policy)}`;
}
