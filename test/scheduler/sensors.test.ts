import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { rawFiles } from "../../src/assets/raw-files.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import { runWorker } from "../../src/runner/worker.js";
import { runScheduler } from "../../src/scheduler/scheduler.js";
import { testEngine } from "../helpers/engine.js";

const engine = await testEngine("sensor");
afterAll(() => engine.close());

describe("sensors and eager automation", () => {
  it("new files queue one run for their partition; an eager downstream follows", async () => {
    const daily = partitions.daily({ start: "2025-01-01" });
    const raw = rawFiles("raw_clicks", { storage: { type: "local", root: "landing" }, glob: "clicks/{partition}/*.ndjson", format: "ndjson", partitions: daily, sensor: { intervalSeconds: 0.2 } });
    const seen: string[] = [];
    const summary = asset("click_summary", {
      deps: [raw], partitions: daily, automation: "eager",
      materialize: (ctx) => (seen.push(`${ctx.partitionKey}:${String(ctx.upstream.raw_clicks?.metadata.rows)}`), {}),
    });
    const graph = AssetGraph.build([{ module: "c.ts", pipeline: pipeline("clicks", { assets: [raw, summary] }) }]);
    const controller = new AbortController();
    const wake = new EventTarget();
    const triggers: string[] = [];
    const both = Promise.all([
      runScheduler(engine.store, graph, { signal: controller.signal, resources: engine.pool, onRun: (name) => (triggers.push(name), wake.dispatchEvent(new Event("run"))) }),
      runWorker(engine.store, graph, { signal: controller.signal, resources: engine.pool, wake, pollMs: 100 }),
    ]);
    const dir = join(engine.home, "landing", "clicks", "2025-01-02");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "a.ndjson"), '{"u":1}\n{"u":2}\n');
    for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 600)); // a few more polls: nothing new, nothing queued
    controller.abort();
    await both;
    expect(seen).toEqual(["2025-01-02:2"]);
    expect(triggers).toEqual(["sensor:raw_clicks"]);
    const runs = await engine.store.listRuns({});
    expect(runs.map((r) => [r.trigger, r.status]).reverse()).toEqual([["sensor", "success"], ["automation", "success"]]);
  });
});
