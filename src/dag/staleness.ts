import type { AssetGraph } from "./graph.js";
import { cachedKeys, upstreamPartitions } from "./mappings.js";
import type { PartitionsDefinition } from "./partitions.js";
import { stepId } from "./plan.js";

export type AssetStatus = "materialized" | "stale" | "missing" | "failed" | "running";

/** The latest materialization of one asset partition, as the state store keeps it. */
export interface MaterializationState {
  asset: string;
  partition: string | null;
  runId: string;
  materializedAt: Date;
  codeVersion: string | null;
}

/** The latest step of one asset partition, as the state store keeps it. */
export interface StepState {
  asset: string;
  partition: string | null;
  runId: string;
  status: string;
  at: Date;
}

export interface PartitionStatus {
  asset: string;
  partition: string | null;
  status: AssetStatus;
  lastRunId: string | null;
  lastMaterializedAt: Date | null;
  /** Why it is stale, failed or running, in words. */
  reason?: string;
}

/**
 * Status of each asset partition: `running` or `failed` when its latest step is, else `missing`
 * when never materialized, `stale` when its code version changed or an upstream partition it reads
 * was materialized after it (or is itself stale), else `materialized`. Pure.
 *
 * @example
 * const rows = assetStatuses(graph, ["raw", "orders"], mats, steps, new Date());
 * rows.find((r) => r.asset === "orders")?.status; // "stale"
 */
export function assetStatuses(
  graph: AssetGraph,
  assets: readonly string[],
  materializations: readonly MaterializationState[],
  latestSteps: readonly StepState[],
  now = new Date(),
): PartitionStatus[] {
  const mats = new Map(materializations.map((m) => [stepId(m.asset, m.partition), m]));
  const steps = new Map(latestSteps.map((s) => [stepId(s.asset, s.partition), s]));
  const byId = new Map<string, PartitionStatus>();
  const keysOf = cachedKeys(now);
  const wanted = new Set(assets);
  // Upstream assets outside `assets` still decide staleness: evaluate them too, report only `assets`.
  const needed = new Set(assets);
  for (const a of assets) for (const u of graph.upstream(a)) needed.add(u);
  const out: PartitionStatus[] = [];
  for (const generation of graph.generations(needed)) {
    for (const key of generation) {
      const def = graph.asset(key);
      const partitions = def.partitions ? keysOf(def.partitions) : [null];
      for (const partition of partitions) {
        const id = stepId(key, partition);
        const mat = mats.get(id);
        const step = steps.get(id);
        const row: PartitionStatus = {
          asset: key,
          partition,
          status: "materialized",
          lastRunId: mat?.runId ?? null,
          lastMaterializedAt: mat?.materializedAt ?? null,
        };
        if (step?.status === "running" || step?.status === "pending") {
          row.status = "running";
          row.lastRunId = step.runId;
          row.reason = `run ${step.runId.slice(0, 8)} is materializing it`;
        } else if (step?.status === "failed" && (!mat || step.at > mat.materializedAt)) {
          row.status = "failed";
          row.lastRunId = step.runId;
          row.reason = `failed in run ${step.runId.slice(0, 8)}`;
        } else if (!mat) {
          row.status = "missing";
        } else {
          const reason = staleReason(graph, key, partition, def.codeVersion, mat, mats, byId, keysOf);
          if (reason) {
            row.status = "stale";
            row.reason = reason;
          }
        }
        byId.set(id, row);
        if (wanted.has(key)) out.push(row);
      }
    }
  }
  return out;
}

function staleReason(
  graph: AssetGraph,
  key: string,
  partition: string | null,
  codeVersion: string | undefined,
  mat: MaterializationState,
  mats: ReadonlyMap<string, MaterializationState>,
  statuses: ReadonlyMap<string, PartitionStatus>,
  keysOf: (p: PartitionsDefinition) => readonly string[],
): string | undefined {
  if (codeVersion !== undefined && codeVersion !== mat.codeVersion) {
    return `code version changed (${mat.codeVersion ?? "none"} → ${codeVersion})`;
  }
  for (const parent of graph.parents(key)) {
    const reads = upstreamPartitions(graph.asset(key), graph.asset(parent), partition, keysOf);
    const upstreamIds = reads === null ? [stepId(parent, null)] : reads.map((k) => stepId(parent, k));
    for (const uid of upstreamIds) {
      const u = mats.get(uid);
      if (u && u.materializedAt > mat.materializedAt) return `upstream \`${uid}\` was materialized after it`;
      if (statuses.get(uid)?.status === "stale") return `upstream \`${uid}\` is stale`;
    }
  }
  return undefined;
}
