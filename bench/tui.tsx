// bench/tui: the terminal UI on a 1,000-asset random DAG (mean fan-in 2, ten pipelines), 80×24,
// rendered with Ink through ink-testing-library: time to the first frame (pipelines collapsed),
// to expand every asset, and per redraw of the expanded lineage after a status change. Targets: < 0.5 s first frame, < 50 ms redraw.
// Baseline in the same run: building the same graph and its layers alone, with no rendering.
// Run: npm run build && npx tsx bench/tui.tsx
import type { PartitionStatus } from "../src/dag/staleness.js";
import type { StatusSnapshot } from "../src/tui/status-feed.js";
import { randomDag } from "./lib.js";

// React's production build, as `floe tui` and `floe dev` load it (FLOE_BENCH_REACT=development to compare)
process.env.NODE_ENV = process.env.FLOE_BENCH_REACT === "development" ? "development" : "production";
const { render } = await import("ink-testing-library");
const { createElement } = await import("react");
// the built floe, as the CLI runs it (one copy of its modules: the UI's and the graph's)
const { asset, pipeline } = await import("../dist/assets/asset.js");
const { AssetGraph } = await import("../dist/dag/graph.js");
const { App } = await import("../dist/tui/app.js");
const { assetViews, layers } = await import("../dist/tui/model.js");

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
const ui = render(createElement(App, { graph, feed, initial: snap(0), actions: { materialize: async () => "x" }, width: 80, height: 24, color: false })); // no JSX here: tsx would compile it for the development runtime
// the first frame may land after render() returns (React's production scheduler)
for (let i = 0; i < 10_000 && !ui.lastFrame()?.includes("p0 (100)"); i++) await new Promise((r) => setImmediate(r));
const first = performance.now() - start;
if (!ui.lastFrame()?.includes("p0 (100)")) throw new Error(`first frame lacks the collapsed pipeline p0: ${ui.lastFrame()} (${ui.frames.length} frames) stderr: ${ui.stderr.lastFrame()}`);
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
console.log(`bench/tui: ${N} assets, 80×24, React ${process.env.NODE_ENV} build`);
console.log(`  baseline: graph layers alone   ${layout.toFixed(1)} ms`);
console.log(`  first frame (10 pipelines collapsed)   ${first.toFixed(0)} ms   (target < 500 ms: ${first < 500 ? "met" : "MISSED"})`);
console.log(`  expand to all 1,000 assets (c)   ${expand.toFixed(0)} ms`);
console.log(`  redraw of the expanded lineage after a status change   p50 ${p50.toFixed(1)} ms, max ${max.toFixed(1)} ms over 20   (target < 50 ms: ${max < 50 ? "met" : "MISSED"})`);
