// bench/overhead: 2,000 no-op assets materialized through the runner with PostgreSQL state,
// against a bare loop calling the same functions in topological order in this process.
// Prints per-step overhead in ms and the ratio. Target < 2 ms per step.
// Needs PostgreSQL: FLOE_TEST_DATABASE_URL or postgres://postgres@127.0.0.1:5432/test.
import { asset, pipeline } from "../src/assets/asset.js";
import { AssetGraph } from "../src/dag/graph.js";
import { materialize } from "../src/runner/launch.js";
import { StateStore } from "../src/state/index.js";
import { benchDatabase, randomDag, timed } from "./lib.js";

const N = 2_000;
const bench = await benchDatabase();

let calls = 0;
const noop = () => {
  calls++;
  return { metadata: {} };
};
const deps = randomDag(N, 2);
const graph = AssetGraph.build([{ module: "bench", pipeline: pipeline("bench", { assets: deps.map((d, i) => asset(`a${i}`, { deps: d, materialize: noop })) }) }]);
const order = graph.generations().flat();

const store = await StateStore.open({ url: bench.url, home: "/nonexistent" });
try {
  // warm up both paths once
  await materialize(store, graph, { assets: new Set(order.slice(0, 50)), selection: "warmup" });
  const bare = await timed(async () => {
    for (const key of order) await graph.asset(key).materialize({} as never);
  });
  const results: number[] = [];
  for (const concurrency of [1, 2]) {
    calls = 0;
    const run = await timed(() => materialize(store, graph, { assets: new Set(order), selection: "*" }, { concurrency }));
    if (run.value.status !== "success" || calls !== N) throw new Error(`run ${run.value.status}, ${calls} calls`);
    const perStep = (run.ms - bare.ms) / N;
    results.push(perStep);
    console.log(
      `overhead (concurrency ${concurrency}): ${N} steps in ${run.ms.toFixed(0)} ms vs bare loop ${bare.ms.toFixed(1)} ms → ${perStep.toFixed(3)} ms per step (target < 2 ms); ratio ${(run.ms / Math.max(bare.ms, 0.001)).toFixed(0)}x`,
    );
  }
} finally {
  await store.close();
  await bench.drop();
}
