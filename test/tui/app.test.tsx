import { render } from "ink-testing-library";
import { describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import type { PartitionStatus } from "../../src/dag/staleness.js";
import { App, MAX_NODES } from "../../src/tui/app.js";
import { assetViews, snapshotText } from "../../src/tui/model.js";
import type { StatusSnapshot } from "../../src/tui/status-feed.js";

const daily = partitions.daily({ start: "2025-01-01", end: "2025-01-05" });
const raw = asset("raw_orders", { partitions: daily, materialize: () => ({}) });
const orders = asset("orders", { deps: [raw], partitions: daily, materialize: () => ({}) });
const lake = asset("lake.orders", { deps: [orders], partitions: daily, materialize: () => ({}) });
const customers = asset("customers", { materialize: () => ({}) });
const graph = AssetGraph.build([{ module: "t.ts", pipeline: pipeline("t", { assets: [raw, orders, lake, customers] }) }]);
const row = (asset: string, partition: string | null, status: PartitionStatus["status"], reason?: string): PartitionStatus => ({
  asset, partition, status, lastRunId: null, lastMaterializedAt: null, ...(reason ? { reason } : {}),
});
const rows: PartitionStatus[] = [
  ...["2025-01-01", "2025-01-02", "2025-01-03"].map((p) => row("raw_orders", p, "materialized")),
  row("orders", "2025-01-01", "materialized"),
  row("orders", "2025-01-02", "failed", "failed in run 1234abcd"),
  row("customers", null, "stale", "code version changed"),
];
const snapshot = (): StatusSnapshot => ({ at: new Date("2026-11-22T10:00:00Z"), assets: assetViews(graph, rows), runs: [] });
const noFeed = { subscribe: () => () => undefined };
const tick = () => new Promise((r) => setTimeout(r, 40));
/** Waits (up to 2 s) until the last frame contains `want`: reads resolve later on a busy machine. */
async function frameWith(ui: { lastFrame(): string | undefined }, want: string): Promise<string> {
  for (let i = 0; i < 100 && !(ui.lastFrame() ?? "").includes(want); i++) await new Promise((r) => setTimeout(r, 20));
  return ui.lastFrame() ?? "";
}

describe("the terminal UI", () => {
  it("draws the lineage in layers with a status marker per asset, the legend and the keys, in 80×24", () => {
    const ui = render(<App graph={graph} feed={noFeed} initial={snapshot()} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    const frame = ui.lastFrame()!;
    const lines = frame.split("\n");
    expect(lines.length).toBeLessThanOrEqual(24);
    expect(lines.every((l) => l.length <= 80)).toBe(true);
    expect(frame).toMatch(/● raw_orders 3\/3.*─▶.*✗ orders 1\/2.*─▶.*○ lake\.orders/);
    expect(frame).toContain("◐ customers");
    // box-drawing edges: raw_orders feeds orders on the same row; customers feeds nothing
    expect(lines[1]).toMatch(/● raw_orders 3\/3\s+──▶ ✗ orders 1\/2\s+──▶ ○ lake\.orders/);
    expect(lines[2]).toMatch(/^◐ customers\s*$/);
    expect(frame).toContain("legend: ● materialized ◔ partial ◐ stale ✗ failed ◉ running ◷ queued ○ missing");
    expect(frame).toContain("q quit");
    // the first asset is selected: its partitions by status
    expect(frame).toMatch(/raw_orders ● materialized \(3 materialized\)/);
    ui.unmount();
  });

  it("moves with hjkl, narrows with / and a selection, and materializes after a confirmation", async () => {
    const queued: string[] = [];
    const ui = render(
      <App graph={graph} feed={noFeed} initial={snapshot()} width={80} height={24} color={false}
        actions={{ materialize: async (assets, label) => (queued.push(`${label}:${[...assets].sort().join(",")}`), "5f0c2a9e-0000") }} />,
    );
    ui.stdin.write("l");
    await tick();
    expect(ui.lastFrame()).toMatch(/orders ✗ failed \(1 failed, 1 materialized\)/);
    ui.stdin.write("/");
    await tick();
    for (const ch of "+orders") ui.stdin.write(ch);
    await tick();
    expect(ui.lastFrame()).toContain("/+orders");
    ui.stdin.write("\r");
    await tick();
    const narrowed = ui.lastFrame()!;
    expect(narrowed).toContain("● raw_orders");
    expect(narrowed).not.toContain("customers");
    expect(narrowed).not.toContain("lake.orders");
    ui.stdin.write("l");
    await tick();
    ui.stdin.write("M");
    await tick();
    // no partition statuses known: the latest partition
    expect(ui.lastFrame()).toContain("materialize +orders, 1 partition? (y/n)");
    expect(ui.lastFrame()).toContain("partitions: 2025-01-05");
    ui.stdin.write("y");
    await tick();
    expect(queued).toEqual(["+orders:orders,raw_orders"]);
    expect(ui.lastFrame()).toContain("run 5f0c2a9e queued for +orders");
    expect(ui.lastFrame()).toContain("floe · runs");
    ui.unmount();
  });

  it("a bad selection is one line and changes nothing; r shows runs; ? shows the keys", async () => {
    const ui = render(<App graph={graph} feed={noFeed} initial={{ ...snapshot(), runs: [{ id: "9c1e2f3a-1111", status: "failed", trigger: "manual", selection: "+orders", partitionRange: null, createdAt: new Date("2026-11-22T09:59:00Z"), startedAt: new Date("2026-11-22T09:59:00Z"), endedAt: new Date("2026-11-22T09:59:02Z") } as never] }} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    ui.stdin.write("/");
    await tick();
    for (const ch of "nope") ui.stdin.write(ch);
    ui.stdin.write("\r");
    await tick();
    expect(ui.lastFrame()).toMatch(/unknown asset `nope`/);
    expect(ui.lastFrame()).toContain("customers");
    ui.stdin.write("r");
    await tick();
    expect(ui.lastFrame()).toMatch(/9c1e2f3a\s+failed\s+manual\s+09:59:00\s+2\.0 s\s+\+orders/);
    ui.stdin.write("?");
    await tick();
    expect(ui.lastFrame()).toContain("filter by a selection");
    ui.unmount();
  });

  it("Enter opens the asset: partition ranges, last materializations with metadata, checks", async () => {
    const at = new Date("2026-11-22T09:00:00Z");
    const details = {
      asset: async (key: string) => ({
        materializations: [{ asset: key, partition: "2025-01-03", runId: "77aa88bb-0000", materializedAt: at, codeVersion: null, dataVersion: null,
          metadata: { rows: 120, snapshotId: "42", checks: [{ name: "unique(id)", passed: true }, { name: "range(amount)", passed: false, message: "2 rows below 0" }] } }],
      }),
      run: async () => { throw new Error("unused"); },
    };
    const ui = render(<App graph={graph} feed={noFeed} initial={{ ...snapshot(), partitions: rows }} details={details} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    ui.stdin.write("\r");
    const frame = await frameWith(ui, "run 77aa88bb");
    expect(frame).toContain("floe · raw_orders");
    expect(frame).toContain("partitions: 2025-01-01…2025-01-03 materialized (3)");
    expect(frame).toContain("strip: ●●●");
    expect(frame).toMatch(/2026-11-22 09:00\s+2025-01-03\s+run 77aa88bb\s+rows 120\s+snapshotId 42/);
    expect(frame).toContain("checks: ✓ unique(id)  ✗ range(amount): 2 rows below 0");
    ui.unmount();
  });

  it("a run shows its steps as a timeline with errors and its events; r reruns a failed run from failure", async () => {
    const t = (s: number) => new Date(Date.UTC(2026, 10, 22, 10, 0, s));
    const run = { id: "9c1e2f3a-1111", status: "failed", trigger: "manual", selection: "+orders", partitionRange: null, createdAt: t(0), startedAt: t(0), endedAt: t(10) } as never;
    const details = {
      asset: async () => ({ materializations: [] }),
      run: async () => ({
        run,
        steps: [
          { runId: "9c1e2f3a-1111", asset: "raw_orders", partition: "2025-01-02", status: "success", attempts: 1, startedAt: t(0), endedAt: t(5), error: null, metadata: {} },
          { runId: "9c1e2f3a-1111", asset: "orders", partition: "2025-01-02", status: "failed", attempts: 1, startedAt: t(5), endedAt: t(10), error: "check unique(id) failed", metadata: {} },
        ] as never,
        events: [{ id: 1, runId: "9c1e2f3a-1111", asset: "orders", partition: "2025-01-02", type: "log", level: "error", message: "2 duplicate ids", data: null, createdAt: t(9) }] as never,
      }),
    };
    const reruns: string[] = [];
    const ui = render(<App graph={graph} feed={noFeed} initial={{ ...snapshot(), runs: [run] }} details={details} actions={{ materialize: async () => "x", rerun: async (id) => (reruns.push(id), "abcdef12-0000") }} width={80} height={24} color={false} />);
    ui.stdin.write("r");
    await tick();
    ui.stdin.write("\r");
    const frame = await frameWith(ui, "10:00:09 error");
    expect(frame).toContain("floe · run 9c1e2f3a");
    expect(frame).toMatch(/● raw_orders\[2025-01-02\]\s+█{10}\s+success/);
    expect(frame).toMatch(/✗ orders\[2025-01-02\]\s+ {10}█{10} failed: check unique\(id\) failed/);
    expect(frame).toMatch(/10:00:09 error orders 2 duplicate ids/);
    ui.stdin.write("r");
    await tick();
    expect(ui.lastFrame()).toContain("rerun run 9c1e2f3a from failure? (y/n)");
    ui.stdin.write("y");
    await tick();
    expect(reruns).toEqual(["9c1e2f3a-1111"]);
    expect(ui.lastFrame()).toContain("run abcdef12 queued");
    ui.unmount();
  });

  it("b shows backfills with a progress bar and their failed partitions", async () => {
    const backfills = [{ id: "b7c8d9e0-2222", selection: "pipeline:orders+", from: "2025-01-01", to: "2025-01-10", policy: "per-partition", status: "running", createdAt: new Date(),
      runs: { success: 5, failed: 1, queued: 4 }, failedPartitions: ["2025-01-04"] }];
    const ui = render(<App graph={graph} feed={noFeed} initial={{ ...snapshot(), backfills }} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    ui.stdin.write("b");
    await tick();
    const frame = ui.lastFrame()!;
    expect(frame).toContain("floe · backfills");
    expect(frame).toContain("b7c8d9e0 pipeline:orders+ 2025-01-01…2025-01-10 ████████████░░░░░░░░ 5/10");
    expect(frame).toContain("  running, failed: 2025-01-04  (floe backfill retry b7c8d9e0)");
    ui.unmount();
  });

  it("a big graph starts with pipelines folded; Enter unfolds one in place, - folds it back, c shows every asset", async () => {
    const ingest = Array.from({ length: 40 }, (_, i) => asset(`in${i}`, { materialize: () => ({}) }));
    const report = Array.from({ length: 30 }, (_, i) => asset(`rep${i}`, { deps: [`in${i}`], materialize: () => ({}) }));
    const big = AssetGraph.build([
      { module: "i.ts", pipeline: pipeline("ingest", { assets: ingest }) },
      { module: "r.ts", pipeline: pipeline("report", { assets: report }) },
    ]);
    const states = ingest.map((a) => row(a.key, null, "materialized"));
    states[3] = row("in3", null, "failed", "boom");
    const ui = render(<App graph={big} feed={noFeed} initial={{ at: new Date(), assets: assetViews(big, states), runs: [] }} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    expect(ui.lastFrame()).toMatch(/✗ ingest \(40\)\s+──▶ ○ report \(30\)/);
    expect(ui.lastFrame()).toContain("pipeline ingest ✗ failed (40 assets; Enter unfolds, c shows all)");
    ui.stdin.write("l");
    await tick();
    ui.stdin.write("\r");
    await tick();
    // report unfolds in place; ingest stays one node, feeding report's assets
    expect(ui.lastFrame()).toContain("pipeline report unfolded");
    expect(ui.lastFrame()).toMatch(/✗ ingest \(40\)\s+─┬▶ ○ rep0/);
    expect(ui.lastFrame()).not.toMatch(/[●○✗] in0/);
    expect(ui.lastFrame()).toMatch(/rep0 ○ missing/); // the cursor followed into the pipeline
    ui.stdin.write("-"); // fold just that pipeline back
    await tick();
    expect(ui.lastFrame()).toContain("pipeline report folded");
    expect(ui.lastFrame()).toMatch(/✗ ingest \(40\)\s+──▶ ○ report \(30\)/);
    ui.stdin.write("c"); // every asset
    await tick();
    expect(ui.lastFrame()).toContain("● in0");
    expect(ui.lastFrame()).toContain("every asset shown");
    ui.stdin.write("c"); // folded again
    await tick();
    expect(ui.lastFrame()).toContain("pipelines folded");
    expect(ui.lastFrame()).toContain("✗ ingest (40)");
    ui.unmount();
  });

  it("asks for a selection instead of drawing more than it can", async () => {
    const many = Array.from({ length: MAX_NODES + 1 }, (_, i) => asset(`a${i}`, { materialize: () => ({}) }));
    const big = AssetGraph.build([{ module: "b.ts", pipeline: pipeline("b", { assets: many }) }]);
    const ui = render(<App graph={big} feed={noFeed} initial={{ at: new Date(), assets: assetViews(big, []), runs: [] }} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    expect(ui.lastFrame()).toContain(`○ b (${MAX_NODES + 1})`); // collapsed: one pipeline node
    ui.stdin.write("c");
    await tick();
    expect(ui.lastFrame()).toContain(`${MAX_NODES + 1} assets are more than the lineage draws at once`);
    ui.unmount();
  });

  it("the plain-text snapshot lists every layer, status and upstream", () => {
    const text = snapshotText(graph, assetViews(graph, rows));
    expect(text).toContain("layer 0\n  ● raw_orders  materialized (3 materialized)");
    expect(text).toContain("  ✗ orders  failed (1 failed, 1 materialized)  ◀ raw_orders");
    expect(text).toContain("  ◐ customers  stale (code version changed)");
    expect(text).toContain("  ○ lake.orders  missing (no partitions yet)  ◀ orders");
  });
});

describe("connector", () => {
  it("draws a bus from each feeding row to each fed row, with box-drawing characters", async () => {
    const { connector } = await import("../../src/tui/model.js");
    const edges = new Set(["a>x", "c>x", "c>y"]);
    expect(connector(["a", "b", "c"], ["x", "y"], (f, t) => edges.has(`${f}>${t}`))).toEqual(["─┬▶", " ├▶", "─┘ "]);
    expect(connector(["a"], ["x"], () => false)).toEqual(["   "]);
    // two unrelated straight edges stay two straight lines
    expect(connector(["a", "b"], ["x", "y"], (f, t) => (f === "a" && t === "x") || (f === "b" && t === "y"))).toEqual(["──▶", "──▶"]);
  });
});
