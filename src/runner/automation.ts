import type { AssetGraph } from "../dag/graph.js";
import { cachedKeys, downstreamPartitions } from "../dag/mappings.js";
import { stepId, type StepKey } from "../dag/plan.js";
import type { RunRecord, StateStore } from "../state/index.js";
import type { RunOutcome } from "./runner.js";

/**
 * Queues the `automation: "eager"` assets that read what a run just materialized: one run for
 * every affected partition of them, unless such a step is already pending or running.
 *
 * @example
 * const queued = await queueEager(store, graph, outcome); // undefined when nothing is eager
 */
export async function queueEager(store: StateStore, graph: AssetGraph, outcome: RunOutcome): Promise<RunRecord | undefined> {
  const done = outcome.steps.filter((s) => s.status === "success");
  if (done.length === 0) return undefined;
  const keysOf = cachedKeys(new Date());
  // what succeeded, by asset, so each eager child is looked at once per upstream asset
  const byAsset = new Map<string, Array<string | null>>();
  for (const s of done) byAsset.set(s.asset, [...(byAsset.get(s.asset) ?? []), s.partition]);
  const wanted = new Map<string, StepKey>();
  for (const [asset, partitions] of byAsset) {
    for (const child of graph.children(asset)) {
      const def = graph.asset(child);
      if (def.automation !== "eager") continue;
      for (const p of downstreamPartitions(def, graph.asset(asset), partitions, keysOf)) wanted.set(stepId(child, p), { asset: child, partition: p });
    }
  }
  if (wanted.size === 0) return undefined;
  // only the wanted asset partitions' latest steps, not every step the eager assets ever had
  const busy = new Set(
    (await store.latestStepStates(undefined, [...wanted.values()]))
      .filter((s) => s.status === "pending" || s.status === "running")
      .map((s) => stepId(s.asset, s.partition)),
  );
  const steps = [...wanted.entries()].filter(([id]) => !busy.has(id)).map(([, k]) => k);
  if (steps.length === 0) return undefined;
  return store.createRun({ trigger: "automation", selection: steps.map((s) => s.asset).join(" "), status: "queued", tags: { "floe/after": outcome.runId }, steps });
}
