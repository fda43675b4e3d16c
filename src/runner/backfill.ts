import { UserError } from "../errors.js";
import type { AssetGraph } from "../dag/graph.js";
import { plan, type PlannedStep } from "../dag/plan.js";
import type { BackfillRecord, NewRun, RunRecord, StateStore } from "../state/index.js";
import { rerun } from "./launch.js";
import type { RunOutcome, RunnerOptions } from "./runner.js";
import { runWorker } from "./worker.js";

export type BackfillPolicy = { type: "per-partition" } | { type: "single-run" } | { type: "chunks"; size: number };

/**
 * Reads `--policy`: `per-partition` (default), `single-run`, or `chunks:N`.
 *
 * @example
 * parsePolicy("chunks:7"); // { type: "chunks", size: 7 }
 */
export function parsePolicy(text = "per-partition"): BackfillPolicy {
  if (text === "per-partition" || text === "single-run") return { type: text };
  const m = /^chunks:(\d+)$/.exec(text);
  if (m && Number(m[1]) > 0) return { type: "chunks", size: Number(m[1]) };
  throw new UserError(`unknown backfill policy \`${text}\`; use per-partition, single-run or chunks:N`);
}

/**
 * The runs of a backfill: every selected asset × partition of the range, grouped by the
 * policy. Each run holds the whole selection for its partitions, so a downstream partition
 * starts as soon as its own upstream partitions succeeded, across pipelines.
 *
 * @example
 * planBackfill(graph, select(graph, "pipeline:orders+"), "2025-01-01", "2025-03-31", parsePolicy()).length; // 90
 */
export function planBackfill(graph: AssetGraph, assets: ReadonlySet<string>, from: string, to: string, policy: BackfillPolicy, selection = ""): NewRun[] {
  const unpartitioned = [...assets].filter((k) => graph.asset(k).partitions === undefined);
  const { steps } = plan(graph, assets, { from, to });
  if (unpartitioned.length > 0) {
    throw new UserError(`a backfill covers partitioned assets; \`${unpartitioned[0]}\` is not partitioned (materialize it on its own, or narrow the selection)`);
  }
  const byPartition = new Map<string, PlannedStep[]>();
  for (const s of steps) {
    const list = byPartition.get(s.partition!) ?? [];
    list.push(s);
    byPartition.set(s.partition!, list);
  }
  const keys = [...byPartition.keys()];
  const size = policy.type === "per-partition" ? 1 : policy.type === "single-run" ? keys.length : policy.size;
  const runs: NewRun[] = [];
  for (let i = 0; i < keys.length; i += size) {
    const chunk = keys.slice(i, i + size);
    // steps stay in plan (topological) order within a run
    const chunkSet = new Set(chunk);
    runs.push({
      trigger: "backfill",
      selection,
      partitionRange: chunk.length === 1 ? chunk[0]! : `${chunk[0]}…${chunk.at(-1)}`,
      steps: steps.filter((s) => chunkSet.has(s.partition!)).map((s) => ({ asset: s.asset, partition: s.partition })),
    });
  }
  return runs;
}

export interface BackfillOutcome {
  backfill: BackfillRecord;
  /** The runs that decide each partition (a retried run's rerun replaces it). */
  runs: RunRecord[];
}

/**
 * Executes a backfill's queued runs in this process, `runs` at a time, until none is left; then
 * settles its status from the latest run of each partition. Other `floe worker`s may help.
 *
 * @example
 * await driveBackfill(store, graph, backfill.id, { runs: 4 });
 */
export async function driveBackfill(
  store: StateStore,
  graph: AssetGraph,
  id: string,
  options: Omit<RunnerOptions, "worker"> & { runs?: number; onRun?: (outcome: RunOutcome) => void } = {},
): Promise<BackfillOutcome> {
  await runWorker(store, graph, { ...options, untilEmpty: true, backfillId: id });
  const runs = currentRuns(await store.backfillRuns(id));
  const status = options.signal?.aborted ? "canceled" : runs.every((r) => r.status === "success") ? "success" : runs.some((r) => r.status === "queued" || r.status === "running") ? "running" : "failed";
  await store.setBackfillStatus(id, status);
  return { backfill: await store.getBackfill(id), runs };
}

/**
 * Requeues only what failed: each failed or canceled run of the backfill gets a rerun from
 * failure (its successful steps reused), in the same backfill. Returns how many were requeued.
 *
 * @example
 * await retryBackfill(store, graph, "9c1e"); // then driveBackfill
 */
export async function retryBackfill(store: StateStore, graph: AssetGraph, id: string): Promise<number> {
  const runs = currentRuns(await store.backfillRuns(id));
  const failed = runs.filter((r) => r.status === "failed" || r.status === "canceled");
  for (const r of failed) {
    await rerun(store, graph, r.id, { fromFailure: true }, {}, { enqueueOnly: true, backfillId: id });
  }
  if (failed.length > 0) await store.setBackfillStatus(id, "running");
  return failed.length;
}

/** The runs not superseded by a rerun. */
function currentRuns(runs: readonly RunRecord[]): RunRecord[] {
  const parents = new Set(runs.map((r) => r.parentRunId).filter((p): p is string => p !== null));
  return runs.filter((r) => !parents.has(r.id));
}
