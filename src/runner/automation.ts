import type { AssetGraph } from "../dag/graph.js";
import { cachedKeys, upstreamPartitions } from "../dag/mappings.js";
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
  const wanted = new Map<string, StepKey>();
  for (const s of done) {
    for (const child of graph.children(s.asset)) {
      const def = graph.asset(child);
      if (def.automation !== "eager") continue;
      // the partitions of the child that read this upstream partition
      const candidates = def.partitions ? keysOf(def.partitions) : [null];
      for (const p of candidates) {
        const reads = upstreamPartitions(def, graph.asset(s.asset), p, keysOf);
        if (reads === null || reads.includes(s.partition ?? "")) wanted.set(stepId(child, p), { asset: child, partition: p });
      }
    }
  }
  if (wanted.size === 0) return undefined;
  const busy = new Set(
    (await store.latestStepStates([...new Set([...wanted.values()].map((w) => w.asset))]))
      .filter((s) => s.status === "pending" || s.status === "running")
      .map((s) => stepId(s.asset, s.partition)),
  );
  const steps = [...wanted.entries()].filter(([id]) => !busy.has(id)).map(([, k]) => k);
  if (steps.length === 0) return undefined;
  return store.createRun({ trigger: "automation", selection: steps.map((s) => s.asset).join(" "), status: "queued", tags: { "floe/after": outcome.runId }, steps });
}
