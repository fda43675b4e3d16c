// bench/status: `floe status` for ten years of hourly partitions (87,672 keys) on PostgreSQL,
// half of them materialized plus a few failed and running: ranges from SQL (statusRanges, the
// text view) against the key-by-key evaluation (statusOf, the --json view) in the same run.
import { sql } from "kysely";
import { asset, pipeline } from "../src/assets/asset.js";
import { AssetGraph } from "../src/dag/graph.js";
import { partitions } from "../src/dag/partitions.js";
import { statusOf, statusRanges } from "../src/runner/launch.js";
import { StateStore } from "../src/state/index.js";
import { benchDatabase, timed } from "./lib.js";

const bench = await benchDatabase();
const store = await StateStore.open({ url: bench.url, home: "/nonexistent" });
try {
  const hourly = partitions.hourly({ start: "2015-01-01T00", end: "2024-12-31T23" });
  const graph = AssetGraph.build([{ module: "b", pipeline: pipeline("s", { assets: [asset("ev", { partitions: hourly, materialize: () => ({}) })] }) }]);
  await sql`insert into asset_partitions (asset, partition, last_run_id, materialized_at, metadata)
    select 'ev', to_char(h, 'YYYY-MM-DD"T"HH24'), 'r', now(), '{}'::jsonb
    from generate_series(timestamp '2015-01-01 00:00', timestamp '2019-12-31 23:00', interval '1 hour') h`.execute(store.db);
  await store.createRun({ trigger: "manual", status: "failed", steps: ["2016-03-01T05", "2018-07-04T12"].map((p) => ({ asset: "ev", partition: p, status: "failed" as const })) });
  await store.createRun({ trigger: "manual", status: "running", steps: [{ asset: "ev", partition: "2020-01-01T00", status: "running" }] });
  await statusRanges(store, graph, "ev"); // warm
  const heap0 = process.memoryUsage().heapUsed;
  const r = await timed(() => statusRanges(store, graph, "ev"));
  const heap1 = process.memoryUsage().heapUsed;
  const k = await timed(() => statusOf(store, graph, ["ev"]));
  const heap2 = process.memoryUsage().heapUsed;
  console.log(`statusRanges: ${r.ms.toFixed(0)} ms, ${r.value!.ranges.length} ranges, heap +${((heap1 - heap0) / 1e6).toFixed(1)} MB`);
  console.log(`statusOf:     ${k.ms.toFixed(0)} ms, ${k.value.length} rows, heap +${((heap2 - heap1) / 1e6).toFixed(1)} MB`);
  console.log(`ratio: ${(k.ms / r.ms).toFixed(1)}× faster as ranges`);
  console.log(r.value!.ranges.map((x) => `${x.from}…${x.to} ${x.status} (${x.count})`).join(", "));
} finally {
  await store.close();
  await bench.drop();
}
