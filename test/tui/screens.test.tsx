import { render } from "ink-testing-library";
import { describe, expect, it } from "vitest";
import { asset, pipeline } from "../../src/assets/asset.js";
import { AssetGraph } from "../../src/dag/graph.js";
import { partitions } from "../../src/dag/partitions.js";
import type { PartitionStatus } from "../../src/dag/staleness.js";
import type { RunRecord, StepRecord } from "../../src/state/index.js";
import { App, type TuiDetails } from "../../src/tui/app.js";
import { assetViews, heatmap, keysText, QUEUED_HINT, routeLongEdges, viewRows, wrapList, type PartitionView } from "../../src/tui/model.js";
import type { StatusSnapshot } from "../../src/tui/status-feed.js";

const week = partitions.daily({ start: "2025-01-01", end: "2025-01-07" });
const raw = asset("raw", { partitions: week, materialize: () => ({}) });
const orders = asset("orders", { deps: [raw], partitions: week, materialize: () => ({}) });
const customers = asset("customers", { materialize: () => ({}) });
const revenue = asset("daily_revenue", { deps: [orders, customers], materialize: () => ({}) });
const graph = AssetGraph.build([{ module: "t.ts", pipeline: pipeline("shop", { assets: [raw, orders, customers, revenue] }) }]);
const days = ["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04", "2025-01-05", "2025-01-06", "2025-01-07"];
const row = (asset: string, partition: string | null, status: PartitionView["status"], extra: Partial<PartitionStatus> = {}): PartitionView => ({
  asset, partition, status, lastRunId: null, lastMaterializedAt: null, ...extra,
});
// raw: 4 of 7 days materialized; orders: day 1–5 materialized, day 6 failed, day 7 missing
const rows: PartitionView[] = [
  ...days.map((d, i) => row("raw", d, i < 4 ? "materialized" : "missing")),
  ...days.map((d, i) => row("orders", d, i < 5 ? "materialized" : i === 5 ? "failed" : "missing", i === 5 ? { reason: "failed in run 11112222" } : {})),
  row("customers", null, "stale", { reason: "code version changed (1 → 2)" }),
  row("daily_revenue", null, "missing"),
];
const at = new Date("2026-11-22T10:00:00Z");
const snap = (r: PartitionView[] = rows, runs: RunRecord[] = []): StatusSnapshot => ({ at, assets: assetViews(graph, r), runs, partitions: r });
const noFeed = { subscribe: () => () => undefined };
const tick = (ms = 40) => new Promise((r) => setTimeout(r, ms));
/** Waits (up to 2 s) until the last frame matches: reads resolve later on a busy machine. */
async function frameWith(ui: { lastFrame(): string | undefined }, want: string | RegExp): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const f = ui.lastFrame() ?? "";
    if (typeof want === "string" ? f.includes(want) : want.test(f)) return f;
    await tick(20);
  }
  return ui.lastFrame() ?? "";
}
function liveFeed() {
  let push: (s: StatusSnapshot) => void = () => undefined;
  return { feed: { subscribe: (fn: (s: StatusSnapshot) => void) => ((push = fn), () => undefined) }, push: (s: StatusSnapshot) => push(s) };
}
const runRecord = (id: string, status: RunRecord["status"], selection: string): RunRecord =>
  ({ id, status, trigger: "manual", selection, partitionRange: null, createdAt: at, startedAt: status === "queued" ? null : at, endedAt: null }) as unknown as RunRecord;
const fits = (frame: string, width = 80, height = 24): void => {
  const lines = frame.split("\n");
  expect(lines.length, frame).toBeLessThanOrEqual(height);
  for (const l of lines) expect(l.length, `longer than ${width}: ${l}`).toBeLessThanOrEqual(width);
};
const RIGHT = "\u001b[C";
const DOWN = "\u001b[B";

describe("materializing from the terminal UI", () => {
  it("m on a partitioned asset names its missing, stale and failed partitions and queues those", async () => {
    const calls: Array<{ label: string; assets: string[]; partitions: Record<string, readonly string[]> }> = [];
    const materialize = async (assets: ReadonlySet<string>, label: string, parts?: ReadonlyMap<string, readonly string[]>) => {
      calls.push({ label, assets: [...assets].sort(), partitions: Object.fromEntries(parts ?? []) });
      return "5f0c2a9e-0000";
    };
    const ui = render(<App graph={graph} feed={noFeed} initial={snap()} actions={{ materialize }} width={80} height={24} color={false} />);
    ui.stdin.write(RIGHT); // orders
    await tick();
    ui.stdin.write("m");
    await tick();
    expect(ui.lastFrame()).toContain("materialize orders, 2 partitions? (y/n)");
    expect(ui.lastFrame()).toContain("partitions: 2025-01-06…2025-01-07");
    expect(ui.lastFrame()).not.toContain("--partition");
    ui.stdin.write("y");
    await tick();
    expect(calls).toEqual([{ label: "orders", assets: ["orders"], partitions: { orders: ["2025-01-06", "2025-01-07"] } }]);
    // M: the upstream asset of the same partitions definition gets the same partitions
    ui.stdin.write("\u001b"); // back to the lineage
    await tick();
    ui.stdin.write("M");
    await tick();
    expect(ui.lastFrame()).toContain("materialize +orders, 2 partitions? (y/n)");
    ui.stdin.write("y");
    await tick();
    expect(calls[1]).toEqual({ label: "+orders", assets: ["orders", "raw"], partitions: { orders: ["2025-01-06", "2025-01-07"], raw: ["2025-01-06", "2025-01-07"] } });
    ui.unmount();
  });

  it("M on an unpartitioned asset queues its partitioned upstream's own default partitions, and names whose", async () => {
    const seen: Array<Record<string, readonly string[]>> = [];
    const ui = render(<App graph={graph} feed={noFeed} initial={snap()} actions={{ materialize: async (_a, _l, p) => (seen.push(Object.fromEntries(p ?? [])), "x1234567") }} width={80} height={24} color={false} />);
    for (const k of ["l", "l"]) {
      ui.stdin.write(k);
      await tick();
    }
    ui.stdin.write("M");
    await tick();
    expect(ui.lastFrame()).toMatch(/materialize \+daily_revenue, \d partitions of (orders|raw)\? \(y\/n\)/);
    ui.stdin.write("y");
    await tick();
    expect(seen).toEqual([{ orders: ["2025-01-06", "2025-01-07"], raw: ["2025-01-05", "2025-01-06", "2025-01-07"] }]);
    ui.unmount();
  });

  it("with every partition materialized, m queues the latest partition", async () => {
    const done = rows.map((r) => (r.asset === "raw" ? { ...r, status: "materialized" as const } : r));
    const seen: Array<readonly string[] | undefined> = [];
    const ui = render(<App graph={graph} feed={noFeed} initial={snap(done)} actions={{ materialize: async (_a, _l, p) => (seen.push(p?.get("raw")), "x1234567") }} width={80} height={24} color={false} />);
    ui.stdin.write("m");
    await tick();
    expect(ui.lastFrame()).toContain("materialize raw, 1 partition? (y/n)");
    expect(ui.lastFrame()).toContain("partitions: 2025-01-07");
    ui.stdin.write("y");
    await tick();
    expect(seen).toEqual([["2025-01-07"]]);
    ui.unmount();
  });

  it("after y, the runs list shows the new run appearing, selected", async () => {
    const { feed, push } = liveFeed();
    const ui = render(
      <App graph={graph} feed={feed} initial={snap(rows, [runRecord("0a0a0a0a-old", "success", "raw")])} width={80} height={24} color={false}
        actions={{
          materialize: async (_a, label) => {
            setTimeout(() => push(snap(rows, [runRecord("5f0c2a9e-0000", "queued", label), runRecord("0a0a0a0a-old", "success", "raw")])), 10);
            return "5f0c2a9e-0000";
          },
        }} />,
    );
    ui.stdin.write("j"); // customers
    await tick();
    ui.stdin.write("m");
    await tick();
    expect(ui.lastFrame()).toContain("materialize customers? (y/n)");
    ui.stdin.write("y");
    const frame = await frameWith(ui, /› 5f0c2a9e/);
    expect(frame).toContain("floe · runs");
    expect(frame).toMatch(/› 5f0c2a9e\s+queued\s+manual/);
    expect(frame).toMatch(/ {2}0a0a0a0a\s+success/);
    expect(frame).toContain("run 5f0c2a9e queued for customers");
    expect(frame).toContain(QUEUED_HINT);
    fits(frame);
    ui.unmount();
  });
});

describe("the lineage", () => {
  it("draws an edge that skips a layer as a line through the layer between", () => {
    const ui = render(<App graph={graph} feed={noFeed} initial={snap()} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    const lines = ui.lastFrame()!.split("\n");
    // customers (layer 0) → daily_revenue (layer 2): through layer 1 below orders
    expect(lines[1]).toMatch(/◔ raw 4\/7\s+──▶ ✗ orders 5\/7\s+─┬▶ ○ daily_revenue/);
    expect(lines[2]).toMatch(/◐ customers\s+──▶ ── customers ─+\s+─┘/);
    ui.unmount();
    const r = routeLongEdges([["a"], ["b"], ["c"]], (k) => ({ b: ["a"], c: ["a", "b"] })[k] ?? []);
    expect(r.columns).toEqual([["a"], ["b", "\u0000a"], ["c"]]);
    expect(r.feeds("a", "\u0000a") && r.feeds("\u0000a", "c") && !r.feeds("b", "\u0000a")).toBe(true);
  });

  it("a partly materialized partitioned asset is partial, ◔ with its count, not missing", () => {
    const views = assetViews(graph, rows);
    expect(views.get("raw")).toMatchObject({ status: "partial", counts: { materialized: 4, missing: 3 } });
    const ui = render(<App graph={graph} feed={noFeed} initial={snap()} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    expect(ui.lastFrame()).toContain("◔ raw 4/7");
    expect(ui.lastFrame()).toContain("raw ◔ partial (3 missing, 4 materialized)");
    ui.unmount();
  });

  it("queued steps show ◷ queued with what they wait for, not running", () => {
    const pending = viewRows(
      [{ asset: "customers", partition: null, status: "running", lastRunId: "77778888-q", lastMaterializedAt: null, reason: "run 77778888 is materializing it" }],
      new Set(["77778888-q"]),
    );
    expect(pending[0]).toMatchObject({ status: "queued", reason: "run 77778888 is queued, waiting for a worker" });
    const r = [...rows.filter((x) => x.asset !== "customers"), ...pending];
    const ui = render(<App graph={graph} feed={noFeed} initial={snap(r)} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    ui.stdin.write("j");
    const frame = ui.lastFrame()!;
    expect(frame).toContain("◷ customers");
    expect(frame).not.toContain("◉ customers");
    expect(frame).toContain(`◷ ${QUEUED_HINT}`);
    fits(frame);
    ui.unmount();
  });

  it("a running asset blinks between ◉ and ◎, markers no arrow uses", async () => {
    const r = rows.map((x) => (x.asset === "customers" ? { ...x, status: "running" as const, reason: "run 1 is materializing it" } : x));
    const ui = render(<App graph={graph} feed={noFeed} initial={snap(r)} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    expect(ui.lastFrame()).toContain("◉ customers");
    await tick(350);
    expect(ui.frames.some((f) => f.includes("◎ customers"))).toBe(true);
    expect(ui.frames.every((f) => !f.includes("▶ customers"))).toBe(true);
    ui.unmount();
  });

  it("arrow keys move the cursor like hjkl", async () => {
    const ui = render(<App graph={graph} feed={noFeed} initial={snap()} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    expect(ui.lastFrame()).toMatch(/^raw ◔ partial/m);
    ui.stdin.write(DOWN);
    await tick();
    expect(ui.lastFrame()).toMatch(/^customers ◐ stale/m);
    ui.stdin.write(RIGHT);
    await tick();
    expect(ui.lastFrame()).toMatch(/^orders ✗ failed/m);
    ui.stdin.write("\u001b[D");
    await tick();
    ui.stdin.write("\u001b[A");
    await tick();
    expect(ui.lastFrame()).toMatch(/^raw ◔ partial/m);
    ui.unmount();
  });

  it("c folds a small graph's pipelines too; Enter unfolds", async () => {
    const ui = render(<App graph={graph} feed={noFeed} initial={snap()} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    ui.stdin.write("c");
    await tick();
    expect(ui.lastFrame()).toContain("✗ shop (4)");
    expect(ui.lastFrame()).not.toContain("customers");
    ui.stdin.write("\r");
    await tick();
    expect(ui.lastFrame()).toContain("◐ customers");
    ui.stdin.write("-");
    await tick();
    expect(ui.lastFrame()).toContain("✗ shop (4)");
    ui.unmount();
  });

  it("/ opens empty, so typing replaces the filter; messages clear on another screen; the footer fits the screen", async () => {
    const ui = render(<App graph={graph} feed={noFeed} initial={snap()} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    for (const ch of "/+orders\r") ui.stdin.write(ch);
    await tick();
    expect(ui.lastFrame()).toContain("showing +orders");
    ui.stdin.write("/");
    await tick();
    expect(ui.lastFrame()).toMatch(/^\/▏/m);
    for (const ch of "customers\r") ui.stdin.write(ch);
    await tick();
    expect(ui.lastFrame()).toContain("showing customers");
    expect(ui.lastFrame()).not.toContain("orders");
    ui.stdin.write("r");
    await tick();
    expect(ui.lastFrame()).not.toContain("showing customers");
    expect(ui.lastFrame()).toContain("j/k move  ⏎ open run  r/Esc lineage");
    expect(ui.lastFrame()).not.toContain("m/M materialize");
    ui.unmount();
  });
});

describe("the asset and run screens", () => {
  const t = (s: number) => new Date(Date.UTC(2026, 10, 22, 10, 0, s));
  const step = (asset: string, status: StepRecord["status"], error: string | null = null, partition: string | null = null): StepRecord =>
    ({ runId: "9c1e2f3a-1111", asset, partition, status, attempts: 1, startedAt: t(0), endedAt: status === "running" ? null : t(4), error, metadata: {} }) as unknown as StepRecord;

  it("the asset screen shows a stale asset's reason and refreshes on the live feed", async () => {
    const { feed, push } = liveFeed();
    let reads = 0;
    const details: TuiDetails = {
      asset: async (key) => ({ materializations: [{ asset: key, partition: null, runId: `${String(++reads).padStart(8, "0")}-0000`, materializedAt: at, codeVersion: "1", dataVersion: null, metadata: { rows: reads } }] as never }),
      run: async () => { throw new Error("unused"); },
    };
    const ui = render(<App graph={graph} feed={feed} initial={snap()} details={details} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    ui.stdin.write("j");
    await tick();
    ui.stdin.write("\r");
    await tick();
    expect(ui.lastFrame()).toContain("customers ◐ stale — code version changed (1 → 2)");
    expect(await frameWith(ui, /run 00000001\s+rows 1/)).toMatch(/run 00000001\s+rows 1/);
    push(snap(rows.map((r) => (r.asset === "customers" ? { ...r, status: "materialized" as const, reason: undefined } as PartitionView : r))));
    await tick();
    expect(ui.lastFrame()).toContain("customers ● materialized");
    expect(await frameWith(ui, /run 00000002\s+rows 2/)).toMatch(/run 00000002\s+rows 2/);
    expect(ui.lastFrame()).toContain("m/M materialize  Esc lineage");
    fits(ui.lastFrame()!);
    ui.unmount();
  });

  it("the run screen refreshes on the live feed, and e shows a step's full error wrapped", async () => {
    const { feed, push } = liveFeed();
    const long = `check unique(id) failed: ${"duplicate id 42 in batch ".repeat(8)}\nat orders.ts:17`;
    let state: "running" | "failed" = "running";
    const run = () => ({ ...runRecord("9c1e2f3a-1111", state, "+orders"), endedAt: state === "failed" ? t(8) : null }) as RunRecord;
    const details: TuiDetails = {
      asset: async () => ({ materializations: [] }),
      run: async () => ({ run: run(), steps: [step("raw", "success"), step("orders", state, state === "failed" ? long : null)], events: [] }),
    };
    const ui = render(<App graph={graph} feed={feed} initial={snap(rows, [run()])} details={details} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    ui.stdin.write("r");
    await tick();
    ui.stdin.write("\r");
    await tick();
    expect(await frameWith(ui, /[◉◎] orders\s+█+\s+running/)).toMatch(/[◉◎] orders\s+█+\s+running/);
    state = "failed";
    push(snap(rows, [run()]));
    await tick();
    expect(await frameWith(ui, /✗ orders\s+█+\s+failed: check unique/)).toMatch(/✗ orders\s+█+\s+failed: check unique/);
    ui.stdin.write("j");
    await tick();
    ui.stdin.write("e");
    await tick();
    const frame = ui.lastFrame()!;
    expect(frame).toContain("error of orders");
    expect(frame).toContain("at orders.ts:17");
    expect(frame.replace(/\n {2}/g, "")).toContain(long.split("\n")[0]!.slice(0, 150));
    fits(frame);
    ui.stdin.write("\u001b");
    await tick();
    expect(ui.lastFrame()).not.toContain("at orders.ts:17");
    ui.unmount();
  });

  it("an asset with 2,000 partitions: a heatmap, one mark a bucket, and its ranges over a few lines", async () => {
    const many = partitions.daily({ start: "2020-01-01", end: "2025-06-23" });
    const big = asset("events", { partitions: many, materialize: () => ({}) });
    const g = AssetGraph.build([{ module: "e.ts", pipeline: pipeline("e", { assets: [big] }) }]);
    const keys = many.keys(new Date("2026-01-01"));
    expect(keys.length).toBeGreaterThan(2_000);
    const r = keys.map((k, i) => row("events", k, i % 97 === 0 ? "failed" : i % 13 === 0 ? "missing" : "materialized"));
    const details: TuiDetails = { asset: async () => ({ materializations: [] }), run: async () => { throw new Error("unused"); } };
    const ui = render(<App graph={g} feed={noFeed} initial={{ at, assets: assetViews(g, r), runs: [], partitions: r }} details={details} actions={{ materialize: async () => "x" }} width={80} height={24} color={false} />);
    ui.stdin.write("\r");
    const frame = await frameWith(ui, "map:");
    fits(frame);
    expect(frame).toMatch(/^map: {3}[●○✗]{70,72}$/m);
    expect(frame).toMatch(/2020-01-01 … 2025-06-23, \d+ partitions a mark \(worst shown\)/);
    const rangeLines = frame.split("\n").filter((l) => /^(partitions: | {12})\S/.test(l));
    expect(rangeLines.length).toBe(4);
    expect(rangeLines[3]).toMatch(/\+\d+ more$/);
    expect(frame).not.toContain("missi…");
    ui.unmount();
  });

  it("every screen fits 80×24", async () => {
    const details: TuiDetails = {
      asset: async (key) => ({ materializations: [{ asset: key, partition: "2025-01-01", runId: "77aa88bb-0000", materializedAt: at, codeVersion: null, dataVersion: null, metadata: { rows: 1, checks: [{ name: "x".repeat(90), passed: false, message: "y".repeat(90) }] } }] as never }),
      run: async () => ({ run: runRecord("9c1e2f3a-1111", "failed", "s".repeat(100)), steps: Array.from({ length: 30 }, (_, i) => step(`a${i}`, "failed", "e".repeat(300))), events: Array.from({ length: 30 }, (_, i) => ({ id: i, runId: "9c1e2f3a-1111", asset: "a", partition: null, type: "log", level: "error", message: "m".repeat(100), data: null, createdAt: t(i) })) as never }),
    };
    const backfills = [{ id: "b7c8d9e0-2222", selection: "pipeline:shop+", from: "2025-01-01", to: "2025-01-07", policy: "per-partition", status: "running", createdAt: at, runs: { success: 5, failed: 1 }, failedPartitions: days }] as never;
    const runs = Array.from({ length: 40 }, (_, i) => runRecord(`${String(i).padStart(8, "0")}-x`, "failed", "x".repeat(100)));
    const ui = render(<App graph={graph} feed={noFeed} initial={{ ...snap(rows, runs), backfills }} details={details} actions={{ materialize: async () => "x", rerun: async () => "y" }} width={80} height={24} color={false} />);
    const seen: string[] = [];
    const check = async (keys: string, name: string) => {
      for (const k of keys) {
        ui.stdin.write(k);
        await tick();
      }
      const f = await frameWith(ui, name);
      if (process.env.DUMP) (await import("node:fs")).appendFileSync(process.env.DUMP, `DUMP ${name}\n${f}\n`);
      expect(f, name).toContain(name);
      fits(f);
      seen.push(name);
    };
    await check("", "floe · lineage");
    await check("?", "floe · keys");
    await check("?", "floe · lineage");
    await check("\r", "floe · orders".replace("orders", "raw"));
    await check("\u001b", "floe · lineage");
    await check("lm", "materialize orders, 2 partitions? (y/n)");
    await check("n", "nothing queued");
    await check("r", "floe · runs");
    await check("\r", "floe · run 00000000");
    await check("e", "error of a0");
    await check("b", "floe · backfills");
    await check("/", "Enter apply");
    expect(seen.length).toBe(12);
    ui.unmount();
  });
});

describe("model helpers", () => {
  it("names keys as ranges, buckets a heatmap by worst status, wraps a list with +N more", () => {
    expect(keysText(["d4", "d1", "d2"], ["d1", "d2", "d3", "d4"])).toBe("d1…d2, d4");
    const rs = ["a", "b", "c", "d"].map((k) => row("x", k, k === "c" ? "failed" : "materialized"));
    expect(heatmap(rs, 2)).toEqual({ cells: ["materialized", "failed"], per: 2 });
    expect(wrapList(["aaa", "bbb", "ccc", "ddd"], 14, 1)).toEqual(["aaa +3 more"]);
    expect(wrapList(["aaa", "bbb", "ccc"], 20, 3)).toEqual(["aaa, bbb, ccc"]);
    expect(wrapList(["aaaa", "bbbb", "cccc", "dddd", "eeee"], 12, 2)).toEqual(["aaaa, bbbb,", "cccc +2 more"]);
  });
});
