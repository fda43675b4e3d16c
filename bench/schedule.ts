// bench/schedule: the issue-4 scale figures on PostgreSQL, each against a baseline in the same run.
//  1. tick → run started latency for a per-second schedule (scheduler + worker in one process,
//     the scheduler waking the worker): p50 / p95. Target p95 < 0.5 s. Baseline: a bare setTimeout
//     of the same cadence, its lateness.
//  2. 365-partition backfill over a 3-asset chain: plan + enqueue. Target < 1 s. Baseline: one
//     INSERT of 365 rows into a scratch table.
//  3. queue throughput: no-op runs claimed and finished per second by 3 workers (own pools).
//     Baseline: the same number of bare SKIP LOCKED claims with no execution.
import { sql } from "kysely";
import { asset, pipeline } from "../src/assets/asset.js";
import { AssetGraph } from "../src/dag/graph.js";
import { partitions } from "../src/dag/partitions.js";
import { planBackfill, parsePolicy } from "../src/runner/backfill.js";
import { runWorker } from "../src/runner/worker.js";
import { runScheduler } from "../src/scheduler/scheduler.js";
import { StateStore } from "../src/state/index.js";
import { benchDatabase, timed } from "./lib.js";

const bench = await benchDatabase();
const stores: StateStore[] = [];
const open = async () => {
  const s = await StateStore.open({ url: bench.url, home: "/nonexistent" });
  stores.push(s);
  return s;
};
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
const noop = () => ({});

try {
  // 1. tick → run started
  {
    const store = await open();
    const graph = AssetGraph.build([{ module: "b", pipeline: pipeline("tick", { assets: [asset("t", { materialize: noop })], schedule: { cron: "* * * * * *" } }) }]);
    const controller = new AbortController();
    const wake = new EventTarget();
    const lateness: number[] = [];
    let last = Date.now();
    const timer = setInterval(() => {
      const now = Date.now();
      lateness.push(now - last - 1000);
      last = now;
    }, 1000);
    const seconds = Number(process.env.BENCH_TICK_SECONDS ?? 20);
    await Promise.all([
      runScheduler(store, graph, { signal: controller.signal, onRun: () => wake.dispatchEvent(new Event("run")) }),
      runWorker(store, graph, { signal: controller.signal, wake }),
      new Promise((r) => setTimeout(r, seconds * 1000)).then(() => controller.abort()),
    ]);
    clearInterval(timer);
    const { rows } = await sql<{ ms: number }>`select extract(epoch from r.started_at - t.tick_time)::float8 * 1000 as ms
      from schedule_ticks t join runs r on r.id = t.run_id where r.started_at is not null`.execute(store.db);
    const ms = rows.map((r) => r.ms);
    console.log(`tick → run started, ${ms.length} ticks: p50 ${pct(ms, 0.5).toFixed(0)} ms, p95 ${pct(ms, 0.95).toFixed(0)} ms (target p95 < 500 ms); baseline setInterval lateness p95 ${pct(lateness, 0.95).toFixed(1)} ms`);
  }
  // 2. 365-partition backfill: plan + enqueue
  {
    const store = await open();
    const daily = partitions.daily({ start: "2024-01-01" });
    const graph = AssetGraph.build([{ module: "b", pipeline: pipeline("chain", { assets: [
      asset("c1", { partitions: daily, materialize: noop }), asset("c2", { deps: ["c1"], partitions: daily, materialize: noop }), asset("c3", { deps: ["c2"], partitions: daily, materialize: noop }),
    ] }) }]);
    const baseline = await timed(() => sql`create table scratch as select g, 'x' as v from generate_series(1, 365) g`.execute(store.db));
    const t = await timed(async () => {
      const runs = planBackfill(graph, new Set(["c1", "c2", "c3"]), "2024-01-01", "2024-12-30", parsePolicy());
      return store.createBackfill({ selection: "*", from: "2024-01-01", to: "2024-12-30", policy: "per-partition", runs });
    });
    console.log(`backfill of 365 partitions × 3 assets: plan + enqueue ${t.ms.toFixed(0)} ms, ${Object.values(t.value.runs).reduce((a, b) => a + b, 0)} runs (target < 1000 ms); baseline 365-row insert ${baseline.ms.toFixed(0)} ms`);
    await sql`update runs set status = 'canceled' where status = 'queued'`.execute(store.db);
  }
  // 3. queue throughput
  {
    const producer = await open();
    const graph = AssetGraph.build([{ module: "b", pipeline: pipeline("q", { assets: [asset("q", { materialize: noop })] }) }]);
    const N = Number(process.env.BENCH_QUEUE_RUNS ?? 600);
    const runs = Array.from({ length: N }, () => ({ trigger: "manual", steps: [{ asset: "q", partition: null }] }));
    await producer.createBackfill({ selection: "q", from: "-", to: "-", policy: "bench", runs });
    const workers = await Promise.all([open(), open(), open()]);
    const t = await timed(() => Promise.all(workers.map((s, i) => runWorker(s, graph, { workerId: `w${i}`, untilEmpty: true }))));
    await producer.createBackfill({ selection: "q", from: "-", to: "-", policy: "bench", runs });
    const bare = await timed(() => Promise.all(workers.map(async (s, i) => { while (await s.claimRun(`b${i}`)); })));
    console.log(`queue: ${N} no-op runs claimed and finished by 3 workers in ${t.ms.toFixed(0)} ms = ${(N / (t.ms / 1000)).toFixed(0)} runs/s; baseline bare claims ${(N / (bare.ms / 1000)).toFixed(0)} claims/s; ratio ${(t.ms / bare.ms).toFixed(1)}x`);
  }
} finally {
  for (const s of stores) await s.close();
  await bench.drop();
}
