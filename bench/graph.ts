// bench/graph: 10,000 assets in a random DAG (mean fan-in 2), written as a real pipeline module:
// load (tsx import) + resolve (graph build, cycle check) + select `*` + plan. Target < 1 s.
// Baseline in the same run: building the same graph directly with graphology + topologicalSort.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DirectedGraph } from "graphology";
import { topologicalGenerations } from "graphology-dag";
import { plan } from "../src/dag/plan.js";
import { select } from "../src/dag/selection.js";
import { loadProject } from "../src/project/load.js";
import { randomDag, timed } from "./lib.js";

const N = 10_000;
const deps = randomDag(N, 2);
const dir = join(fileURLToPath(new URL(".", import.meta.url)), ".tmp", "graph");
rmSync(dir, { recursive: true, force: true });
mkdirSync(join(dir, "pipelines"), { recursive: true });
const lines = deps.map((d, i) => `  asset("a${i}", { deps: ${JSON.stringify(d)}, materialize: noop }),`);
writeFileSync(
  join(dir, "pipelines", "big.ts"),
  `import { asset, pipeline } from "floe";\nconst noop = () => ({});\nexport default pipeline("big", { assets: [\n${lines.join("\n")}\n] });\n`,
);

const baseline = await timed(() => {
  const g = new DirectedGraph();
  deps.forEach((_, i) => g.addNode(`a${i}`));
  deps.forEach((d, i) => d.forEach((p) => g.addEdge(p, `a${i}`)));
  return topologicalGenerations(g).length;
});
const load = await timed(() => loadProject(dir));
const { graph } = load.value;
const sel = await timed(() => select(graph, "*"));
const planned = await timed(() => plan(graph, sel.value));
const total = load.ms + sel.ms + planned.ms;
const edges = deps.reduce((s, d) => s + d.length, 0);
console.log(`graph: ${N} assets, ${edges} edges (mean fan-in ${(edges / N).toFixed(2)}), ${planned.value.generations.length} generations`);
console.log(`  load+resolve ${load.ms.toFixed(0)} ms, select ${sel.ms.toFixed(0)} ms, plan ${planned.ms.toFixed(0)} ms, total ${total.toFixed(0)} ms (target < 1000 ms)`);
console.log(`  baseline (bare graphology build + generations) ${baseline.ms.toFixed(0)} ms; ratio floe/baseline ${(total / baseline.ms).toFixed(1)}x`);
rmSync(dir, { recursive: true, force: true });
