import { expect } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { materialize } from "../../src/runner/launch.js";
import type { StateStore } from "../../src/state/index.js";
import { randomDag, rng } from "../../bench/lib.js";

/**
 * Runs a random DAG of `n` assets where a random tenth fail, then checks the runner's
 * invariants against the graph: every step ran at most once, exactly the failing ones failed,
 * exactly their descendants are upstream_failed, every other step succeeded after all its
 * upstream steps, and the store agrees with the outcome.
 */
export async function randomDagTrial(store: StateStore, n: number, seed: number, concurrency: number): Promise<void> {
  const rand = rng(seed);
  const deps = randomDag(n, 2, seed);
  const failing = new Set(deps.map((_, i) => `a${i}`).filter(() => rand() < 0.1));
  const calls = new Map<string, number>();
  const finishedAt = new Map<string, number>();
  let clock = 0;
  const assets = deps.map((d, i) =>
    asset(`a${i}`, {
      deps: d,
      materialize: async () => {
        const key = `a${i}`;
        calls.set(key, (calls.get(key) ?? 0) + 1);
        for (const p of d) expect(finishedAt.has(p), `${key} started before ${p} finished`).toBe(true);
        if (rand() < 0.5) await new Promise((r) => setImmediate(r));
        if (failing.has(key)) throw new Error(`${key} fails`);
        finishedAt.set(key, ++clock);
        return { metadata: { i } };
      },
    }),
  );
  const graph = AssetGraph.build([{ module: "random.ts", pipeline: pipeline("random", { assets }) }]);
  const outcome = await materialize(store, graph, { assets: new Set(graph.keys()), selection: "*" }, { concurrency });

  const blocked = new Set<string>();
  for (const f of failing) for (const d of graph.downstream(f)) blocked.add(d);
  const expected = (k: string): string => (blocked.has(k) ? "upstream_failed" : failing.has(k) ? "failed" : "success");
  const byKey = new Map(outcome.steps.map((s) => [s.asset, s.status]));
  expect(outcome.steps).toHaveLength(n);
  for (const k of graph.keys()) {
    expect(byKey.get(k), k).toBe(expected(k));
    expect(calls.get(k) ?? 0, `${k} calls`).toBe(blocked.has(k) ? 0 : 1);
  }
  expect(outcome.status).toBe(failing.size > 0 ? "failed" : "success");
  const stored = await store.getSteps(outcome.runId!);
  expect(new Map(stored.map((s) => [s.asset, s.status]))).toEqual(byKey);
}
