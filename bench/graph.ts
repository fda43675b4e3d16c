// bench/graph: 10,000 assets in a random DAG (mean fan-in 2), written as a real pipeline module,
// loaded by the real CLI: `floe materialize --select '*' --dry-run` = load (TypeScript import) +
// resolve (graph, cycle check) + select + plan. Target < 1 s.
// Baseline in the same run: the same CLI command on a one-asset project (Node start-up and
// floe's own modules), subtracted to give the cost of the 10,000 assets.
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomDag } from "./lib.js";

const N = 10_000;
const root = fileURLToPath(new URL("..", import.meta.url));
const tmp = join(root, "bench", ".tmp");
const deps = randomDag(N, 2);
const project = (name: string, lines: string[]): string => {
  const dir = join(tmp, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "pipelines"), { recursive: true });
  writeFileSync(join(dir, "pipelines", "big.ts"), `import { asset, pipeline } from "floe";\nconst noop = () => ({});\nexport default pipeline("big", { assets: [\n${lines.join("\n")}\n] });\n`);
  return dir;
};
const big = project("graph-big", deps.map((d, i) => `  asset("a${i}", { deps: ${JSON.stringify(d)}, materialize: noop }),`));
const small = project("graph-small", [`  asset("a0", { materialize: noop }),`]);

const cli = (dir: string): { ms: number; steps: number } => {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [join(root, "bin", "floe.js"), "materialize", "--select", "*", "--dry-run", "--json", "--project", dir], { encoding: "utf8", maxBuffer: 1 << 28 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(r.stderr);
  return { ms, steps: (JSON.parse(r.stdout) as { steps: unknown[] }).steps.length };
};

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const runs = (dir: string, n: number): number[] => Array.from({ length: n }, () => cli(dir).ms);
const cold = cli(big); // first load also fills tsx's transform cache
const baseline = median(runs(small, 3));
const warm = median(runs(big, 3));
const edges = deps.reduce((s, d) => s + d.length, 0);
console.log(`graph: ${N} assets, ${edges} edges (mean fan-in ${(edges / N).toFixed(2)}), ${cold.steps} steps planned`);
console.log(`  floe CLI, 10,000 assets: ${warm.toFixed(0)} ms (cold transform cache: ${cold.ms.toFixed(0)} ms)`);
console.log(`  baseline, same command on a 1-asset project: ${baseline.toFixed(0)} ms`);
console.log(`  load + resolve + plan of 10,000 assets: ${(warm - baseline).toFixed(0)} ms warm, ${(cold.ms - baseline).toFixed(0)} ms cold (target < 1000 ms); ratio big/baseline ${(warm / baseline).toFixed(2)}x`);
rmSync(tmp, { recursive: true, force: true });
