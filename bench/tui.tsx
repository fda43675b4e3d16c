// bench/tui: the terminal UI on a 1,000-asset random DAG (mean fan-in 2, ten pipelines), 80×24,
// rendered with Ink through ink-testing-library: time to the first frame (pipelines collapsed),
// to expand every asset, and per redraw of the expanded lineage after a status change. Targets: < 0.5 s first frame, < 50 ms redraw.
// Baseline in the same run: building the same graph and its layers alone, with no rendering.
// Run: npx tsx bench/tui.tsx
import { render } from "ink-testing-library";
import { asset, pipeline } from "../src/assets/asset.js";
import { AssetGraph } from "../src/dag/graph.js";
import type { PartitionStatus } from "../src/dag/staleness.js";
import { App } from "../src/tui/app.js";
import { assetViews, layers } from "../src/tui/model.js";
import type { StatusSnapshot } from "../src/tui/status-feed.js";
import { randomDag } from "./lib.js";

const N = 1_000;
const deps = randomDag(N, 2);
// ten pipelines of 100 assets, as a project would split them
const defs = deps.map((d, i) => asset(`a${i}`, { deps: d, materialize: () => ({}) }));
const graph = AssetGraph.build(Array.from({ length: 10 }, (_, p) => ({ module: `p${p}.ts`, pipeline: pipeline(`p${p}`, { assets: defs.slice(p * 100, p * 100 + 100) }) })));
const t0 = performance.now();
layers(graph);
const layout = performance.now() - t0;

const rowsOf = (done: number): PartitionStatus[] => graph.keys().slice(0, done).map((k) => ({ asset: k, partition: null, status: "materialized", lastRunId: null, lastMaterializedAt: null }));
const snap = (done: number): StatusSnapshot => ({ at: new Date(), assets: assetViews(graph, rowsOf(done)), runs: [] });
let push: (s: StatusSnapshot) => void = () => undefined;
const feed = { subscribe: (fn: (s: StatusSnapshot) => void) => ((push = fn), () => undefined) };

const start = performance.now();
const ui = render(<App graph={graph} feed={feed} initial={snap(0)} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
const first = performance.now() - start;
if (!ui.lastFrame()?.includes("p0 (100)")) throw new Error("first frame lacks the collapsed pipeline p0");
const expandFrom = ui.frames.length;
const te = performance.now();
ui.stdin.write("c"); // every asset, in the scrolling viewport
while (ui.frames.length === expandFrom) await new Promise((r) => setImmediate(r));
const expand = performance.now() - te;
if (!ui.lastFrame()?.includes("a0")) throw new Error("expanded frame lacks a0");

const redraws: number[] = [];
for (let i = 1; i <= 20; i++) {
  const s = snap(i * 10);
  const frames = ui.frames.length;
  const t = performance.now();
  push(s);
  while (ui.frames.length === frames) await new Promise((r) => setImmediate(r));
  redraws.push(performance.now() - t);
}
ui.unmount();
redraws.sort((a, b) => a - b);
const p50 = redraws[Math.floor(redraws.length / 2)]!;
const max = redraws.at(-1)!;
console.log(`bench/tui: ${N} assets, 80×24`);
console.log(`  baseline: graph layers alone   ${layout.toFixed(1)} ms`);
console.log(`  first frame (10 pipelines collapsed)   ${first.toFixed(0)} ms   (target < 500 ms: ${first < 500 ? "met" : "MISSED"})`);
console.log(`  expand to all 1,000 assets (c)   ${expand.toFixed(0)} ms`);
console.log(`  redraw of the expanded lineage after a status change   p50 ${p50.toFixed(1)} ms, max ${max.toFixed(1)} ms over 20   (target < 50 ms: ${max < 50 ? "met" : "MISSED"})`);
