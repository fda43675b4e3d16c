import { UserError } from "../errors.js";
import type { AssetGraph } from "../dag/graph.js";
import { plan, type PlannedStep } from "../dag/plan.js";
import type { BackfillRecord, NewRun, RunRecord, StateStore } from "../state/index.js";
import { rerunOf } from "./launch.js";
import type { RunOutcome, RunnerOptions } from "./runner.js";
import { runWorker, type WorkerOptions } from "./worker.js";

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
  // A run holds steps that depend on each other: with identity mappings that is one partition
  // of every selected asset; a coarser asset (a month reading its days) joins the run of the
  // partitions it reads, so no run waits on another.
  const groups = connected(steps);
  const size = policy.type === "per-partition" ? 1 : policy.type === "single-run" ? groups.length : policy.size;
  const runs: NewRun[] = [];
  for (let i = 0; i < groups.length; i += size) {
    const chunk = groups.slice(i, i + size).flat().sort((x, y) => x.index - y.index);
    // labelled by its finest keys (the days of a day-and-month run)
    const all = [...new Set(chunk.map((c) => c.step.partition!))];
    const finest = Math.max(...all.map((k) => k.length));
    const keys = all.filter((k) => k.length === finest).sort();
    runs.push({
      trigger: "backfill",
      selection,
      partitionRange: keys.length === 1 ? keys[0]! : `${keys[0]}…${keys.at(-1)}`,
      // steps stay in plan (topological) order within a run
      steps: chunk.map(({ step }) => ({ asset: step.asset, partition: step.partition })),
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
 * Executes a backfill's queued runs in this process, `runs` at a time (and at most what
 * `maxRunning`, the global cap, leaves to backfills), until none is left and none is running (a
 * run of a dead process is recovered after three missed heartbeats); then settles its status
 * from the latest run of each partition. Other `floe worker`s may help. A backfill canceled
 * meanwhile (`floe backfill cancel`) stops the driver and stays canceled.
 *
 * @example
 * await driveBackfill(store, graph, backfill.id, { runs: 4, maxRunning: 8 });
 */
export async function driveBackfill(
  store: StateStore,
  graph: AssetGraph,
  id: string,
  options: Omit<RunnerOptions, "worker"> & Pick<WorkerOptions, "maxRunning" | "recoveries" | "pollMs" | "onBackfillSettled"> & { runs?: number; onRun?: (outcome: RunOutcome) => void } = {},
): Promise<BackfillOutcome> {
  // Runs still running belong to another worker or to a process that died (a restart): wait for
  // them, so that a dead one is failed after three missed heartbeats and requeued from failure.
  let runs: RunRecord[];
  let canceled = false;
  for (;;) {
    await runWorker(store, graph, { ...options, untilEmpty: true, backfillId: id });
    runs = currentRuns(await store.backfillRuns(id));
    canceled = (await store.getBackfill(id)).status === "canceled";
    if (canceled || options.signal?.aborted || !runs.some((r) => r.status === "running" || r.status === "queued")) break;
    await new Promise((r) => setTimeout(r, options.heartbeatMs ?? 5_000));
  }
  if (canceled || options.signal?.aborted) await store.setBackfillStatus(id, "canceled", { unlessCanceled: true });
  else {
    // settled by whoever ends the last run (this driver's worker, or another); a backfill whose
    // last runs were not executed here may still need it
    const settled = await store.settleBackfill(id);
    if (settled) options.onBackfillSettled?.(id, settled);
  }
  return { backfill: await store.getBackfill(id), runs: canceled || options.signal?.aborted ? currentRuns(await store.backfillRuns(id)) : runs };
}

/**
 * Requeues only what failed: each failed or canceled run of the backfill gets a rerun from
 * failure (its successful steps reused), in the same backfill, all in one statement. Returns
 * how many runs failed.
 *
 * @example
 * await retryBackfill(store, graph, "9c1e"); // then driveBackfill
 */
export async function retryBackfill(store: StateStore, graph: AssetGraph, id: string): Promise<number> {
  const runs = currentRuns(await store.backfillRuns(id));
  const failed = runs.filter((r) => r.status === "failed" || r.status === "canceled");
  // one query for their steps, one statement for the reruns
  const steps = await store.getStepsOfRuns(failed.map((r) => r.id));
  await store.createRuns(failed.map((r) => rerunOf(graph, r, steps.get(r.id) ?? [], { fromFailure: true }, { backfillId: id })).filter((r): r is NewRun => r !== null));
  if (failed.length > 0) await store.setBackfillStatus(id, "running");
  return failed.length;
}

/** The plan's steps in groups linked by dependencies (union-find), ordered by their first step. */
function connected(steps: readonly PlannedStep[]): Array<Array<{ step: PlannedStep; index: number }>> {
  const index = new Map(steps.map((s, i) => [s.id, i]));
  const parent = steps.map((_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i]!]!;
    return i;
  };
  steps.forEach((s, i) => {
    for (const d of s.deps) {
      const j = index.get(d);
      if (j !== undefined) parent[find(i)] = find(j);
    }
  });
  const groups = new Map<number, Array<{ step: PlannedStep; index: number }>>();
  steps.forEach((step, i) => {
    const root = find(i);
    const g = groups.get(root) ?? [];
    g.push({ step, index: i });
    groups.set(root, g);
  });
  return [...groups.values()].sort((a, b) => a[0]!.index - b[0]!.index);
}

/** The runs not superseded by a rerun. */
function currentRuns(runs: readonly RunRecord[]): RunRecord[] {
  const parents = new Set(runs.map((r) => r.parentRunId).filter((p): p is string => p !== null));
  return runs.filter((r) => !parents.has(r.id));
}
